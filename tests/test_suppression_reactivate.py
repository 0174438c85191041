"""Reactivation as a domain function (`mailgw contacts reactivate`, through the admin service, is tested in
test_admin_cli.py), and `mailgw suppression sync` (a real subprocess): against the SES stand-in as a real HTTP server,
on SQLite and PostgreSQL."""

import datetime
import time

import pytest

from gateway.core.errors import ContactNotFound, InvalidRequest
from gateway.ses.suppression_list import SesSuppressionList
from gateway.store import ses_list as store
from gateway.store.contacts import change_status
from gateway.store.models import Contact, ContactStatus, SesListIntent, StatusChange
from gateway.suppression.reactivate import Reactivation, SesRemoval, reactivate
from gateway.suppression.sync import SuppressionSync
from support.processes import mailgw
from support.timings import FAST

ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = ContactStatus
DELETE = "DeleteSuppressedDestination"


def pull(*, full=None):
    day, at_once = datetime.timedelta(hours=24), datetime.timedelta(0)
    sync = SuppressionSync(SesSuppressionList(), push=False, reconcile_every=day, settle_after=at_once)
    return sync.run(full=full)


def last_change(email: str) -> tuple:
    row = StatusChange.select().join(Contact).where(Contact.email == email).order_by(StatusChange.id.desc()).get()
    return (row.from_status, row.to_status, row.source, row.actor, row.reason)


# --- the domain function ---------------------------------------------------------------------------------------


def test_reactivation_records_who_and_why_and_takes_the_address_off_ses_list(db, ses):
    ses.suppression.add("Ada@Example.org", "BOUNCE")  # SES keeps the spelling it saw, and matches it exactly
    pull()
    contact = Contact.get(email="ada@example.org")
    assert contact.status is BOUNCED

    done = reactivate(email="ADA@example.org", actor="alice", reason=" mailbox fixed ", ses=SesSuppressionList())

    assert done == Reactivation("ada@example.org", contact.contact_id, BOUNCED, True, SesRemoval.REMOVED)
    assert Contact.get(email="ada@example.org").status is ACTIVE
    assert last_change("ada@example.org") == (BOUNCED, ACTIVE, "admin", "alice", "mailbox fixed")
    assert ses.suppression.called(DELETE) == [{"EmailAddress": "Ada@Example.org"}]
    assert ses.suppression.entries == {}
    assert SesListIntent.select().count() == 0
    assert pull(full=True).suppressed == 0  # nothing brings it back
    assert Contact.get(email="ada@example.org").status is ACTIVE


def test_a_contact_ses_does_not_list_is_reactivated_all_the_same(db, ses):
    change_status(COMPLAINED, source="ses:Complaint", reason="Complaint/abuse", email="c@example.org")
    contact_id = Contact.get(email="c@example.org").contact_id

    done = reactivate(contact_id=contact_id, actor="bob", reason="complained by mistake", ses=SesSuppressionList())

    assert (done.before, done.changed, done.ses) == (COMPLAINED, True, SesRemoval.NOT_LISTED)
    assert Contact.get(email="c@example.org").status is ACTIVE
    assert SesListIntent.select().count() == 0  # the put the complaint asked for is superseded, not carried out
    assert ses.suppression.called("PutSuppressedDestination") == []


def test_a_removal_ses_throttles_waits_and_no_import_undoes_the_reactivation_meanwhile(db, ses):
    ses.suppression.add("w@example.org")
    pull()
    ses.suppression.fail(DELETE, 429, "TooManyRequestsException", "Too many requests")

    ses_list = SesSuppressionList(retry_base_seconds=FAST.retry_base_seconds)
    done = reactivate(email="w@example.org", actor="alice", reason="asked us to", ses=ses_list)

    assert (done.ses, done.ses_error) == (SesRemoval.WAITING, "SES_THROTTLED")
    assert Contact.get(email="w@example.org").status is ACTIVE
    intent = SesListIntent.get()
    assert (intent.action, intent.state, intent.error_reason) == ("delete", "pending", "SES_THROTTLED")
    held = pull(full=True)  # SES still lists it: the import must not suppress it again
    assert held.held_back == 1 and Contact.get(email="w@example.org").status is ACTIVE
    time.sleep(FAST.retry_base_seconds * 1.1)  # the first backoff: at most its base (the pass above may be after it)
    assert held.deleted + pull().deleted == 1
    assert ses.suppression.entries == {} and Contact.get(email="w@example.org").status is ACTIVE


def test_bad_input_is_refused_before_anything_changes(db, ses):
    change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="b@example.org")
    ses_list = SesSuppressionList()

    with pytest.raises(InvalidRequest) as refused:
        reactivate(email="not-an-address", actor="", reason="  ", ses=ses_list)
    assert set(refused.value.violations) == {"email", "actor", "reason"}
    with pytest.raises(InvalidRequest) as too_long:
        reactivate(email="b@example.org", actor="alice", reason="x" * 1001, ses=ses_list)
    assert set(too_long.value.violations) == {"reason"}
    with pytest.raises(ContactNotFound):
        reactivate(email="nobody@example.org", actor="alice", reason="why not", ses=ses_list)

    assert Contact.get_or_none(email="nobody@example.org") is None
    assert Contact.get(email="b@example.org").status is BOUNCED
    assert ses.suppression.calls == []


# --- the command, as a user runs it ----------------------------------------------------------------------------


def run_mailgw(*args: str, database_url: str):
    return mailgw(*args, timeout=60, MAILGW_DATABASE_URL=database_url)


@pytest.mark.slow
def test_mailgw_suppression_sync(db, ses, database_url):
    ses.suppression.add("one@example.org", "BOUNCE")
    ses.suppression.add("two@example.org", "COMPLAINT")

    done = run_mailgw("suppression", "sync", "--full", database_url=database_url)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "full reconcile: SES listed 2, 2 contacts suppressed, 0 held back (reactivated), 0 unreadable, "
        "0 no longer listed, 0 contacts restored, 0 put on SES's list, 0 removed from it, 0 waiting, 0 refused"
    ]
    assert Contact.get(email="two@example.org").status is COMPLAINED

    assert store.acquire_lease("gateway-7:4242", 600) is not None  # a gateway is syncing
    held = run_mailgw("suppression", "sync", database_url=database_url)
    assert held.returncode == 1
    assert held.stderr.startswith("error: gateway-7:4242 is syncing now (lease until ")
    assert held.stderr.endswith(" UTC): try again later\n")
    store.release_lease("gateway-7:4242")

    ses.suppression.fail("ListSuppressedDestinations", 403, "AccessDeniedException", "not allowed")
    denied = run_mailgw("suppression", "sync", database_url=database_url)
    assert (denied.returncode, denied.stderr) == (
        1,
        "error: ListSuppressedDestinations: SES_ACCESS_DENIED (AccessDeniedException): not allowed\n",
    )

"""The SES suppression-list sync against the SES stand-in as a real HTTP server, on SQLite and PostgreSQL: the pull
(paged, incremental, full), the reconcile, the push, failures, and two processes at once."""

import datetime
import json
import threading
import time

import pytest

from gateway.core.config import Settings
from gateway.ses.suppression_list import SesSuppressionList, SuppressionCallFailed
from gateway.store import ses_list as store
from gateway.store.contacts import change_status
from gateway.store.database import unit_of_work
from gateway.store.models import Contact, ContactStatus, SesListIntent, StatusChange, open_database
from gateway.suppression.sync import OVERLAP, SYNC_ACTOR, LeaseHeld, LeaseLost, SuppressionSync
from support import ses_samples
from support.processes import wait_until
from support.sns_signing import signed_envelope
from support.timings import FAST

ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = ContactStatus
LIST = "ListSuppressedDestinations"
DAY = datetime.timedelta(hours=24)


def make_sync(*, push=False, page_size=1000, settle_after=datetime.timedelta(0)) -> SuppressionSync:
    ses = SesSuppressionList(page_size=page_size, retry_base_seconds=FAST.retry_base_seconds)
    return SuppressionSync(ses, push=push, reconcile_every=DAY, settle_after=settle_after)


def status_of(email: str) -> ContactStatus | None:
    contact = Contact.get_or_none(email=email)
    return contact and contact.status


def history(email: str) -> list[tuple]:
    rows = StatusChange.select().join(Contact).where(Contact.email == email).order_by(StatusChange.id)
    return [(r.from_status, r.to_status, r.source, r.actor) for r in rows]


# --- pull ------------------------------------------------------------------------------------------------------


def test_first_pass_imports_every_page_of_the_list(db, ses):
    for address, reason in [
        ("a@example.org", "BOUNCE"),
        ("Ada@Example.ORG", "COMPLAINT"),  # SES keeps the spelling it was given; contacts are keyed in lower case
        ("c@example.org", "BOUNCE"),
        ("d@example.org", "COMPLAINT"),
        ("not an address", "BOUNCE"),
    ]:
        ses.suppression.add(address, reason)

    report = make_sync(page_size=2).run()

    assert (report.full, report.listed, report.suppressed, report.unreadable) == (True, 5, 4, 1)
    assert {e: status_of(e) for e in ("a@example.org", "ada@example.org", "c@example.org", "d@example.org")} == {
        "a@example.org": BOUNCED,
        "ada@example.org": COMPLAINED,
        "c@example.org": BOUNCED,
        "d@example.org": COMPLAINED,
    }
    assert history("c@example.org") == [(ACTIVE, BOUNCED, "ses-suppression-list", "")]
    assert Contact.get(email="c@example.org").reason.startswith("on SES's account suppression list (BOUNCE, last up")
    calls = ses.suppression.called(LIST)
    assert len(calls) == 3  # five entries, two a page
    assert all(call["Reason"] == ["BOUNCE", "COMPLAINT"] and call["PageSize"] == ["2"] for call in calls)
    assert ["NextToken" in call for call in calls] == [False, True, True]
    assert "StartDate" not in calls[0]  # the first pass lists everything
    assert SesListIntent.select().count() == 0  # what the list set is never pushed back to it


def test_an_incremental_pass_asks_for_entries_added_since_the_last_one_seen(db, ses):
    newest = time.time() - 3600
    ses.suppression.add("old@example.org", at=newest)
    make_sync().run()
    ses.suppression.add("new@example.org", "COMPLAINT", at=time.time() - 60)

    report = make_sync().run()

    assert report.full is False and status_of("new@example.org") is COMPLAINED
    start = ses.suppression.called(LIST)[-1]["StartDate"][0]
    asked = datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    expected = datetime.datetime.fromtimestamp(newest, datetime.UTC) - OVERLAP  # the newest entry the last pass saw
    assert abs((asked - expected).total_seconds()) < 0.01


def test_a_throttled_page_is_asked_again_and_the_pass_completes(db, ses):
    ses.suppression.add("a@example.org")
    ses.suppression.fail(LIST, 429, "TooManyRequestsException", "Too many requests")

    report = make_sync().run()

    assert report.suppressed == 1 and len(ses.suppression.called(LIST)) == 2


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [(400, "InvalidNextTokenException", "SES_INVALID_NEXT_TOKEN"), (400, "BadRequestException", "SES_BAD_REQUEST")],
)
def test_a_listing_cut_short_keeps_its_cursor_and_is_done_again(db, ses, status, code, reason):
    for n in range(3):
        ses.suppression.add(f"u{n}@example.org")
    ses.suppression.fail(LIST, status, code, "no", after=1)  # the second page

    with pytest.raises(SuppressionCallFailed) as failed:
        make_sync(page_size=2).run()

    assert failed.value.failure.reason == reason and len(ses.suppression.called(LIST)) == 2  # not asked again
    assert store.acquire_lease("probe", 1).cursor is None  # no pass completed: the next starts from the beginning
    store.release_lease("probe")
    report = make_sync(page_size=2).run()
    assert report.full and report.listed == 3
    assert [status_of(f"u{n}@example.org") for n in range(3)] == [BOUNCED] * 3


# --- reconcile -------------------------------------------------------------------------------------------------


def test_a_full_reconcile_lowers_only_what_nothing_but_the_list_held(db, ses):
    change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="ours@example.org")
    change_status(UNSUBSCRIBED, source="one-click", reason="one-click", email="quit@example.org")
    for address, reason in [
        ("only@example.org", "BOUNCE"),  # nothing but SES's list: active again
        ("ours@example.org", "COMPLAINT"),  # our own bounce, raised by SES to complained: bounced again
        ("quit@example.org", "BOUNCE"),  # unsubscribed, raised by SES: unsubscribed again
        ("stays@example.org", "BOUNCE"),  # still listed: unchanged
    ]:
        ses.suppression.add(address, reason)
    make_sync().run()
    assert [status_of(e) for e in ("only@example.org", "ours@example.org", "quit@example.org")] == [
        BOUNCED,
        COMPLAINED,
        BOUNCED,
    ]

    for address in ("only@example.org", "ours@example.org", "quit@example.org"):
        del ses.suppression.entries[address]
    incremental = make_sync().run()
    assert incremental.full is False and status_of("only@example.org") is BOUNCED  # removals do not show here

    report = make_sync().run(full=True)

    assert (report.unlisted, report.restored) == (3, 3)
    assert status_of("only@example.org") is ACTIVE
    assert status_of("ours@example.org") is BOUNCED
    assert status_of("quit@example.org") is UNSUBSCRIBED
    assert status_of("stays@example.org") is BOUNCED
    assert history("only@example.org")[-1] == (BOUNCED, ACTIVE, "ses-suppression-list", SYNC_ACTOR)
    assert Contact.get(email="only@example.org").reason == "no longer on SES's account suppression list"
    assert not SesListIntent.select().where(SesListIntent.action == "delete").exists()  # SES dropped them itself


async def complain(sidecar, signer, address: str) -> None:
    """A signed SES Complaint notification about `address`, through the sidecar's POST /sns."""
    envelope = signed_envelope(signer, message=ses_samples.message(ses_samples.complaint_event([address])))
    response = await sidecar.post("/sns", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
    assert response.status == 200, await response.text()


@pytest.mark.parametrize("notification_first", [False, True], ids=["list-first", "notification-first"])
async def test_a_complaint_we_were_told_about_outlives_its_entry_on_the_list(
    db, ses, make_sidecar, signer, notification_first
):
    """Whichever comes first, SES's list or our own notification, the notification's evidence is kept, and a
    reconcile lowers only a status whose every source is gone."""
    sidecar = await make_sidecar()
    ses.suppression.add("carol@example.org", "COMPLAINT")
    if notification_first:
        await complain(sidecar, signer, "carol@example.org")
    make_sync().run()
    if not notification_first:
        assert status_of("carol@example.org") is COMPLAINED  # the list's doing, so far
        await complain(sidecar, signer, "carol@example.org")
    del ses.suppression.entries["carol@example.org"]

    report = make_sync().run(full=True)

    assert report.restored == 0 and status_of("carol@example.org") is COMPLAINED
    expected = [(ACTIVE, COMPLAINED, "ses:Complaint", "")]  # the list then finds nothing to raise
    if not notification_first:  # the notification is kept as evidence beside the list's raise
        expected = [(ACTIVE, COMPLAINED, "ses-suppression-list", ""), (COMPLAINED, COMPLAINED, "ses:Complaint", "")]
    assert history("carol@example.org") == expected


async def test_without_our_own_notification_the_reconcile_restores_what_only_the_list_held(db, ses):
    """The control: the same entry without a notification of ours goes back to active when SES drops it."""
    ses.suppression.add("carol@example.org", "COMPLAINT")
    make_sync().run()
    del ses.suppression.entries["carol@example.org"]

    assert make_sync().run(full=True).restored == 1
    assert status_of("carol@example.org") is ACTIVE


def test_an_unsubscribe_or_an_operators_hold_outlives_a_complaint_the_list_held(db, ses):
    ses.suppression.add("dave@example.org", "COMPLAINT")
    ses.suppression.add("erin@example.org", "BOUNCE")
    make_sync().run()
    change_status(UNSUBSCRIBED, source="one-click", reason="one-click", email="dave@example.org")
    change_status(UNSUBSCRIBED, source="admin", reason="legal hold", email="erin@example.org", actor="ops")
    ses.suppression.entries.clear()

    assert make_sync().run(full=True).restored == 2
    assert (status_of("dave@example.org"), status_of("erin@example.org")) == (UNSUBSCRIBED, UNSUBSCRIBED)


def test_a_contact_the_list_raised_moments_before_the_listing_is_left_for_the_next_reconcile(db, ses):
    ses.suppression.add("late@example.org")
    make_sync().run()
    del ses.suppression.entries["late@example.org"]
    settings = Settings(ses_suppression_settle_seconds=300)  # MAILGW_SES_SUPPRESSION_SETTLE_SECONDS, the default

    report = SuppressionSync.from_settings(settings, SesSuppressionList()).run(full=True)

    assert report.restored == 0 and status_of("late@example.org") is BOUNCED
    settled = Settings.from_env({"MAILGW_SES_SUPPRESSION_SETTLE_SECONDS": "0"})
    assert SuppressionSync.from_settings(settled, SesSuppressionList()).run(full=True).restored == 1
    assert status_of("late@example.org") is ACTIVE


# --- push ------------------------------------------------------------------------------------------------------


def test_push_puts_our_own_suppressions_on_the_list_once(db, ses):
    change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="hard@example.org")
    change_status(COMPLAINED, source="ses:Complaint", reason="Complaint/abuse", email="angry@example.org")
    change_status(UNSUBSCRIBED, source="one-click", reason="one-click", email="quit@example.org")
    ses.suppression.add("theirs@example.org")

    off = make_sync().run()
    assert off.put == 0 and ses.suppression.called("PutSuppressedDestination") == []  # push is opt-in
    report = make_sync(push=True).run()
    again = make_sync(push=True).run(full=True)

    puts = ses.suppression.called("PutSuppressedDestination")
    assert sorted((p["EmailAddress"], p["Reason"]) for p in puts) == [
        ("angry@example.org", "COMPLAINT"),
        ("hard@example.org", "BOUNCE"),
    ]
    assert (report.put, again.put) == (2, 0)
    assert {a: e.reason for a, e in ses.suppression.entries.items()} == {
        "angry@example.org": "COMPLAINT",
        "hard@example.org": "BOUNCE",
        "theirs@example.org": "BOUNCE",
    }
    assert SesListIntent.select().count() == 0


def test_a_reconcile_with_push_puts_contacts_suppressed_before_any_intent_existed(db, ses):
    change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="before@example.org")
    SesListIntent.delete().execute()  # as a database from before this feature holds it

    report = make_sync(push=True).run(full=True)

    assert report.put == 1 and "before@example.org" in ses.suppression.entries


def test_a_failed_put_is_retried_and_a_refused_one_kept_with_ses_reason(db, ses):
    change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="later@example.org")
    ses.suppression.fail("PutSuppressedDestination", 429, "TooManyRequestsException", "slow down")

    first = make_sync(push=True).run()

    intent = SesListIntent.get()
    assert (first.put, first.waiting, intent.state, intent.attempts) == (0, 1, "pending", 1)
    assert intent.error_reason == "SES_THROTTLED"
    time.sleep(FAST.retry_base_seconds * 1.1)  # the first backoff: at most its base
    assert make_sync(push=True).run().put == 1
    assert "later@example.org" in ses.suppression.entries and SesListIntent.select().count() == 0

    change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="refused@example.org")
    ses.suppression.fail("PutSuppressedDestination", 400, "BadRequestException", "Invalid email address")
    refused = make_sync(push=True).run()
    assert (refused.refused, SesListIntent.get().state, SesListIntent.get().error_reason) == (
        1,
        "refused",
        "SES_BAD_REQUEST",
    )
    make_sync(push=True).run()
    assert len(ses.suppression.called("PutSuppressedDestination")) == 3  # the refused one is not tried again


# --- one at a time ---------------------------------------------------------------------------------------------


def test_two_processes_syncing_at_once_list_once(database_url, ses):
    open_database(database_url)
    for n in range(4):
        ses.suppression.add(f"p{n}@example.org")
    ses.suppression.delay = 0.5  # each page takes a while, so the second sync arrives during the first
    syncs = [make_sync(page_size=2) for _ in range(2)]  # two processes' worth: two holders, two SES clients
    outcomes = []

    def run(sync):
        with unit_of_work():
            try:
                outcomes.append(sync.run())
            except LeaseHeld:
                outcomes.append("held")

    threads = [threading.Thread(target=run, args=(sync,)) for sync in syncs]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()

    assert len(outcomes) == 2 and outcomes.count("held") == 1
    assert len(ses.suppression.called(LIST)) == 2  # one listing of two pages
    with unit_of_work():
        # The periodic job asks only when no pass completed within its period; one just did.
        assert make_sync().run(every=datetime.timedelta(minutes=5)) is None
        assert make_sync().run(every=datetime.timedelta(0)) is not None


def test_a_lease_whose_holder_died_is_taken_over(db, ses):
    sync = make_sync()
    assert store.acquire_lease("died-mid-pass", 0.2) is not None
    with pytest.raises(LeaseHeld):
        sync.run()
    time.sleep(0.25)  # the lease runs out: its holder never renewed it

    assert sync.run().full is True


def test_a_long_pass_renews_its_lease_and_stops_once_another_process_took_it(db, ses):
    """A pass renews its lease after every page, so it can outlast the lease's first term; and once another process
    has taken the lease over (it took this one for dead), the pass stops at its next page instead of running on
    beside the new holder."""
    for n in range(6):
        ses.suppression.add(f"p{n}@example.org")
    ses.suppression.delay = 0.2  # each page takes a while: time to look at the lease between two
    sync = make_sync(page_size=1)
    outcome: dict = {}

    def run():
        with unit_of_work():
            try:
                outcome["report"] = sync.run(full=True)
            except LeaseLost as exc:
                outcome["lost"] = exc

    passing = threading.Thread(target=run)
    passing.start()
    wait_until(lambda: len(ses.suppression.called(LIST)) >= 2)
    _, first_term = store.lease_holder()
    wait_until(lambda: len(ses.suppression.called(LIST)) >= 3)
    holder, renewed = store.lease_holder()
    assert holder == sync.holder and renewed > first_term  # renewed after a page

    store.release_lease(sync.holder)  # another process takes it, as it would from a holder taken for dead
    assert store.acquire_lease("other-process", 300.0) is not None
    passing.join(30)

    assert "lost" in outcome and "report" not in outcome
    listed = len(ses.suppression.called(LIST))
    assert listed < 6  # it stopped at its next page
    assert Contact.select().where(Contact.email == "p5@example.org").count() == 0
    assert store.lease_holder()[0] == "other-process"  # and left the new holder's lease alone

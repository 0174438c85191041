"""The suppression list where it meets the rest: signed SNS bounces and complaints that SES's list refused (the real
sidecar app), our own bounces put on the list, and the sync running inside real gateways on one database."""

import datetime
import json
import time

import pytest

from feedback_http.events import parse_ses_event
from gateway.core.config import ConfigError, Settings
from gateway.ses.suppression_list import SesSuppressionList
from gateway.store.contacts import change_status
from gateway.store.models import Contact, ContactStatus, MessageState, SesListIntent, database
from gateway.suppression.sync import SuppressionSync
from support import ses_samples
from support.processes import wait_until
from support.sns_signing import signed_envelope

ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = ContactStatus
# The diagnostic SES gives a bounce of subtype OnAccountSuppressionList.
DIAGNOSTIC = (
    "Amazon SES did not send the message to this address because it is on the suppression list for your account. "
    "For more information about removing addresses from the suppression list, see the Amazon SES Developer Guide at "
    "https://docs.aws.amazon.com/ses/latest/DeveloperGuide/sending-email-suppression-list.html"
)


async def post_sns(client, event: dict, signer) -> tuple[int, str]:
    envelope = signed_envelope(signer, message=ses_samples.message(event))
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": envelope["Type"]}
    response = await client.post("/sns", data=json.dumps(envelope), headers=headers)
    return response.status, await response.text()


def sync(*, push: bool = False) -> SuppressionSync:
    return SuppressionSync(
        SesSuppressionList(),
        push=push,
        reconcile_every=datetime.timedelta(hours=24),
        settle_after=datetime.timedelta(0),
    )


# --- SNS: what SES's list refused --------------------------------------------------------------------------------


@pytest.mark.parametrize("bounce_type", ["Permanent", "Transient", "Undetermined"])
def test_the_parser_reads_on_account_suppression_list_as_bounced_whatever_the_bounce_type(bounce_type):
    recipient = ses_samples.bounced_recipient(status=None, diagnostic_code=DIAGNOSTIC)
    event = parse_ses_event(
        ses_samples.message(ses_samples.bounce_event(bounce_type, "OnAccountSuppressionList", [recipient]))
    )

    [outcome] = event.outcomes
    assert (outcome.status, outcome.on_ses_list, outcome.soft_bounce) == (BOUNCED, True, False)
    assert outcome.reason == f"{bounce_type}/OnAccountSuppressionList: {DIAGNOSTIC}"
    assert event.message_state is MessageState.BOUNCED


async def test_a_bounce_on_the_account_suppression_list_marks_bounced_with_that_reason(make_sidecar, signer, ses):
    sidecar = await make_sidecar()
    recipient = ses_samples.bounced_recipient("Listed@Example.org", status="5.1.1", diagnostic_code=DIAGNOSTIC)
    event = ses_samples.bounce_event("Permanent", "OnAccountSuppressionList", [recipient])

    assert await post_sns(sidecar, event, signer) == (200, "recorded")

    with database.connection_context():
        contact = Contact.get(email="listed@example.org")
        change = contact.history.get()
        assert contact.status is BOUNCED
        assert contact.reason == f"Permanent/OnAccountSuppressionList: {DIAGNOSTIC}"
        assert (change.source, change.reason) == ("ses-suppression-list", contact.reason)
        assert not SesListIntent.select().exists()  # it is on SES's list already: nothing to put there
        # SES's list drops it later (we never saw it listed): the next full reconcile lets it be mailed again.
        report = sync(push=True).run(full=True)
        assert (report.restored, Contact.get(email="listed@example.org").status) == (1, ACTIVE)
    assert ses.suppression.called("PutSuppressedDestination") == []


async def test_a_complaint_on_the_account_suppression_list_marks_complained(make_sidecar, signer):
    sidecar = await make_sidecar()
    event = ses_samples.complaint_event(["listed@example.org"], feedback_type=None)
    event["complaint"]["complaintSubType"] = "OnAccountSuppressionList"

    assert await post_sns(sidecar, event, signer) == (200, "recorded")

    with database.connection_context():
        contact = Contact.get(email="listed@example.org")
        assert (contact.status, contact.reason) == (COMPLAINED, "Complaint/OnAccountSuppressionList")
        assert contact.history.get().source == "ses-suppression-list"


async def test_our_own_bounce_is_put_on_the_list_by_the_sync_not_by_the_webhook(make_sidecar, signer, ses):
    sidecar = await make_sidecar()
    event = ses_samples.bounce_event("Permanent", "NoEmail", [ses_samples.bounced_recipient("gone@example.org")])

    assert await post_sns(sidecar, event, signer) == (200, "recorded")

    assert ses.suppression.calls == [] and ses.requests == []  # the SNS handler made no SES call
    with database.connection_context():
        intent = SesListIntent.get()
        assert (intent.contact.email, intent.action, intent.reason, intent.state) == (
            "gone@example.org",
            "put",
            "BOUNCE",
            "pending",
        )
        assert sync(push=True).run().put == 1
        assert not SesListIntent.select().exists()
    assert ses.suppression.entries["gone@example.org"].reason == "BOUNCE"


# --- inside the gateway -------------------------------------------------------------------------------------------


def test_the_gateway_syncs_both_ways_on_its_own(make_gateway, ses):
    ses.suppression.add("listed@example.org", "COMPLAINT")
    make_gateway(ses_suppression_sync_seconds=0.2, ses_suppression_push=True)

    def imported():
        with database.connection_context():
            contact = Contact.get_or_none(email="listed@example.org")
            return contact is not None and contact.status is COMPLAINED

    wait_until(imported)
    with database.connection_context():
        change_status(BOUNCED, source="ses:Bounce", reason="Permanent/General", email="ours@example.org")
    wait_until(lambda: "ours@example.org" in ses.suppression.entries)
    assert ses.suppression.entries["ours@example.org"].reason == "BOUNCE"


def test_two_gateways_on_one_database_do_not_double_the_passes(make_gateway, ses):
    every = 0.1
    started = time.monotonic()
    make_gateway(ses_suppression_sync_seconds=every)
    make_gateway(ses_suppression_sync_seconds=every)
    wait_until(lambda: len(ses.suppression.called("ListSuppressedDestinations")) >= 2)
    time.sleep(6 * every)  # what is counted is passes per period: the clock is the subject here

    passes = len(ses.suppression.called("ListSuppressedDestinations"))  # one page each
    elapsed = time.monotonic() - started
    # A pass starts only when none completed within `every`: a slow machine makes fewer, never more. Two gateways
    # each keeping their own period would make about twice this.
    assert passes <= elapsed / every + 1, (passes, elapsed)


def test_the_sync_settings_are_read_and_checked_at_start():
    settings = Settings.from_env({"MAILGW_SES_SUPPRESSION_PUSH": "true", "MAILGW_SES_SUPPRESSION_SYNC_SECONDS": "0"})
    assert (settings.ses_suppression_push, settings.ses_suppression_sync_seconds) == (True, 0)
    assert (Settings().ses_suppression_sync_seconds, Settings().ses_suppression_reconcile_hours) == (300, 24)
    for name, value in [("SYNC_SECONDS", "-1"), ("RECONCILE_HOURS", "0"), ("PUSH", "maybe")]:
        with pytest.raises(ConfigError, match=f"MAILGW_SES_SUPPRESSION_{name.split('_')[0]}"):
            Settings.from_env({f"MAILGW_SES_SUPPRESSION_{name}": value})

"""Tests of feedback_http.events: SES event JSON → status changes per recipient."""

import json

import pytest

from feedback_http.events import MalformedEvent, RecipientOutcome, parse_ses_event
from gateway.core.states import StatusSource
from gateway.store.models import ContactStatus
from support import ses_samples as samples
from support.ses_samples import bounced_recipient, message

BOUNCED, COMPLAINED, UNSUBSCRIBED = ContactStatus.BOUNCED, ContactStatus.COMPLAINED, ContactStatus.UNSUBSCRIBED
CONTACT_ID = "qJIc0f3Xk9aB1cD2eF3gH4"  # the shape of a real one: 22 URL-safe characters
RECORD_ONLY = ["Delivery", "Send", "Reject", "DeliveryDelay", "Open", "Click", "Rendering Failure"]


def parse(event: dict):
    return parse_ses_event(message(event))


def by_email(event: dict) -> dict[str, RecipientOutcome]:
    return {outcome.email: outcome for outcome in parse(event).outcomes}


# --- every type, both formats -------------------------------------------------------------


@pytest.mark.parametrize("event_type", list(samples.EVENT_BUILDERS))
def test_event_publishing_sample_of_every_type_is_known(event_type):
    event = parse(samples.EVENT_BUILDERS[event_type](tags={"contact_id": CONTACT_ID}))
    assert (event.event_type, event.known) == (event_type, True)
    assert event.ses_message_id == samples.MESSAGE_ID
    assert event.contact_id == CONTACT_ID


@pytest.mark.parametrize("event_type", samples.IDENTITY_TYPES)
def test_identity_notification_is_read_by_notification_type(event_type):
    raw = samples.EVENT_BUILDERS[event_type](identity=True)
    assert "notificationType" in raw and "eventType" not in raw and "tags" not in raw["mail"]
    event = parse(raw)
    assert (event.event_type, event.known) == (event_type, True)
    assert event.ses_message_id == samples.MESSAGE_ID
    assert event.contact_id is None


@pytest.mark.parametrize(("event_type", "identity"), [(t, False) for t in RECORD_ONLY] + [("Delivery", True)])
def test_record_only_types_change_no_status(event_type, identity):
    event = parse(samples.EVENT_BUILDERS[event_type](identity=identity))
    assert event.known is True
    assert all(outcome.status is None and not outcome.soft_bounce for outcome in event.outcomes)
    # A delivery names its recipients, so that it can end their run of soft bounces.
    delivered = [(samples.RECIPIENT, True)] if event_type == "Delivery" else []
    assert [(outcome.email, outcome.delivered) for outcome in event.outcomes] == delivered


def test_rendering_failure_keeps_its_space():
    raw = samples.rendering_failure_event()
    assert raw["eventType"] == "Rendering Failure"
    assert parse(raw).event_type == "Rendering Failure"


def test_event_type_wins_over_notification_type():
    raw = samples.delivery_event() | {"notificationType": "Bounce"}
    assert parse(raw).event_type == "Delivery"


@pytest.mark.parametrize("event_type", [*samples.EVENT_BUILDERS, "Unheard-of"])
def test_the_types_that_change_a_status_each_name_their_source_and_no_other_type_has_one(event_type):
    builder = samples.EVENT_BUILDERS.get(event_type)
    changes = builder is not None and any(outcome.status for outcome in parse(builder()).outcomes)

    if changes:
        assert StatusSource.of_ses_event(event_type) == f"ses:{event_type}"
    else:
        with pytest.raises(ValueError, match="changes no contact's status"):
            StatusSource.of_ses_event(event_type)


# --- bounces --------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", [False, True])
def test_permanent_bounce_is_bounced_with_subtype_and_diagnostic(identity):
    event = parse(samples.bounce_event(identity=identity))
    assert event.outcomes == (
        RecipientOutcome(samples.RECIPIENT, BOUNCED, "Permanent/General: smtp; 550 5.1.1 user unknown", False),
    )


def test_every_bounced_recipient_gets_an_outcome_not_only_destination_0():
    # As the identity "bounce without a DSN" example: three sent, two bounced, no status or diagnostic.
    raw = samples.bounce_event(
        "Permanent",
        "General",
        [
            bounced_recipient("jane@example.com", status=None, diagnostic_code=None, action=None),
            bounced_recipient("richard@example.com", status=None, diagnostic_code=None, action=None),
        ],
        identity=True,
        destination=["mary@example.com", "jane@example.com", "richard@example.com"],
    )
    outcomes = by_email(raw)
    assert set(outcomes) == {"jane@example.com", "richard@example.com"}
    assert all(o.status is BOUNCED and o.reason == "Permanent/General" for o in outcomes.values())


@pytest.mark.parametrize("subtype", ["OnAccountSuppressionList", "Suppressed", "NoEmail"])
def test_permanent_bounce_of_any_subtype_is_bounced(subtype):
    diagnostic = (
        "Amazon SES did not send the message to this address because it is on the suppression list for your account."
    )
    raw = samples.bounce_event("Permanent", subtype, [bounced_recipient(diagnostic_code=diagnostic)])
    [outcome] = parse(raw).outcomes
    assert outcome.status is BOUNCED
    assert outcome.reason == f"Permanent/{subtype}: {diagnostic}"
    assert outcome.soft_bounce is False


def test_transient_bounce_with_permanent_dsn_status_is_bounced():
    raw = samples.bounce_event(
        "Transient", "General", [bounced_recipient(status="5.4.4", diagnostic_code="smtp; 550 5.4.4 Invalid domain")]
    )
    [outcome] = parse(raw).outcomes
    assert (outcome.status, outcome.soft_bounce) == (BOUNCED, False)
    assert outcome.reason == "Transient/General: smtp; 550 5.4.4 Invalid domain"


@pytest.mark.parametrize("subtype", ["General", "MailboxFull"])
def test_transient_bounce_with_temporary_dsn_status_is_soft(subtype):
    raw = samples.bounce_event(
        "Transient", subtype, [bounced_recipient(status="4.2.2", diagnostic_code="smtp; 452 4.2.2 Mailbox full")]
    )
    [outcome] = parse(raw).outcomes
    assert (outcome.status, outcome.soft_bounce) == (None, True)


@pytest.mark.parametrize("subtype", ["MessageTooLarge", "ContentRejected", "AttachmentRejected"])
def test_transient_bounce_that_is_our_fault_is_recorded_only_whatever_the_dsn(subtype):
    raw = samples.bounce_event(
        "Transient", subtype, [bounced_recipient(status="5.3.4", diagnostic_code="smtp; 552 5.3.4 Message too big")]
    )
    [outcome] = parse(raw).outcomes
    assert (outcome.status, outcome.soft_bounce) == (None, False)
    assert outcome.reason.startswith(f"Transient/{subtype}")


def test_undetermined_bounce_is_soft():
    raw = samples.bounce_event("Undetermined", "Undetermined", [bounced_recipient(status=None, diagnostic_code=None)])
    assert parse(raw).outcomes == (RecipientOutcome(samples.RECIPIENT, None, "Undetermined/Undetermined", True),)


def test_transient_bounce_without_status_key_is_soft_not_a_crash():
    raw = samples.bounce_event("Transient", "General", [bounced_recipient(status=None)])
    assert "status" not in raw["bounce"]["bouncedRecipients"][0]
    [outcome] = parse(raw).outcomes
    assert (outcome.status, outcome.soft_bounce) == (None, True)


def test_long_diagnostic_is_kept_on_one_line():
    diagnostic = "smtp; 550 5.1.1 line one\r\n" + "x" * 2000
    [outcome] = parse(samples.bounce_event(recipients=[bounced_recipient(diagnostic_code=diagnostic)])).outcomes
    assert outcome.reason.startswith("Permanent/General: smtp; 550 5.1.1 line one xxx")
    assert "\n" not in outcome.reason


# --- complaints -----------------------------------------------------------------------------


@pytest.mark.parametrize("identity", [False, True])
def test_complaint_is_complained_with_feedback_type(identity):
    event = parse(samples.complaint_event(["richard@example.com"], "abuse", identity=identity))
    assert event.outcomes == (RecipientOutcome("richard@example.com", COMPLAINED, "Complaint/abuse"),)


def test_complaint_without_feedback_report_is_complained():
    raw = samples.complaint_event(
        ["richard@example.com"], None, identity=True, destination=["jane@example.com", "richard@example.com"]
    )
    assert "complaintFeedbackType" not in raw["complaint"]
    assert parse(raw).outcomes == (RecipientOutcome("richard@example.com", COMPLAINED, "Complaint"),)


def test_not_spam_complaint_is_recorded_only():
    [outcome] = parse(samples.complaint_event(feedback_type="not-spam")).outcomes
    assert (outcome.status, outcome.reason) == (None, "Complaint/not-spam")


def test_every_complained_recipient_gets_an_outcome():
    raw = samples.complaint_event(["a@example.com", "b@example.com"], "abuse", destination=["c@example.com"])
    assert set(by_email(raw)) == {"a@example.com", "b@example.com"}


# --- subscription (SES list management) -----------------------------------------------------


def test_subscription_unsubscribe_all_unsubscribes_every_destination():
    raw = samples.subscription_event(True, destination=["a@example.com", "B@Example.com"])
    assert parse(raw).outcomes == (
        RecipientOutcome("a@example.com", UNSUBSCRIBED, "SES list management: unsubscribeAll"),
        RecipientOutcome("b@example.com", UNSUBSCRIBED, "SES list management: unsubscribeAll"),
    )


def test_subscription_without_unsubscribe_all_changes_nothing():
    event = parse(samples.subscription_event(False))
    assert (event.known, event.outcomes) == (True, ())


# --- unknown types, tags, addresses, tolerance ----------------------------------------------


def test_unknown_event_type_is_not_known_and_not_an_error():
    event = parse(samples.ses_event("Teleport", "teleport", {"to": "mars"}))
    assert (event.event_type, event.known, event.outcomes) == ("Teleport", False, ())
    assert event.ses_message_id == samples.MESSAGE_ID


def test_subscription_succeeded_notice_without_mail_is_unknown_not_an_error():
    event = parse(samples.subscription_succeeded_notice())
    assert (event.event_type, event.known, event.ses_message_id, event.contact_id) == (
        "AmazonSnsSubscriptionSucceeded",
        False,
        None,
        None,
    )


def test_contact_id_is_read_from_mail_tags():
    assert parse(samples.bounce_event(tags={"contact_id": CONTACT_ID})).contact_id == CONTACT_ID


@pytest.mark.parametrize("value", ["Zx_9-abc", CONTACT_ID + "x", "qJIc0f3Xk9aB1cD2eF3g\x00H", "ä" * 22])
def test_a_tag_that_is_not_a_contact_id_is_not_looked_up(value):
    assert parse(samples.bounce_event(tags={"contact_id": value})).contact_id is None


@pytest.mark.parametrize("message_id", ["", "x" * 129, "id with spaces", "nul\x00id"])
def test_an_ses_message_id_that_cannot_be_one_is_not_looked_up(message_id):
    assert parse(samples.bounce_event(message_id=message_id)).ses_message_id is None


def test_destination_is_normalised_and_refused_addresses_are_reported():
    raw = samples.bounce_event(
        recipients=[bounced_recipient("not an address"), bounced_recipient("Final@Mailhost.Example")],
        destination=["Ada@Example.org", "@broken"],
    )
    event = parse(raw)
    assert event.destination == ("ada@example.org",)
    assert [o.email for o in event.outcomes] == ["final@mailhost.example"]
    assert {address for address, _ in event.unreadable} == {"not an address", "@broken"}


def test_contact_id_is_none_without_our_tag():
    raw = samples.bounce_event()
    assert "ses:configuration-set" in raw["mail"]["tags"]
    assert parse(raw).contact_id is None


def test_addresses_are_normalised():
    raw = samples.bounce_event(recipients=[bounced_recipient(" Jane.Doe@Example.COM")])
    assert [o.email for o in parse(raw).outcomes] == ["jane.doe@example.com"]


def test_invalid_address_is_skipped_and_the_others_kept():
    raw = samples.bounce_event(recipients=[bounced_recipient("not-an-address"), bounced_recipient("ok@example.com")])
    assert [o.email for o in parse(raw).outcomes] == ["ok@example.com"]


def test_duplicated_recipient_appears_once():
    raw = samples.bounce_event(
        recipients=[bounced_recipient("dup@example.com"), bounced_recipient("DUP@example.com"), bounced_recipient()]
    )
    assert [o.email for o in parse(raw).outcomes] == ["dup@example.com", samples.RECIPIENT]


def test_extra_fields_are_tolerated():
    raw = samples.bounce_event()
    raw["futureField"] = {"x": 1}
    raw["bounce"]["futureField"] = [1, 2]
    raw["bounce"]["bouncedRecipients"][0]["futureField"] = None
    raw["mail"]["futureField"] = "y"
    [outcome] = parse(raw).outcomes
    assert outcome.status is BOUNCED


def test_missing_mail_tags_is_tolerated():
    raw = samples.complaint_event()
    del raw["mail"]["tags"]
    event = parse(raw)
    assert event.contact_id is None and event.outcomes[0].status is COMPLAINED


# --- malformed ------------------------------------------------------------------------------


def _with(event: dict, change) -> str:
    change(event)
    return json.dumps(event)


MALFORMED = {
    "not JSON": "this is not json {",
    "empty": "",
    "JSON list": json.dumps([samples.bounce_event()]),
    "JSON string": json.dumps("Bounce"),
    "no type": _with(samples.bounce_event(), lambda e: e.pop("eventType")),
    "type not a string": _with(samples.bounce_event(), lambda e: e.update(eventType=["Bounce"])),
    "missing bounce object": _with(samples.bounce_event(), lambda e: e.pop("bounce")),
    "bounce not an object": _with(samples.bounce_event(), lambda e: e.update(bounce="Permanent")),
    "missing bounceType": _with(samples.bounce_event(), lambda e: e["bounce"].pop("bounceType")),
    "bouncedRecipients not a list": _with(
        samples.bounce_event(), lambda e: e["bounce"].update(bouncedRecipients={"emailAddress": samples.RECIPIENT})
    ),
    "bounced recipient without address": _with(
        samples.bounce_event(), lambda e: e["bounce"]["bouncedRecipients"][0].pop("emailAddress")
    ),
    "bounced recipient a string": _with(
        samples.bounce_event(), lambda e: e["bounce"].update(bouncedRecipients=[samples.RECIPIENT])
    ),
    "missing complaint object": _with(samples.complaint_event(), lambda e: e.pop("complaint")),
    "complainedRecipients missing": _with(
        samples.complaint_event(), lambda e: e["complaint"].pop("complainedRecipients")
    ),
    "mail not an object": _with(samples.bounce_event(), lambda e: e.update(mail=["x"])),
    "missing subscription object": _with(samples.subscription_event(), lambda e: e.pop("subscription")),
    "unsubscribeAll without destination list": _with(
        samples.subscription_event(), lambda e: e["mail"].update(destination=samples.RECIPIENT)
    ),
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_message_raises(text):
    with pytest.raises(MalformedEvent):
        parse_ses_event(text)


def test_malformed_event_is_a_value_error():
    assert issubclass(MalformedEvent, ValueError)

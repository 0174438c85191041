"""The sidecar's HTTP surface against the real app: signed SNS notifications, unsubscribe pages, health."""

import json

import pytest

from feedback_http.app import RAW_DELIVERY
from feedback_http.config import sns_endpoint
from gateway.core.logs import contact_ref
from gateway.store import queue
from gateway.store.contacts import get_or_create_contact
from gateway.store.models import Contact, ContactStatus, FeedbackEvent, Message, MessageState, StatusChange, database
from support import ses_samples
from support.sns_signing import TOPIC_ARN, signed_envelope

FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:not-ours"


@pytest.fixture
async def sidecar(make_sidecar):
    return await make_sidecar()


def notification(signer, event: dict, **options) -> dict:
    return signed_envelope(signer, message=ses_samples.message(event), **options)


async def post_sns(client, envelope: dict, **headers):
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": envelope["Type"], **headers}
    response = await client.post("/sns", data=json.dumps(envelope), headers=headers)
    return response.status, await response.text()


def status_of(email: str) -> ContactStatus | None:
    with database.connection_context():
        contact = Contact.get_or_none(email=email)
    return contact and contact.status


def count(model) -> int:
    with database.connection_context():
        return model.select().count()


# --- SES events through POST /sns -------------------------------------------------------------------------


@pytest.mark.parametrize("identity", [False, True], ids=["eventType", "notificationType"])
async def test_permanent_bounce_marks_every_bounced_recipient(sidecar, signer, identity):
    event = ses_samples.bounce_event(
        "Permanent",
        "NoEmail",
        [ses_samples.bounced_recipient("One@Example.com"), ses_samples.bounced_recipient("two@example.com")],
        identity=identity,
    )

    assert await post_sns(sidecar, notification(signer, event)) == (200, "recorded")

    assert status_of("one@example.com") is ContactStatus.BOUNCED
    assert status_of("two@example.com") is ContactStatus.BOUNCED
    with database.connection_context():
        change = StatusChange.select().join(Contact).where(Contact.email == "two@example.com").get()
    assert (change.source, change.reason) == ("ses:Bounce", "Permanent/NoEmail: smtp; 550 5.1.1 user unknown")


@pytest.mark.parametrize("identity", [False, True], ids=["eventType", "notificationType"])
async def test_complaint_marks_complained_but_not_spam_changes_nothing(sidecar, signer, identity):
    complaint = ses_samples.complaint_event(["spam@example.com"], "abuse", identity=identity)
    rescued = ses_samples.complaint_event(["rescued@example.com"], "not-spam", identity=identity)

    assert (await post_sns(sidecar, notification(signer, complaint)))[0] == 200
    assert (await post_sns(sidecar, notification(signer, rescued)))[0] == 200

    assert status_of("spam@example.com") is ContactStatus.COMPLAINED
    assert status_of("rescued@example.com") in (None, ContactStatus.ACTIVE)


async def test_redelivered_notification_changes_nothing(make_sidecar, signer):
    sidecar = await make_sidecar(soft_bounce_limit=2)
    soft = notification(
        signer, ses_samples.bounce_event("Transient", "MailboxFull", [ses_samples.bounced_recipient(status="4.2.2")])
    )

    assert await post_sns(sidecar, soft) == (200, "recorded")
    assert await post_sns(sidecar, soft) == (200, "duplicate")  # SNS retries reuse the MessageId

    assert count(FeedbackEvent) == 1
    assert status_of(ses_samples.RECIPIENT) is ContactStatus.ACTIVE  # one soft bounce counted, not two


async def test_soft_bounces_suppress_only_past_the_optional_limit(make_sidecar, signer):
    sidecar = await make_sidecar(soft_bounce_limit=2)
    soft = ses_samples.bounce_event("Transient", "General", [ses_samples.bounced_recipient(status="4.4.7")])

    await post_sns(sidecar, notification(signer, soft))
    assert status_of(ses_samples.RECIPIENT) is ContactStatus.ACTIVE
    await post_sns(sidecar, notification(signer, soft))

    assert status_of(ses_samples.RECIPIENT) is ContactStatus.BOUNCED
    with database.connection_context():
        assert Contact.get(email=ses_samples.RECIPIENT).reason.startswith("2 soft bounces")


async def test_transient_5xx_dsn_is_a_hard_bounce_and_our_fault_is_not(sidecar, signer):
    invalid_domain = ses_samples.bounce_event(
        "Transient", "General", [ses_samples.bounced_recipient("a@example.com", status="5.4.4")]
    )
    too_large = ses_samples.bounce_event(
        "Transient", "MessageTooLarge", [ses_samples.bounced_recipient("b@example.com", status="5.3.4")]
    )

    await post_sns(sidecar, notification(signer, invalid_domain))
    await post_sns(sidecar, notification(signer, too_large))

    assert status_of("a@example.com") is ContactStatus.BOUNCED
    assert status_of("b@example.com") in (None, ContactStatus.ACTIVE)


async def test_subscription_unsubscribe_all_marks_unsubscribed(sidecar, signer):
    event = ses_samples.subscription_event(True, destination=["list@example.com"])

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    assert status_of("list@example.com") is ContactStatus.UNSUBSCRIBED


def queued_message(state: MessageState = MessageState.SENT, ses_message_id: str | None = None) -> Message:
    """A message as the queue holds it after dispatch: in `state`, with SES's id when SES gave one."""
    with database.connection_context():
        contact = get_or_create_contact(ses_samples.RECIPIENT)
        message_id = queue.enqueue(contact_pk=contact.id, caller="", request_id=None, request_hash=None, payload="{}")
        Message.update(state=state, ses_message_id=ses_message_id).where(Message.message_id == message_id).execute()
        return Message.get(message_id=message_id)


def message_now(message: Message) -> Message:
    with database.connection_context():
        return Message.get_by_id(message.id)


async def test_an_event_is_recorded_against_its_message_by_ses_id_without_our_tag(sidecar, signer):
    message = queued_message(ses_message_id="0100-ours")
    event = ses_samples.delivery_event(message_id="0100-ours", identity=True)

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    with database.connection_context():
        recorded = FeedbackEvent.get()
    assert (recorded.event_type, recorded.message.id) == ("Delivery", message.id)
    assert message_now(message).state is MessageState.DELIVERED
    assert status_of(ses_samples.RECIPIENT) is ContactStatus.ACTIVE


@pytest.mark.parametrize(
    "event, state",
    [
        (ses_samples.send_event, MessageState.SENT),
        (ses_samples.delivery_event, MessageState.DELIVERED),
        (ses_samples.bounce_event, MessageState.BOUNCED),
        (ses_samples.complaint_event, MessageState.COMPLAINED),
        (ses_samples.reject_event, MessageState.FAILED),
    ],
)
async def test_an_event_settles_the_message_named_by_its_tag(sidecar, signer, event, state):
    """A message whose SES call got no answer (UNKNOWN) is settled by the first event that names it."""
    message = queued_message(MessageState.UNKNOWN)
    raw = event(tags={"message_id": message.message_id}, message_id="0100-from-the-event")

    assert (await post_sns(sidecar, notification(signer, raw)))[0] == 200

    settled = message_now(message)
    assert (settled.state, settled.ses_message_id, settled.payload) == (state, "0100-from-the-event", None)
    if state is MessageState.FAILED:
        assert (settled.error_reason, settled.error_detail) == ("SES_REJECTED", "Bad content")


async def test_an_event_naming_an_ses_id_another_message_holds_still_settles_its_message(sidecar, signer):
    queued_message(MessageState.SENT, ses_message_id="0100-taken")
    message = queued_message(MessageState.UNKNOWN)
    event = ses_samples.send_event(tags={"message_id": message.message_id}, message_id="0100-taken")

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200  # never a 500 that SNS retries forever

    assert (message_now(message).state, message_now(message).ses_message_id) == (MessageState.SENT, None)


async def test_events_only_move_a_message_forward(sidecar, signer):
    message = queued_message(MessageState.SENT, ses_message_id="0100-ours")
    tags = {"message_id": message.message_id}
    events = [
        ses_samples.complaint_event(tags=tags),
        ses_samples.delivery_event(tags=tags),
        ses_samples.send_event(tags=tags),
    ]

    for event in events:  # out of order, as SNS may deliver them
        assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    assert message_now(message).state is MessageState.COMPLAINED
    with database.connection_context():
        assert [e.event_type for e in FeedbackEvent.select().order_by(FeedbackEvent.id)] == [
            "Complaint",
            "Delivery",
            "Send",
        ]


async def test_unknown_event_type_is_acknowledged_and_recorded(sidecar, signer):
    event = {"eventType": "SomethingNew", "mail": ses_samples.mail()}

    assert await post_sns(sidecar, notification(signer, event)) == (200, "recorded")
    assert count(FeedbackEvent) == 1


# --- refusals: nothing changes ---------------------------------------------------------------------------


@pytest.mark.one_database
async def test_tampered_notification_is_forbidden_and_changes_nothing(sidecar, signer):
    envelope = notification(signer, ses_samples.bounce_event())
    envelope["Message"] = envelope["Message"].replace("Permanent", "Permanenx")

    status, text = await post_sns(sidecar, envelope)

    assert status == 403 and "verification failed" in text
    assert status_of(ses_samples.RECIPIENT) is None and count(FeedbackEvent) == 0


@pytest.mark.one_database
async def test_foreign_topic_is_forbidden_and_never_confirmed(sidecar, signer, sns_host):
    bounce = notification(signer, ses_samples.bounce_event(), topic_arn=FOREIGN_TOPIC)
    subscribe = signed_envelope(signer, "SubscriptionConfirmation", topic_arn=FOREIGN_TOPIC)

    assert (await post_sns(sidecar, bounce))[0] == 403
    assert (await post_sns(sidecar, subscribe))[0] == 403

    assert sns_host.requests == []  # neither the certificate nor the SubscribeURL was fetched
    assert status_of(ses_samples.RECIPIENT) is None


@pytest.mark.one_database
@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"Type": "Notification"}', b"\xff\xfe", json.dumps({"Type": "Other"}).encode()],
)
async def test_malformed_envelope_is_bad_request(sidecar, body):
    response = await sidecar.post("/sns", data=body, headers={"Content-Type": "text/plain"})

    assert response.status == 400
    assert (await response.text()).startswith("not an SNS message")


@pytest.mark.one_database
async def test_verified_message_that_is_not_an_ses_event_is_bad_request(sidecar, signer):
    status, text = await post_sns(sidecar, signed_envelope(signer, message="hello"))

    assert status == 400 and "not an SES event" in text
    assert count(FeedbackEvent) == 0


@pytest.mark.one_database
async def test_raw_message_delivery_is_refused_with_the_fix(sidecar):
    body = ses_samples.message(ses_samples.bounce_event())

    response = await sidecar.post("/sns", data=body, headers={"x-amz-sns-rawdelivery": "true"})

    assert response.status == 400
    assert await response.text() == RAW_DELIVERY
    assert status_of(ses_samples.RECIPIENT) is None


@pytest.mark.one_database
async def test_oversized_body_is_refused(make_sidecar):
    sidecar = await make_sidecar(max_body_bytes=1024)

    response = await sidecar.post("/sns", data=b"x" * 2048, headers={"Content-Type": "text/plain"})

    assert response.status == 413


@pytest.mark.one_database
async def test_certificate_host_failure_is_retryable_and_recovers(sidecar, signer, sns_host):
    envelope = notification(signer, ses_samples.bounce_event())
    sns_host.status = 500

    assert (await post_sns(sidecar, envelope))[0] == 503  # SNS will retry
    assert status_of(ses_samples.RECIPIENT) is None

    sns_host.status = 200
    assert await post_sns(sidecar, envelope) == (200, "recorded")
    assert status_of(ses_samples.RECIPIENT) is ContactStatus.BOUNCED


@pytest.mark.one_database
async def test_subscription_confirmation_is_confirmed_and_unsubscribe_confirmation_is_not(sidecar, signer, sns_host):
    assert (await post_sns(sidecar, signed_envelope(signer, "SubscriptionConfirmation")))[0] == 200
    assert len(sns_host.confirmations) == 1 and "Action=ConfirmSubscription" in sns_host.confirmations[0]

    assert (await post_sns(sidecar, signed_envelope(signer, "UnsubscribeConfirmation")))[0] == 200
    assert len(sns_host.confirmations) == 1  # visiting it would subscribe us again


# --- unsubscribe --------------------------------------------------------------------------------------------


@pytest.fixture
def contact(sidecar):
    with database.connection_context():
        return get_or_create_contact("reader@example.com")


@pytest.mark.one_database
async def test_get_shows_a_button_and_changes_nothing(sidecar, contact):
    response = await sidecar.get(f"/unsubscribe/{contact.contact_id}")

    page = await response.text()
    assert response.status == 200
    assert '<form method="post">' in page and "<button" in page and 'lang="en"' in page
    assert "reader@example.com" not in page  # the page reveals nothing the link holder does not know
    assert "http" not in page.split("<body>")[1]  # no external assets
    assert status_of("reader@example.com") is ContactStatus.ACTIVE


async def test_page_button_unsubscribes(sidecar, contact):
    response = await sidecar.post(f"/unsubscribe/{contact.contact_id}", data={"List-Unsubscribe": "Web-Form"})

    assert response.status == 200
    assert "You are unsubscribed" in await response.text()
    assert status_of("reader@example.com") is ContactStatus.UNSUBSCRIBED


async def test_one_click_post_unsubscribes_without_redirect_and_is_idempotent(sidecar, contact):
    for _ in range(2):
        response = await sidecar.post(
            f"/unsubscribe/{contact.contact_id}",
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
        )
        assert response.status == 200

    assert status_of("reader@example.com") is ContactStatus.UNSUBSCRIBED
    with database.connection_context():
        assert [c.source for c in StatusChange.select()] == ["one-click"]


async def test_unsubscribe_keeps_a_higher_status(sidecar, signer, contact):
    await post_sns(sidecar, notification(signer, ses_samples.complaint_event(["reader@example.com"])))

    response = await sidecar.post(f"/unsubscribe/{contact.contact_id}", data="List-Unsubscribe=One-Click")

    assert response.status == 200
    assert status_of("reader@example.com") is ContactStatus.COMPLAINED


@pytest.mark.one_database
@pytest.mark.parametrize("contact_id", ["A" * 22, "short", "../../etc/passwd", "x" * 200])
async def test_unknown_or_malformed_id_is_not_found(sidecar, contact_id):
    for method in (sidecar.get, sidecar.post):
        response = await method(f"/unsubscribe/{contact_id}")
        assert response.status == 404
    assert count(StatusChange) == 0


async def test_unsubscribe_on_get_is_an_operator_option(make_sidecar):
    sidecar = await make_sidecar(unsubscribe_on_get=True)
    with database.connection_context():
        contact = get_or_create_contact("reader@example.com")

    response = await sidecar.get(f"/unsubscribe/{contact.contact_id}")

    assert response.status == 200
    assert status_of("reader@example.com") is ContactStatus.UNSUBSCRIBED


async def test_healthz_answers_when_the_database_does(sidecar):
    response = await sidecar.get("/healthz")

    assert (response.status, await response.text()) == (200, "ok")


# --- feedback finds the contact we mailed ------------------------------------------------------------------


def contact_named(email: str):
    with database.connection_context():
        return get_or_create_contact(email)


@pytest.mark.parametrize("kind", ["bounce", "complaint"])
async def test_a_forwarded_bounce_or_complaint_finds_the_contact_by_its_tag(sidecar, signer, kind):
    """Mail to ada@example.org was forwarded; the DSN names the final recipient ada.lovelace@mailhost.example."""
    ada = contact_named("ada@example.org")
    envelope = {"tags": {"contact_id": ada.contact_id}, "destination": ["ada@example.org"]}
    if kind == "bounce":
        event = ses_samples.bounce_event(
            recipients=[ses_samples.bounced_recipient("ada.lovelace@mailhost.example")], **envelope
        )
    else:
        event = ses_samples.complaint_event(["ada.lovelace@mailhost.example"], **envelope)

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    assert status_of("ada@example.org") is (ContactStatus.BOUNCED if kind == "bounce" else ContactStatus.COMPLAINED)
    assert status_of("ada.lovelace@mailhost.example") is None  # not a contact of ours: not created


async def test_without_our_tag_the_one_envelope_recipient_is_the_contact_we_mailed(sidecar, signer):
    event = ses_samples.bounce_event(
        recipients=[ses_samples.bounced_recipient("ada.lovelace@mailhost.example")],
        destination=["Ada@Example.org"],
        identity=True,  # identity notifications carry no tags
    )

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    assert status_of("ada@example.org") is ContactStatus.BOUNCED
    assert status_of("ada.lovelace@mailhost.example") is None


async def test_the_final_recipient_is_suppressed_too_when_it_is_a_contact_of_ours(sidecar, signer):
    ada = contact_named("ada@example.org")
    contact_named("ada.lovelace@mailhost.example")
    event = ses_samples.bounce_event(
        recipients=[ses_samples.bounced_recipient("ada.lovelace@mailhost.example")],
        tags={"contact_id": ada.contact_id},
        destination=["ada@example.org"],
    )

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    assert status_of("ada@example.org") is ContactStatus.BOUNCED
    assert status_of("ada.lovelace@mailhost.example") is ContactStatus.BOUNCED


async def test_an_address_the_validator_refuses_is_logged_masked_not_dropped_silently(sidecar, signer, caplog):
    caplog.set_level("WARNING")
    event = ses_samples.bounce_event(
        recipients=[ses_samples.bounced_recipient("bob@@mailhost.example"), ses_samples.bounced_recipient()]
    )

    assert (await post_sns(sidecar, notification(signer, event)))[0] == 200

    assert status_of(ses_samples.RECIPIENT) is ContactStatus.BOUNCED
    [line] = [r.getMessage() for r in caplog.records if "invalid address" in r.getMessage()]
    assert "b***@mailhost.example" in line and "bob@" not in line


# --- a bounce is never lost to its own text ----------------------------------------------------------------


async def test_a_nul_or_huge_diagnostic_is_stored_as_the_database_can_hold_it(sidecar, signer):
    """A remote server's diagnostic with a NUL byte answered 500 on PostgreSQL on every redelivery: lost."""
    diagnostic = "smtp; 550 5.1.1 \x00 unknown \ud800 user " + "x" * 100_000
    event = ses_samples.bounce_event(recipients=[ses_samples.bounced_recipient(diagnostic_code=diagnostic)])

    assert await post_sns(sidecar, notification(signer, event)) == (200, "recorded")

    assert status_of(ses_samples.RECIPIENT) is ContactStatus.BOUNCED
    with database.connection_context():
        contact = Contact.get(email=ses_samples.RECIPIENT)
        change = StatusChange.get()
        recorded = FeedbackEvent.get()
    assert contact.reason.startswith("Permanent/General: smtp; 550 5.1.1  unknown ? user xxx")
    assert change.reason == contact.reason and len(contact.reason) == 1000
    assert "\x00" not in recorded.detail and len(recorded.detail) == 2000


# --- soft bounces count in a row ------------------------------------------------------------------------


async def test_only_soft_bounces_in_a_row_count_a_delivery_resets_them(make_sidecar, signer):
    sidecar = await make_sidecar(soft_bounce_limit=3)
    soft = ses_samples.bounce_event("Transient", "MailboxFull", [ses_samples.bounced_recipient(status="4.2.2")])

    for event in (soft, soft, ses_samples.delivery_event(), soft, soft):
        assert (await post_sns(sidecar, notification(signer, event)))[0] == 200
    assert status_of(ses_samples.RECIPIENT) is ContactStatus.ACTIVE  # four soft bounces, never three in a row

    assert (await post_sns(sidecar, notification(signer, soft)))[0] == 200
    assert status_of(ses_samples.RECIPIENT) is ContactStatus.BOUNCED
    with database.connection_context():
        assert Contact.get(email=ses_samples.RECIPIENT).reason.startswith("3 soft bounces in a row")


# --- where signing certificates come from ------------------------------------------------------------------


def test_only_aws_endpoint_url_sns_redirects_certificate_fetches():
    """A LocalStack setup leaves AWS_ENDPOINT_URL behind; whoever serves it must not vouch for notifications."""
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN}
    assert sns_endpoint(environ) is None
    redirected = environ | {"AWS_ENDPOINT_URL_SNS": "http://127.0.0.1:4566"}
    assert sns_endpoint(redirected) == "http://127.0.0.1:4566"


@pytest.mark.one_database
async def test_the_sidecar_warns_at_start_when_certificates_are_redirected(make_sidecar, sns_host, caplog):
    caplog.set_level("WARNING")
    await make_sidecar(environ={})

    assert f"SNS signing certificates are fetched from {sns_host.url}" in caplog.text


@pytest.mark.one_database
async def test_unsubscribing_logs_a_reference_never_the_contact_id(sidecar, contact, caplog):
    caplog.set_level("INFO")
    response = await sidecar.post(f"/unsubscribe/{contact.contact_id}", data="List-Unsubscribe=One-Click")

    assert response.status == 200
    # The test server's access log is aiohttp's own; `mailgw feedback` runs without one (paths carry contact ids).
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert contact_ref(contact.contact_id) in ours
    assert contact.contact_id not in ours

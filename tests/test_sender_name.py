"""The sender a recipient is told about: every mail's footer and the unsubscribe page name the same one,
MAILGW_BRAND_NAME, else the display name of MAILGW_DEFAULT_FROM, else its domain."""

import pytest

from feedback_http.config import FeedbackSettings
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.config import ConfigError, Settings
from gateway.store.contacts import get_or_create_contact
from gateway.store.models import database
from tests.rpc import settled

SETTINGS = [
    (
        {"MAILGW_BRAND_NAME": "Acme & <Sons>", "MAILGW_DEFAULT_FROM": "Example App <noreply@example.com>"},
        "Acme & <Sons>",
    ),
    ({"MAILGW_DEFAULT_FROM": "Example App <noreply@example.com>"}, "Example App"),
    ({"MAILGW_DEFAULT_FROM": "noreply@bücher.example"}, "bücher.example"),
]


@pytest.mark.parametrize("environ, name", SETTINGS)
def test_both_processes_derive_the_same_name(environ, name):
    assert Settings.from_env(environ).sender_name == FeedbackSettings.from_env(environ).sender_name == name


def test_the_sidecar_checks_the_default_sender_as_the_gateway_does():
    for settings in (Settings, FeedbackSettings):
        with pytest.raises(ConfigError, match="MAILGW_DEFAULT_FROM is not an address SES can send from"):
            settings.from_env({"MAILGW_DEFAULT_FROM": "noreply"})


def test_the_footer_names_the_sender_escaped_in_html(make_gateway, ses):
    _, stub = make_gateway(brand_name="Acme & <Sons>")
    request = pb.SendEmailRequest(to="ada@example.org", subject="Hi", text_body="Hello", html_body="<p>Hello</p>")
    accepted = stub.SendEmail(request)
    assert settled(stub, accepted.message_id).state == pb.MESSAGE_STATE_SENT

    text, html = (part.get_content() for part in ses.sent[0].mime.iter_parts())
    footer = "You receive this email from Acme & <Sons>. To stop receiving these emails, unsubscribe here: "
    assert footer + accepted.unsubscribe_url in text
    assert "You receive this email from Acme &amp; &lt;Sons&gt;. To stop receiving these emails" in html
    assert "<Sons>" not in html


def test_without_a_brand_name_or_default_sender_the_footer_names_the_messages_sender(make_gateway, ses):
    _, stub = make_gateway(default_from="")
    sent = [
        stub.SendEmail(pb.SendEmailRequest(to="ada@example.org", subject="Hi", text_body="Hi", from_address=sender))
        for sender in ("Billing Team <billing@shop.example>", "news@shop.example")
    ]
    for accepted in sent:
        assert settled(stub, accepted.message_id).state == pb.MESSAGE_STATE_SENT

    footers = {request.tags["message_id"]: request.mime.get_content().splitlines()[-1] for request in ses.sent}
    assert footers[sent[0].message_id].startswith("You receive this email from Billing Team. ")
    assert footers[sent[1].message_id].startswith("You receive this email from shop.example. ")


async def test_the_page_names_the_default_senders_name_as_the_footer_does(make_sidecar):
    sidecar = await make_sidecar(environ={"MAILGW_DEFAULT_FROM": "Example App <noreply@example.com>"})
    with database.connection_context():
        contact_id = get_or_create_contact("reader@example.com").contact_id

    confirm = await (await sidecar.get(f"/unsubscribe/{contact_id}")).text()

    assert "stop receiving emails from Example App at r***@example.com." in confirm

"""Prometheus metrics of the sidecar, on a listener of its own: SNS notifications by type and outcome, verification
failures by reason, status changes by from, to and source."""

import json
import socket

import pytest

from feedback_http.config import FeedbackSettings
from feedback_http.metrics import METRICS_PORT
from gateway.core.config import ConfigError
from gateway.store.contacts import get_or_create_contact
from gateway.store.database import database
from support import ses_samples
from support.processes import free_port, start
from support.scrape import names, scrape_async, value
from support.sns_signing import signed_envelope

FOREIGN_TOPIC = "arn:aws:sns:us-east-1:999999999999:not-ours"


async def post(client, envelope: dict | str) -> int:
    body = envelope if isinstance(envelope, str) else json.dumps(envelope)
    response = await client.post("/sns", data=body, headers={"Content-Type": "text/plain; charset=UTF-8"})
    return response.status


def bounce(signer, email: str, **options) -> dict:
    event = ses_samples.bounce_event("Permanent", "General", [ses_samples.bounced_recipient(email)])
    return signed_envelope(signer, message=ses_samples.message(event), **options)


async def test_notifications_verification_failures_and_status_changes_are_counted(make_sidecar, signer):
    sidecar = await make_sidecar(feedback_metrics_addr="127.0.0.1:0")
    port = sidecar.server.app[METRICS_PORT]
    with database.connection_context():
        reader = get_or_create_contact("reader@example.org")
    before = await scrape_async(port)

    first = bounce(signer, "ada@example.org")
    assert await post(sidecar, first) == 200
    assert await post(sidecar, first) == 200  # SNS delivered it again
    tampered = bounce(signer, "bob@example.org")
    tampered["Message"] = tampered["Message"].replace("Permanent", "Permanenx")
    assert await post(sidecar, tampered) == 403
    assert await post(sidecar, bounce(signer, "cy@example.org", topic_arn=FOREIGN_TOPIC)) == 403
    assert await post(sidecar, "{not json") == 400
    complaint = ses_samples.complaint_event(["dee@example.org"])
    assert await post(sidecar, signed_envelope(signer, message=ses_samples.message(complaint))) == 200
    response = await sidecar.post(f"/unsubscribe/{reader.contact_id}", data="List-Unsubscribe=One-Click")
    assert response.status == 200

    after = await scrape_async(port)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    notifications = "mailgw_sns_notifications_total"
    assert delta(notifications, type="Bounce", outcome="recorded", intake="https") == 1
    assert delta(notifications, type="Bounce", outcome="duplicate", intake="https") == 1
    assert (
        delta(notifications, type="Notification", outcome="forbidden", intake="https") == 2
    )  # refused before it was read
    assert delta(notifications, type="unknown", outcome="malformed", intake="https") == 1
    assert delta(notifications, type="Complaint", outcome="recorded", intake="https") == 1
    failures = "mailgw_sns_verification_failures_total"
    assert delta(failures, reason="bad_signature") == 1
    assert delta(failures, reason="topic_not_allowed") == 1
    assert delta("mailgw_sns_handling_seconds_count") == 6
    changes = "mailgw_contact_status_changes_total"
    assert delta(changes, from_status="active", to_status="bounced", source="ses:Bounce") == 1
    assert delta(changes, from_status="active", to_status="complained", source="ses:Complaint") == 1
    assert delta(changes, from_status="active", to_status="unsubscribed", source="one-click") == 1


async def test_the_public_port_does_not_expose_metrics(make_sidecar):
    sidecar = await make_sidecar(feedback_metrics_addr="127.0.0.1:0")

    assert (await sidecar.get("/metrics")).status == 404
    assert "mailgw_sns_handling_seconds_count" in names(await scrape_async(sidecar.server.app[METRICS_PORT]))


def test_the_sidecars_metrics_address_must_be_its_own():
    with pytest.raises(ConfigError, match="MAILGW_FEEDBACK_METRICS_ADDR must be an address of its own"):
        FeedbackSettings.from_env(
            {"MAILGW_HTTP_ADDR": "127.0.0.1:8080", "MAILGW_FEEDBACK_METRICS_ADDR": "127.0.0.1:8080"}
        )


@pytest.mark.slow
def test_a_taken_metrics_address_stops_the_sidecar_with_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {
            "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/mailgw.db",
            "MAILGW_HTTP_ADDR": f"127.0.0.1:{free_port()}",
            "MAILGW_FEEDBACK_METRICS_ADDR": address,
        }
        process = start(["-m", "feedback_http"], env)
        output, _ = process.communicate(timeout=30)

    assert process.returncode == 1
    assert output.strip() == f"mailgw: MAILGW_FEEDBACK_METRICS_ADDR={address}: the address is in use by another process"

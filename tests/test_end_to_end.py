"""Both processes on one database: a send, then feedback through the sidecar, then the guard refuses."""

import asyncio
import json
import urllib.request

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from support import ses_samples
from support.processes import free_port, start, wait_until
from support.sns_signing import TOPIC_ARN, signed_envelope
from tests.rpc import error_info, rpc_failure, settled

RECIPIENT = "Reader@Example.org"


@pytest.fixture
def processes(database_url, ses, sns_host):
    grpc_addr, http_port = f"127.0.0.1:{free_port()}", free_port()
    env = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_GRPC_ADDR": grpc_addr,
        "MAILGW_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "MAILGW_PUBLIC_BASE_URL": f"http://127.0.0.1:{http_port}",
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_SNS_TOPIC_ARNS": f"arn:aws:sns:eu-west-1:123456789012:other,{TOPIC_ARN}",
        "AWS_ENDPOINT_URL_SNS": sns_host.url,
    }
    gateway = start(["-m", "gateway"], env)
    sidecar = start(["-m", "feedback_http"], env)
    channel = grpc.insecure_channel(grpc_addr)
    base_url = f"http://127.0.0.1:{http_port}"
    try:
        health = health_pb2_grpc.HealthStub(channel)
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1), gateway)
        wait_until(lambda: urllib.request.urlopen(f"{base_url}/healthz", timeout=1).status == 200, sidecar)
        yield pb_grpc.MailGatewayServiceStub(channel), base_url
    finally:
        channel.close()
        for process in (gateway, sidecar):
            process.terminate()
    for process in (gateway, sidecar):
        assert process.wait(30) == 0, process.stdout.read()


async def bounce(base_url, signer, sent):
    event = ses_samples.bounce_event(
        "Permanent",
        "General",
        [ses_samples.bounced_recipient(RECIPIENT)],
        message_id=sent.ses_message_id,
        tags={"contact_id": sent.contact_id, "message_id": sent.message_id},
    )
    return await post_json(f"{base_url}/sns", signed_envelope(signer, message=ses_samples.message(event)))


async def complaint(base_url, signer, sent):
    # An identity notification: no tags, so the message is found by SES's id.
    event = ses_samples.complaint_event([RECIPIENT], "abuse", message_id=sent.ses_message_id, identity=True)
    return await post_json(f"{base_url}/sns", signed_envelope(signer, message=ses_samples.message(event)))


async def unsubscribe(base_url, signer, sent):
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url}/unsubscribe/{sent.contact_id}",
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ) as response:
            return response.status


async def post_json(url, envelope):
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=json.dumps(envelope), headers={"Content-Type": "text/plain"}) as response:
            return response.status


@pytest.mark.slow
@pytest.mark.parametrize(
    "feedback, status, state",
    [
        (bounce, "bounced", pb.MESSAGE_STATE_BOUNCED),
        (complaint, "complained", pb.MESSAGE_STATE_COMPLAINED),
        (unsubscribe, "unsubscribed", pb.MESSAGE_STATE_SENT),
    ],
)
async def test_feedback_through_the_sidecar_blocks_the_next_send(processes, ses, signer, feedback, status, state):
    stub, base_url = processes
    request = pb.SendEmailRequest(to=RECIPIENT, subject="Welcome", text_body="Hello")
    accepted = await asyncio.to_thread(stub.SendEmail, request, timeout=10)
    sent = await asyncio.to_thread(settled, stub, accepted.message_id)
    assert sent.state == pb.MESSAGE_STATE_SENT and len(ses.sent) == 1
    unsubscribe_link = f"{base_url}/unsubscribe/{sent.contact_id}"
    assert unsubscribe_link in ses.sent[0].mime.get_content()

    assert await feedback(base_url, signer, sent) == 200

    code, _, details = await asyncio.to_thread(rpc_failure, stub.SendEmail, request, timeout=10)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(error_info(details).metadata) == {"status": status, "contactId": sent.contact_id}
    assert len(ses.sent) == 1  # the refused send never reached SES
    assert (await asyncio.to_thread(settled, stub, accepted.message_id)).state == state


@pytest.mark.slow
async def test_a_caller_holding_the_contact_id_cannot_lift_the_recipients_unsubscribe(processes, ses, signer):
    """The trust gap of issue 16, as it was reproduced: caller A sends to alice, alice unsubscribes with one click,
    A reads the contact id from the refusal and posts the undo itself. The undo is the recipient's alone."""
    stub, base_url = processes
    request = pb.SendEmailRequest(to=RECIPIENT, subject="Welcome", text_body="Hello")
    sent = await asyncio.to_thread(
        settled, stub, (await asyncio.to_thread(stub.SendEmail, request, timeout=10)).message_id
    )
    assert await unsubscribe(base_url, signer, sent) == 200
    _, _, details = await asyncio.to_thread(rpc_failure, stub.SendEmail, request, timeout=10)
    contact_id = error_info(details).metadata["contactId"]

    async with aiohttp.ClientSession() as session:
        for body in ("", "undo=", f"undo={contact_id}"):
            async with session.post(
                f"{base_url}/unsubscribe/{contact_id}/resubscribe",
                data=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            ) as response:
                assert response.status == 403
                assert "This unsubscribe cannot be undone here" in await response.text()

    code, _, details = await asyncio.to_thread(rpc_failure, stub.SendEmail, request, timeout=10)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(details).metadata["status"] == "unsubscribed"
    assert len(ses.sent) == 1  # only the first send ever reached SES

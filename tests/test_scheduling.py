"""Scheduled sends and CancelMessage: a message with send_at reads QUEUED, reaches SES within a second of its time
(not before), counts toward its caller's queue limit and takes its turn only when it comes; CancelMessage stops a
queued message for good and refuses one already sent. Real gateways on both databases, the SES stand-in."""

import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from tests.rpc import error_info, message, quiet_for, rpc_failure, settled
from tests.test_events import CRM, OTHER, TOKENS, as_, records, send, watch

WINDOW = 1.0  # "within a second"


def at(seconds_from_now: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int((time.time() + seconds_from_now) * 1e9))
    return stamp


def arrival(ses, message_id: str, *, timeout: float = 10.0) -> float:
    """When (time.monotonic()) the SES stand-in received the message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for request in ses.sent:
            if request.tags.get("message_id") == message_id:
                return request.at
        time.sleep(0.01)
    raise AssertionError(f"{message_id} never reached SES")


def test_a_scheduled_message_reads_queued_and_reaches_ses_within_a_second_of_its_time(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS)
    due_in = 0.6
    due = time.monotonic() + due_in
    message_id = send(stub, "ada@example.org", send_at=at(due_in))

    waiting = message(stub, message_id, metadata=as_(CRM))
    assert waiting.state == pb.MESSAGE_STATE_QUEUED and waiting.HasField("send_at")
    assert abs(waiting.send_at.ToNanoseconds() / 1e9 - (time.time() + due - time.monotonic())) < 0.01

    reached = arrival(ses, message_id)
    assert due - 0.05 <= reached <= due + WINDOW  # not before its time (clock reads aside), within a second after
    assert settled(stub, message_id, metadata=as_(CRM)).state == pb.MESSAGE_STATE_SENT


@pytest.mark.one_database
def test_a_past_send_at_means_now_and_one_beyond_thirty_days_is_refused(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS)

    now = send(stub, "ada@example.org", send_at=at(-3600))
    assert arrival(ses, now) and not message(stub, now, metadata=as_(CRM)).HasField("send_at")

    code, _, details = rpc_failure(lambda: send(stub, "bob@example.org", send_at=at(31 * 86400)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = details["BadRequest"][0].field_violations
    assert (violation.field, violation.description) == ("send_at", "at most 30 days ahead")
    assert len(ses.sent) == 1


def test_a_scheduled_message_counts_toward_its_callers_queue_limit(make_gateway, tmp_path):
    policy = tmp_path / "callers.toml"
    policy.write_text("[callers.crm]\nmax_queued = 1\n")
    gateway, stub = make_gateway(**TOKENS, caller_policy_file=str(policy))
    send(stub, "ada@example.org", send_at=at(3600))

    code, _, details = rpc_failure(lambda: send(stub, "bob@example.org"))

    assert (code, error_info(details).reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "CALLER_QUEUE_FULL")


def test_a_cancelled_message_is_never_sent_and_its_watcher_is_told(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS)
    stream = watch(stub)
    next(stream)
    message_id = send(stub, "ada@example.org", send_at=at(0.3))

    cancelled = stub.CancelMessage(pb.CancelMessageRequest(message_id=message_id), metadata=as_(CRM), timeout=10)

    assert (cancelled.message_id, cancelled.state) == (message_id, pb.MESSAGE_STATE_CANCELLED)
    time.sleep(0.3)  # its time passes
    quiet_for(gateway, "dispatch-claim")
    assert ses.sent == []
    assert message(stub, message_id, metadata=as_(CRM)).state == pb.MESSAGE_STATE_CANCELLED
    queued, stopped = records(stream, 2)
    assert (queued.type, stopped.type) == (pb.EVENT_TYPE_QUEUED, pb.EVENT_TYPE_CANCELLED)
    assert (stopped.message_id, stopped.previous_state, stopped.state) == (
        message_id,
        pb.MESSAGE_STATE_QUEUED,
        pb.MESSAGE_STATE_CANCELLED,
    )
    again = stub.CancelMessage(pb.CancelMessageRequest(message_id=message_id), metadata=as_(CRM), timeout=10)
    assert again.state == pb.MESSAGE_STATE_CANCELLED  # a repeat answers the same
    stream.cancel()


def test_a_sent_message_cannot_be_cancelled_and_another_callers_is_not_found(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS)
    message_id = send(stub, "ada@example.org")
    settled(stub, message_id, metadata=as_(CRM))

    def cancel(token: str):
        return stub.CancelMessage(pb.CancelMessageRequest(message_id=message_id), metadata=as_(token), timeout=10)

    code, text, details = rpc_failure(lambda: cancel(CRM))
    info = error_info(details)
    assert (code, info.reason, info.metadata["state"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "MESSAGE_NOT_CANCELLABLE",
        "MESSAGE_STATE_SENT",
    )
    code, _, details = rpc_failure(lambda: cancel(OTHER))
    assert (code, error_info(details).reason) == (grpc.StatusCode.NOT_FOUND, "MESSAGE_NOT_FOUND")
    assert message(stub, message_id, metadata=as_(CRM)).state == pb.MESSAGE_STATE_SENT


def test_a_tenants_scheduled_mail_never_puts_its_mail_of_now_behind_the_others(make_gateway, ses):
    _, stub = make_gateway(**TOKENS, dispatch_workers=0)  # accepts only: the order is the queue's, not the race's
    for n in range(30):
        send(stub, f"later{n}@example.org", tenant="acme", send_at=at(3600))
    others = [send(stub, f"b{n}@example.org", tenant="beta") for n in range(6)]
    mine = send(stub, "now@example.org", tenant="acme")
    make_gateway(**TOKENS, dispatch_workers=1)

    order = sorted([*others, mine], key=lambda message_id: arrival(ses, message_id))

    assert order.index(mine) <= 1  # tenants take turns: acme's mail of now goes with beta's first, not after its six


def test_a_scheduled_messages_age_counts_from_its_time_not_from_its_acceptance(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS, max_message_age_seconds=0.3)
    message_id = send(stub, "ada@example.org", send_at=at(0.6))

    assert settled(stub, message_id, metadata=as_(CRM)).state == pb.MESSAGE_STATE_SENT  # not EXPIRED when it came


@pytest.mark.one_database
def test_cancel_refuses_what_is_not_a_message_id(make_gateway):
    gateway, stub = make_gateway(**TOKENS)
    code, _, details = rpc_failure(
        lambda: stub.CancelMessage(pb.CancelMessageRequest(message_id="m" * 200), metadata=as_(CRM), timeout=10)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details["BadRequest"][0].field_violations[0].field == "message_id"


@pytest.mark.one_database
def test_a_request_retried_after_its_send_at_passed_is_the_same_request(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS)
    when = at(0.3)
    first = send(stub, "ada@example.org", request_id="reminder-1", send_at=when)
    time.sleep(0.4)  # the retry comes after the time it asked for

    assert send(stub, "ada@example.org", request_id="reminder-1", send_at=when) == first

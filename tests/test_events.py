"""Events back to the callers: the event log records what happened to each caller's mail in the transaction that made
it happen, gives positions in commit order, and WatchEvents streams a caller's own records from a cursor, resumes
after a restart without a gap, refuses a purged cursor and a stream past the limit. Real gateways and sidecar, both
databases; bounces as signed SNS notifications."""

import asyncio
import datetime
import json

import grpc
import psycopg2
import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.events.watch import cursor_of
from gateway.store import event_log
from gateway.store.database import database, is_postgres_url, unit_of_work, utcnow
from gateway.store.models import EventRecord
from support import ses_samples
from support.processes import mailgw
from support.sns_signing import signed_envelope
from tests.conftest import TEARDOWN_GRACE
from tests.rpc import error_info, rpc_failure, settled
from tests.test_concurrency import cluster, http_post  # noqa: F401 (a fixture)
from tests.test_reputation import hard_bounce, post_feedback

CRM, OTHER = "crm-token-0123456789abcdef", "other-token-0123456789abcdef"
TOKENS = {"auth_tokens": f"crm={CRM},other={OTHER}", "send_rate": 100}
KEEPALIVE = pb.EVENT_TYPE_UNSPECIFIED


def as_(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def send(stub, to: str, token: str = CRM, **fields) -> str:
    request = pb.SendEmailRequest(to=to, subject="Hi", text_body="Hello", **fields)
    return stub.SendEmail(request, metadata=as_(token), timeout=10).message_id


def watch(stub, token: str = CRM, cursor: str = "", **fields):
    return stub.WatchEvents(pb.WatchEventsRequest(cursor=cursor, **fields), metadata=as_(token), timeout=30)


def records(stream, count: int) -> list[pb.WatchEventsResponse]:
    """The next `count` records of a stream (keep-alives skipped)."""
    found = []
    for response in stream:
        if response.type != KEEPALIVE:
            found.append(response)
            if len(found) == count:
                return found
    raise AssertionError(f"the stream ended after {found}")


def test_a_watcher_sees_its_messages_queued_and_sent_and_another_caller_sees_none_of_it(make_gateway):
    gateway, stub = make_gateway(**TOKENS)
    mine, theirs = watch(stub), watch(stub, OTHER)
    caught_up = next(mine)
    assert (caught_up.type, caught_up.message_id, bool(caught_up.cursor)) == (KEEPALIVE, "", True)
    next(theirs)

    message_id = send(stub, "ada@example.org", request_id="order-1", tenant="acme", priority=pb.PRIORITY_CRITICAL)
    sent = settled(stub, message_id, metadata=as_(CRM))

    queued_record, sent_record = records(mine, 2)
    assert [queued_record.type, sent_record.type] == [pb.EVENT_TYPE_QUEUED, pb.EVENT_TYPE_SENT]
    assert (queued_record.message_id, queued_record.request_id, queued_record.contact_id) == (
        message_id,
        "order-1",
        sent.contact_id,
    )
    assert (queued_record.tenant, queued_record.priority) == ("acme", pb.PRIORITY_CRITICAL)
    assert (sent_record.previous_state, sent_record.state) == (pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_SENT)
    assert queued_record.cursor != sent_record.cursor
    # The other caller's stream, caught up long ago, gets keep-alives only: none of crm's records.
    mine.cancel()
    assert next(watch(stub, OTHER, cursor=caught_up.cursor)).type == KEEPALIVE
    theirs.cancel()


@pytest.mark.slow
async def test_a_bounce_through_the_sidecar_reaches_the_watcher_with_its_details(make_gateway, make_sidecar, signer):
    gateway, stub = await asyncio.to_thread(make_gateway, **TOKENS)
    sidecar = await make_sidecar()
    stream = watch(stub)
    await asyncio.to_thread(next, stream)
    message_id = await asyncio.to_thread(send, stub, "ada@example.org")
    sent = await asyncio.to_thread(settled, stub, message_id, metadata=as_(CRM))

    await post_feedback(sidecar, signer, hard_bounce(sent, "ada@example.org"))

    got = await asyncio.to_thread(records, stream, 4)
    assert [r.type for r in got] == [
        pb.EVENT_TYPE_QUEUED,
        pb.EVENT_TYPE_SENT,
        pb.EVENT_TYPE_BOUNCED,
        pb.EVENT_TYPE_CONTACT_BOUNCED,
    ]
    bounced, contact = got[2], got[3]
    assert (bounced.message_id, bounced.previous_state, bounced.state) == (
        message_id,
        pb.MESSAGE_STATE_SENT,
        pb.MESSAGE_STATE_BOUNCED,
    )
    assert (bounced.bounce_type, bounced.bounce_subtype) == ("Permanent", "General")
    assert (contact.contact_id, contact.message_id, contact.priority) == (sent.contact_id, "", pb.PRIORITY_UNSPECIFIED)
    stream.cancel()


def test_a_watch_resumed_after_a_restart_misses_nothing_and_repeats_nothing(make_gateway):
    gateway, stub = make_gateway(**TOKENS)
    stream = watch(stub)
    next(stream)
    first = [send(stub, f"r{i}@example.org") for i in range(3)]
    read = records(stream, 2)  # two QUEUED records read; the rest not yet
    stream.cancel()
    gateway.stop(TEARDOWN_GRACE)  # its sends in flight finish (with none, one stays SENDING until its lease ends)

    restarted, again = make_gateway(**TOKENS)
    later = [send(again, f"s{i}@example.org") for i in range(2)]
    for message_id in first + later:
        settled(again, message_id, metadata=as_(CRM))
    resumed = records(watch(again, cursor=read[-1].cursor), 2 * 5 - 2)  # QUEUED and SENT of each, less the two read

    seen = [(r.message_id, r.type) for r in read + resumed]
    assert len(seen) == len(set(seen))  # nothing twice
    assert {(m, pb.EVENT_TYPE_QUEUED) for m in first + later} <= set(seen)
    assert {(m, pb.EVENT_TYPE_SENT) for m in first + later} <= set(seen)  # nothing missed
    positions = [r.cursor for r in resumed]
    assert len(set(positions)) == len(positions)


def test_a_purged_cursor_is_out_of_range_with_the_oldest_cursor_to_resume_from(make_gateway):
    gateway, stub = make_gateway(**TOKENS)
    stream = watch(stub)
    old = next(stream).cursor
    stream.cancel()
    kept = send(stub, "ada@example.org")
    settled(stub, kept, metadata=as_(CRM))
    with unit_of_work():
        event_log.sequence()
        oldest = EventRecord.select().order_by(EventRecord.position).first()
        EventRecord.update(created_at=utcnow() - datetime.timedelta(days=400)).where(
            EventRecord.id == oldest.id
        ).execute()
        assert event_log.purge_batch(utcnow() - datetime.timedelta(days=30)) == 1  # the QUEUED record

    code, _, details = rpc_failure(lambda: next(watch(stub, cursor=old)))

    assert code == grpc.StatusCode.OUT_OF_RANGE
    info = error_info(details)
    assert info.reason == "CURSOR_EXPIRED"
    [sent_record] = records(watch(stub, cursor=info.metadata["oldestCursor"]), 1)
    assert (sent_record.type, sent_record.message_id) == (pb.EVENT_TYPE_SENT, kept)


def test_a_stream_past_the_callers_limit_is_refused_and_a_bad_cursor_is_invalid(make_gateway):
    gateway, stub = make_gateway(**TOKENS, max_watchers_per_caller=1)
    first = watch(stub)
    next(first)

    code, _, details = rpc_failure(lambda: next(watch(stub)))
    assert (code, error_info(details).reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS")
    other = watch(stub, OTHER)
    assert next(other).type == KEEPALIVE  # another caller has its own limit
    other.cancel()
    code, _, details = rpc_failure(lambda: next(watch(stub, cursor="not-a-cursor")))
    assert (code, error_info(details).reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")

    first.cancel()  # its place frees within a second
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=10)
    while True:
        try:
            assert next(watch(stub)).type == KEEPALIVE
            break
        except grpc.RpcError:
            assert datetime.datetime.now() < deadline


def test_positions_follow_commit_order_and_never_go_back(db, database_url):
    if not is_postgres_url(database_url):
        # One writer: nothing commits around an open insert. What can happen: a rolled-back insert, whose id the next
        # insert takes again, and a purge that empties the log, after which SQLite gives the smallest ids again.
        EventRecord.create(caller="crm", type="queued", message_id="first")
        with pytest.raises(RuntimeError), database.atomic():
            EventRecord.create(caller="crm", type="queued", message_id="rolled back")
            raise RuntimeError
        EventRecord.create(caller="crm", type="queued", message_id="second")
        assert event_log.sequence() == 2
        EventRecord.update(created_at=utcnow() - datetime.timedelta(days=400)).execute()
        assert event_log.purge_batch(utcnow()) == 2  # the log is empty
        EventRecord.create(caller="crm", type="queued", message_id="third")
        assert event_log.sequence() == 1
        rows = [(r.message_id, r.position) for r in EventRecord.select().order_by(EventRecord.position)]
        assert rows == [("third", 3)]  # after 1 and 2, never again 1
        return
    early = psycopg2.connect(database_url)  # inserts first, commits last
    with early.cursor() as cursor:
        cursor.execute(
            "INSERT INTO event_log (caller, type, message_id, request_id, contact_id, tenant, state, previous_state,"
            " bounce_type, bounce_subtype, diagnostic, time, created_at)"
            " VALUES ('crm', 'queued', 'early', '', '', '', '', '', '', '', '', now(), now())"
        )
    EventRecord.create(caller="crm", type="queued", message_id="late")  # inserted second, committed first
    assert event_log.sequence() == 1
    early.commit()
    early.close()
    assert event_log.sequence() == 1

    order = [r.message_id for r in EventRecord.select().order_by(EventRecord.position)]
    assert order == ["late", "early"]  # a reader that took "late" at position 1 never finds "early" behind it


@pytest.mark.slow
def test_mailgw_events_prints_what_is_there_from_a_cursor_and_exits(make_gateway):
    gateway, stub = make_gateway(**TOKENS)
    stream = watch(stub)
    cursor = next(stream).cursor
    stream.cancel()
    message_id = send(stub, "ada@example.org", tenant="acme")
    settled(stub, message_id, metadata=as_(CRM))
    address = f"127.0.0.1:{gateway.port}"

    done = mailgw("events", "--cursor", cursor, "--addr", address, MAILGW_CLIENT_TOKEN=CRM)
    sent_only = mailgw("events", "--cursor", cursor, "--type", "sent", "--addr", address, MAILGW_CLIENT_TOKEN=CRM)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("  ")[1:3] for line in lines[:2]] == [["queued", f"message {message_id}"],
                                                             ["sent", f"message {message_id}"]]  # fmt: skip
    assert "queued -> sent  tenant acme" in lines[1]
    assert lines[2].startswith("# caught up; resume with --cursor ")
    assert [line.split("  ")[1] for line in sent_only.stdout.splitlines()[:-1]] == ["sent"]
    nobody = mailgw("events", "--addr", address, MAILGW_CLIENT_TOKEN="wrong-token-0123456789abcdef")
    assert nobody.returncode != 0 and "UNAUTHENTICATED" in nobody.stderr


@pytest.mark.slow
async def test_a_bounce_a_sidecar_process_commits_reaches_a_watcher_of_another_gateway_process(cluster, signer):  # noqa: F811
    """Two gateways and two sidecars, each its own process, on one database (both databases). Async: the test's
    event loop serves the SNS signing certificate the sidecars fetch."""
    watcher, sender = cluster.stubs
    stream = watcher.WatchEvents(pb.WatchEventsRequest(), timeout=60)
    await asyncio.to_thread(next, stream)
    request = pb.SendEmailRequest(to="ada@example.org", subject="Hi", text_body="Hello")
    message_id = (await asyncio.to_thread(sender.SendEmail, request)).message_id
    sent = await asyncio.to_thread(settled, sender, message_id)
    envelope = signed_envelope(signer, message=ses_samples.message(hard_bounce(sent, "ada@example.org")))

    body = json.dumps(envelope).encode()
    status, _ = await asyncio.to_thread(http_post, f"{cluster.sidecars[1]}/sns", body, "text/plain")

    assert status == 200, cluster.logs()
    got = await asyncio.to_thread(records, stream, 4)
    assert [(r.type, r.message_id) for r in got] == [
        (pb.EVENT_TYPE_QUEUED, message_id),
        (pb.EVENT_TYPE_SENT, message_id),
        (pb.EVENT_TYPE_BOUNCED, message_id),
        (pb.EVENT_TYPE_CONTACT_BOUNCED, ""),
    ]
    stream.cancel()


def test_a_refused_message_has_its_failure_in_its_record_and_a_cursor_past_the_end_is_out_of_range(make_gateway, ses):
    gateway, stub = make_gateway(**TOKENS)
    ses.fail(400, "MessageRejected", "Email address is not verified.")
    stream = watch(stub)
    next(stream)

    message_id = send(stub, "ada@example.org")
    assert settled(stub, message_id, metadata=as_(CRM)).state == pb.MESSAGE_STATE_FAILED

    queued_record, failed_record = records(stream, 2)
    stream.cancel()
    assert (failed_record.type, failed_record.previous_state) == (pb.EVENT_TYPE_FAILED, pb.MESSAGE_STATE_QUEUED)
    assert failed_record.diagnostic == "SES_IDENTITY_NOT_VERIFIED: Email address is not verified."
    code, _, details = rpc_failure(lambda: next(watch(stub, cursor=cursor_of(10**9))))
    assert (code, error_info(details).reason) == (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_EXPIRED")


def test_a_send_whose_lease_ended_before_ses_answered_shows_unknown_then_sent(make_gateway, ses):
    ses.delay = 0.5  # SES answers, but only after the dispatcher's lease ended
    gateway, stub = make_gateway(**TOKENS, dispatch_lease_seconds=0.15, unknown_resend_seconds=0)
    stream = watch(stub)
    next(stream)

    message_id = send(stub, "ada@example.org")

    got = [(r.type, r.previous_state, r.state, r.message_id) for r in records(stream, 3)]
    assert got == [
        (pb.EVENT_TYPE_QUEUED, pb.MESSAGE_STATE_UNSPECIFIED, pb.MESSAGE_STATE_QUEUED, message_id),
        (pb.EVENT_TYPE_UNKNOWN, pb.MESSAGE_STATE_QUEUED, pb.MESSAGE_STATE_UNKNOWN, message_id),
        (pb.EVENT_TYPE_SENT, pb.MESSAGE_STATE_UNKNOWN, pb.MESSAGE_STATE_SENT, message_id),
    ]
    stream.cancel()

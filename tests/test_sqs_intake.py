"""SQS intake against moto's SNS and SQS in server mode: SNS envelopes from a queue are verified and applied as POST
/sns applies them, deleted only after the commit, left for the dead-letter queue when they cannot be, and kept through
a database outage."""

import asyncio
import datetime
import json
import logging
from urllib.parse import urlsplit, urlunsplit

import prometheus_client
import pytest
from aiohttp import web

from feedback_http.app import create_app
from feedback_http.config import FeedbackSettings
from gateway.core.config import ConfigError
from support import ses_samples
from support.processes import wait_until
from support.sns_signing import TOPIC_ARN, FakeSnsHost, SigningCertificate, signed_envelope, sns_timestamp
from support.tcp_proxy import TcpProxy
from tests.sqs_feedback import WriteLock, applied, bounces_and_complaints


@pytest.fixture
def make_sqs_sidecar(aiohttp_client, database_url, topic, moto):
    """The real sidecar app (HTTP server and, with a queue, the SQS poller beside it), its allow-list holding the
    topic moto created, certificates fetched from moto."""

    async def make(*, url: str | None = None, queue: bool = True, sns_endpoint_url: str | None = None, **options):
        options = {"sqs_wait_seconds": 1} | options
        settings = FeedbackSettings(
            database_url=url or database_url,
            sns_topic_arns=frozenset({topic.topic_arn}),
            sqs_queue_url=topic.queue_url if queue else "",
            **options,
        )
        return await aiohttp_client(create_app(settings, sns_endpoint_url=sns_endpoint_url or moto.url))

    return make


async def eventually(condition, timeout: float = 30.0):
    """Wait (off the event loop: the sidecar runs on it) until condition() is true."""
    return await asyncio.to_thread(wait_until, condition, timeout=timeout, interval=0.1)


def sqs_outcomes(caplog) -> list[str]:
    """What the poller made of each message it took ("recorded", "duplicate", ...), in order."""
    lines = [r.getMessage() for r in caplog.records if r.name == "feedback_http.sqs"]
    return [line.rpartition("): ")[2] for line in lines if line.startswith("SQS message ") and "): " in line]


async def test_bounces_and_complaints_from_the_queue_are_applied_once_and_deleted(make_sqs_sidecar, topic):
    assert topic.topic_arn == TOPIC_ARN  # moto's topic is the one the allow-list holds
    await make_sqs_sidecar()
    events = bounces_and_complaints(14, "q")  # more than one batch of 10
    ids = [await asyncio.to_thread(topic.publish, event) for event, _ in events.values()]

    await eventually(lambda: topic.depth() == (0, 0) and len(applied().notification_ids) == len(ids))

    state = applied()
    assert sorted(state.notification_ids) == sorted(ids)
    assert {address: state.statuses[address] for address in events} == {a: s for a, (_, s) in events.items()}
    assert {address: state.changes[address] for address in events} == dict.fromkeys(events, 1)
    assert topic.depth(topic.dlq_url) == (0, 0)


# --- one notification, two transports: applied once --------------------------------------------------------


async def test_https_first_then_the_queued_copy_is_a_duplicate_and_deleted(make_sqs_sidecar, topic, caplog):
    caplog.set_level(logging.DEBUG, logger="feedback_http.sqs")
    http_only = await make_sqs_sidecar(queue=False)
    topic.sns.subscribe(TopicArn=topic.topic_arn, Protocol="http", Endpoint=str(http_only.make_url("/sns")))
    events = bounces_and_complaints(6, "both")
    # moto posts to the HTTPS subscription while Publish runs: every notification is committed through POST /sns,
    # and its copy waits in the queue.
    ids = [await asyncio.to_thread(topic.publish, event) for event, _ in events.values()]
    assert sorted(applied().notification_ids) == sorted(ids)
    assert topic.depth() == (len(ids), 0)
    duplicates_before = sum(
        prometheus_client.REGISTRY.get_sample_value(
            "mailgw_sns_notifications_total", {"type": kind, "outcome": "duplicate", "intake": "sqs"}
        )
        or 0
        for kind in ("Bounce", "Complaint")
    )

    await make_sqs_sidecar()  # the poller takes the queued copies
    await eventually(lambda: topic.depth() == (0, 0))

    await eventually(lambda: len(sqs_outcomes(caplog)) == len(ids))
    assert sqs_outcomes(caplog) == ["duplicate"] * len(ids)
    duplicates = sum(  # what /metrics shows: every queued copy counted as a duplicate taken from the queue
        prometheus_client.REGISTRY.get_sample_value(
            "mailgw_sns_notifications_total", {"type": kind, "outcome": "duplicate", "intake": "sqs"}
        )
        or 0
        for kind in ("Bounce", "Complaint")
    )
    assert duplicates - duplicates_before == len(ids)
    state = applied()
    assert sorted(state.notification_ids) == sorted(ids)
    assert {address: state.changes[address] for address in events} == dict.fromkeys(events, 1)


async def test_sqs_first_then_the_https_copy_answers_duplicate(make_sqs_sidecar, topic, aiohttp_server):
    delivered: list[bytes] = []

    async def record(request: web.Request) -> web.Response:  # an HTTPS subscriber that keeps what SNS sent it
        delivered.append(await request.read())
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/sns", record)
    endpoint = await aiohttp_server(app)
    topic.sns.subscribe(TopicArn=topic.topic_arn, Protocol="http", Endpoint=str(endpoint.make_url("/sns")))
    sidecar = await make_sqs_sidecar()
    address = "late@example.org"
    message_id = await asyncio.to_thread(
        topic.publish, ses_samples.bounce_event(recipients=[ses_samples.bounced_recipient(address)])
    )
    await eventually(lambda: topic.depth() == (0, 0) and applied().notification_ids == [message_id])

    [body] = delivered  # SNS's retry of its HTTPS delivery reaches the sidecar after the queue's copy was applied
    assert json.loads(body)["MessageId"] == message_id
    response = await sidecar.post("/sns", data=body, headers={"Content-Type": "text/plain; charset=UTF-8"})

    assert (response.status, await response.text()) == (200, "duplicate")
    state = applied()
    assert state.notification_ids == [message_id] and state.changes[address] == 1


# --- what cannot be applied is left for the dead-letter queue, never deleted -------------------------------


async def test_a_backlog_older_than_the_https_age_limit_is_applied_from_the_queue(make_sqs_sidecar, topic):
    """MAILGW_SNS_MAX_AGE_SECONDS guards the public HTTPS endpoint against replays; the queue, which only SNS may send
    to, exists to keep notifications through an outage: what it kept for two days is applied, not dead-lettered."""
    two_days_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    signer = SigningCertificate(not_before=two_days_ago - datetime.timedelta(days=1))
    bounce = ses_samples.bounce_event(recipients=[ses_samples.bounced_recipient("late@example.org")])
    envelope = signed_envelope(signer, message=ses_samples.message(bounce), timestamp=sns_timestamp(two_days_ago))
    topic.sqs.send_message(QueueUrl=topic.queue_url, MessageBody=json.dumps(envelope))

    async with FakeSnsHost(signer.pem) as certificates:
        sidecar = await make_sqs_sidecar(sns_max_age_seconds=3600, sns_endpoint_url=certificates.url)
        await eventually(lambda: topic.depth() == (0, 0) and applied().statuses.get("late@example.org") == "bounced")
        assert topic.depth(topic.dlq_url) == (0, 0)

        # The same envelope posted to the HTTPS endpoint is still refused for its age.
        replayed = await sidecar.post("/sns", data=json.dumps(envelope), headers={"Content-Type": "text/plain"})
        assert replayed.status == 403 and "too old" in await replayed.text()


async def test_malformed_and_unverifiable_messages_end_in_the_dead_letter_queue(make_sqs_sidecar, topic, caplog):
    caplog.set_level(logging.INFO)
    topic.redrive_after(2)
    foreign = topic.sns.create_topic(Name="not-ours")["TopicArn"]
    topic.subscribe_queue(foreign, topic.queue_url)
    raw_event = ses_samples.message(ses_samples.bounce_event(recipients=[ses_samples.bounced_recipient("raw@x.org")]))
    topic.sqs.send_message(QueueUrl=topic.queue_url, MessageBody="not json")
    topic.sqs.send_message(QueueUrl=topic.queue_url, MessageBody=raw_event)  # raw message delivery on
    await asyncio.to_thread(  # genuine, from a topic the allow-list does not hold
        topic.publish, ses_samples.bounce_event(recipients=[ses_samples.bounced_recipient("foreign@x.org")]), foreign
    )
    await asyncio.to_thread(topic.publish_text, "hello")  # genuine, from our topic, not an SES event

    await make_sqs_sidecar(sqs_visibility_timeout_seconds=2)
    await eventually(lambda: topic.depth() == (0, 0) and topic.depth(topic.dlq_url)[0] == 4)

    dead = topic.sqs.receive_message(QueueUrl=topic.dlq_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [m["Body"] for m in dead]
    assert "not json" in bodies and raw_event in bodies
    envelopes = [json.loads(body) for body in bodies if body not in ("not json", raw_event)]
    assert sorted(envelope["TopicArn"] for envelope in envelopes) == sorted([foreign, topic.topic_arn])
    assert applied().notification_ids == [] and applied().statuses == {}
    lines = [r.getMessage() for r in caplog.records if "left for the dead-letter queue" in r.getMessage()]
    assert len(lines) == 8  # each received twice, then moved by the redrive policy
    assert any("turn raw message delivery off" in line for line in lines)
    assert any("verification failed: topic is not allowed" in line for line in lines)
    assert any("not an SES event" in line for line in lines)
    assert "raw@x.org" not in caplog.text and "foreign@x.org" not in caplog.text  # bodies are never logged


async def test_a_subscription_confirmation_in_the_queue_is_confirmed_then_deleted(
    make_sqs_sidecar, topic, signer, sns_host
):
    """A topic in another account subscribes the queue: SNS puts a SubscriptionConfirmation in it, which the queue's
    reader confirms by visiting its SubscribeURL, as POST /sns does."""

    def send(kind: str) -> None:
        topic.sqs.send_message(QueueUrl=topic.queue_url, MessageBody=json.dumps(signed_envelope(signer, kind)))

    await make_sqs_sidecar(sns_endpoint_url=sns_host.url, sqs_visibility_timeout_seconds=2)
    send("SubscriptionConfirmation")
    send("UnsubscribeConfirmation")
    await eventually(lambda: topic.depth() == (0, 0))
    assert len(sns_host.confirmations) == 1  # visiting an UnsubscribeConfirmation's URL would subscribe again

    sns_host.status = 503  # the SubscribeURL does not answer: left in the queue, retried
    send("SubscriptionConfirmation")
    await eventually(lambda: len(sns_host.confirmations) >= 3)  # tried, left, received again, tried again
    assert sum(topic.depth()) == 1
    sns_host.status = 200
    await eventually(lambda: topic.depth() == (0, 0))

    assert len(sns_host.confirmations) >= 4
    assert all("Action=ConfirmSubscription" in path for path in sns_host.confirmations)
    assert topic.depth(topic.dlq_url) == (0, 0)


# --- slow batches and a database that goes away ------------------------------------------------------------


async def test_a_slow_batch_stays_invisible_until_it_is_committed(make_sqs_sidecar, topic, database_url, caplog):
    caplog.set_level(logging.INFO, logger="feedback_http.sqs")
    await make_sqs_sidecar(sqs_visibility_timeout_seconds=4)
    events = bounces_and_complaints(3, "slow")
    (first, _), *others = events.values()
    with WriteLock(database_url).held():  # the batch waits for the lock (SQLite: less than its 10 s busy timeout)
        ids = [await asyncio.to_thread(topic.publish, first)]
        await eventually(lambda: topic.depth() == (0, 1))  # received; its commit waits
        ids += [await asyncio.to_thread(topic.publish, event) for event, _ in others]
        for _ in range(10):  # 5 s, past the 4 s visibility timeout: never visible again to another reader
            assert topic.depth() == (2, 1)  # and no other receive while the batch is under way
            await asyncio.sleep(0.5)
    await eventually(lambda: topic.depth() == (0, 0))

    state = applied()
    assert sorted(state.notification_ids) == sorted(ids)
    assert {address: state.changes[address] for address in events} == dict.fromkeys(events, 1)
    assert any("still being applied" in r.getMessage() for r in caplog.records)


@pytest.fixture
def outage(database_url):
    """(the URL the sidecar uses, cut, restore): a database that stops answering for real. SQLite: another
    connection holds the write lock past the 10 s busy timeout; PostgreSQL: the connections are cut (a TCP proxy)."""
    if database_url.startswith("sqlite"):
        lock = WriteLock(database_url)
        yield database_url, lock.take, lock.release
        lock.release()
        return
    server = urlsplit(database_url)
    proxy = TcpProxy((server.hostname, server.port or 5432))
    proxy.start()
    credentials = server.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    yield urlunsplit(server._replace(netloc=netloc)), proxy.cut, proxy.restore
    proxy.cut()


async def test_a_burst_while_the_database_is_down_is_applied_after_it_returns(make_sqs_sidecar, topic, outage, caplog):
    caplog.set_level(logging.INFO, logger="feedback_http.sqs")
    url, cut, restore = outage
    await make_sqs_sidecar(url=url)
    cut()
    events = bounces_and_complaints(15, "down")
    ids = [await asyncio.to_thread(topic.publish, event) for event, _ in events.values()]
    await eventually(lambda: any("SQS intake paused" in r.getMessage() for r in caplog.records), timeout=60)

    paused = topic.depth()
    assert sum(paused) == len(ids)  # all still in the queue
    await asyncio.sleep(2)
    assert topic.depth() == paused  # nothing more received while the database is down (receives count toward the DLQ)
    restore()
    await eventually(lambda: topic.depth() == (0, 0), timeout=60)

    state = applied()
    assert sorted(state.notification_ids) == sorted(ids)
    assert {address: state.statuses[address] for address in events} == {a: s for a, (_, s) in events.items()}
    assert {address: state.changes[address] for address in events} == dict.fromkeys(events, 1)
    assert topic.depth(topic.dlq_url) == (0, 0)
    assert any("SQS intake resumes" in r.getMessage() for r in caplog.records)


# --- settings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILGW_SQS_QUEUE_URL", "ses-feedback"),
        ("MAILGW_SQS_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/ses-feedback"),
        ("MAILGW_SQS_QUEUE_URL", "ftp://sqs.us-east-1.amazonaws.com/123456789012/ses-feedback"),
        ("MAILGW_SQS_WAIT_SECONDS", "21"),
        ("MAILGW_SQS_WAIT_SECONDS", "-1"),
        ("MAILGW_SQS_VISIBILITY_TIMEOUT_SECONDS", "1"),
        ("MAILGW_SQS_VISIBILITY_TIMEOUT_SECONDS", "43201"),
    ],
)
def test_bad_sqs_settings_are_refused_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        FeedbackSettings.from_env({variable: value})


def test_an_aws_queue_url_is_accepted_and_names_its_region():
    from feedback_http.sqs import queue_region

    url = "https://sqs.eu-west-3.amazonaws.com/123456789012/ses-feedback"
    assert FeedbackSettings.from_env({"MAILGW_SQS_QUEUE_URL": url}).sqs_queue_url == url
    assert queue_region(url) == "eu-west-3"
    assert queue_region("http://127.0.0.1:4566/000000000000/ses-feedback") is None

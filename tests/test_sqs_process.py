"""The SQS intake as real processes against moto's SNS and SQS: what SES publishes while the intake is stopped is
applied exactly once after it starts again, and SIGTERM finishes the batch under way before the process exits 0."""

import signal
import subprocess
import sys
import time

import pytest

from gateway.store.models import open_database
from support.processes import ROOT, drain, free_port, start, wait_until
from tests.sqs_feedback import WriteLock, applied, bounces_and_complaints


@pytest.fixture
def intake_env(database_url, topic, moto) -> dict[str, str]:
    open_database(database_url)  # the test's own reads; the children create the schema as well
    return {
        "AWS_ENDPOINT_URL_SNS": moto.url,  # SNS signing certificates (moto's)
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_SNS_TOPIC_ARNS": topic.topic_arn,  # moto's topic, the one SES would publish to
        "MAILGW_SQS_QUEUE_URL": topic.queue_url,
        "MAILGW_SQS_WAIT_SECONDS": "1",
    }


class Child:
    """A mailgw process of the test's, its output read as it comes (tests/processes.drain)."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.process = start(args, env)
        self._output = drain(self.process)

    @property
    def output(self) -> str:
        return "".join(self._output)

    def stop(self) -> str:
        """SIGTERM; the exit code must be 0; the process's output."""
        self.process.send_signal(signal.SIGTERM)
        return self.exited()

    def exited(self) -> str:
        self.process.wait(timeout=30)
        time.sleep(0.2)  # the last lines through the pipe
        assert self.process.returncode == 0, self.output
        return self.output


@pytest.mark.slow
def test_nothing_published_while_the_intake_is_stopped_is_lost(topic, intake_env):
    intake = Child(["-m", "gateway.cli", "feedback-sqs"], intake_env)
    before = bounces_and_complaints(2, "before")
    ids = [topic.publish(event) for event, _ in before.values()]
    wait_until(lambda: topic.depth() == (0, 0) and len(applied().notification_ids) == 2, timeout=30)
    intake.stop()

    while_down = bounces_and_complaints(20, "down")
    ids += [topic.publish(event) for event, _ in while_down.values()]
    # SQS delivers at least once: one of them is in the queue twice.
    [message] = topic.sqs.receive_message(QueueUrl=topic.queue_url, MaxNumberOfMessages=1)["Messages"]
    topic.sqs.send_message(QueueUrl=topic.queue_url, MessageBody=message["Body"])
    topic.sqs.change_message_visibility(
        QueueUrl=topic.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    time.sleep(1)
    assert len(applied().notification_ids) == 2 and sum(topic.depth()) == 21

    # Restarted as the sidecar with its HTTP server, the poller beside it.
    sidecar = Child(["-m", "feedback_http"], intake_env | {"MAILGW_HTTP_ADDR": f"127.0.0.1:{free_port()}"})
    try:
        wait_until(lambda: topic.depth() == (0, 0) and len(applied().notification_ids) == len(ids), timeout=60)
    finally:
        sidecar.stop()

    state = applied()
    events = before | while_down
    assert sorted(state.notification_ids) == sorted(ids)  # every one, each once
    assert {address: state.statuses[address] for address in events} == {a: s for a, (_, s) in events.items()}
    assert {address: state.changes[address] for address in events} == dict.fromkeys(events, 1)
    assert topic.depth(topic.dlq_url) == (0, 0)
    print(
        f"SQS intake stopped: {len(while_down)} published meanwhile (+1 duplicate delivery), all applied once, 0 lost"
    )


@pytest.mark.slow
def test_sigterm_finishes_the_batch_under_way(topic, intake_env, database_url):
    # At DEBUG too, no body reaches the log (botocore's DEBUG lines would carry every message received).
    intake = Child(["-m", "gateway.cli", "feedback-sqs"], intake_env | {"MAILGW_LOG_LEVEL": "DEBUG"})
    events = bounces_and_complaints(4, "term")
    (first, _), *others = events.values()
    ids = [topic.publish(first)]
    wait_until(lambda: topic.depth() == (0, 0) and len(applied().notification_ids) == 1, timeout=30)

    lock = WriteLock(database_url)
    with lock.held():  # the next batch waits for the lock (SQLite: less than its 10 s busy timeout)
        ids += [topic.publish(event) for event, _ in others]
        wait_until(lambda: topic.depth()[1] >= 1, timeout=10)  # a batch received, its commit waiting
        intake.process.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert intake.process.poll() is None  # still finishing the batch
    output = intake.exited()

    state = applied()
    visible, in_flight = topic.depth()
    assert in_flight == 0  # the batch was committed and deleted, not abandoned
    assert len(state.notification_ids) + visible == len(ids)  # the rest waits in the queue, nothing half-done
    assert len(state.notification_ids) >= 2
    assert set(state.notification_ids) <= set(ids)
    assert "SQS intake stopped" in output
    assert "): recorded" in output  # the debug lines are there
    assert not [address for address in events if address in output]


@pytest.mark.slow
def test_feedback_sqs_without_a_queue_says_so_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "feedback-sqs"],
        env={"PATH": "/usr/bin:/bin", "MAILGW_DATABASE_URL": f"sqlite:///{tmp_path}/mailgw.db"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert done.stderr.strip() == "mailgw: MAILGW_SQS_QUEUE_URL must name the queue to poll"

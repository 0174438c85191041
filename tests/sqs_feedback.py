"""Test helpers for SQS intake: the AWS side in moto's server (an SES feedback topic, a queue subscribed to it with raw
delivery off, a dead-letter queue), the store's view of what was applied, and a database made unavailable for real."""

import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass, field

import boto3
import psycopg2

from gateway.store.models import Contact, FeedbackEvent, StatusChange, database
from support import ses_samples

REGION = "us-east-1"


@dataclass
class FeedbackTopic:
    """An SNS topic as SES publishes to it, a queue subscribed to it (raw message delivery off) whose redrive policy
    moves a message to `dlq_url` after 5 receives."""

    name: str = "ses-feedback"
    sns: object = field(init=False)
    sqs: object = field(init=False)
    topic_arn: str = field(init=False)
    queue_url: str = field(init=False)
    dlq_url: str = field(init=False)

    def __post_init__(self):
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.topic_arn = self.sns.create_topic(Name=self.name, Attributes={"SignatureVersion": "2"})["TopicArn"]
        self.dlq_url = self.sqs.create_queue(QueueName=f"{self.name}-dlq")["QueueUrl"]
        self.queue_url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        self.redrive_after(5)
        self.subscribe_queue(self.topic_arn, self.queue_url)

    def redrive_after(self, receives: int) -> None:
        """The queue's redrive policy moves a message to the dead-letter queue after `receives` receives."""
        redrive = {"deadLetterTargetArn": self.queue_arn(self.dlq_url), "maxReceiveCount": str(receives)}
        self.sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes={"RedrivePolicy": json.dumps(redrive)})

    def queue_arn(self, url: str) -> str:
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def subscribe_queue(self, topic_arn: str, queue_url: str) -> None:
        self.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=self.queue_arn(queue_url),
            Attributes={"RawMessageDelivery": "false"},
        )

    def publish(self, event: dict, topic_arn: str | None = None) -> str:
        """An SES event as SES publishes it; SNS's MessageId (the notification id the store keeps)."""
        return self.publish_text(ses_samples.message(event), topic_arn)

    def publish_text(self, text: str, topic_arn: str | None = None) -> str:
        return self.sns.publish(TopicArn=topic_arn or self.topic_arn, Message=text)["MessageId"]

    def depth(self, url: str | None = None) -> tuple[int, int]:
        """(visible, in flight) messages of the queue (default: the feedback queue)."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url or self.queue_url, AttributeNames=names)["Attributes"]
        return int(attributes[names[0]]), int(attributes[names[1]])


def bounces_and_complaints(count: int, prefix: str) -> dict[str, tuple[dict, str]]:
    """`count` SES events for distinct recipients, alternately a permanent bounce and a complaint:
    address -> (event, the status it must leave)."""
    events = {}
    for n in range(count):
        address = f"{prefix}{n}@example.org"
        if n % 2:
            events[address] = (ses_samples.complaint_event([address]), "complained")
        else:
            events[address] = (ses_samples.bounce_event(recipients=[ses_samples.bounced_recipient(address)]), "bounced")
    return events


@dataclass(frozen=True)
class Applied:
    """What the store holds: notification ids, contact statuses, status changes per address."""

    notification_ids: list[str]
    statuses: dict[str, str]
    changes: dict[str, int]


def applied() -> Applied:
    with database.connection_context():
        ids = [e.notification_id for e in FeedbackEvent.select()]
        statuses = {c.email: str(c.status) for c in Contact.select()}
        changes: dict[str, int] = {}
        for change in StatusChange.select(StatusChange, Contact).join(Contact):
            changes[change.contact.email] = changes.get(change.contact.email, 0) + 1
    return Applied(ids, statuses, changes)


class WriteLock:
    """Another connection holding the write lock, as a long migration or a backup does: SQLite's (BEGIN EXCLUSIVE;
    past busy_timeout a write fails with "database is locked") or, on PostgreSQL, the feedback_event table's (a write
    waits until it is released)."""

    def __init__(self, database_url: str):
        self._url = database_url
        self._connection = None

    def take(self) -> None:
        if self._url.startswith("sqlite"):
            path = self._url.removeprefix("sqlite:///")
            self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._connection.execute("BEGIN EXCLUSIVE")
        else:
            self._connection = psycopg2.connect(self._url)
            with self._connection.cursor() as cursor:
                cursor.execute("LOCK TABLE feedback_event IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if self._connection is not None:
            self._connection.rollback()
            self._connection.close()
            self._connection = None

    @contextlib.contextmanager
    def held(self):
        self.take()
        try:
            yield self
        finally:
            self.release()

    def release_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer

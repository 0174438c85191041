"""A database written by the gateway before the send queue upgrades in place when the new version starts, on SQLite
and PostgreSQL, and a request id recorded then keeps its first answer."""

import datetime

import peewee
import pytest
from playhouse.db_url import connect

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.sending.outgoing import outgoing_email
from gateway.store import queue
from gateway.store.models import FeedbackEvent, Message, MessageState, database, open_database

pytestmark = pytest.mark.fresh_schema  # each test builds an old version's tables

OLD = peewee.DatabaseProxy()
NOW = datetime.datetime(2026, 11, 20, 12, 0, 0)


class OldModel(peewee.Model):
    class Meta:
        database = OLD
        legacy_table_names = False


class Contact(OldModel):
    """The tables as the gateway created them before the queue (commit 0a630da)."""

    contact_id = peewee.CharField(max_length=32, unique=True)
    email = peewee.CharField(max_length=320, unique=True)
    status = peewee.CharField(max_length=16, default="active")
    reason = peewee.TextField(default="")
    soft_bounces = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=NOW)
    updated_at = peewee.DateTimeField(default=NOW)


class SentMessage(OldModel):
    contact = peewee.ForeignKeyField(Contact, backref="messages", on_delete="CASCADE")
    ses_message_id = peewee.CharField(max_length=128, null=True, unique=True)
    caller = peewee.CharField(max_length=128, default="")
    request_id = peewee.CharField(max_length=128, null=True)
    request_hash = peewee.CharField(max_length=64, null=True)
    state = peewee.CharField(max_length=8, default="sent")
    created_at = peewee.DateTimeField(default=NOW)
    sent_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("caller", "request_id"), True),)


class StatusChange(OldModel):
    contact = peewee.ForeignKeyField(Contact, backref="history", on_delete="CASCADE")
    from_status = peewee.CharField(max_length=16)
    to_status = peewee.CharField(max_length=16)
    source = peewee.CharField(max_length=64)
    reason = peewee.TextField(default="")
    created_at = peewee.DateTimeField(default=NOW, index=True)


class OldFeedbackEvent(OldModel):
    notification_id = peewee.CharField(max_length=128, unique=True)
    event_type = peewee.CharField(max_length=64)
    ses_message_id = peewee.CharField(max_length=128, null=True, index=True)
    sent_message = peewee.ForeignKeyField(SentMessage, null=True, backref="events", on_delete="SET NULL")
    detail = peewee.TextField(default="")
    received_at = peewee.DateTimeField(default=NOW)

    class Meta:
        table_name = "feedback_event"


REQUEST = {"to": "ada@example.org", "subject": "Your invoice", "text_body": "Hello"}


@pytest.fixture
def old_database(database_url):
    """The database as the previous version left it: a contact, a sent message and one whose send was cut off."""
    old = connect(database_url)
    OLD.initialize(old)
    old.create_tables([Contact, SentMessage, StatusChange, OldFeedbackEvent])
    email = outgoing_email(
        **REQUEST, html_body="", from_address="", reply_to="", tags={}, default_from="Example App <noreply@example.com>"
    )
    ada = Contact.create(contact_id="A" * 22, email="ada@example.org")
    SentMessage.create(
        contact=ada,
        ses_message_id="0100-sent-before",
        request_id="order-1",
        request_hash=email.fingerprint(),
        sent_at=NOW,
    )
    SentMessage.create(contact=ada, request_id="order-2", request_hash="x" * 64, state="sending")
    OldFeedbackEvent.create(notification_id="sns-1", event_type="Delivery", ses_message_id="0100-sent-before")
    old.close()
    return database_url


def test_a_database_from_before_the_queue_upgrades_in_place(old_database):
    open_database(old_database)

    with database.connection_context():
        assert "message_pk" in {column.name for column in database.get_columns("feedback_event")}
        assert FeedbackEvent.get().notification_id == "sns-1"  # the old events stay
        earlier = queue.by_request("", "order-1")
        assert (earlier.message_id, earlier.contact_id) == ("0100-sent-before", "A" * 22)
        cut_off = Message.get(Message.request_id == "order-2")
        # Its send was cut off mid-call: maybe sent, never resent (there is no body to send again).
        assert (cut_off.state, cut_off.resends, cut_off.payload) == (MessageState.UNKNOWN, 1, None)
    open_database(old_database)  # a second start changes nothing
    with database.connection_context():
        assert Message.select().count() == 2


def test_a_request_id_from_before_the_queue_keeps_its_first_answer(old_database, make_gateway, ses):
    _, stub = make_gateway()

    again = stub.SendEmail(pb.SendEmailRequest(**REQUEST, request_id="order-1"), timeout=10)

    assert (again.message_id, again.contact_id) == ("0100-sent-before", "A" * 22)
    assert ses.sent == []

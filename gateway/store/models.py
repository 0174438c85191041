"""Peewee models shared by the gateway and the feedback sidecar: contacts, their history, the send queue, feedback.
The states they store are the domain's (gateway/core/states.py), re-exported here for the store's callers."""

import enum

import peewee

from gateway.core.states import ContactStatus, MessageState, Priority, ReputationLevel
from gateway.store.database import connect, database, is_postgres_url, utcnow

MAX_REASON = 1000  # characters of a status change's reason that are kept


class _EnumField(peewee.CharField):
    enum: type[enum.StrEnum]

    def __init__(self, **kwargs):
        super().__init__(max_length=16, **kwargs)

    def db_value(self, value):
        return None if value is None else self.enum(value).value

    def python_value(self, value):
        return None if value is None else self.enum(value)


class StatusField(_EnumField):
    """Stores a ContactStatus as its string value."""

    enum = ContactStatus


class MessageStateField(_EnumField):
    """Stores a MessageState as its string value."""

    enum = MessageState


def storable(text: str, limit: int) -> str:
    """Free text as both databases hold it: valid UTF-8 (a lone surrogate from JSON becomes "?"), no NUL
    (PostgreSQL refuses it in text), at most `limit` characters. SQLite took what PostgreSQL refused, so a
    bounce whose diagnostic carried a NUL was answered 500 on every SNS redelivery until it was lost."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")[:limit]


class FreeTextField(peewee.TextField):
    """Text written by others (a remote mail server's diagnostic, an operator's reason), stored as storable() makes it.
    Identifiers are never stored this way: they are validated where they enter, since truncating one changes it."""

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def db_value(self, value):
        return None if value is None else storable(str(value), self.max_length)


class FreeCharField(peewee.CharField):
    """A short free-text column (an event type as SES names it), stored as storable() makes it."""

    def db_value(self, value):
        return None if value is None else storable(str(value), self.max_length)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Contact(BaseModel):
    """One recipient, keyed by its normalised address; contact_id is the opaque id in unsubscribe links."""

    contact_id = peewee.CharField(max_length=32, unique=True)
    email = peewee.CharField(max_length=320, unique=True)
    status = StatusField(default=ContactStatus.ACTIVE)
    reason = FreeTextField(MAX_REASON, default="")
    soft_bounces = peewee.IntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = (
            # The admin listing's order (admin/listing.py): every page is one index range, at any table size.
            (("updated_at", "id"), False),
            (("status", "updated_at", "id"), False),
        )


class Message(BaseModel):
    """One accepted SendEmail, from the queue to its last SES event; `caller` is who asked (rpc/auth.py).

    The payload (what the caller asked to send, as JSON) is kept only until the message is settled.
    """

    message_id = peewee.CharField(max_length=128, unique=True)  # the gateway's id, in the API and as an EmailTag
    contact = peewee.ForeignKeyField(Contact, backref="messages", on_delete="CASCADE")
    caller = peewee.CharField(max_length=128, default="")
    request_id = peewee.CharField(max_length=128, null=True)
    request_hash = peewee.CharField(max_length=64, null=True)
    state = MessageStateField(default=MessageState.QUEUED)
    payload = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)  # SES calls made (or possibly made) for it
    resends = peewee.IntegerField(default=0)  # sends after an unknown outcome: at most one
    due_at = peewee.DateTimeField(default=utcnow)  # queued: next attempt; sending: lease end; unknown: resend time
    claimed_by = peewee.CharField(max_length=64, null=True)
    ses_message_id = peewee.CharField(max_length=128, null=True, unique=True)
    error_reason = peewee.CharField(max_length=64, default="")  # of the last failure, as an ErrorInfo reason
    error_code = peewee.CharField(max_length=64, default="")  # SES's error code, when SES answered
    error_detail = FreeTextField(500, default="")
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    settled_at = peewee.DateTimeField(null=True, index=True)
    sent_at = peewee.DateTimeField(null=True)  # when SES accepted it
    send_at = peewee.DateTimeField(null=True)  # when the caller asked it to be sent (SendEmail's send_at); else null
    # Its lane (sending/order.py): the priority (core/states.Priority, 0 the most urgent), the client company it is
    # sent for ("" for none), and its turn among the caller's queued messages of that priority: tenants take turns.
    # Defaults in the schema too: a replica not yet upgraded inserts messages without these columns.
    priority = peewee.SmallIntegerField(default=int(Priority.TRANSACTIONAL), constraints=[peewee.SQL("DEFAULT 1")])
    tenant = peewee.CharField(max_length=64, default="", constraints=[peewee.SQL("DEFAULT ''")])
    turn = peewee.BigIntegerField(default=0, constraints=[peewee.SQL("DEFAULT 0")])
    held = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT FALSE")])  # its tenant is paused

    class Meta:
        indexes = (
            (("caller", "request_id"), True),  # request ids are unique per caller
            # Leases, resends and expiry read only due rows of one state, however many are settled.
            (("state", "due_at"), False),
            # The claim takes a lane's queued rows that are not held in turn order; a caller's queued messages are
            # counted by lane.
            (("state", "held", "priority", "caller", "turn"), False),
            # A new message's turn comes after its tenant's last queued one in the lane (store/queue.enqueue).
            (("state", "priority", "caller", "tenant", "turn"), False),
            # A tenant's window of recent sends (its reputation), and its queued messages held or released.
            (("tenant", "settled_at"), False),
        )


class SendBudget(BaseModel):
    """The send rate every replica shares: a token bucket, on the database's clock (one row per limiter)."""

    name = peewee.CharField(max_length=32, primary_key=True)
    tokens = peewee.DoubleField(default=0.0)
    refilled_at = peewee.DoubleField(default=0.0)  # seconds since the epoch (DOUBLE: REAL would round by minutes)
    quota_remaining = peewee.IntegerField(default=-1)  # of SES's rolling 24-hour quota; -1: unlimited or unknown


class Lane(BaseModel):
    """One caller's messages of one priority, as dispatch shares the rate between them (sending/order.py): `credit`
    is what the lane is owed of its class's sends (weighted round robin, carried between claims and replicas),
    `turn` the last turn claimed from it, where a tenant that was idle joins the rotation."""

    priority = peewee.SmallIntegerField()
    caller = peewee.CharField(max_length=128)
    credit = peewee.DoubleField(default=0.0)
    turn = peewee.BigIntegerField(default=0)

    class Meta:
        indexes = ((("priority", "caller"), True),)


class PriorityShare(BaseModel):
    """What a lower class is owed of the rate while a more urgent one has more due mail than it
    (MAILGW_LOWER_CLASS_MIN_SHARE), carried between claims and replicas; one row per priority."""

    priority = peewee.SmallIntegerField(primary_key=True)
    credit = peewee.DoubleField(default=0.0)


class StatusChange(BaseModel):
    """History: one row for every change of a contact's status, and for every piece of evidence that would have raised
    it had it not stood as high already (a complaint about a contact SES's list had suppressed, an operator's legal
    hold on an unsubscribed one): from_status equals to_status there, and `evidence` says what the source reported.
    A reconcile lowers a status only when no such source is left (store/ses_list.status_without_ses_list)."""

    contact = peewee.ForeignKeyField(Contact, backref="history", on_delete="CASCADE")
    from_status = StatusField()
    to_status = StatusField()
    source = peewee.CharField(max_length=64)
    reason = FreeTextField(MAX_REASON, default="")
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    actor = peewee.CharField(max_length=128, default="")  # who lowered (or set) it by hand: an operator, a sync
    evidence = StatusField(null=True)  # the status the source reported; NULL on rows from before: to_status
    # The recipient's undo of this unsubscribe (store/contacts.py): the SHA-256 of a secret only the page that made
    # the change was shown, and until when it works. NULL: nobody can undo it but an operator.
    undo_digest = peewee.CharField(max_length=64, null=True)
    undo_until = peewee.DateTimeField(null=True)


class ReputationLevelField(_EnumField):
    """Stores a ReputationLevel as its string value."""

    enum = ReputationLevel


class _Hold(BaseModel):
    """A reputation guard's decision, a row every gateway reads, so a pause holds across replicas and restarts;
    `generation` counts the operator's resumes, and sends settled before `counted_from` are not judged."""

    level = ReputationLevelField(default=ReputationLevel.NORMAL)
    reason = peewee.CharField(max_length=64, default="")  # REPUTATION_BOUNCE_RATE or REPUTATION_COMPLAINT_RATE
    detail = FreeTextField(500, default="")
    changed_at = peewee.DateTimeField(null=True)
    generation = peewee.IntegerField(default=0)
    counted_from = peewee.DateTimeField(null=True)
    resumed_by = peewee.CharField(max_length=128, default="")
    resume_reason = FreeTextField(MAX_REASON, default="")
    resumed_at = peewee.DateTimeField(null=True)


class ReputationHold(_Hold):
    """The account's decision: one row."""

    name = peewee.CharField(max_length=32, primary_key=True)


class TenantHold(_Hold):
    """One tenant's decision (sending/reputation.TenantGuard), created with its first message: `name` is the tenant.
    While it is paused the tenant's queued messages are held (Message.held) and the claim passes them over."""

    name = peewee.CharField(max_length=64, primary_key=True)
    # Turns each of its new messages takes in its lane (store/lanes.next_turn): 1, or more while it is slowed, so it
    # gets that fraction of the share it would have against its caller's other mail.
    turn_step = peewee.IntegerField(default=1)


class FeedbackEvent(BaseModel):
    """One SES event received as feedback, stored once per notification id so a redelivery changes nothing."""

    notification_id = peewee.CharField(max_length=128, unique=True)
    event_type = FreeCharField(max_length=64)
    ses_message_id = peewee.CharField(max_length=128, null=True, index=True)
    message = peewee.ForeignKeyField(
        Message, null=True, backref="events", on_delete="SET NULL", column_name="message_pk"
    )
    detail = FreeTextField(2000, default="")
    received_at = peewee.DateTimeField(default=utcnow, index=True)


MODELS = [Contact, Message, SendBudget, Lane, PriorityShare, StatusChange, FeedbackEvent, ReputationHold, TenantHold]


# --- SES's account-level suppression list (gateway/suppression/) ------------------------------------------------


class SesListIntent(BaseModel):
    """What SES's suppression list should do about one contact and has not done yet: "put" (it bounced or complained
    here) or "delete" (an operator reactivated it). Written with the status change that calls for it, so it is never
    lost; one row per contact, the latest intent wins (`version` counts rewrites, so a worker deletes only the intent
    it carried out)."""

    contact = peewee.ForeignKeyField(Contact, unique=True, on_delete="CASCADE")
    action = peewee.CharField(max_length=8)  # "put" | "delete"
    reason = peewee.CharField(max_length=16, default="")  # for "put": BOUNCE | COMPLAINT
    version = peewee.IntegerField(default=1)
    state = peewee.CharField(max_length=8, default="pending")  # "pending" | "refused" (SES refused it for good)
    attempts = peewee.IntegerField(default=0)
    due_at = peewee.DateTimeField(default=utcnow)
    error_reason = peewee.CharField(max_length=64, default="")  # of the last failure, from core/failures.py
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("state", "due_at"), False),)


class SesListedAddress(BaseModel):
    """What SES's list held when we last looked (or after our own put): the mirror a full reconcile compares with."""

    email = peewee.CharField(max_length=320, unique=True)  # our contact key
    address = peewee.CharField(max_length=320)  # as SES spells it: SES matches it exactly when managing the list
    reason = peewee.CharField(max_length=16)  # BOUNCE | COMPLAINT
    last_update_time = peewee.DateTimeField(null=True)  # SES's LastUpdateTime
    seen_at = peewee.DateTimeField(default=utcnow, index=True)


class SesListSync(BaseModel):
    """The sync's state, one row: the incremental cursor, when the last full reconcile finished, and the lease that
    lets one process at a time run it."""

    name = peewee.CharField(max_length=32, primary_key=True)
    cursor = peewee.DateTimeField(null=True)  # the latest LastUpdateTime a complete pass saw
    last_run_at = peewee.DateTimeField(null=True)  # the end of the last complete pass (the database's clock)
    last_full_at = peewee.DateTimeField(null=True)
    holder = peewee.CharField(max_length=128, default="")
    lease_until = peewee.DateTimeField(null=True)


MODELS += [SesListIntent, SesListedAddress, SesListSync]


class SesTenant(BaseModel):
    """What SES says of one tenant (MAILGW_SES_TENANTS, sending/ses_tenants.py): its ARN, its aggregate sending status
    when last read ("" until the first read, or after a send SES refused for it: its mail waits for a read), and
    whether this gateway set its customer-managed status to DISABLED for a pause of its own."""

    name = peewee.CharField(max_length=64, primary_key=True)
    arn = peewee.CharField(max_length=512, default="")
    status = peewee.CharField(max_length=16, default="")  # ENABLED | REINSTATED | DISABLED | MISSING | ""
    cause = FreeTextField(512, default="")
    read_at = peewee.DateTimeField(null=True)
    next_read_at = peewee.DateTimeField(default=utcnow, index=True)
    paused_here = peewee.BooleanField(default=False)


MODELS += [SesTenant]


# --- the event log (store/event_log.py, WatchEvents) ---------------------------------------------------------------


class EventRecord(BaseModel):
    """One thing that happened to a caller's mail, appended in the transaction that made it happen; `position` is
    given after commit, in commit order (store/event_log.sequence), and is what a watcher's cursor names."""

    position = peewee.BigIntegerField(null=True, unique=True)
    caller = peewee.CharField(max_length=128)
    type = peewee.CharField(max_length=32)  # core/states.EventType
    message_id = peewee.CharField(max_length=128, default="")
    request_id = peewee.CharField(max_length=128, default="")
    contact_id = peewee.CharField(max_length=32, default="")
    tenant = peewee.CharField(max_length=64, default="")
    priority = peewee.SmallIntegerField(null=True)
    state = peewee.CharField(max_length=16, default="")
    previous_state = peewee.CharField(max_length=16, default="")
    bounce_type = FreeCharField(max_length=32, default="")
    bounce_subtype = FreeCharField(max_length=64, default="")
    diagnostic = FreeTextField(500, default="")
    time = peewee.DateTimeField(default=utcnow)
    created_at = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "event_log"
        indexes = (
            (("caller", "position"), False),  # a watcher's reads: its caller's records after its cursor
            (("position", "id"), False),  # the sequencer's: the records without a position yet, in insert order
        )


class EventPosition(BaseModel):
    """The last position the sequencer gave, one row; its row lock orders the sequencers of every process."""

    name = peewee.CharField(max_length=16, primary_key=True)
    last = peewee.BigIntegerField(default=0)


class MessageAttachment(BaseModel):
    """A file of a queued message, kept beside its payload and, like it, only until the message is settled: the
    database deletes the rows when the payload is cleared (files_go_with_the_payload)."""

    message = peewee.ForeignKeyField(Message, on_delete="CASCADE", index=True)
    number = peewee.SmallIntegerField()  # its place among the message's attachments
    filename = peewee.CharField(max_length=255)
    content_type = peewee.CharField(max_length=255)
    content_id = peewee.CharField(max_length=100, default="")
    content = peewee.BlobField()

    class Meta:
        table_name = "attachment"


MODELS += [MessageAttachment]


class WebhookCursor(BaseModel):
    """How far one caller's webhook has delivered the event log (events/webhooks.py), and which gateway delivers it:
    one at a time, under a lease, so the POSTs of a caller follow the log's order whatever the number of gateways."""

    caller = peewee.CharField(max_length=128, primary_key=True)
    position = peewee.BigIntegerField(default=0)  # the last position the endpoint acknowledged (2xx)
    owner = peewee.CharField(max_length=64, default="")  # the gateway delivering, until lease_until
    lease_until = peewee.DateTimeField(default=utcnow)
    failures = peewee.IntegerField(default=0)  # answers in a row that were not 2xx (or no answer)
    failing_since = peewee.DateTimeField(null=True)
    next_attempt_at = peewee.DateTimeField(null=True)  # the backoff's end after a failure
    last_error = FreeCharField(max_length=200, default="")
    delivered_at = peewee.DateTimeField(null=True)


MODELS += [EventRecord, EventPosition, WebhookCursor]


def open_database(url: str, *, existing: bool = False) -> peewee.Database:
    """Connect both processes' models to `url` (sqlite:///path or postgresql://…): tables and columns created,
    earlier schemas upgraded; with `existing` (a command), only a database that is there already. CannotUseDatabase
    when it cannot be opened. See store/database.py for the pool."""
    upgrades = [
        _messages_sent_before_the_queue,
        insert_missing_lanes,
        queued_records_by_trigger,
        files_go_with_the_payload,
    ]
    return connect(url, MODELS, upgrades=upgrades, existing=existing)


# SendEmail's QUEUED record in the event log, written by the database in the INSERT of the message itself: one
# statement, as SendEmail's insert was before the log (a transaction of two would hold SQLite's write lock across
# Python's turns between them, and halved the accept line). The record's columns as store/event_log.py writes them.
QUEUED_RECORD = (
    "INSERT INTO event_log (caller, type, message_id, request_id, contact_id, tenant, priority, state,"
    " previous_state, bounce_type, bounce_subtype, diagnostic, time, created_at)"
    " SELECT NEW.caller, 'queued', NEW.message_id, COALESCE(NEW.request_id, ''), contact.contact_id, NEW.tenant,"
    " NEW.priority, NEW.state, '', '', '', '', NEW.created_at, NEW.created_at FROM contact"
    " WHERE contact.id = NEW.contact_id"
)


def queued_records_by_trigger(db: peewee.Database) -> None:
    """The trigger that appends a new message's QUEUED record (idempotent: replaced when it exists)."""
    db.execute_sql("DROP TRIGGER IF EXISTS event_log_queued" + (" ON message" if is_postgres_url(db.url) else ""))
    if is_postgres_url(db.url):
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION event_log_queued() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {QUEUED_RECORD}; RETURN NULL; END $$"
        )
        db.execute_sql(
            "CREATE TRIGGER event_log_queued AFTER INSERT ON message FOR EACH ROW EXECUTE FUNCTION event_log_queued()"
        )
    else:
        db.execute_sql(f"CREATE TRIGGER event_log_queued AFTER INSERT ON message BEGIN {QUEUED_RECORD}; END")


# A settled message's files go with its payload (the body): one statement for every way a message is settled.
FILES_GONE = "DELETE FROM attachment WHERE message_id = NEW.id"


def files_go_with_the_payload(db: peewee.Database) -> None:
    """The trigger that deletes a message's attachments when its payload is cleared (idempotent)."""
    db.execute_sql("DROP TRIGGER IF EXISTS attachment_gone" + (" ON message" if is_postgres_url(db.url) else ""))
    when = "NEW.payload IS NULL AND OLD.payload IS NOT NULL"
    if is_postgres_url(db.url):
        db.execute_sql(
            "CREATE OR REPLACE FUNCTION attachment_gone() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {FILES_GONE}; RETURN NULL; END $$"
        )
        db.execute_sql(
            "CREATE TRIGGER attachment_gone AFTER UPDATE OF payload ON message FOR EACH ROW"
            f" WHEN ({when}) EXECUTE FUNCTION attachment_gone()"
        )
    else:
        db.execute_sql(
            f"CREATE TRIGGER attachment_gone AFTER UPDATE OF payload ON message WHEN {when} BEGIN {FILES_GONE}; END"
        )


def _messages_sent_before_the_queue(db: peewee.Database) -> None:
    """Before the send queue, SendEmail recorded its sends in sent_message. Carried over once, so a request_id
    repeated after the upgrade still returns its first answer (SES's message id, the message_id of that time)."""
    if not db.table_exists("sent_message") or Message.select().exists():
        return
    db.execute_sql(
        "INSERT INTO message (message_id, contact_id, caller, request_id, request_hash, state, attempts, resends,"
        " due_at, ses_message_id, error_reason, error_code, error_detail, created_at, updated_at, settled_at)"
        " SELECT COALESCE(ses_message_id, 'pre-queue-' || CAST(id AS VARCHAR(20))), contact_id, caller, request_id,"
        " request_hash, CASE WHEN state = 'sent' THEN 'sent' ELSE 'unknown' END, 1, 1, created_at, ses_message_id,"
        " '', '', '', created_at, COALESCE(sent_at, created_at), CASE WHEN state = 'sent' THEN sent_at END"
        " FROM sent_message"
    )


def insert_missing_lanes(db: peewee.Database) -> int:
    """A lane for every in-flight message that has none, so dispatch finds it: the messages of a database from before
    lanes (an upgrade), or of a replica not yet upgraded (housekeeping runs this now and then). Lanes added."""
    return db.execute_sql(
        "INSERT INTO lane (priority, caller, credit, turn)"
        " SELECT DISTINCT m.priority, m.caller, 0, 0 FROM message m"
        " WHERE m.state IN ('queued', 'scheduled', 'sending', 'unknown')"
        " AND NOT EXISTS (SELECT 1 FROM lane l WHERE l.priority = m.priority AND l.caller = m.caller)"
    ).rowcount

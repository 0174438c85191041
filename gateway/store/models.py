"""Peewee models and the database connection, shared by the gateway and the feedback sidecar."""

import datetime
import enum
import functools
import logging
import weakref

import peewee
from playhouse import db_url, migrate
from playhouse.pool import PooledPostgresqlDatabase

log = logging.getLogger(__name__)
database = peewee.DatabaseProxy()


def utcnow() -> datetime.datetime:
    """Naive UTC, the one timezone both SQLite and PostgreSQL columns store."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class ContactStatus(enum.StrEnum):
    """A recipient's mailing status; the order of SEVERITY decides which event wins."""

    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"

    @property
    def severity(self) -> int:
        return _SEVERITY.index(self)

    @property
    def suppressed(self) -> bool:
        return self is not ContactStatus.ACTIVE


_SEVERITY = [ContactStatus.ACTIVE, ContactStatus.UNSUBSCRIBED, ContactStatus.BOUNCED, ContactStatus.COMPLAINED]


MAX_REASON = 1000  # characters of a status change's reason that are kept


class StatusField(peewee.CharField):
    """Stores a ContactStatus as its string value."""

    def __init__(self, **kwargs):
        super().__init__(max_length=16, **kwargs)

    def db_value(self, value):
        return None if value is None else ContactStatus(value).value

    def python_value(self, value):
        return None if value is None else ContactStatus(value)


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


class SentMessage(BaseModel):
    """One SendEmail that reached the transport: state "sending" while in flight, "sent", or "unknown" when
    SES may have taken it without our hearing back; `caller` is who asked (auth.py)."""

    contact = peewee.ForeignKeyField(Contact, backref="messages", on_delete="CASCADE")
    ses_message_id = peewee.CharField(max_length=128, null=True, unique=True)
    caller = peewee.CharField(max_length=128, default="")
    request_id = peewee.CharField(max_length=128, null=True)
    request_hash = peewee.CharField(max_length=64, null=True)
    state = peewee.CharField(max_length=8, default="sent")
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("caller", "request_id"), True),)  # request ids are unique per caller


class StatusChange(BaseModel):
    """History: one row for every change of a contact's status."""

    contact = peewee.ForeignKeyField(Contact, backref="history", on_delete="CASCADE")
    from_status = StatusField()
    to_status = StatusField()
    source = peewee.CharField(max_length=64)
    reason = FreeTextField(MAX_REASON, default="")
    created_at = peewee.DateTimeField(default=utcnow, index=True)


class FeedbackEvent(BaseModel):
    """One SES event received as feedback, stored once per notification id so a redelivery changes nothing."""

    notification_id = peewee.CharField(max_length=128, unique=True)
    event_type = FreeCharField(max_length=64)
    ses_message_id = peewee.CharField(max_length=128, null=True, index=True)
    sent_message = peewee.ForeignKeyField(SentMessage, null=True, backref="events", on_delete="SET NULL")
    detail = FreeTextField(2000, default="")
    received_at = peewee.DateTimeField(default=utcnow)


MODELS = [Contact, SentMessage, StatusChange, FeedbackEvent]


def prepared(build):
    """Peewee renders a query's SQL in Python on every call (~100 us); a hot query renders it once per database.

    `build` returns the query with placeholder values; call the result for the SQL, then run it with the real
    parameters in the same order, e.g. `Model.raw(sql(), value)`.
    """
    rendered = weakref.WeakKeyDictionary()

    @functools.wraps(build)
    def sql() -> str:
        db = database.obj
        if db not in rendered:
            rendered[db] = build().sql()[0]
        return rendered[db]

    return sql


_insert_sql: "weakref.WeakKeyDictionary[peewee.Database, dict]" = weakref.WeakKeyDictionary()


def insert_row(model: type[BaseModel], *, ignore_conflict: bool = False, **values) -> None:
    """A one-row INSERT whose SQL is rendered once per database (see prepared); unset fields take their defaults."""
    fields = [field for field in model._meta.sorted_fields if not isinstance(field, peewee.AutoField)]
    rendered = _insert_sql.setdefault(database.obj, {})
    if (model, ignore_conflict) not in rendered:
        query = model.insert({field: None for field in fields})
        rendered[model, ignore_conflict] = (query.on_conflict_ignore() if ignore_conflict else query).sql()[0]
    params = [field.db_value(values[field.name] if field.name in values else _default(field)) for field in fields]
    database.execute_sql(rendered[model, ignore_conflict], params)


def _default(field: peewee.Field):
    return field.default() if callable(field.default) else field.default


def open_database(url: str) -> peewee.Database:
    """Connect the shared models to `url` (sqlite:///path or postgresql://…) and create missing tables.

    Connections are pooled: each unit of work (an RPC, a webhook request) takes one with
    `database.connection_context()` and gives it back, so a connection broken by a database
    restart is dropped and the next unit of work reconnects.
    """
    scheme, _, rest = url.partition("://")
    if scheme in ("sqlite", "sqlite+pool"):
        # WAL lets the sidecar write while the gateway reads; IMMEDIATE takes the write lock
        # when a transaction starts, so two processes wait on busy_timeout instead of failing
        # with "database is locked" when a read transaction tries to become a write.
        db = db_url.connect(
            f"sqlite+pool://{rest}",
            pragmas={"journal_mode": "wal", "busy_timeout": 10_000, "synchronous": "normal", "foreign_keys": 1},
            lock_type="IMMEDIATE",
            check_same_thread=False,  # pooled connections move between worker threads, one at a time
            **POOL,
        )
    elif scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        params = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT} | db_url.parse(f"postgresql://{rest}")
        db = PostgresPool(**params, **POOL)
    else:
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///… or postgresql://…")
    database.initialize(db)
    # Both processes create the schema on start; one transaction each, serialised (SQLite by BEGIN IMMEDIATE,
    # PostgreSQL by an advisory lock), so two starting at once do not race on CREATE ... IF NOT EXISTS.
    with db.connection_context(), db.atomic():
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        add_missing_columns(db)
        db.create_tables(MODELS, safe=True)
    return db


def add_missing_columns(db: peewee.Database) -> None:
    """Columns added to a model since its table was created (each has a default), so upgrades need no manual step."""
    migrator = migrate.SchemaMigrator.from_database(db)
    for model in MODELS:
        if not db.table_exists(model._meta.table_name):
            continue
        existing = {column.name for column in db.get_columns(model._meta.table_name)}
        for field in model._meta.sorted_fields:
            if field.column_name not in existing:
                migrate.migrate(migrator.add_column(model._meta.table_name, field.column_name, field))


SCHEMA_LOCK = 0x6D61696C67770001  # "mailgw" + 1: any constant shared by both processes


POOL = {"max_connections": 64, "stale_timeout": 300}
POSTGRES_CONNECT_TIMEOUT = 5  # seconds: a database that does not answer is reported, not waited for


def drop_idle_connections() -> None:
    """After a database error: pooled connections opened before the fault are likely dead too; drop them so the
    next unit of work connects afresh instead of failing once more on each."""
    try:
        database.close_idle()
    except Exception:  # the pool is being dropped because something is wrong; never mask the first error
        log.debug("closing idle connections failed", exc_info=True)


class PostgresPool(PooledPostgresqlDatabase):
    """Peewee's pool pings the server (SELECT 1) on every checkout: a round trip per RPC, which halved guard
    throughput (bench/). Without it, a connection broken by a server restart fails its next query instead; the
    caller gets a retryable answer (UNAVAILABLE, 503) and the broken connection is dropped at check-in."""

    def _is_closed(self, conn) -> bool:
        return bool(conn.closed) or self._adapter.txn_status(conn) == self._adapter.txn_unknown

"""The database both processes share: connecting from a URL, creating and upgrading the schema, hot-query helpers."""

import contextlib
import datetime
import functools
import hashlib
import inspect
import logging
import operator
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import peewee
from playhouse import db_url, migrate
from playhouse.pool import PooledPostgresqlDatabase

from gateway.core.config import DATABASE_SCHEMES, POSTGRES_SCHEMES
from gateway.core.errors import CannotUseDatabase

log = logging.getLogger(__name__)
database = peewee.DatabaseProxy()
# The database did not answer (down, restarting, unreachable): a retry later may succeed.
UNAVAILABLE = (peewee.OperationalError, peewee.InterfaceError)


def database_problem(exc: Exception) -> str:
    """What a database driver said, in one line: its first, without libpq's "connection to server at … failed:"
    preamble and severity ("connection refused", 'database "x" does not exist', 'role "x" does not exist')."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "") or type(exc).__name__
    first = _DRIVER_PREAMBLE.sub("", first)
    return first[:1].lower() + first[1:]


_DRIVER_PREAMBLE = re.compile(r"^(connection to server (at|on) .*? failed: )?((FATAL|ERROR): +)?")


def utcnow() -> datetime.datetime:
    """Naive UTC, the one timezone both SQLite and PostgreSQL columns store."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


# Bumped when the database fails a unit of work: connections opened before that are likely dead too (a restart, a
# failover, a network cut kills them all), and each thread's is replaced when it next starts a unit.
_failures = 0
_held = threading.local()


@contextlib.contextmanager
def unit_of_work():
    """One unit of work (an RPC, a dispatched message, a webhook) on this thread's connection, which stays open for
    the next one: taking a connection from the pool and giving it back cost ~50 us each time, a quarter of a refused
    SendEmail. When the database fails a unit, that connection and the idle ones are closed, and every other thread
    replaces its own before its next unit, so one outage costs one failed unit, not one per thread afterwards."""
    if getattr(_held, "failures", _failures) != _failures:
        database.manual_close()
    try:
        database.connect(reuse_if_open=True)
        _held.failures = _failures
        yield
    except UNAVAILABLE:
        _database_failed()
        raise
    except peewee.DatabaseError:
        database.close()
        raise


def _database_failed() -> None:
    global _failures
    _failures += 1
    try:
        database.manual_close()
        database.close_idle()
    except Exception:  # the connections are being dropped because something is wrong; never mask the first error
        log.debug("closing connections after a database failure failed", exc_info=True)


def joined_transaction():
    """A transaction of its own, or the caller's when one is open. Inside the caller's, a savepoint would cost two
    statements and buy nothing: a failure here propagates and the caller's transaction rolls back whole."""
    return contextlib.nullcontext() if database.in_transaction() else database.atomic()


def is_postgres() -> bool:
    """Whether the connected database is PostgreSQL (else SQLite): what its SQL may use (row locks, the server's
    clock). The same question before connecting, of a URL: is_postgres_url."""
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def is_postgres_url(url: str) -> bool:
    """Whether `url` names a PostgreSQL database (else SQLite), before connecting to it: how many writers it takes at
    once. The same question of the connected database: is_postgres. ValueError for a scheme that is neither."""
    scheme = url.partition("://")[0]
    if scheme not in DATABASE_SCHEMES:
        raise ValueError(f"unsupported database URL scheme {scheme!r}: use sqlite:///… or postgresql://…")
    return scheme in POSTGRES_SCHEMES


def database_now() -> datetime.datetime:
    """Naive UTC now as the database sees it: replicas on several machines compare leases and due times with one
    clock on PostgreSQL (a replica whose clock ran ahead would take others' sends in flight for interrupted). SQLite:
    this machine's, where every process using the file runs."""
    if is_postgres():
        return database.execute_sql("SELECT CAST(clock_timestamp() AT TIME ZONE 'UTC' AS timestamp)").fetchone()[0]
    return utcnow()


class SeenRows:
    """Rows a hot path makes sure of once per process and database (an INSERT ... ON CONFLICT DO NOTHING the first
    time, nothing after): a caller's lane, a tenant's row, a caller's rate bucket. Rows are never deleted in service;
    forget() is for tests that empty the tables under a running process."""

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # database -> keys made sure of
        self._lock = threading.Lock()

    def ensure(self, key: tuple, create: Callable[[], object]) -> None:
        with self._lock:
            seen = self._seen.setdefault(database.obj, set())
        if key not in seen:
            create()
            seen.add(key)

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()


seen_rows = SeenRows()


class prepared:
    """A hot query whose SQL is rendered once per database: peewee renders a query in Python on every call (~100 us,
    as much as the guard's whole lookup).

    Decorates a function that builds the query from its parameters, each a placeholder named after it:

        @prepared
        def _recipient_by_email(email):
            return Contact.select(Contact.id).where(Contact.email == email)

    Calling the result with every parameter by name runs that query, as if the function had built it with those
    values, and returns the cursor: `_recipient_by_email(email="ada@example.org").fetchone()`. A missing or unknown
    parameter is a TypeError. Values go to the driver as they are (a str, an int, a naive datetime; no field's
    db_value). Anything else the function writes into the query is a constant, rendered once: what changes from call
    to call (now, say) must be a parameter.
    """

    def __init__(self, build: Callable[..., peewee.Query]) -> None:
        functools.update_wrapper(self, build)
        self._build = build
        self._names = frozenset(inspect.signature(build).parameters)
        self._rendered: weakref.WeakKeyDictionary[peewee.Database, tuple] = weakref.WeakKeyDictionary()

    def __call__(self, **values):
        sql, params_of = self._render()
        return database.execute_sql(sql, self._params(params_of, values))

    def models(self, model: type[peewee.Model], **values) -> peewee.ModelRaw:
        """The query's rows as `model` instances (for a query that selects whole rows of it)."""
        sql, params_of = self._render()
        return model.raw(sql, *self._params(params_of, values))

    def executemany(self, rows: list[dict]) -> None:
        """The statement once per row of values, in one driver call."""
        sql, params_of = self._render()
        params = [self._params(params_of, row) for row in rows]
        with peewee.__exception_wrapper__:  # the driver's errors as peewee's, as execute_sql raises them
            database.cursor().executemany(sql, params)

    def _params(self, params_of: Callable[[dict], tuple], values: dict) -> tuple:
        if len(values) == len(self._names):
            try:
                return params_of(values)
            except KeyError:
                pass
        missing, unknown = sorted(self._names - values.keys()), sorted(values.keys() - self._names)
        raise TypeError(f"{self.__name__}() parameters missing: {missing}, unknown: {unknown}")

    def _render(self) -> tuple:
        """The SQL for the connected database, and the function that puts a call's values in its parameters' order."""
        db = database.obj
        rendered = self._rendered.get(db)
        if rendered is None:
            sql, params = self._build(**{name: _Placeholder(name) for name in self._names}).sql()
            unused = self._names - {param.name for param in params if type(param) is _Slot}
            if unused:
                raise TypeError(f"{self.__name__}() does not use its parameters {sorted(unused)}")
            rendered = self._rendered[db] = sql, _params_of(params)
        return rendered


def _params_of(params: list) -> Callable[[dict], tuple]:
    """A rendered query's parameters from a call's values: each placeholder's by its name, the constants as rendered
    (under their positions, which no parameter's name can be)."""
    keys = [param.name if type(param) is _Slot else i for i, param in enumerate(params)]
    constants = {i: param for i, param in enumerate(params) if type(param) is not _Slot}
    if len(keys) > 1:
        pick = operator.itemgetter(*keys)
    elif keys:  # itemgetter of one key gives the value itself, not a tuple
        pick = lambda values, key=keys[0]: (values[key],)  # noqa: E731
    else:
        pick = lambda values: ()  # noqa: E731
    return (lambda values: pick(values | constants)) if constants else pick


class _Placeholder(peewee.Node):
    """A prepared query's parameter while the query renders: its value's place, under its name."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def __sql__(self, ctx: peewee.Context) -> peewee.Context:
        return ctx.value(_Slot(self.name), converter=False)  # no field's conversion: see prepared


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where a named value goes in a rendered query's parameters."""

    name: str


_inserts: "weakref.WeakKeyDictionary[peewee.Database, dict]" = weakref.WeakKeyDictionary()


def insert_row(model: type[peewee.Model], *, ignore_conflict: bool = False, **values) -> int:
    """A one-row INSERT whose SQL is rendered once per database (see prepared); unset fields take their defaults
    (one utcnow() for all the row's timestamps). The rows inserted: 0 when `ignore_conflict` and the row exists."""
    rendered = _inserts.setdefault(database.obj, {})
    if (model, ignore_conflict) not in rendered:
        rendered[model, ignore_conflict] = _render_insert(model, ignore_conflict)
    sql, columns = rendered[model, ignore_conflict]
    now, params = None, []
    for name, to_db, default in columns:
        if name in values:
            value = values[name]
        elif default is utcnow:
            value = now = now or utcnow()
        else:
            value = default() if callable(default) else default
        params.append(to_db(value))
    return database.execute_sql(sql, params).rowcount


def _render_insert(model: type[peewee.Model], ignore_conflict: bool) -> tuple[str, list]:
    fields = [field for field in model._meta.sorted_fields if not isinstance(field, peewee.AutoField)]
    query = model.insert({field: None for field in fields})
    sql = (query.on_conflict_ignore() if ignore_conflict else query).sql()[0]
    return sql, [(field.name, field.db_value, field.default) for field in fields]


def connect(url: str, models: list[type[peewee.Model]], upgrades=(), *, existing: bool = False) -> peewee.Database:
    """Connect `models` to `url` (sqlite:///path or postgresql://…), create missing tables and columns, then run
    `upgrades` (functions of the database, each idempotent) in the same transaction.

    With `existing`, only a database that is there already is opened: a command that reads state must not create an
    empty SQLite file and report on it. A database that cannot be opened raises CannotUseDatabase (one line).

    Connections are pooled: each thread doing units of work keeps one (unit_of_work), and a connection broken by a
    database restart is dropped and the next unit of work reconnects.
    """
    _check_sqlite_file(url, existing)
    db = database.obj if getattr(database.obj, "url", None) == url else _pool(url)
    database.initialize(db)
    # Both processes create the schema on start; one transaction each, serialised (SQLite by BEGIN IMMEDIATE,
    # PostgreSQL by an advisory lock), so two starting at once do not race on CREATE ... IF NOT EXISTS.
    # A new SQLite file: the first connection of each process turns WAL on, which needs the file to itself and does
    # not wait for SQLite's busy timeout, so a second process starting at the same moment (mailgw run, two replicas)
    # hears "database is locked" at once: it tries again for as long as the busy timeout would have waited.
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        step = "cannot connect"
        try:
            if db.is_closed():  # this thread may hold its connection open already (unit_of_work)
                db.connect()
            step = "cannot create or upgrade the tables"
            try:
                _create_schema(db, models, upgrades)
            finally:
                db.close()
            return db
        except (peewee.DatabaseError, peewee.InterfaceError) as exc:
            if "database is locked" in str(exc) and time.monotonic() <= deadline:
                time.sleep(0.05)
                continue
            raise CannotUseDatabase(url, f"{step}: {database_problem(exc)}") from None


def _check_sqlite_file(url: str, existing: bool) -> None:
    """A SQLite file in a folder that is there (SQLite only says "unable to open database file"), and, when
    `existing`, the file itself: connecting would create it empty."""
    if is_postgres_url(url):
        return
    path = db_url.parse(url)["database"]
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    path = os.path.abspath(path)
    if existing and not os.path.isfile(path):
        raise CannotUseDatabase(url, f"no database at {path}: start the gateway first or set MAILGW_DATABASE_URL")
    if not os.path.isdir(os.path.dirname(path)):
        raise CannotUseDatabase(url, f"cannot create the database: the folder {os.path.dirname(path)} does not exist")


SCHEMA_TABLE = "mailgw_schema"  # one row: the fingerprint of the schema the tables were last brought to


def _create_schema(db: peewee.Database, models: list[type[peewee.Model]], upgrades) -> None:
    """Tables, columns, indexes and upgrades as `models` and `upgrades` want them. A database already brought to
    this schema (its fingerprint stored) is left as it is after one query: the full check asks for every table's
    columns and every index, ~40 round trips (80 ms on PostgreSQL) at every start of every process."""
    fingerprint = _fingerprint(db, models, upgrades)
    if _stored_fingerprint(db) == fingerprint:
        return
    with db.atomic():
        if is_postgres():  # connect() pointed the proxy at `db`
            db.execute(peewee.Select(columns=[peewee.fn.pg_advisory_xact_lock(SCHEMA_LOCK)]))
        # New tables first (a column added to an old table may refer to one), then the new columns, then every
        # index (CREATE INDEX IF NOT EXISTS), which may cover a column just added.
        db.create_tables([model for model in models if not db.table_exists(model._meta.table_name)])
        add_missing_columns(db, models)
        db.create_tables(models, safe=True)
        for upgrade in upgrades:
            upgrade(db)
        db.execute_sql(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (fingerprint VARCHAR(64) NOT NULL)")
        db.execute_sql(f"DELETE FROM {SCHEMA_TABLE}")
        db.execute_sql(f"INSERT INTO {SCHEMA_TABLE} (fingerprint) VALUES ({db.param})", (fingerprint,))


def _fingerprint(db: peewee.Database, models, upgrades) -> str:
    """A digest of every statement that creates the schema, and of the upgrades' names (rendered once a process)."""
    return _rendered_fingerprint(type(db), db, tuple(models), tuple(upgrades))


@functools.lru_cache(maxsize=8)
def _rendered_fingerprint(kind: type, db: peewee.Database, models: tuple, upgrades: tuple) -> str:
    statements = []
    for model in models:
        for query in (model._schema._create_table(safe=True), *model._schema._create_indexes(safe=True)):
            statements.append(db.get_sql_context().sql(query).query()[0])
    statements += [f"{upgrade.__module__}.{upgrade.__qualname__}" for upgrade in upgrades]
    return hashlib.sha256("\n".join(statements).encode()).hexdigest()


def _stored_fingerprint(db: peewee.Database) -> str | None:
    if not db.table_exists(SCHEMA_TABLE):
        return None
    row = db.execute_sql(f"SELECT fingerprint FROM {SCHEMA_TABLE}").fetchone()
    return row[0] if row else None


def _pool(url: str) -> peewee.Database:
    """A pool for `url`. Connecting again to the same URL keeps the pool in use: threads in the middle of a
    transaction (the dispatcher's) must not find the shared proxy pointing at another pool halfway through it."""
    rest = url.partition("://")[2]
    if is_postgres_url(url):
        params = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT} | db_url.parse(f"postgresql://{rest}")
        db = PostgresPool(**params, **POOL)
    else:
        # WAL lets the sidecar write while the gateway reads; IMMEDIATE takes the write lock
        # when a transaction starts, so two processes wait on busy_timeout instead of failing
        # with "database is locked" when a read transaction tries to become a write.
        db = db_url.connect(
            f"sqlite+pool://{rest}",
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": SQLITE_BUSY_SECONDS * 1000,
                "synchronous": "normal",
                "foreign_keys": 1,
            },
            lock_type="IMMEDIATE",
            check_same_thread=False,  # pooled connections move between worker threads, one at a time
            **POOL,
        )
    db.url = url
    return db


def add_missing_columns(db: peewee.Database, models: list[type[peewee.Model]]) -> None:
    """Columns added to a model since its table was created (each has a default), so upgrades need no manual step."""
    migrator = migrate.SchemaMigrator.from_database(db)
    for model in models:
        if not db.table_exists(model._meta.table_name):
            continue
        existing = {column.name for column in db.get_columns(model._meta.table_name)}
        for field in model._meta.sorted_fields:
            if field.column_name not in existing:
                migrate.migrate(migrator.add_column(model._meta.table_name, field.column_name, field))


SCHEMA_LOCK = 0x6D61696C67770001  # "mailgw" + 1: any constant shared by both processes


POOL = {"max_connections": 64, "stale_timeout": 300}
SQLITE_BUSY_SECONDS = 10  # how long a SQLite connection waits for another's write lock
POSTGRES_CONNECT_TIMEOUT = 5  # seconds: a database that does not answer is reported, not waited for


class PostgresPool(PooledPostgresqlDatabase):
    """Peewee's pool pings the server (SELECT 1) on every checkout: a round trip per RPC, which halved guard
    throughput (bench/). Without it, a connection broken by a server restart fails its next query instead; the
    caller gets a retryable answer (UNAVAILABLE, 503) and the broken connection is dropped at check-in."""

    def _is_closed(self, conn) -> bool:
        return bool(conn.closed) or self._adapter.txn_status(conn) == self._adapter.txn_unknown

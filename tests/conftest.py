"""Fixtures with real peers: SQLite and PostgreSQL, an SES stand-in on loopback, the gateway on a free port."""

import contextlib
import os
import secrets
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg2
import pytest
import pytest_asyncio
from psycopg2 import sql

from feedback_http.app import create_app
from feedback_http.config import FeedbackSettings, sns_endpoint
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import Settings
from gateway.dev.ses_standin import SesStandIn
from gateway.process.gateway import Gateway, create_server
from gateway.store.database import seen_rows, unit_of_work
from gateway.store.models import database, open_database
from support.moto_server import MotoServer
from support.sns_signing import TOPIC_ARN, FakeSnsHost, SigningCertificate
from support.timings import FAST
from tests.sqs_feedback import FeedbackTopic

# A server where this user may create databases: each test run creates its own and drops it at the end, so two
# runs on one machine (or two xdist workers) never see each other's rows.
POSTGRES_SERVER_URL = os.environ.get("MAILGW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_DATABASE_PREFIX = "mailgw_test_"


@contextlib.contextmanager
def _admin_cursor():
    connection = psycopg2.connect(POSTGRES_SERVER_URL)
    connection.autocommit = True  # CREATE / DROP DATABASE cannot run in a transaction (nor under `with connection`)
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        connection.close()


def _drop_abandoned_run_databases(cursor) -> None:
    """Databases of runs on this machine that were killed before they could drop theirs (the pid is gone)."""
    cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (RUN_DATABASE_PREFIX + "%",))
    for (name,) in cursor.fetchall():
        pid = name.removeprefix(RUN_DATABASE_PREFIX).partition("_")[0]
        if pid.isdigit() and not _alive(int(pid)):
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Fixtures that start a process (moto's server): every test using them is in the slow tier as well.
SLOW_FIXTURES = frozenset({"moto_session", "moto", "topic"})


def pytest_collection_modifyitems(config, items):
    """Slow fixtures mark their tests slow; a test marked one_database (its behaviour is decided before any SQL: a
    request refused by its checks, a page rendered, a caller authenticated) runs on SQLite only."""
    kept, deselected = [], []
    for item in items:
        if SLOW_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        params = getattr(item, "callspec", None) and item.callspec.params
        if params and params.get("database_url") == "postgresql" and item.get_closest_marker("one_database"):
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def postgres_url():
    """A database of this test run's own on the PostgreSQL server, dropped when the run ends."""
    name = f"{RUN_DATABASE_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    with _admin_cursor() as cursor:
        _drop_abandoned_run_databases(cursor)
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # A commit returns before its WAL reaches the disk: what the tests check is what each transaction makes
        # visible to the others, never a machine's crash, and waiting for the flush was a third of the suite's time.
        cursor.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit TO off").format(sql.Identifier(name)))
    yield urlunsplit(urlsplit(POSTGRES_SERVER_URL)._replace(path=f"/{name}"))
    if database.obj is not None:
        database.close_all()
    with _admin_cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def fresh_postgres(url: str) -> None:
    """An empty public schema: no tables at all (the server is real, not a mock)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


def emptied_postgres(url: str) -> None:
    """Every table of the schema emptied, its structure kept: so every test starts from no rows, at a fraction of a
    millisecond (dropping and creating the schema again took ~125 ms a test). Tests that change the schema itself
    (an old version's tables, a trigger) are marked fresh_schema and get fresh_postgres before and after."""
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        # Not the schema's fingerprint: the tables are still what it says (store/database.py).
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename != 'mailgw_schema'")
        tables = [name for (name,) in cursor.fetchall()]
        if tables:
            cursor.execute("SET LOCAL session_replication_role = replica")  # no foreign-key order to follow
            cursor.execute("".join(f'DELETE FROM "{name}";' for name in tables))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The developer's own MAILGW_* settings must not leak into the processes the tests start."""
    for name in list(os.environ):
        if name.startswith("MAILGW_"):
            monkeypatch.delenv(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mailgw.db"
    else:
        url = request.getfixturevalue("postgres_url")
        changes_schema = request.node.get_closest_marker("fresh_schema") is not None
        (fresh_postgres if changes_schema else emptied_postgres)(url)
        seen_rows.forget()  # this process's memory of the rows the emptied tables held (lanes, tenants, buckets)
        yield url
        if database.obj is not None:
            database.close_all()
        if changes_schema:
            fresh_postgres(url)  # the next test finds no stray table or trigger
    if database.obj is not None:
        database.close_all()


@pytest.fixture
def db(database_url):
    """The schema on the test's database, and a connection for this thread for the whole test (a unit of work): for
    tests that call the store and the domain in-process. Its URL."""
    open_database(database_url)
    with unit_of_work():
        yield database_url
    database.close()


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials and a region, as boto3 reads them; no request may leave the machine."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # anything not pointed elsewhere fails fast


@pytest.fixture(scope="session")
def moto_session():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def moto(moto_session, aws_env, monkeypatch):
    """moto's server, emptied, with boto3 pointed at it for SNS and SQS (SES stays on the stand-in)."""
    moto_session.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_session.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_session.url)
    return moto_session


@pytest.fixture
def topic(moto) -> FeedbackTopic:
    """An SES feedback topic in moto with a queue subscribed to it (raw delivery off), as bootstrap makes them."""
    return FeedbackTopic()


@pytest.fixture
def ses(aws_env, monkeypatch):
    standin = SesStandIn()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", standin.start())
    yield standin
    standin.stop()


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(
        database_url=database_url,
        grpc_addr="127.0.0.1:0",
        public_base_url="https://mail.example.com",
        default_from="Example App <noreply@example.com>",
        outbox_dir=str(tmp_path / "outbox"),
        ses_suppression_sync_seconds=0,  # the sync's own tests turn it on
    )


# A gateway stopped at a test's end gets this long to let its dispatch workers finish the send in hand: with none, a
# worker still sending when the test's database fixture closed the connection pool under it crashed the worker process
# (a segfault in sqlite3, which took the pytest-xdist worker down).
TEARDOWN_GRACE = 5.0


@pytest.fixture
def served(settings, ses):
    """A running gateway (gRPC server and dispatcher) whose SES transport reaches the stand-in through
    AWS_ENDPOINT_URL_SESV2; stopped at the end."""
    gateway = create_server(settings, timings=FAST)
    gateway.start()
    yield gateway
    gateway.stop(TEARDOWN_GRACE)


@pytest.fixture
def make_gateway(settings, ses):
    """Start gateways in this process with settings changed from the `settings` fixture's (and an injected
    transport, if any); each is a (Gateway, stub) pair, stopped at the end."""
    started = []

    def make(*, with_transport=None, timings=FAST, **changes) -> tuple[Gateway, pb_grpc.MailGatewayServiceStub]:
        gateway = create_server(replace(settings, **changes), transport=with_transport, timings=timings)
        gateway.start()
        started.append(gateway)
        return gateway, pb_grpc.MailGatewayServiceStub(grpc.insecure_channel(f"127.0.0.1:{gateway.port}"))

    yield make
    for gateway in started:
        gateway.stop(TEARDOWN_GRACE)


@pytest.fixture
def gateway(served):
    """A stub for the `served` gateway."""
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        yield pb_grpc.MailGatewayServiceStub(channel)


@pytest.fixture
def signer() -> SigningCertificate:
    """A throwaway RSA key and self-signed certificate that stand in for AWS's SNS signing certificate."""
    return SigningCertificate()


@pytest_asyncio.fixture
async def sns_host(signer):
    """Serves the signer's certificate (and SubscribeURLs) over HTTP on loopback, recording every request."""
    async with FakeSnsHost(signer.pem) as host:
        yield host


@pytest.fixture
def make_sidecar(aiohttp_client, database_url, sns_host):
    """The real sidecar app behind aiohttp's test server, accepting our test topic and fetching certificates from
    sns_host; with `environ`, its settings are read from those variables as an operator sets them."""

    async def make(*, environ: dict[str, str] | None = None, **options):
        if environ is not None:
            base = {
                "MAILGW_DATABASE_URL": database_url,
                "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
                "AWS_ENDPOINT_URL_SNS": sns_host.url,
            }
            settings, endpoint = FeedbackSettings.from_env(base | environ), sns_endpoint(base | environ)
        else:
            settings = FeedbackSettings(database_url=database_url, sns_topic_arns=frozenset({TOPIC_ARN}), **options)
            endpoint = sns_host.url
        return await aiohttp_client(create_app(settings, sns_endpoint_url=endpoint))

    return make

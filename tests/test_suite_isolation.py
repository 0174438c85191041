"""Two test runs at once on one machine do not share a PostgreSQL database (a run once failed while another ran)."""

import os
import subprocess
import sys

import psycopg2
import pytest

from gateway.store.contacts import get_or_create_contact
from gateway.store.models import Contact, database, open_database
from support.processes import ROOT
from tests.conftest import POSTGRES_SERVER_URL, RUN_DATABASE_PREFIX, fresh_postgres


def run_databases(pid: int) -> set[str]:
    """The databases the test run of process `pid` has on the server (other runs, other workers, are left out)."""
    with psycopg2.connect(POSTGRES_SERVER_URL) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{RUN_DATABASE_PREFIX}{pid}_%",))
        names = {name for (name,) in cursor.fetchall()}
    connection.close()
    return names


@pytest.mark.slow
def test_a_second_run_at_the_same_time_leaves_this_runs_database_alone(postgres_url):
    fresh_postgres(postgres_url)
    open_database(postgres_url)
    with database.connection_context():
        get_or_create_contact("mine@example.org")
    mine = run_databases(os.getpid())
    assert len(mine) == 1

    # Another run starts, wipes the database it uses before every test, and ends.
    other = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_contacts.py", "-k", "postgresql"],
        cwd=ROOT,
        env=os.environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _ = other.communicate(timeout=300)

    assert other.returncode == 0, output[-2000:]
    with database.connection_context():
        assert [c.email for c in Contact.select()] == ["mine@example.org"]
    assert run_databases(os.getpid()) == mine
    assert run_databases(other.pid) == set()  # the other run dropped the database it created
    database.close_all()

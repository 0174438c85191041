"""The sidecar commits notifications in groups: each is answered only after the commit that holds it, and one
member's failure is its own."""

import asyncio
import json
import sqlite3

import peewee
import psycopg2
import pytest

from feedback_http.writer import commit_group
from gateway.store.contacts import change_status
from gateway.store.models import Contact, ContactStatus, FeedbackEvent, database, open_database
from support import ses_samples
from support.sns_signing import signed_envelope


def bounce(signer, email: str) -> str:
    event = ses_samples.bounce_event("Permanent", "General", [ses_samples.bounced_recipient(email)])
    return json.dumps(signed_envelope(signer, message=ses_samples.message(event)))


class WriteLock:
    """Another process's writer holding the database: SQLite's write lock, or PostgreSQL's lock on the contact
    table, which every status change writes."""

    def __init__(self, url: str):
        if url.startswith("sqlite"):
            self.connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")
        else:
            self.connection = psycopg2.connect(url)
            self.connection.cursor().execute("LOCK TABLE contact IN EXCLUSIVE MODE")

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


async def test_notifications_are_answered_only_after_the_commit_that_holds_them(make_sidecar, signer, database_url):
    sidecar = await make_sidecar()
    emails = [f"burst{i}@example.org" for i in range(20)]
    lock = WriteLock(database_url)
    try:
        posts = [asyncio.create_task(sidecar.post("/sns", data=bounce(signer, email))) for email in emails]
        await asyncio.sleep(1.0)
        assert not any(post.done() for post in posts), "a notification was answered before it was committed"
    finally:
        lock.release()
    responses = await asyncio.gather(*posts)

    assert [(r.status, await r.text()) for r in responses] == [(200, "recorded")] * len(emails)
    with database.connection_context():
        bounced = {c.email for c in Contact.select().where(Contact.status == ContactStatus.BOUNCED)}
        assert FeedbackEvent.select().count() == len(emails)
    assert bounced == set(emails)


@pytest.fixture
def opened(database_url):
    open_database(database_url)
    return database


def bounced(email: str):
    return lambda: change_status(ContactStatus.BOUNCED, source="test", email=email)


def statuses() -> dict[str, ContactStatus]:
    with database.connection_context():
        return {c.email: c.status for c in Contact.select()}


def test_a_member_that_fails_fails_alone(opened):
    def broken():
        change_status(ContactStatus.BOUNCED, source="test", email="half@example.org")
        raise ValueError("a bug in the middle of the work")

    outcomes = commit_group([bounced("a@example.org"), broken, bounced("b@example.org")])

    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert isinstance(outcomes[1][1], ValueError)
    assert statuses() == {"a@example.org": ContactStatus.BOUNCED, "b@example.org": ContactStatus.BOUNCED}


def test_a_database_failure_fails_the_whole_group_and_commits_nothing(opened):
    def database_gone():
        raise peewee.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(peewee.OperationalError):
        commit_group([bounced("a@example.org"), database_gone, bounced("b@example.org")])

    assert statuses() == {}

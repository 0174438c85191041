"""The queue's upkeep (store/upkeep.py): expiry keeps a message's last failure; the retention purge takes what is past
MAILGW_MESSAGE_RETENTION_DAYS in short batches, and nothing else; on SQLite no batch holds the write lock long enough
to fail a writer waiting for it (one transaction over 600,000 rows held it 13.4 s, and a SendEmail waiting 10 s
failed with "database is locked")."""

import datetime
import sqlite3
import threading

from gateway.sending.housekeeping import Housekeeper
from gateway.store import upkeep
from gateway.store.database import database, utcnow
from gateway.store.models import Contact, FeedbackEvent, Message, MessageState, open_database

RETENTION_DAYS = 30.0
OLD = 40  # days ago: past the retention


def housekeeper() -> Housekeeper:
    return Housekeeper(
        None, unknown_resend_seconds=900, max_message_age_seconds=86400, retention_days=RETENTION_DAYS,
        paused=lambda: False,
    )  # fmt: skip


def add_message(name: str, state: MessageState, *, days_ago: float, settled: bool) -> None:
    when = utcnow() - datetime.timedelta(days=days_ago)
    Message.insert(
        message_id=name, contact=1, state=state, due_at=when, created_at=when, updated_at=when,
        settled_at=when if settled else None,
    ).execute()  # fmt: skip


def test_a_message_past_its_age_expires_with_its_last_failure_or_as_never_tried(db):
    Contact.insert(id=1, contact_id="c" * 22, email="a@example.org").execute()
    add_message("tried", MessageState.QUEUED, days_ago=2, settled=False)
    Message.update(error_reason="SES_UNAVAILABLE", error_detail="boom").where(Message.message_id == "tried").execute()
    add_message("never-tried", MessageState.QUEUED, days_ago=2, settled=False)  # a paused queue, say
    add_message("young", MessageState.QUEUED, days_ago=0, settled=False)

    assert upkeep.expire_older_than(datetime.timedelta(days=1), reason="MESSAGE_EXPIRED") == 2

    rows = {m.message_id: (m.state, m.error_reason, m.error_detail) for m in Message.select()}
    assert rows == {
        "tried": (MessageState.EXPIRED, "SES_UNAVAILABLE", "boom"),  # what went wrong says more than "too old"
        "never-tried": (MessageState.EXPIRED, "MESSAGE_EXPIRED", "not sent within MAILGW_MAX_MESSAGE_AGE_SECONDS"),
        "young": (MessageState.QUEUED, "", ""),
    }


def test_the_purge_takes_what_is_past_its_retention_in_batches_and_nothing_else(db):
    Contact.insert(id=1, contact_id="c" * 22, email="a@example.org").execute()
    for i in range(7):
        add_message(f"old-sent-{i}", MessageState.SENT, days_ago=OLD, settled=True)
    add_message("old-unknown", MessageState.UNKNOWN, days_ago=OLD, settled=False)  # no event ever settled it
    add_message("recent-sent", MessageState.SENT, days_ago=1, settled=True)
    add_message("old-but-queued", MessageState.QUEUED, days_ago=OLD, settled=False)  # due mail is never purged
    add_message("old-but-sending", MessageState.SENDING, days_ago=OLD, settled=False)
    old_event = utcnow() - datetime.timedelta(days=OLD)
    for i in range(4):
        FeedbackEvent.insert(notification_id=f"old-{i}", event_type="Delivery", received_at=old_event).execute()
    FeedbackEvent.insert(notification_id="recent", event_type="Delivery").execute()

    cutoff = utcnow() - datetime.timedelta(days=RETENTION_DAYS)
    batches = []
    while deleted := upkeep.purge_batch(cutoff, limit=3):
        batches.append(deleted)

    assert batches == [3, 3, 1, 1, 3, 1]  # settled messages, the stale unknown one, then the feedback events
    assert sorted(m.message_id for m in Message.select()) == ["old-but-queued", "old-but-sending", "recent-sent"]
    assert [e.notification_id for e in FeedbackEvent.select()] == ["recent"]
    assert Contact.select().count() == 1  # contacts are the suppression list: never purged


def test_a_long_purge_never_holds_sqlites_lock_long_enough_to_fail_a_waiting_writer(tmp_path):
    """50,000 settled rows (one transaction holds the lock a good half second to delete them); meanwhile a writer that
    waits at most 0.2 s for the lock, as any SendEmail or notification does for ten, inserts row after row: the
    proportion of a million rows (5.4 s in one transaction, bench/purge.py) to SQLite's 10 s busy timeout."""
    path = tmp_path / "mailgw.db"
    open_database(f"sqlite:///{path}")
    with database.connection_context():
        Contact.insert(id=1, contact_id="c" * 22, email="a@example.org").execute()
        database.execute_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000) "
            "INSERT INTO message (message_id, contact_id, caller, state, attempts, resends, due_at, error_reason, "
            "error_code, error_detail, created_at, updated_at, settled_at) "
            "SELECT 'old-' || i, 1, '', 'sent', 1, 0, t, '', '', '', t, t, t "
            "FROM (SELECT i, datetime('now', '-40 days') AS t FROM n)"
        )
    purging, done, failures, written = threading.Event(), threading.Event(), [], []

    def purge():
        try:
            with database.connection_context():
                purging.set()
                while not housekeeper().purge(threading.Event(), seconds=60):
                    pass
        finally:
            done.set()

    writer = sqlite3.connect(path, timeout=0.2, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE probe (i INTEGER)")

    def write():  # a write every 20 ms, each waiting at most 0.2 s for the lock
        purging.wait(10)
        while not done.wait(0.02):
            try:
                writer.execute("BEGIN IMMEDIATE")
                writer.execute("INSERT INTO probe VALUES (1)")
                writer.execute("COMMIT")
                written.append(1)
            except sqlite3.OperationalError as exc:
                failures.append(str(exc))
        writer.close()

    threads = [threading.Thread(target=purge), threading.Thread(target=write)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)

    assert failures == []
    assert len(written) > 10  # the writer really wrote while the purge ran
    with database.connection_context():
        assert Message.select().count() == 0
    database.close_all()

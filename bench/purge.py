"""The retention purge at scale: how long SQLite's write lock is held at a time. One transaction over every expired
row (the purge before batches) against the batched purge (gateway/store/upkeep.purge_batch): the longest batch, the
batches, the total.

`python -m bench.purge [--rows N]` (default 1,000,000 settled messages past their retention).
"""

import argparse
import datetime
import tempfile
import time

from bench.reputation import COLUMNS


def fill(url: str, rows: int) -> None:
    from gateway.store.models import Contact, database, open_database

    db = open_database(url)
    with db.connection_context():
        if not Contact.select().where(Contact.id == 1).exists():
            Contact.insert(id=1, contact_id="c" * 22, email="user1@example.org").execute()
        db.execute_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            f"INSERT INTO message ({COLUMNS}) SELECT 'old-' || i, 1, '', 'delivered', 1, 0, t, '', '', '', t, t, t "
            "FROM (SELECT i, datetime('now', '-40 days') AS t FROM n)",
            (rows,),
        )
    database.close_all()


def one_transaction(url: str) -> float:
    """Seconds the purge before batches held the lock: every expired row in one DELETE."""
    from gateway.store.database import utcnow
    from gateway.store.models import Message, database, open_database

    db = open_database(url)
    cutoff = utcnow() - datetime.timedelta(days=30)
    with db.connection_context():
        started = time.perf_counter()
        with db.atomic():
            Message.delete().where(Message.settled_at < cutoff).execute()
        took = time.perf_counter() - started
    database.close_all()
    return took


def batched(url: str) -> tuple[float, int, float]:
    """(the longest batch in seconds, batches, total seconds of the batches) of upkeep.purge_batch."""
    from gateway.store import upkeep
    from gateway.store.database import utcnow
    from gateway.store.models import database, open_database

    db = open_database(url)
    cutoff, longest, batches, total = utcnow() - datetime.timedelta(days=30), 0.0, 0, 0.0
    with db.connection_context():
        while True:
            started = time.perf_counter()
            deleted = upkeep.purge_batch(cutoff)
            took = time.perf_counter() - started
            if not deleted:
                break
            longest, batches, total = max(longest, took), batches + 1, total + took
    database.close_all()
    return longest, batches, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/one.db"
        fill(url, rows)
        whole = one_transaction(url)
        url = f"sqlite:///{directory}/batched.db"
        fill(url, rows)
        longest, batches, total = batched(url)
    print(f"SQLite, {rows:,} settled messages past their retention:")
    print(f"  one transaction (before): the write lock held {whole:.1f} s at once")
    print(f"  batched: {batches:,} batches, the longest {longest * 1000:.0f} ms; {total:.1f} s of deleting in all")


if __name__ == "__main__":
    main()

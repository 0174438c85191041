"""The reputation guard's window query with a large message table vs a table that holds one window: its cost must be
the window's (the newest sends read through the settled_at index), not the table's.

`python -m bench.reputation [--settled N]` measures it alone on SQLite and on a PostgreSQL database of its own
(created and dropped); the scale line of `python -m bench` reports it beside the claim.
"""

import argparse
import statistics
import tempfile
import time

WINDOW_SENDS = 10_000  # the default MAILGW_REPUTATION_WINDOW_SENDS
WINDOW_DAYS = 7.0
RETENTION_DAYS = 30.0  # the default MAILGW_MESSAGE_RETENTION_DAYS: how far back a full table reaches

# One row in 50 bounced, one in 2,000 complained, one in 97 suppressed (settled but never sent), the rest delivered.
STATES = (
    "CASE WHEN i % 50 = 0 THEN 'bounced' WHEN i % 2000 = 1 THEN 'complained' "
    "WHEN i % 97 = 0 THEN 'suppressed' ELSE 'delivered' END"
)
COLUMNS = (
    "message_id, contact_id, caller, state, attempts, resends, due_at, error_reason, error_code, error_detail, "
    "created_at, updated_at, settled_at"
)


def fill_sends(url: str, count: int, days: float) -> None:
    """An emptied message table holding `count` settled messages, sent evenly over the last `days` days, newest first,
    inserted by the database itself."""
    from gateway.store.models import Contact, Message, database, open_database

    db = open_database(url)
    with db.connection_context():
        Message.delete().execute()
        if not Contact.select().where(Contact.id == 1).exists():
            Contact.insert(id=1, contact_id="c" * 22, email="user1@example.org").execute()
        if url.startswith("sqlite"):
            db.execute_sql(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                f"INSERT INTO message ({COLUMNS}) SELECT 'settled-' || i, 1, '', {STATES}, 1, 0, t, '', '', '', "
                "t, t, t FROM (SELECT i, datetime('now', '-' || (i * ? / ?) || ' seconds') AS t FROM n)",
                (count, days * 86400.0, count),
            )
        else:
            db.execute_sql(  # psycopg2 reads % as a placeholder: the modulo is %%
                f"INSERT INTO message ({COLUMNS}) SELECT 'settled-' || i, 1, '', {STATES.replace('%', '%%')}, 1, 0, "
                "t, '', '', '', "
                "t, t, t FROM (SELECT i, (now() AT TIME ZONE 'UTC') - i * (%s * interval '1 second') / %s AS t "
                "FROM generate_series(1, %s) AS i) AS sent",
                (days * 86400.0, count, count),
            )
        db.execute_sql("ANALYZE")
    database.close_all()


def window_ms(url: str, reads: int, limit: int = WINDOW_SENDS) -> float:
    """Median latency of the guard's window query (store.reputation.window), on one pooled connection."""
    import datetime

    from gateway.store import reputation
    from gateway.store.database import database_now
    from gateway.store.models import database, open_database

    open_database(url)
    timings = []
    with database.connection_context():
        since = database_now() - datetime.timedelta(days=WINDOW_DAYS)
        for _ in range(reads):
            started = time.perf_counter()
            counts = reputation.window(since=since, limit=limit)
            timings.append(time.perf_counter() - started)
        assert 0 < counts.sends <= limit
    database.close_all()
    return statistics.median(timings) * 1000


def measure(url: str, settled: int, rounds: int, reads: int, window: int = WINDOW_SENDS) -> tuple[list, list]:
    """(ms with `settled` messages over the retention, ms with one window's sends over its days), per round."""
    large, one_window = [], []
    fill_sends(url, settled, RETENTION_DAYS)
    for _ in range(rounds):
        large.append(window_ms(url, reads, window))
    fill_sends(url, window, WINDOW_DAYS)
    for _ in range(rounds):
        one_window.append(window_ms(url, reads, window))
    return large, one_window


def main(argv: list[str] | None = None) -> int:
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg2

    from bench.harness import POSTGRES_SERVER_URL

    parser = argparse.ArgumentParser(prog="python -m bench.reputation", description=__doc__)
    parser.add_argument("--settled", type=int, default=1_000_000, help="messages in the large table")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reads", type=int, default=20, help="queries per round")
    args = parser.parse_args(argv)
    name = f"mailgw_bench_reputation_{secrets.token_hex(4)}"
    admin = psycopg2.connect(POSTGRES_SERVER_URL)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        with tempfile.TemporaryDirectory(prefix="mailgw-bench-") as tmp:
            backends = (
                ("SQLite", f"sqlite:///{tmp}/reputation.db"),
                ("PostgreSQL", urlunsplit(urlsplit(POSTGRES_SERVER_URL)._replace(path=f"/{name}"))),
            )
            for backend, url in backends:
                large, one_window = measure(url, args.settled, args.rounds, args.reads)
                print(
                    f"{backend}: window of {WINDOW_SENDS:,} sends, {args.settled:,} settled messages: "
                    f"{statistics.median(large):.2f} ms (rounds {', '.join(f'{v:.2f}' for v in large)}); "
                    f"one window's {WINDOW_SENDS:,}: {statistics.median(one_window):.2f} ms"
                )
    finally:
        from gateway.store.models import database

        if database.obj is not None:
            database.close_all()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

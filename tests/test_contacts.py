"""The one status function: severity order, history rows, idempotency; on SQLite and PostgreSQL."""

import itertools
import threading

import pytest

from gateway.core.addresses import email_key
from gateway.store.contacts import change_status, get_or_create_contact
from gateway.store.models import Contact, ContactStatus, StatusChange, database, open_database

ACTIVE, UNSUBSCRIBED, BOUNCED, COMPLAINED = ContactStatus


@pytest.mark.parametrize(
    "start, event, expected",
    [
        (ACTIVE, UNSUBSCRIBED, UNSUBSCRIBED),
        (ACTIVE, BOUNCED, BOUNCED),
        (ACTIVE, COMPLAINED, COMPLAINED),
        (UNSUBSCRIBED, BOUNCED, BOUNCED),
        (BOUNCED, COMPLAINED, COMPLAINED),
        (BOUNCED, UNSUBSCRIBED, BOUNCED),  # a late unsubscribe does not hide a hard bounce
        (COMPLAINED, BOUNCED, COMPLAINED),
        (COMPLAINED, ACTIVE, COMPLAINED),  # events never reactivate
    ],
)
def test_events_only_move_a_contact_up_the_severity_order(db, start, event, expected):
    if start is not ACTIVE:
        change_status(start, source="setup", email="a@example.org")

    change_status(event, source="sns", reason="why", email="a@example.org")

    assert Contact.get(email="a@example.org").status is expected


def test_every_change_writes_one_history_row_and_repeats_write_none(db):
    first = change_status(BOUNCED, source="sns", reason="Permanent/General", email="a@example.org")
    again = change_status(BOUNCED, source="sns", reason="Permanent/General", email="a@example.org")

    assert (first.changed, again.changed) == (True, False)
    rows = [(r.from_status, r.to_status, r.source, r.reason, r.evidence) for r in StatusChange.select()]
    assert rows == [(ACTIVE, BOUNCED, "sns", "Permanent/General", BOUNCED)]
    assert Contact.get(email="a@example.org").reason == "Permanent/General"


def test_a_suppression_the_status_covers_already_is_kept_as_evidence_once_per_source(db):
    """A report that does not raise the status still says something a reconcile must not forget (a complaint about a
    contact SES's list suppressed, an unsubscribe of a bounced one); the same report from the same source again adds
    nothing."""
    change_status(BOUNCED, source="ses-suppression-list", reason="listed", email="a@example.org")

    changed = []
    for _ in range(2):
        complained = change_status(COMPLAINED, source="ses:Complaint", reason="abuse", email="a@example.org")
        unsubscribed = change_status(UNSUBSCRIBED, source="one-click", reason="one-click", email="a@example.org")
        held = change_status(UNSUBSCRIBED, source="admin", reason="hold", email="a@example.org", actor="ops")
        changed.append((complained.changed, unsubscribed.changed, held.changed))

    assert changed == [(True, False, False), (False, False, False)]
    assert Contact.get(email="a@example.org").status is COMPLAINED
    rows = [(r.from_status, r.to_status, r.evidence, r.source, r.actor) for r in StatusChange.select()]
    assert rows == [
        (ACTIVE, BOUNCED, BOUNCED, "ses-suppression-list", ""),
        (BOUNCED, COMPLAINED, COMPLAINED, "ses:Complaint", ""),
        (COMPLAINED, COMPLAINED, UNSUBSCRIBED, "one-click", ""),
        (COMPLAINED, COMPLAINED, UNSUBSCRIBED, "admin", "ops"),
    ]  # the second round: each source had reported the same already
    # Nothing active is recorded as evidence: an active report says nothing about a suppression.
    assert not change_status(ACTIVE, source="import", email="a@example.org", actor="ops").changed
    assert StatusChange.select().count() == 4


def test_only_a_lowering_asked_for_by_a_named_actor_with_a_reason_moves_a_contact_down(db):
    change_status(BOUNCED, source="sns", email="a@example.org")

    with pytest.raises(ValueError, match="needs an actor and a reason"):
        change_status(ACTIVE, source="operator", reason=" ", email="a@example.org", actor="alice", lower=True)
    with pytest.raises(ValueError, match="needs an actor and a reason"):
        change_status(ACTIVE, source="operator", reason="why", email="a@example.org", lower=True)
    # A named actor alone (an operator's suppression below the status) never lowers: it is evidence.
    assert not change_status(UNSUBSCRIBED, source="admin", reason="x", email="a@example.org", actor="bob").changed
    update = change_status(
        ACTIVE, source="operator", reason="mailbox fixed", email="a@example.org", actor="alice", lower=True
    )

    assert update.changed and update.contact.status is ACTIVE
    rows = [(r.from_status, r.to_status, r.source, r.actor, r.reason) for r in StatusChange.select()]
    assert rows == [
        (ACTIVE, BOUNCED, "sns", "", ""),
        (BOUNCED, BOUNCED, "admin", "bob", "x"),
        (BOUNCED, ACTIVE, "operator", "alice", "mailbox fixed"),
    ]


def test_an_address_never_mailed_gets_a_contact_with_the_new_status(db):
    update = change_status(COMPLAINED, source="sns", email="stranger@example.org")

    assert update.contact.status is COMPLAINED
    assert get_or_create_contact("stranger@example.org").status is COMPLAINED


def test_unknown_contact_id_changes_nothing(db):
    assert change_status(UNSUBSCRIBED, source="unsubscribe", contact_id="no-such-id") is None
    assert Contact.select().count() == 0


def test_email_key_trims_lowercases_and_encodes_the_domain():
    assert email_key("  Alice@Bücher.Example ") == "alice@xn--bcher-kva.example"


def test_racing_events_for_one_contact_lose_no_update(database_url):
    """Eight threads apply every status to one new address at once: the most severe one wins, and the
    history holds a consistent chain from active upwards."""
    open_database(database_url)
    start = threading.Barrier(8)

    def apply(status):
        start.wait()
        with database.connection_context():
            change_status(status, source="race", email="race@example.org")

    threads = [threading.Thread(target=apply, args=(s,)) for s in [UNSUBSCRIBED, BOUNCED, COMPLAINED, BOUNCED] * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    with database.connection_context():
        assert Contact.get(email="race@example.org").status is COMPLAINED
        rows = [(r.from_status, r.to_status) for r in StatusChange.select().order_by(StatusChange.id)]
    # A report the status covered already is kept as evidence (from == to), at the status of its moment.
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(rows))
    chain = [(before, after) for before, after in rows if before != after]
    assert chain[0][0] is ACTIVE and chain[-1][1] is COMPLAINED
    assert all(prev[1] == nxt[0] and nxt[1].severity > nxt[0].severity for prev, nxt in itertools.pairwise(chain))


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/wal.db")
    with db.connection_context():
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] >= 5000
    db.close_all()

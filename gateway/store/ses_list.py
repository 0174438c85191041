"""What the database keeps about SES's account-level suppression list: the intents still to carry out there (put an
address we suppressed, delete one an operator reactivated), the mirror of what SES listed, and the sync's cursor and
lease. Every statement the suppression sync (gateway/suppression/) makes is here."""

import datetime
from dataclasses import dataclass

from peewee import EXCLUDED, JOIN, fn

from gateway.core.states import StatusSource
from gateway.store.database import database, database_now, insert_row, is_postgres, prepared, utcnow
from gateway.store.models import Contact, ContactStatus, SesListedAddress, SesListIntent, SesListSync, StatusChange

PUT, DELETE = "put", "delete"
PENDING, REFUSED = "pending", "refused"
# Our statuses that SES's list holds, and the reasons it holds them under.
LISTED_REASONS = {ContactStatus.BOUNCED: "BOUNCE", ContactStatus.COMPLAINED: "COMPLAINT"}
STATUS_OF_REASON = {reason: status for status, reason in LISTED_REASONS.items()}
SYNC = "account"  # the one row of SesListSync


# --- intents: what SES's list should still do -----------------------------------------------------------------


def note_status_change(contact_pk: int, before: ContactStatus, after: ContactStatus, source: StatusSource) -> None:
    """The intent a status change calls for, in its transaction: a contact that became bounced or complained goes on
    SES's list; one lowered from there comes off it. A change that SES's list made itself calls for nothing."""
    if source == StatusSource.SES_LIST:
        return
    if after in LISTED_REASONS:
        want(contact_pk, PUT, LISTED_REASONS[after])
    elif before in LISTED_REASONS:
        want(contact_pk, DELETE)


# Rewritten in place on conflict: one row per contact, the latest intent wins, its version counting rewrites.
REWRITTEN = ("action", "reason", "state", "attempts", "due_at", "error_reason", "updated_at")


@prepared
def _upsert_intent(contact_pk, action, reason, now):
    # Prepared: this runs with every bounce or complaint the sidecar applies.
    update = {SesListIntent.version: SesListIntent.version + 1}
    update |= {getattr(SesListIntent, name): getattr(EXCLUDED, name) for name in REWRITTEN}
    query = SesListIntent.insert(
        contact=contact_pk,
        action=action,
        reason=reason,
        version=1,
        state=PENDING,
        attempts=0,
        due_at=now,
        error_reason="",
        updated_at=now,
    )
    return query.on_conflict(conflict_target=[SesListIntent.contact], update=update)


def want(contact_pk: int, action: str, reason: str = "") -> None:
    """Record (or replace) the contact's intent, due now."""
    _upsert_intent(contact_pk=contact_pk, action=action, reason=reason, now=utcnow())


@dataclass(frozen=True)
class Intent:
    """One intent as a worker read it; `version` tells whether it was replaced since."""

    pk: int
    contact_pk: int
    email: str
    action: str
    reason: str
    version: int
    attempts: int


INTENT_COLUMNS = (
    SesListIntent.id,
    SesListIntent.contact,
    Contact.email,
    SesListIntent.action,
    SesListIntent.reason,
    SesListIntent.version,
    SesListIntent.attempts,
)


def due_intents(limit: int, *, puts: bool, after_pk: int = 0) -> list[Intent]:
    """Pending intents that are due, oldest first; puts only when pushing is on (deletes always)."""
    query = (
        SesListIntent.select(*INTENT_COLUMNS)
        .join(Contact)
        .where(
            (SesListIntent.state == PENDING) & (SesListIntent.due_at <= database_now()) & (SesListIntent.id > after_pk)
        )
        .order_by(SesListIntent.id)
        .limit(limit)
    )
    if not puts:
        query = query.where(SesListIntent.action == DELETE)
    return [Intent(*row) for row in query.tuples()]


def intent_of(contact_pk: int) -> Intent | None:
    row = SesListIntent.select(*INTENT_COLUMNS).join(Contact).where(SesListIntent.contact == contact_pk).tuples()
    return next((Intent(*r) for r in row), None)


def forget_intent(intent: Intent) -> bool:
    """The intent is carried out: gone, unless it was replaced meanwhile (then the new one stays due)."""
    query = SesListIntent.delete().where((SesListIntent.id == intent.pk) & (SesListIntent.version == intent.version))
    return query.execute() == 1


def retry_intent(intent: Intent, error_reason: str, delay_seconds: float) -> None:
    """SES did not carry it out this time: due again after `delay_seconds`."""
    due = database_now() + datetime.timedelta(seconds=delay_seconds)
    SesListIntent.update(
        attempts=SesListIntent.attempts + 1, due_at=due, error_reason=error_reason, updated_at=utcnow()
    ).where((SesListIntent.id == intent.pk) & (SesListIntent.version == intent.version)).execute()


def refuse_intent(intent: Intent, error_reason: str) -> None:
    """SES refused it for good: kept, with SES's reason, for an operator; never tried again unless replaced."""
    SesListIntent.update(
        state=REFUSED, attempts=SesListIntent.attempts + 1, error_reason=error_reason, updated_at=utcnow()
    ).where((SesListIntent.id == intent.pk) & (SesListIntent.version == intent.version)).execute()


# --- the mirror of SES's list ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One entry of SES's list: our contact key, SES's spelling, its reason and SES's LastUpdateTime."""

    email: str
    address: str
    reason: str
    last_update_time: datetime.datetime | None


def mirror_seen(entries: list[Listed], seen_at: datetime.datetime) -> None:
    """SES lists these now (or took them from us): upserted with `seen_at`."""
    if not entries:
        return
    rows = [
        {"email": e.email, "address": e.address, "reason": e.reason, "last_update_time": e.last_update_time}
        | {"seen_at": seen_at}
        for e in entries
    ]
    fields = ("address", "reason", "last_update_time", "seen_at")
    SesListedAddress.insert_many(rows).on_conflict(
        conflict_target=[SesListedAddress.email],
        update={getattr(SesListedAddress, name): getattr(EXCLUDED, name) for name in fields},
    ).execute()


def mirror_address(email: str) -> str | None:
    """The address as SES spells it on its list, when we saw it there."""
    return SesListedAddress.select(SesListedAddress.address).where(SesListedAddress.email == email).scalar()


def mirror_forget(email: str) -> None:
    SesListedAddress.delete().where(SesListedAddress.email == email).execute()


def forget_unseen(before: datetime.datetime) -> int:
    """After a complete listing: what SES no longer lists (not seen since `before`) leaves the mirror."""
    return SesListedAddress.delete().where(SesListedAddress.seen_at < before).execute()


# --- which contacts a reconcile looks at ------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A bounced or complained contact that SES's list does not hold as such (per the mirror)."""

    pk: int
    email: str
    listed_reason: str | None  # the reason SES lists it under, if it lists it at all


def held_not_listed(limit: int, *, after_pk: int, with_own_feedback: bool) -> list[Held]:
    """Bounced and complained contacts that the mirror does not list under their reason, by row order. Without
    `with_own_feedback`, only those whose history names SES's list (the only ones a reconcile may lower)."""
    other_reason = SesListedAddress.id.is_null()
    for status, reason in LISTED_REASONS.items():
        other_reason |= (Contact.status == status) & (SesListedAddress.reason != reason)
    query = (
        Contact.select(Contact.id, Contact.email, SesListedAddress.reason)
        .join(SesListedAddress, JOIN.LEFT_OUTER, on=(SesListedAddress.email == Contact.email))
        .where(Contact.status.in_([s.value for s in LISTED_REASONS]) & other_reason & (Contact.id > after_pk))
        .order_by(Contact.id)
        .limit(limit)
    )
    if not with_own_feedback:
        named = StatusChange.select(StatusChange.id).where(
            (StatusChange.contact == Contact.id) & (StatusChange.source == StatusSource.SES_LIST)
        )
        query = query.where(fn.EXISTS(named))
    return [Held(*row) for row in query.tuples()]


def locked_status(contact_pk: int) -> tuple[ContactStatus, datetime.datetime] | None:
    """The contact's status and when it last changed, locked until the transaction ends (PostgreSQL's row lock;
    SQLite's transaction holds the write lock), so a reconcile decides on what it then changes."""
    query = Contact.select(Contact.status, Contact.updated_at).where(Contact.id == contact_pk)
    row = (query.for_update() if is_postgres() else query).tuples().first()
    return (ContactStatus(row[0]), row[1]) if row else None


def status_without_ses_list(contact_pk: int) -> ContactStatus:
    """The status the contact would have if SES's list had never raised it: its history replayed without what SES's
    list reported, every other source's report counted, also one that found the status as high already (evidence
    rows, see change_status). A lowering (an operator's reactivation, a reconcile's) sets it outright."""
    own = ContactStatus.ACTIVE
    query = StatusChange.select(
        StatusChange.from_status, StatusChange.to_status, StatusChange.evidence, StatusChange.source
    ).where(StatusChange.contact == contact_pk)
    for before, after, evidence, source in query.order_by(StatusChange.id).tuples():
        before, after = ContactStatus(before), ContactStatus(after)
        reported = ContactStatus(evidence) if evidence else after
        if after.severity < before.severity:
            own = after
        elif source != StatusSource.SES_LIST and reported.severity > own.severity:
            own = reported
    return own


def statuses_of(emails: list[str]) -> dict[str, tuple[int, ContactStatus]]:
    """Contact key → (row, status) for those of these addresses that are contacts, as they are now (not locked)."""
    query = Contact.select(Contact.email, Contact.id, Contact.status).where(Contact.email.in_(emails))
    return {email: (pk, ContactStatus(status)) for email, pk, status in query.tuples()}


def held_back_from_import(contact_pk: int, *, changed_since: datetime.datetime) -> bool:
    """Whether an import must leave this contact alone: an operator's reactivation waits to be carried out on SES's
    list (a delete intent), or someone (an operator, a reconcile) changed its status by hand since `changed_since`
    (SES's answer may predate it). The contact is locked first, so the answer holds until the transaction ends."""
    if locked_status(contact_pk) is None:
        return False
    deleting = SesListIntent.select().where((SesListIntent.contact == contact_pk) & (SesListIntent.action == DELETE))
    by_hand = StatusChange.select().where(
        (StatusChange.contact == contact_pk) & (StatusChange.actor != "") & (StatusChange.created_at >= changed_since)
    )
    return deleting.exists() or by_hand.exists()


# --- the sync's state and lease -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    cursor: datetime.datetime | None
    last_run_at: datetime.datetime | None
    last_full_at: datetime.datetime | None


def acquire_lease(holder: str, seconds: float, *, idle_for: datetime.timedelta | None = None) -> SyncState | None:
    """Take the sync's lease for `seconds` when nobody else holds it (and, with `idle_for`, when no pass completed
    within that long); the state, or None. One UPDATE decides, so two processes cannot both take it."""
    now = database_now()
    with database.atomic():
        insert_row(SesListSync, ignore_conflict=True, name=SYNC, holder="")
        free = SesListSync.lease_until.is_null() | (SesListSync.lease_until < now) | (SesListSync.holder == holder)
        if idle_for is not None:
            free &= SesListSync.last_run_at.is_null() | (SesListSync.last_run_at <= now - idle_for)
        taken = (
            SesListSync.update(holder=holder, lease_until=now + datetime.timedelta(seconds=seconds))
            .where((SesListSync.name == SYNC) & free)
            .execute()
        )
        if not taken:
            return None
        row = SesListSync.get_by_id(SYNC)
    return SyncState(row.cursor, row.last_run_at, row.last_full_at)


def renew_lease(holder: str, seconds: float) -> bool:
    """Hold the lease `seconds` longer; False when another process took it (this one was taken for dead)."""
    until = database_now() + datetime.timedelta(seconds=seconds)
    query = SesListSync.update(lease_until=until).where((SesListSync.name == SYNC) & (SesListSync.holder == holder))
    return query.execute() == 1


def release_lease(holder: str) -> None:
    query = SesListSync.update(holder="", lease_until=None)
    query.where((SesListSync.name == SYNC) & (SesListSync.holder == holder)).execute()


def lease_holder() -> tuple[str, datetime.datetime | None]:
    row = SesListSync.get_or_none(SesListSync.name == SYNC)
    return (row.holder, row.lease_until) if row else ("", None)


def record_pass(holder: str, *, cursor: datetime.datetime | None, full: bool) -> None:
    """A complete pass: its cursor, its end; a full one also counts as the latest reconcile."""
    now = database_now()
    values = {"cursor": cursor, "last_run_at": now} | ({"last_full_at": now} if full else {})
    SesListSync.update(**values).where((SesListSync.name == SYNC) & (SesListSync.holder == holder)).execute()

"""Operators' changes to contacts: suppress one contact, import rows. Every change goes through the one status
function (store/contacts.change_status), which writes the history row with the actor (the admin caller) and the reason.
Reactivating is suppression/reactivate.py's: it also takes the address off SES's suppression list."""

import enum
import logging
from dataclasses import dataclass

from gateway.core.addresses import InvalidAddress, email_key
from gateway.core.errors import ContactNotFound, InvalidRequest
from gateway.core.ids import new_contact_id
from gateway.core.states import StatusSource
from gateway.store.contacts import change_status, find_contact, get_or_create_contact
from gateway.store.database import database, is_postgres
from gateway.store.models import Contact, ContactStatus
from gateway.suppression.reactivate import reason_problem

log = logging.getLogger(__name__)

IMPORT_REASON = "imported"  # the reason of an imported suppression whose row gave none
MAX_IMPORT_ROWS = 1000  # rows per ImportContacts request: one transaction, one report within gRPC's 4 MB
ACTIVE = ContactStatus.ACTIVE


@dataclass(frozen=True)
class Suppression:
    """What suppress did: the contact as it is now, its status before, and whether that changed."""

    contact: Contact
    previous: ContactStatus
    changed: bool


def suppress(
    to: ContactStatus, *, reason: str, actor: str, email: str | None = None, contact_id: str | None = None
) -> Suppression:
    """An operator suppresses one contact (`to` UNSUBSCRIBED, BOUNCED or COMPLAINED), named by normalised `email` or
    by `contact_id`: up the severity order only, like every event (a contact already more severe stays so); an
    address never seen gets a contact, so the guard blocks it from now on; an unknown contact id is
    ContactNotFound. `reason` is required; it and `actor` are recorded in the history row. Repeating a change
    changes nothing."""
    if to is ACTIVE:
        raise ValueError("reactivating is suppression.reactivate.reactivate's")
    reason = reason.strip()
    problem = reason_problem(reason, required=True)
    if problem:
        raise InvalidRequest({"reason": problem})
    with database.atomic():
        contact = get_or_create_contact(email) if email is not None else find_contact(contact_id=contact_id)
        if contact is None:
            raise ContactNotFound("no contact has that address or id")
        # A contact already as severe keeps its status, and the operator's suppression is kept as a history row of
        # its own (a legal hold that outlives the recipient's undo and a reconcile of SES's list).
        previous = _locked_status(contact.id)
        update = change_status(to, source=StatusSource.ADMIN, reason=reason, email=contact.email, actor=actor)
        contact = Contact.get_by_id(contact.id)
    return Suppression(contact, previous, update.changed)


def _locked_status(contact_pk: int) -> ContactStatus:
    """The contact's status, locked until the transaction ends (PostgreSQL's row lock; on SQLite the transaction
    holds the database's write lock from its start)."""
    query = Contact.select(Contact.status).where(Contact.id == contact_pk)
    return ContactStatus((query.for_update() if is_postgres() else query).scalar())


class Outcome(enum.Enum):
    """What an import did with one row."""

    CREATED = "created"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True)
class ImportRow:
    """One row to import; `status` None when the row's status is none of ours."""

    email: str
    status: ContactStatus | None
    reason: str


@dataclass(frozen=True)
class RowResult:
    """The report of one row: the outcome, the contact's status after it (None when refused before the lookup),
    and why a row was refused or left unchanged."""

    outcome: Outcome
    status: ContactStatus | None = None
    detail: str = ""


def import_rows(rows: list[ImportRow], *, actor: str) -> list[RowResult]:
    """Apply rows in order, in one transaction, and report each. Idempotent: the same rows again report unchanged
    (or refused, for the same reason). An import moves a contact only up the severity order: a row `active` for a
    suppressed contact is refused (reactivating takes reactivate() and a reason); a suppressed status below the
    contact's is left unchanged."""
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidRequest({"rows": f"at most {MAX_IMPORT_ROWS} rows per request; send the rest in the next"})
    checked = [_checked(row) for row in rows]
    emails = sorted({row.email for row in checked if isinstance(row, ImportRow)})
    with database.atomic():  # one commit per batch: a batch is applied whole or (on a failure) not at all
        # The batch's contacts are read and created in two statements, not one lookup per row: only rows that
        # suppress cost statements of their own (change_status's, which also keeps a suppression the contact's
        # status covers already as evidence).
        created = _create_missing(emails)
        # Locked until the commit (in one order, the addresses'), since _apply decides on them.
        query = Contact.select(Contact.email, Contact.status).where(Contact.email.in_(emails)).order_by(Contact.email)
        statuses = dict((query.for_update() if is_postgres() else query).tuples())
        results = [row if isinstance(row, RowResult) else _apply(row, statuses, created, actor) for row in checked]
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    log.info("import by %s: %s", actor, ", ".join(f"{n} {outcome.value}" for outcome, n in counts.items()))
    return results


def _checked(row: ImportRow) -> ImportRow | RowResult:
    """The row with its address normalised and its reason trimmed, or why it is refused."""
    try:
        email = email_key(row.email)
    except InvalidAddress as exc:
        return RowResult(Outcome.REFUSED, detail=f"not a mailable address: {exc}")
    if row.status is None:
        return RowResult(Outcome.REFUSED, detail=f"status must be one of {', '.join(ContactStatus)}")
    reason = row.reason.strip()
    problem = reason_problem(reason, required=False)
    if problem:
        return RowResult(Outcome.REFUSED, detail=f"reason {problem}")
    return ImportRow(email, row.status, reason)


def _create_missing(emails: list[str]) -> set[str]:
    """Active contacts for the addresses that have none; the addresses this call created (not a racing creator)."""
    existing = set(Contact.select(Contact.email).where(Contact.email.in_(emails)).tuples().iterator())
    missing = [email for email in emails if (email,) not in existing]
    if not missing:
        return set()
    query = Contact.insert_many([{"email": email, "contact_id": new_contact_id()} for email in missing])
    return {email for (email,) in query.on_conflict_ignore().returning(Contact.email).tuples().execute()}


def _apply(row: ImportRow, statuses: dict[str, ContactStatus], created: set[str], actor: str) -> RowResult:
    """One checked row against the contact's status as this batch left it (`statuses`, updated here)."""
    current, new = statuses[row.email], row.email in created
    created.discard(row.email)  # a later row for the same address finds it, as a contact of its own
    if row.status is ACTIVE and current is not ACTIVE:
        detail = f"the contact is {current}: an import does not reactivate (reactivate it with a reason)"
        return RowResult(Outcome.REFUSED, current, detail)
    if row.status is current and not current.suppressed:
        return RowResult(Outcome.CREATED if new else Outcome.UNCHANGED, current)
    # A suppression the contact's status covers already is kept as evidence by change_status (a legal hold).
    update = change_status(
        row.status, source=StatusSource.IMPORT, reason=row.reason or IMPORT_REASON, email=row.email, actor=actor
    )
    if row.status.severity < current.severity:
        return RowResult(Outcome.UNCHANGED, current, f"already {current}, which is more severe")
    statuses[row.email] = update.contact.status
    if new:
        return RowResult(Outcome.CREATED, update.contact.status)
    return RowResult(Outcome.CHANGED if update.changed else Outcome.UNCHANGED, update.contact.status)

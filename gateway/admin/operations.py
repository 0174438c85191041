"""Operators' changes to contacts: reactivate or suppress one contact, import rows. Every change goes through the one
status function (store/contacts.change_status), which writes the history row with the operator and the reason."""

import enum
import logging
from dataclasses import dataclass

from gateway.addresses import HEADER_UNSAFE, InvalidAddress, email_key
from gateway.errors import ContactNotFound, InvalidRequest
from gateway.ids import new_contact_id
from gateway.store.contacts import change_status, recipient
from gateway.store.database import database
from gateway.store.models import MAX_REASON, Contact, ContactStatus, StatusChange

log = logging.getLogger(__name__)

ADMIN_SOURCE = "admin"  # the source of an operator's reactivation or suppression, in the history
IMPORT_SOURCE = "import"
IMPORT_REASON = "imported"  # the reason of an imported suppression whose row gave none
MAX_IMPORT_ROWS = 1000  # rows per ImportContacts request: one transaction, one report within gRPC's 4 MB
ACTIVE = ContactStatus.ACTIVE


@dataclass(frozen=True)
class OperatorUpdate:
    """What update_status did: the contact as it is now, its status before, and whether that changed."""

    contact: Contact
    previous: ContactStatus
    changed: bool


def update_status(
    to: ContactStatus, *, reason: str, operator: str, email: str | None = None, contact_id: str | None = None
) -> OperatorUpdate:
    """An operator's change of one contact, named by normalised `email` or by `contact_id`:

    - reactivate (`to` ACTIVE): from any suppressed status back to active; an unknown contact is ContactNotFound;
    - suppress (`to` UNSUBSCRIBED, BOUNCED or COMPLAINED): up the severity order only, like every event (a contact
      already more severe stays so); an address never seen gets a contact, so the guard blocks it from now on.

    `reason` is required; it and `operator` are recorded in the history row. Repeating a change changes nothing.
    """
    problem = reason_problem(reason.strip(), required=True)
    if problem:
        raise InvalidRequest({"reason": problem})
    reactivating = to is ACTIVE
    with database.atomic():
        if reactivating and email is not None and recipient(email=email) is None:
            raise ContactNotFound("no contact has that address")
        update = change_status(
            to,
            source=ADMIN_SOURCE,
            reason=reason.strip(),
            email=email,
            contact_id=contact_id,
            actor=operator,
        )
        if update is None:
            raise ContactNotFound("no contact has that id")
        previous = update.contact.status
        if update.changed:  # the row this change wrote, under the contact's lock: exactly the status it replaced
            previous = _last_change(update.contact.pk).from_status
        contact = Contact.get_by_id(update.contact.pk)
    return OperatorUpdate(contact, previous, update.changed)


def _last_change(contact_pk: int) -> StatusChange:
    return StatusChange.select().where(StatusChange.contact == contact_pk).order_by(StatusChange.id.desc()).get()


def reason_problem(reason: str, *, required: bool) -> str | None:
    """What is wrong with an operator's reason, or None: it is kept in the history and shown on one line."""
    if not reason:
        return "required: say why (it is kept in the contact's history)" if required else None
    if len(reason) > MAX_REASON:
        return f"longer than {MAX_REASON} characters"
    if HEADER_UNSAFE.search(reason):
        return "must be one line without control characters"
    return None


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


def import_rows(rows: list[ImportRow], *, operator: str) -> list[RowResult]:
    """Apply rows in order, in one transaction, and report each. Idempotent: the same rows again report unchanged
    (or refused, for the same reason). An import moves a contact only up the severity order: a row `active` for a
    suppressed contact is refused (reactivating takes update_status and a reason); a suppressed status below the
    contact's is left unchanged."""
    if len(rows) > MAX_IMPORT_ROWS:
        raise InvalidRequest({"rows": f"at most {MAX_IMPORT_ROWS} rows per request; send the rest in the next"})
    checked = [_checked(row) for row in rows]
    emails = sorted({row.email for row in checked if isinstance(row, ImportRow)})
    with database.atomic():  # one commit per batch: a batch is applied whole or (on a failure) not at all
        # The batch's contacts are read and created in two statements, not one lookup per row: only rows that move
        # a contact cost statements of their own (change_status's).
        created = _create_missing(emails)
        statuses = dict(Contact.select(Contact.email, Contact.status).where(Contact.email.in_(emails)).tuples())
        results = [row if isinstance(row, RowResult) else _apply(row, statuses, created, operator) for row in checked]
    counts = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    log.info("import by %s: %s", operator, ", ".join(f"{n} {outcome.value}" for outcome, n in counts.items()))
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


def _apply(row: ImportRow, statuses: dict[str, ContactStatus], created: set[str], operator: str) -> RowResult:
    """One checked row against the contact's status as this batch left it (`statuses`, updated here)."""
    current, new = statuses[row.email], row.email in created
    created.discard(row.email)  # a later row for the same address finds it, as a contact of its own
    if row.status is current:
        return RowResult(Outcome.CREATED if new else Outcome.UNCHANGED, current)
    if row.status.severity < current.severity:
        if row.status is ACTIVE:
            detail = f"the contact is {current}: an import does not reactivate (reactivate it with a reason)"
            return RowResult(Outcome.REFUSED, current, detail)
        return RowResult(Outcome.UNCHANGED, current, f"already {current}, which is more severe")
    update = change_status(
        row.status, source=IMPORT_SOURCE, reason=row.reason or IMPORT_REASON, email=row.email, actor=operator
    )
    statuses[row.email] = update.contact.status
    if new:
        return RowResult(Outcome.CREATED, update.contact.status)
    return RowResult(Outcome.CHANGED if update.changed else Outcome.UNCHANGED, update.contact.status)

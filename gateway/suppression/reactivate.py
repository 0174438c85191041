"""Reactivation: an operator says a suppressed contact may be mailed again, and why. The status goes back to active
(history: who, why) and the address comes off SES's account suppression list, where SES would otherwise keep dropping
mail to it. The admin service's UpdateContactStatus (and so `mailgw contacts reactivate`) calls this."""

import enum
import logging
from dataclasses import dataclass

from gateway.core.addresses import HEADER_UNSAFE, InvalidAddress, email_key
from gateway.core.errors import ContactNotFound, InvalidRequest
from gateway.core.ids import is_contact_id, is_name
from gateway.core.logs import contact_ref, masked
from gateway.core.states import StatusSource
from gateway.ses.suppression_list import SesSuppressionList
from gateway.store import ses_list as store
from gateway.store.contacts import change_status, find_contact
from gateway.store.database import database, unit_of_work
from gateway.store.models import MAX_REASON, ContactStatus
from gateway.suppression.sync import Done, carry_out

log = logging.getLogger(__name__)


class SesRemoval(enum.StrEnum):
    """Where the address stands on SES's list after a reactivation."""

    REMOVED = "removed"  # it was listed; SES took it off
    NOT_LISTED = "not listed"  # SES did not list it
    WAITING = "waiting"  # SES did not answer or refused for now: the gateway's sync tries again
    REFUSED = "refused"  # SES refused to remove it (kept, with SES's reason, for an operator)
    NOT_ASKED = "not asked"  # no SES here (the outbox transport): the removal waits, recorded


@dataclass(frozen=True)
class Reactivation:
    """What reactivate() did."""

    email: str
    contact_id: str
    before: ContactStatus
    changed: bool  # False: it was active already (the removal from SES's list was still asked for)
    ses: SesRemoval
    ses_error: str = ""  # the failure's reason when SES did not remove it


def reactivate(
    *,
    email: str | None = None,
    contact_id: str | None = None,
    actor: str,
    reason: str,
    ses: SesSuppressionList | None,
) -> Reactivation:
    """Make a contact active again on `actor`'s word, for `reason`, and remove its address from SES's suppression
    list. The status change and the intent to remove it commit together; the removal is then tried at once, and
    when SES does not answer it stays due for the gateway's sync. InvalidRequest for a missing actor, a reason that
    reason_problem refuses, or a malformed address or id; ContactNotFound for an unknown one (nothing is created)."""
    actor, reason = actor.strip(), reason.strip()
    violations = {}
    if not is_name(actor):
        violations["actor"] = "who reactivates it: 1-128 printable ASCII characters"
    problem = reason_problem(reason, required=True)
    if problem:
        violations["reason"] = problem
    if email is not None:
        try:
            email = email_key(email)
        except InvalidAddress as exc:
            violations["email"] = str(exc)
    elif contact_id is None or not is_contact_id(contact_id):
        violations["contact_id"] = "a contact id is 22 URL-safe characters"
    if violations:
        raise InvalidRequest(violations)

    with unit_of_work(), database.atomic():
        contact = find_contact(email=email) if email is not None else find_contact(contact_id=contact_id)
        if contact is None:
            raise ContactNotFound("no contact has that address or id")
        update = change_status(
            ContactStatus.ACTIVE, source=StatusSource.ADMIN, reason=reason, actor=actor, email=contact.email, lower=True
        )
        # Also when it was active already, or only unsubscribed: SES may list it for a bounce of its own.
        store.want(contact.id, store.DELETE)
        intent = store.intent_of(contact.id)
    log.info(
        "contact %s (%s) reactivated by %s (was %s)", contact_ref(contact.contact_id), masked(contact.email), actor,
        contact.status,
    )  # fmt: skip
    outcome = Reactivation(contact.email, contact.contact_id, contact.status, update.changed, SesRemoval.NOT_ASKED)
    if ses is None:
        return outcome
    with unit_of_work():
        done, failure = carry_out(intent, ses)
    removal = {
        Done.DELETED: SesRemoval.REMOVED,
        Done.NOT_LISTED: SesRemoval.NOT_LISTED,
        Done.REFUSED: SesRemoval.REFUSED,
    }.get(done, SesRemoval.WAITING)
    return Reactivation(
        contact.email, contact.contact_id, contact.status, update.changed, removal, failure.reason if failure else ""
    )


def reason_problem(reason: str, *, required: bool) -> str | None:
    """What is wrong with an operator's reason (stripped), or None: it is kept in the history and shown on one line."""
    if not reason:
        return "required: say why (it is kept in the contact's history)" if required else None
    if len(reason) > MAX_REASON:
        return f"longer than {MAX_REASON} characters"
    if HEADER_UNSAFE.search(reason):
        return "must be one line without control characters"
    return None

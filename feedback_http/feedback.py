"""Stores one SES event and applies it to the message and the contacts it concerns, in one transaction, once per
notification."""

import logging

from feedback_http.events import RecipientOutcome, SesEvent
from gateway.core.states import StatusSource
from gateway.store import message_events
from gateway.store.contacts import change_status, count_soft_bounce, find_contact, reset_soft_bounces
from gateway.store.database import insert_row, joined_transaction
from gateway.store.models import ContactStatus, FeedbackEvent, MessageState

log = logging.getLogger(__name__)


def record_event(notification_id: str, event: SesEvent, *, soft_bounce_limit: int = 0) -> bool:
    """Store and apply `event`; False when this notification was already stored (a redelivery), changing nothing."""
    with joined_transaction():
        message_pk = message_events.find_for_event(event.message_id, event.ses_message_id)
        stored = insert_row(
            FeedbackEvent,
            ignore_conflict=True,  # the notification id is stored already: a redelivery
            notification_id=notification_id,
            event_type=event.event_type,
            ses_message_id=event.ses_message_id,
            message=message_pk,
            detail="; ".join(outcome.reason for outcome in event.outcomes),
        )
        if not stored:
            return False
        if message_pk is not None:
            previous, moved = message_events.state_of(message_pk), False
            if event.message_state is not None:
                moved = message_events.settle_by_event(
                    message_pk, event.message_state, event.ses_message_id, detail=event.message_error
                )
            message_events.note_event(
                message_pk,
                event.event_type,
                hard_bounce=event.message_state is MessageState.BOUNCED,
                previous=previous if moved else "",
                bounce=event.bounce,
                detail=event.message_error,
            )
        changes = affected_contacts(event)
        # One lock order for every transaction: two events naming the same recipients in another order cannot
        # deadlock on PostgreSQL's row locks.
        for email in sorted(changes):
            _apply(changes[email], email, event.event_type, soft_bounce_limit)
    return True


def affected_contacts(event: SesEvent) -> dict[str, RecipientOutcome]:
    """Normalised address → outcome, for every contact an event concerns.

    SES reports a bounce against the DSN's final recipient, which is not the address we mailed when the mail was
    forwarded (ada@example.org → ada.lovelace@mailhost.example). The contact we mailed comes first: named by the
    contact-id EmailTag every message carries, else the one envelope recipient (`mail.destination`), else the
    reported address itself. The reported address is affected too, but only when it is a contact of ours.
    """
    tagged = find_contact(contact_id=event.contact_id) if event.contact_id else None
    changes: dict[str, RecipientOutcome] = {}
    for outcome in event.outcomes:
        if tagged is not None:
            mailed = tagged.email
        elif outcome.email in event.destination or len(event.destination) != 1:
            mailed = outcome.email
        else:
            mailed = event.destination[0]
        changes.setdefault(mailed, outcome)
        if outcome.email != mailed and find_contact(email=outcome.email) is not None:
            changes.setdefault(outcome.email, outcome)
    return changes


def _apply(outcome: RecipientOutcome, email: str, event_type: str, soft_bounce_limit: int) -> None:
    status, reason = outcome.status, outcome.reason
    if outcome.delivered:
        reset_soft_bounces(email)
    if outcome.soft_bounce:
        count = count_soft_bounce(email)
        if soft_bounce_limit and count >= soft_bounce_limit:
            status, reason = ContactStatus.BOUNCED, f"{count} soft bounces in a row; last: {reason}"
    if status is not None:
        # What SES's list refused is that list's status: never put back on it, and undone when it leaves it.
        source = StatusSource.SES_LIST if outcome.on_ses_list else StatusSource.of_ses_event(event_type)
        change_status(status, source=source, reason=reason, email=email)

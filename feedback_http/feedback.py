"""Stores one SES event and applies it to its recipients, in one transaction, at most once per notification."""

import logging

import peewee

from feedback_http.events import SesEvent
from gateway.contacts import change_status, get_or_create_contact
from gateway.models import Contact, ContactStatus, FeedbackEvent, SentMessage, database, insert_row, prepared

log = logging.getLogger(__name__)


def record_event(notification_id: str, event: SesEvent, *, soft_bounce_limit: int = 0) -> bool:
    """Store and apply `event`; False when this notification was already stored (a redelivery), changing nothing."""
    with database.atomic():
        sent = next(iter(SentMessage.raw(_sent_by_ses_id(), event.ses_message_id)), None)
        try:
            with database.atomic():  # a savepoint: a duplicate must not abort the whole transaction on PostgreSQL
                insert_row(
                    FeedbackEvent,
                    notification_id=notification_id,
                    event_type=event.event_type[:64],
                    ses_message_id=event.ses_message_id,
                    sent_message=sent,
                    detail="; ".join(outcome.reason for outcome in event.outcomes)[:2000],
                )
        except peewee.IntegrityError:
            return False
        # One lock order for every transaction: two events naming the same recipients in another order cannot
        # deadlock on PostgreSQL's row locks.
        for outcome in sorted(event.outcomes, key=lambda outcome: outcome.email):
            status, reason = outcome.status, outcome.reason
            if outcome.soft_bounce:
                count = _count_soft_bounce(outcome.email)
                if soft_bounce_limit and count >= soft_bounce_limit:
                    status, reason = ContactStatus.BOUNCED, f"{count} soft bounces; last: {reason}"
            if status is not None:
                change_status(status, source=f"ses:{event.event_type}", reason=reason, email=outcome.email)
    return True


@prepared
def _sent_by_ses_id():
    return SentMessage.select().where(SentMessage.ses_message_id == "")


def _count_soft_bounce(email: str) -> int:
    contact = get_or_create_contact(email)
    Contact.update(soft_bounces=Contact.soft_bounces + 1).where(Contact.id == contact.id).execute()
    return Contact.get_by_id(contact.id).soft_bounces

"""The admin service's messages: requests read into the domain's values, the domain's values written as responses."""

import base64
import datetime

from google.protobuf import timestamp_pb2

from gateway.admin.listing import ContactFilter, ContactRow
from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.core import errors
from gateway.core.ids import is_tenant
from gateway.core.states import ReputationLevel
from gateway.rpc.service import PROTO_STATUS
from gateway.sending import tenant_guard
from gateway.store import lanes
from gateway.store.models import Contact, ContactStatus

STATUS_OF = {value: status for status, value in PROTO_STATUS.items()}
PROTO_LEVEL = {
    ReputationLevel.NORMAL: pb.DISPATCH_LEVEL_FULL_PACE,
    ReputationLevel.SLOWED: pb.DISPATCH_LEVEL_SLOWED,
    ReputationLevel.PAUSED: pb.DISPATCH_LEVEL_PAUSED,
}
# Timestamps a filter may name: those Python's datetime holds (protobuf's own range is the same years, 1-9999).
EARLIEST, LATEST = timestamp_pb2.Timestamp(seconds=-62135596800), timestamp_pb2.Timestamp(seconds=253402300799)


def depth_message(depth: lanes.Depth, name: str | None = None) -> pb.QueueDepth:
    message = pb.QueueDepth(name=depth.name if name is None else name, queued=depth.queued, held=depth.held)
    if depth.oldest is not None:
        message.oldest.FromDatetime(depth.oldest)
    return message


def tenant_after(page_token: str) -> str:
    """The tenant a page token says the previous page ended with ("" without one); InvalidRequest otherwise."""
    if not page_token:
        return ""
    try:
        name = base64.urlsafe_b64decode(page_token.encode("ascii")).decode("ascii") if len(page_token) <= 100 else ""
    except (ValueError, UnicodeError):
        name = ""
    if not is_tenant(name):
        raise errors.InvalidRequest({"page_token": "not a page token of this listing; start without one"})
    return name


def tenant_message(tenant: tenant_guard.TenantReading) -> pb.Tenant:
    reading = tenant.reading
    message = pb.Tenant(
        name=tenant.name,
        level=PROTO_LEVEL[reading.level],
        reason=reading.reason,
        detail=reading.detail,
        sends=reading.sends,
        bounces=reading.bounces,
        complaints=reading.complaints,
        bounce_rate=reading.bounce_rate,
        complaint_rate=reading.complaint_rate,
        judged=reading.judged,
        queued=tenant.queued,
        held=tenant.held,
        resumed_by=reading.resumed_by,
        resume_reason=reading.resume_reason,
    )
    if tenant.ses is not None:
        message.ses_sending_status, message.ses_status_cause = tenant.ses.status, tenant.ses.cause
    moments = (
        ("changed_at", reading.changed_at),
        ("resumed_at", reading.resumed_at),
        ("ses_read_at", tenant.ses.read_at if tenant.ses else None),
    )
    for field, moment in moments:
        if moment is not None:
            getattr(message, field).FromDatetime(moment)
    return message


def contact_filter(message: pb.ContactFilter) -> ContactFilter:
    """The filter a request names; InvalidRequest naming the field that is wrong."""
    statuses = set()
    for value in message.statuses:
        if value not in STATUS_OF:
            raise errors.InvalidRequest({"filter.statuses": f"{value} is not a contact status"})
        statuses.add(STATUS_OF[value])
    times = {}
    for name in ("updated_after", "updated_before"):
        if message.HasField(name):
            times[name] = _moment(getattr(message, name), f"filter.{name}")
    return ContactFilter(frozenset(statuses), **times)


def _moment(timestamp: timestamp_pb2.Timestamp, field: str) -> datetime.datetime:
    valid = EARLIEST.seconds <= timestamp.seconds <= LATEST.seconds and 0 <= timestamp.nanos < 1_000_000_000
    if not valid:
        raise errors.InvalidRequest({field: "not a time between the years 1 and 9999"})
    return timestamp.ToDatetime()  # naive UTC, as the database stores times


def contact_message(contact: ContactRow | Contact) -> pb.Contact:
    """A contact (a listed row or a model) as the API shows it."""
    message = pb.Contact(
        email=contact.email,
        contact_id=contact.contact_id,
        status=PROTO_STATUS[ContactStatus(contact.status)],
        reason=contact.reason,
    )
    message.created_at.FromDatetime(contact.created_at)
    message.updated_at.FromDatetime(contact.updated_at)
    return message

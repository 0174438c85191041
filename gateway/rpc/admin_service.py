"""The gRPC servicer of MailGatewayAdminService: requests into the admin domain calls (admin/), results into responses.
Who may call it is decided by its authenticator (rpc/auth.py, AdminAuthenticator)."""

import base64
import datetime
import logging

import grpc
from google.protobuf import timestamp_pb2

from gateway.admin import listing, operations
from gateway.admin.listing import ContactFilter, ContactRow
from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.core import errors
from gateway.core.ids import is_tenant
from gateway.rpc.auth import AdminAuthenticator
from gateway.rpc.service import PROTO_STATUS, requested_contact
from gateway.rpc.status import rpc, rpc_stream
from gateway.sending import reputation, tenant_guard
from gateway.sending.tenant_guard import TenantLimits
from gateway.ses.suppression_list import SesSuppressionList
from gateway.store import contacts
from gateway.store.models import Contact, ContactStatus, ReputationLevel
from gateway.suppression.reactivate import SesRemoval, reactivate

log = logging.getLogger(__name__)

STATUS_OF = {value: status for status, value in PROTO_STATUS.items()}
PROTO_OUTCOME = {outcome: pb.ImportOutcome.Value(f"IMPORT_OUTCOME_{outcome.name}") for outcome in operations.Outcome}
PROTO_REMOVAL = {removal: pb.SesListRemoval.Value(f"SES_LIST_REMOVAL_{removal.name}") for removal in SesRemoval}
PROTO_LEVEL = {
    ReputationLevel.NORMAL: pb.DISPATCH_LEVEL_FULL_PACE,
    ReputationLevel.SLOWED: pb.DISPATCH_LEVEL_SLOWED,
    ReputationLevel.PAUSED: pb.DISPATCH_LEVEL_PAUSED,
}
# Timestamps a filter may name: those Python's datetime holds (protobuf's own range is the same years, 1-9999).
EARLIEST, LATEST = timestamp_pb2.Timestamp(seconds=-62135596800), timestamp_pb2.Timestamp(seconds=253402300799)


class MailGatewayAdminServicer(pb_grpc.MailGatewayAdminServiceServicer):
    """MailGatewayAdminService; each method's caller is an admin (the authenticator refuses anyone else). `ses_list`
    is SES's suppression list when the gateway sends through SES (None with the outbox transport, or accepting
    only); `limits` are the reputation guard's."""

    def __init__(
        self,
        authenticator: AdminAuthenticator,
        *,
        ses_list: SesSuppressionList | None,
        limits: reputation.Limits,
        tenant_limits: TenantLimits | None = None,
    ):
        self._authenticator = authenticator
        self._ses_list = ses_list
        self._limits = limits
        self._tenant_limits = tenant_limits or TenantLimits.of(limits, limits.min_sends)

    @rpc
    def ListContacts(
        self, request: pb.ListContactsRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.ListContactsResponse:
        size = listing.page_size(request.page_size)
        page = listing.contacts_page(contact_filter(request.filter), request.page_token, size)
        return pb.ListContactsResponse(
            contacts=[contact_message(row) for row in page.items], next_page_token=page.next_page_token
        )

    @rpc
    def GetContactHistory(
        self, request: pb.GetContactHistoryRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.GetContactHistoryResponse:
        size = listing.page_size(request.page_size)
        contact = contacts.find_contact(**requested_contact(request))
        if contact is None:
            raise errors.ContactNotFound("no contact has that address or id")
        page = listing.history_page(contact.id, request.page_token, size)
        response = pb.GetContactHistoryResponse(contact=contact_message(contact), next_page_token=page.next_page_token)
        for change in page.items:
            entry = response.changes.add(
                from_status=PROTO_STATUS[change.from_status],
                to_status=PROTO_STATUS[change.to_status],
                source=change.source,
                reason=change.reason,
                actor=change.actor,
            )
            entry.changed_at.FromDatetime(change.created_at)
        return response

    @rpc
    def UpdateContactStatus(
        self, request: pb.UpdateContactStatusRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.UpdateContactStatusResponse:
        status = STATUS_OF.get(request.status)
        if status is None:
            raise errors.InvalidRequest({"status": "ACTIVE (reactivate), UNSUBSCRIBED, BOUNCED or COMPLAINED"})
        contact = requested_contact(request)
        if status is ContactStatus.ACTIVE:
            done = reactivate(**contact, actor=caller, reason=request.reason, ses=self._ses_list)
            return pb.UpdateContactStatusResponse(
                contact=contact_message(contacts.find_contact(contact_id=done.contact_id)),
                previous_status=PROTO_STATUS[done.before],
                changed=done.changed,
                ses_list_removal=PROTO_REMOVAL[done.ses],
                ses_list_error=done.ses_error,
            )
        update = operations.suppress(status, reason=request.reason, actor=caller, **contact)
        return pb.UpdateContactStatusResponse(
            contact=contact_message(update.contact),
            previous_status=PROTO_STATUS[update.previous],
            changed=update.changed,
        )

    @rpc
    def ImportContacts(
        self, request: pb.ImportContactsRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.ImportContactsResponse:
        rows = [operations.ImportRow(row.email, STATUS_OF.get(row.status), row.reason) for row in request.rows]
        results = operations.import_rows(rows, actor=caller)
        response = pb.ImportContactsResponse()
        for index, result in enumerate(results):
            response.results.add(
                index=index,
                outcome=PROTO_OUTCOME[result.outcome],
                status=PROTO_STATUS[result.status] if result.status else 0,
                detail=result.detail,
            )
        outcomes = [result.outcome for result in results]
        response.created_count = outcomes.count(operations.Outcome.CREATED)
        response.changed_count = outcomes.count(operations.Outcome.CHANGED)
        response.unchanged_count = outcomes.count(operations.Outcome.UNCHANGED)
        response.refused_count = outcomes.count(operations.Outcome.REFUSED)
        return response

    @rpc_stream
    def ExportContacts(self, request: pb.ExportContactsRequest, context: grpc.ServicerContext, caller: str):
        exported = listing.export_contacts(contact_filter(request.filter))
        total = next(exported)
        log.info("export by %s: %d contacts", caller, total)
        first = True
        for rows in exported:
            yield pb.ExportContactsResponse(contacts=map(contact_message, rows), total_size=total if first else 0)
            first = False
        if first:
            yield pb.ExportContactsResponse(total_size=total)  # an empty export still says that it is empty

    @rpc
    def GetDispatchStatus(
        self, request: pb.GetDispatchStatusRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.GetDispatchStatusResponse:
        reading, _, _ = reputation.read(self._limits)
        limits = self._limits
        response = pb.GetDispatchStatusResponse(
            level=PROTO_LEVEL[reading.level],
            reason=reading.reason,
            detail=reading.detail,
            sends=reading.sends,
            bounce_rate=reading.bounce_rate,
            complaint_rate=reading.complaint_rate,
            judged=reading.judged,
            bounces=reading.bounces,
            complaints=reading.complaints,
            thresholds=pb.DispatchThresholds(
                slow_bounce_rate=limits.slow_bounce,
                slow_complaint_rate=limits.slow_complaint,
                pause_bounce_rate=limits.pause_bounce,
                pause_complaint_rate=limits.pause_complaint,
                slow_fraction=limits.slow_fraction,
                min_sends=limits.min_sends,
            ),
            resumed_by=reading.resumed_by,
            resume_reason=reading.resume_reason,
        )
        response.window_start.FromDatetime(reading.window_start)
        for field, moment in (("changed_at", reading.changed_at), ("resumed_at", reading.resumed_at)):
            if moment is not None:
                getattr(response, field).FromDatetime(moment)
        return response

    @rpc
    def ResumeDispatch(
        self, request: pb.ResumeDispatchRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.ResumeDispatchResponse:
        ended = reputation.resume(caller, request.reason)
        return pb.ResumeDispatchResponse(
            previous_level=PROTO_LEVEL[ended.level], previous_reason=ended.reason, previous_detail=ended.detail
        )

    @rpc
    def ListTenants(
        self, request: pb.ListTenantsRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.ListTenantsResponse:
        size = listing.page_size(request.page_size)
        after = tenant_after(request.page_token)
        page = tenant_guard.list_tenants(self._tenant_limits, after=after, size=size)
        response = pb.ListTenantsResponse(tenants=[tenant_message(tenant) for tenant in page])
        if len(page) == size:
            response.next_page_token = base64.urlsafe_b64encode(page[-1].name.encode()).decode()
        return response

    @rpc
    def ResumeTenant(
        self, request: pb.ResumeTenantRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.ResumeTenantResponse:
        if not is_tenant(request.tenant):
            raise errors.InvalidRequest({"tenant": "a tenant's name: 1-64 ASCII letters, digits, '_' or '-'"})
        ended = tenant_guard.resume_tenant(request.tenant, caller, request.reason)
        return pb.ResumeTenantResponse(
            previous_level=PROTO_LEVEL[ended.level], previous_reason=ended.reason, previous_detail=ended.detail
        )


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
    for field, moment in (("changed_at", reading.changed_at), ("resumed_at", reading.resumed_at)):
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

"""The gRPC servicer of MailGatewayAdminService: requests into the admin domain calls (admin/), results into responses.
Who may call it is decided by its authenticator (rpc/auth.py, AdminAuthenticator)."""

import base64
import logging

import grpc

from gateway.admin import listing, operations
from gateway.api.mailgateway.v1 import admin_pb2 as pb
from gateway.api.mailgateway.v1 import admin_pb2_grpc as pb_grpc
from gateway.core import errors
from gateway.core.ids import is_tenant
from gateway.core.states import Priority
from gateway.rpc.admin_messages import (
    PROTO_LEVEL,
    STATUS_OF,
    contact_filter,
    contact_message,
    depth_message,
    tenant_after,
    tenant_message,
)
from gateway.rpc.auth import AdminAuthenticator
from gateway.rpc.service import PROTO_STATUS, requested_contact
from gateway.rpc.status import rpc, rpc_stream
from gateway.sending import reputation, tenant_guard
from gateway.sending.tenant_guard import TenantLimits
from gateway.ses.suppression_list import SesSuppressionList
from gateway.store import contacts, lanes
from gateway.store.models import ContactStatus
from gateway.suppression.reactivate import SesRemoval, reactivate

log = logging.getLogger(__name__)

PROTO_OUTCOME = {outcome: pb.ImportOutcome.Value(f"IMPORT_OUTCOME_{outcome.name}") for outcome in operations.Outcome}
PROTO_REMOVAL = {removal: pb.SesListRemoval.Value(f"SES_LIST_REMOVAL_{removal.name}") for removal in SesRemoval}

DEFAULT_TENANT_COUNT, MAX_TENANT_COUNT = 10, 100  # GetQueueStatus's busiest tenants


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

    @rpc
    def GetQueueStatus(
        self, request: pb.GetQueueStatusRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.GetQueueStatusResponse:
        if not 0 <= request.tenant_count <= MAX_TENANT_COUNT:
            raise errors.InvalidRequest({"tenant_count": f"0-{MAX_TENANT_COUNT} (0: {DEFAULT_TENANT_COUNT})"})
        by_priority = {depth.name: depth for depth in lanes.depth_by("priority")}
        priorities = [by_priority.get(int(priority), lanes.Depth(int(priority), 0, 0, None)) for priority in Priority]
        return pb.GetQueueStatusResponse(
            priorities=[depth_message(depth, Priority(depth.name).label) for depth in priorities],
            callers=[depth_message(depth) for depth in lanes.depth_by("caller")],
            tenants=[
                depth_message(depth)
                for depth in lanes.depth_by("tenant", limit=request.tenant_count or DEFAULT_TENANT_COUNT)
                if depth.name
            ],
        )

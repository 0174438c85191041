"""The gRPC servicer: translates requests into domain calls and domain errors into rich statuses (AIP-193)."""

import functools
import logging
import time

import grpc
import peewee
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway import errors
from gateway.addresses import InvalidAddress, email_key
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.rpc.auth import Authenticator
from gateway.sending.mailer import Mailer
from gateway.sending.outgoing import outgoing_email
from gateway.store import contacts
from gateway.store.models import ContactStatus, database, drop_idle_connections

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mailgateway"
DEADLINE_MARGIN_SECONDS = 0.2

STATUS_CODES = [  # most specific class first
    (errors.InvalidRequest, code_pb2.INVALID_ARGUMENT),
    (errors.RecipientSuppressed, code_pb2.FAILED_PRECONDITION),
    (errors.SesRejected, code_pb2.FAILED_PRECONDITION),
    (errors.SendOutcomeUnknown, code_pb2.FAILED_PRECONDITION),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.ContactNotFound, code_pb2.NOT_FOUND),
    (errors.SesThrottled, code_pb2.RESOURCE_EXHAUSTED),
    (errors.RequestInProgress, code_pb2.ABORTED),
    (errors.SesUnavailable, code_pb2.UNAVAILABLE),
    (errors.DatabaseUnavailable, code_pb2.UNAVAILABLE),
    (errors.GatewayError, code_pb2.INTERNAL),
]
PROTO_STATUS = {status: pb.ContactStatus.Value(f"CONTACT_STATUS_{status.name}") for status in ContactStatus}


def rich_status(error: errors.GatewayError) -> grpc.Status:
    """One status with exactly one ErrorInfo, plus BadRequest or RetryInfo where they apply."""
    code = next(code for cls, code in STATUS_CODES if isinstance(error, cls))
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    details = [info]
    if isinstance(error, errors.InvalidRequest):
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                    for field, description in error.violations.items()
                ]
            )
        )
    if isinstance(error, errors.SesThrottled):
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=round(error.retry_after))))
    status = status_pb2.Status(code=code, message=error.message)
    for detail in details:
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)


def rpc(method):
    """Authenticates the caller, then runs the method with it; every failure leaves as a typed status: domain
    errors as mapped, a dead database as UNAVAILABLE, a bug as INTERNAL — never UNKNOWN, never a traceback."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            caller = self._authenticator.caller(context)
            with database.connection_context():
                return method(self, request, context, caller)
        except errors.GatewayError as exc:
            error = exc
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            log.warning("database unavailable in %s: %s", method.__name__, type(exc).__name__)
            drop_idle_connections()
            error = errors.DatabaseUnavailable("the database is unavailable; retry later")
        except Exception:
            log.exception("unexpected failure in %s", method.__name__)
            error = errors.GatewayError("internal error")
        context.abort_with_status(rich_status(error))

    return wrapper


class MailGatewayServicer(pb_grpc.MailGatewayServiceServicer):
    """MailGatewayService over a Mailer; holds no business logic."""

    def __init__(self, mailer: Mailer, default_from: str, authenticator: Authenticator):
        self._mailer = mailer
        self._default_from = default_from
        self._authenticator = authenticator

    @rpc
    def SendEmail(
        self, request: pb.SendEmailRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.SendEmailResponse:
        email = outgoing_email(
            to=request.to,
            subject=request.subject,
            text_body=request.text_body,
            html_body=request.html_body,
            from_address=request.from_address,
            reply_to=request.reply_to,
            tags=dict(request.tags),
            default_from=self._default_from,
            request_id=request.request_id,
        )
        remaining = context.time_remaining()
        # Leave a little of the caller's deadline for the answer to travel back.
        deadline = None if remaining is None else time.monotonic() + remaining - DEADLINE_MARGIN_SECONDS
        sent = self._mailer.send(email, request_id=request.request_id, caller=caller, deadline=deadline)
        return pb.SendEmailResponse(message_id=sent.message_id, contact_id=sent.contact_id)

    @rpc
    def GetContactStatus(
        self, request: pb.GetContactStatusRequest, context: grpc.ServicerContext, caller: str
    ) -> pb.GetContactStatusResponse:
        which = request.WhichOneof("contact")
        if which == "email":
            try:
                contact = contacts.find_contact(email=email_key(request.email))
            except InvalidAddress as exc:
                raise errors.InvalidRequest({"email": str(exc)}) from None
        elif which == "contact_id":
            if not contacts.is_contact_id(request.contact_id):
                raise errors.InvalidRequest({"contact_id": "not a contact id (22 URL-safe characters)"})
            contact = contacts.find_contact(contact_id=request.contact_id)
        else:
            raise errors.InvalidRequest({"contact": "set either email or contact_id"})
        if contact is None:
            raise errors.ContactNotFound("no contact has that address or id")
        response = pb.GetContactStatusResponse(
            contact_id=contact.contact_id,
            email=contact.email,
            status=PROTO_STATUS[contact.status],
            reason=contact.reason,
        )
        response.updated_at.FromDatetime(contact.updated_at)
        return response

"""Rich gRPC errors (AIP-193): every failure of an RPC leaves as one typed status with exactly one ErrorInfo."""

import functools
import logging

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway import errors
from gateway.store.database import UNAVAILABLE, database, drop_idle_connections

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mailgateway"

STATUS_CODES = [  # most specific class first
    (errors.InvalidRequest, code_pb2.INVALID_ARGUMENT),
    (errors.RecipientSuppressed, code_pb2.FAILED_PRECONDITION),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.ContactNotFound, code_pb2.NOT_FOUND),
    (errors.MessageNotFound, code_pb2.NOT_FOUND),
    (errors.DatabaseUnavailable, code_pb2.UNAVAILABLE),
    (errors.GatewayError, code_pb2.INTERNAL),
]


def rich_status(error: errors.GatewayError) -> grpc.Status:
    """One status with exactly one ErrorInfo, plus BadRequest or RetryInfo where they apply."""
    code = next(code for cls, code in STATUS_CODES if isinstance(error, cls))
    details = [error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)]
    if isinstance(error, errors.InvalidRequest):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in error.violations.items()
        ]
        details.append(error_details_pb2.BadRequest(field_violations=violations))
    if error.retry_after is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=round(error.retry_after))))
    status = status_pb2.Status(code=code, message=error.message)
    for detail in details:
        status.details.add().Pack(detail)
    return rpc_status.to_status(status)


def rpc(method):
    """Authenticates the caller, then runs the method with it in a unit of database work; every failure leaves as a
    typed status: domain errors as mapped, a dead database as UNAVAILABLE, a bug as INTERNAL — never UNKNOWN, never a
    traceback. The servicer provides `_authenticator`."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            caller = self._authenticator.caller(context)
            with database.connection_context():
                return method(self, request, context, caller)
        except errors.GatewayError as exc:
            error = exc
        except UNAVAILABLE as exc:
            log.warning("database unavailable in %s: %s", method.__name__, type(exc).__name__)
            drop_idle_connections()
            error = errors.DatabaseUnavailable("the database is unavailable; retry later")
        except Exception:
            log.exception("unexpected failure in %s", method.__name__)
            error = errors.GatewayError("internal error")
        context.abort_with_status(rich_status(error))

    return wrapper

"""Rich gRPC errors (AIP-193): every failure of an RPC leaves as one typed status with exactly one ErrorInfo."""

import contextlib
import functools
import logging

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway.core import errors
from gateway.core.failures import RPC_CODES
from gateway.store.database import UNAVAILABLE, unit_of_work

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mailgateway"


def rich_status(error: errors.GatewayError) -> grpc.Status:
    """One status with exactly one ErrorInfo, plus BadRequest, QuotaFailure or RetryInfo where they apply."""
    violations = tuple(error.violations.items()) if isinstance(error, errors.InvalidRequest) else None
    quota = error.quota if isinstance(error, errors.OverQuota) else None
    retry_after = None if error.retry_after is None else round(error.retry_after, 3)
    metadata = tuple(sorted(error.metadata.items()))
    return _status(error.reason, error.message, metadata, violations, quota, retry_after)


@functools.lru_cache(maxsize=4096)
def _status(
    reason: str,
    message: str,
    metadata: tuple,
    violations: tuple | None,
    quota: tuple[str, str] | None,
    retry_after: float | None,
) -> grpc.Status:
    """Built once per distinct error: a recipient refused again and again gets the same status (all parts are
    bounded strings), and building one costs ~20 us."""
    code = getattr(code_pb2, RPC_CODES[reason])  # the one table of reasons and their codes (core/failures.py)
    details = [error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata))]
    if violations is not None:
        field_violations = [
            error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            for field, description in violations
        ]
        details.append(error_details_pb2.BadRequest(field_violations=field_violations))
    if quota is not None:
        subject, description = quota
        violation = error_details_pb2.QuotaFailure.Violation(subject=subject, description=description)
        details.append(error_details_pb2.QuotaFailure(violations=[violation]))
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, round(retry_after * 1000)))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(code=code, message=message)
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
            with unit_of_work():
                return method(self, request, context, caller)
        except Exception as exc:
            error = _as_error(exc, method.__name__)
        context.abort_with_status(rich_status(error))

    return wrapper


def rpc_stream(method, *, unit=unit_of_work):
    """rpc() for a method that streams its response (a generator): the unit of work lasts until the last message is
    sent, and a failure midway ends the stream with a typed status as rpc() does."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            caller = self._authenticator.caller(context)
            with unit():
                yield from method(self, request, context, caller)
            return
        except Exception as exc:
            error = _as_error(exc, method.__name__)
        context.abort_with_status(rich_status(error))

    return wrapper


def rpc_watch(method):
    """rpc_stream() for a stream that may stay open for hours (WatchEvents): no unit of database work around it, the
    method opens one for each read, so a waiting stream holds no database connection beyond its thread's own."""
    return rpc_stream(method, unit=contextlib.nullcontext)


def _as_error(exc: Exception, method_name: str) -> errors.GatewayError:
    """The domain error a failure of an RPC is answered with."""
    if isinstance(exc, errors.GatewayError):
        return exc
    if isinstance(exc, UNAVAILABLE):
        log.warning("database unavailable in %s: %s", method_name, type(exc).__name__)
        return errors.DatabaseUnavailable("the database is unavailable; retry later")
    log.exception("unexpected failure in %s", method_name)
    return errors.GatewayError("internal error")

"""Domain errors of the gateway; the servicer maps each to one gRPC status with an ErrorInfo reason. Also what stops a
process before it can work (CannotUseDatabase), which core/startup.py turns into one line."""

from gateway.core import failures
from gateway.core.config import masked_url


class GatewayError(Exception):
    """Base of the errors a caller is told about; `reason` is the ErrorInfo reason (AIP-193)."""

    reason = failures.INTERNAL
    retry_after: float | None = None  # seconds, for a RetryInfo detail: the call may be repeated after that

    def __init__(self, message: str, **metadata: str):
        super().__init__(message)
        self.message = message
        self.metadata = metadata


class InvalidRequest(GatewayError):
    """One or more request fields are invalid; `violations` maps field name to description."""

    reason = failures.INVALID_REQUEST

    def __init__(self, violations: dict[str, str]):
        super().__init__("invalid request: " + "; ".join(f"{f}: {d}" for f, d in violations.items()))
        self.violations = violations


class RequestIdReused(InvalidRequest):
    """A request_id was sent again with a different message."""

    reason = failures.REQUEST_ID_REUSED

    def __init__(self):
        super().__init__({"request_id": "already used for a different message; use a new request_id"})


class RecipientSuppressed(GatewayError):
    """The recipient unsubscribed, bounced or complained: nothing was sent."""

    reason = failures.RECIPIENT_SUPPRESSED


class ContactNotFound(GatewayError):
    """No contact has that address or id."""

    reason = failures.CONTACT_NOT_FOUND


class MessageNotFound(GatewayError):
    """The caller sent no message with that id."""

    reason = failures.MESSAGE_NOT_FOUND


class MessageNotCancellable(GatewayError):
    """CancelMessage on a message a dispatcher holds or that is settled: metadata `state` says which."""

    reason = failures.MESSAGE_NOT_CANCELLABLE


class NothingToResume(GatewayError):
    """Dispatch is neither paused nor slowed by the reputation guard: a resume changes nothing."""

    reason = failures.DISPATCH_NOT_PAUSED


class TenantNotHeld(NothingToResume):
    """The tenant is neither paused nor slowed: a resume changes nothing."""

    reason = failures.TENANT_NOT_PAUSED


class TenantNotFound(GatewayError):
    """No message was ever sent for that tenant."""

    reason = failures.TENANT_NOT_FOUND


class PriorityNotAllowed(GatewayError):
    """The caller asked for a priority above its policy's max_priority: nothing was queued."""

    reason = failures.PRIORITY_NOT_ALLOWED


class OverQuota(GatewayError):
    """A limit on queued or submitted messages: nothing was queued. `quota` names what was exceeded and how (a
    QuotaFailure violation: subject, description); `retry_after` when the same call may succeed."""

    def __init__(self, message: str, *, subject: str, description: str, retry_after: float, **metadata: str):
        super().__init__(message, **metadata)
        self.quota = (subject, description)
        self.retry_after = retry_after


class CallerQueueFull(OverQuota):
    reason = failures.CALLER_QUEUE_FULL


class CallerRateLimited(OverQuota):
    reason = failures.CALLER_RATE_LIMITED


class QueueFull(OverQuota):
    """The gateway holds MAILGW_MAX_QUEUED_MESSAGES queued messages: a guard for the disk, whoever the caller."""

    reason = failures.QUEUE_FULL


class Unauthenticated(GatewayError):
    """The call carries no valid credentials."""

    reason = failures.UNAUTHENTICATED


class DatabaseUnavailable(GatewayError):
    """The database did not answer; the same call may be repeated (AIP-194)."""

    reason = failures.DATABASE_UNAVAILABLE
    retry_after = 1.0


class AdminCallerRequired(GatewayError):
    """The caller is not one of the admin callers (MAILGW_ADMIN_CALLERS)."""

    reason = failures.ADMIN_CALLER_REQUIRED


class UndoRefused(GatewayError):
    """The recipient's undo of an unsubscribe cannot be done; `reason` says why (one of the constants below)."""

    NOT_UNSUBSCRIBED = "NOT_UNSUBSCRIBED"  # bounced or complained since, or never unsubscribed
    NOT_OFFERED = "UNDO_NOT_OFFERED"  # no secret, a wrong one, one used already, or an unsubscribe that minted none
    EXPIRED = "UNDO_EXPIRED"  # the window (MAILGW_UNSUBSCRIBE_UNDO_SECONDS) has passed
    SUPERSEDED = "UNDO_SUPERSEDED"  # another change (an operator's hold, a new unsubscribe) came after it

    def __init__(self, reason: str):
        super().__init__(f"the unsubscribe cannot be undone here: {reason}")
        self.reason = reason


class CannotUseDatabase(Exception):
    """The database MAILGW_DATABASE_URL names cannot be used: not there, not answering, or refusing us. The message is
    the one line a process or command prints instead of a traceback: the setting (its password masked), the problem."""

    def __init__(self, url: str, problem: str):
        password = _password(url)
        if password:  # a driver's message never quotes it today; should one, it is masked all the same
            problem = problem.replace(password, "***")
        super().__init__(f"MAILGW_DATABASE_URL={masked_url(url)}: {problem}")


def _password(url: str) -> str:
    from playhouse import db_url  # here: every mailgw command imports this module (startup), and most need no peewee

    try:
        return str(db_url.parse(url).get("password") or "")
    except Exception:  # a URL the driver cannot read has nothing it could quote
        return ""


class CursorExpired(GatewayError):
    """WatchEvents: the records after the cursor were purged; `oldestCursor` is where a complete watch starts."""

    reason = failures.CURSOR_EXPIRED


class TooManyWatchers(GatewayError):
    """WatchEvents: the caller has MAILGW_MAX_WATCHERS_PER_CALLER streams open on this gateway."""

    reason = failures.TOO_MANY_WATCHERS

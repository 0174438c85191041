"""Domain errors of the gateway; the servicer maps each to one gRPC status with an ErrorInfo reason."""


class GatewayError(Exception):
    """Base of the errors a caller is told about; `reason` is the ErrorInfo reason (AIP-193)."""

    reason = "INTERNAL"

    def __init__(self, message: str, **metadata: str):
        super().__init__(message)
        self.message = message
        self.metadata = metadata


class InvalidRequest(GatewayError):
    """One or more request fields are invalid; `violations` maps field name to description."""

    reason = "INVALID_REQUEST"

    def __init__(self, violations: dict[str, str]):
        super().__init__("invalid request: " + "; ".join(f"{f}: {d}" for f, d in violations.items()))
        self.violations = violations


class RequestIdReused(InvalidRequest):
    """A request_id was sent again with a different message."""

    reason = "REQUEST_ID_REUSED"

    def __init__(self):
        super().__init__({"request_id": "already used for a different message; use a new request_id"})


class RecipientSuppressed(GatewayError):
    """The recipient unsubscribed, bounced or complained: nothing was sent."""

    reason = "RECIPIENT_SUPPRESSED"


class ContactNotFound(GatewayError):
    """No contact has that address or id."""

    reason = "CONTACT_NOT_FOUND"


class Unauthenticated(GatewayError):
    """The call carries no valid credentials."""

    reason = "UNAUTHENTICATED"


class SendOutcomeUnknown(GatewayError):
    """An earlier call with this request_id was interrupted while SES had the message: it may have been sent."""

    reason = "SEND_OUTCOME_UNKNOWN"


class RequestInProgress(GatewayError):
    """Another call with the same request_id is still sending; retry later for its response."""

    reason = "REQUEST_IN_PROGRESS"


class SesThrottled(GatewayError):
    """SES refused for rate or quota; `retry_after` is in seconds."""

    reason = "SES_THROTTLED"

    def __init__(self, message: str, retry_after: float, **metadata: str):
        super().__init__(message, **metadata)
        self.retry_after = retry_after


class SesRejected(GatewayError):
    """SES refused this message or this sender; retrying the same call will not help."""

    def __init__(self, reason: str, message: str, **metadata: str):
        super().__init__(message, **metadata)
        self.reason = reason


class SesUnavailable(GatewayError):
    """SES could not be reached or failed after retries; `maybe_sent` when SES may have taken the message."""

    reason = "SES_UNAVAILABLE"

    def __init__(self, message: str, *, maybe_sent: bool = False, **metadata: str):
        super().__init__(message, **metadata)
        self.maybe_sent = maybe_sent


class DatabaseUnavailable(GatewayError):
    """The database did not answer."""

    reason = "DATABASE_UNAVAILABLE"

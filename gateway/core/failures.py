"""Every way a send can fail, classified once: whether a retry is safe, and what the message and the queue do.

The dispatcher, GetMessage's last_error and the README's table of failures all read this module; nothing else
decides whether sending again is safe.
"""

import enum
import random
from dataclasses import dataclass

import urllib3.exceptions
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from gateway.core.ids import storable_code
from gateway.core.logs import error_text


class Outcome(enum.Enum):
    """What a failure means for the message and for the queue."""

    RETRY = "not sent, retry"  # nothing left the machine, or SES refused for now: back off, then again
    REFUSED = "refused for good"  # this message will never be accepted: FAILED
    PAUSE = "nobody can send"  # the account or its setup refuses every message: dispatch pauses, the queue waits
    MAYBE_SENT = "maybe sent"  # the request left and no answer came: UNKNOWN until an event or a resend settles it
    # SES refused a send through a tenant (MAILGW_SES_TENANTS) for that tenant's sake: the message backs off as for
    # RETRY, and the tenant's mail waits until its status in SES was read again (sending/ses_tenants.py); the account's
    # other mail goes on
    TENANT_HELD = "its tenant cannot send"


@dataclass(frozen=True)
class Failure:
    """One classified failure: its outcome, an ErrorInfo-style reason, SES's error code when SES answered."""

    outcome: Outcome
    reason: str
    ses_error_code: str = ""
    detail: str = ""

    def __str__(self) -> str:
        """For logs: "SES_UNAVAILABLE (ServiceUnavailable): HTTP 502 (a markup body, not shown)"."""
        code = f" ({self.ses_error_code})" if self.ses_error_code else ""
        return f"{self.reason}{code}" + (f": {self.detail}" if self.detail else "")


class SendFailed(Exception):
    """A transport could not hand the message over; `failure` says how, and whether a retry is safe."""

    def __init__(self, failure: Failure):
        super().__init__(str(failure))
        self.failure = failure


RETRY, REFUSED, PAUSE, MAYBE_SENT = Outcome.RETRY, Outcome.REFUSED, Outcome.PAUSE, Outcome.MAYBE_SENT
TENANT_HELD = Outcome.TENANT_HELD

# SES error code -> (outcome, reason). SES v2 names throttling TooManyRequestsException (HTTP 429); the other
# spellings are what v1 and the SDKs' retry tables use for the same thing.
SES_ERRORS: dict[str, tuple[Outcome, str]] = {
    "TooManyRequestsException": (RETRY, "SES_THROTTLED"),
    "Throttling": (RETRY, "SES_THROTTLED"),
    "ThrottlingException": (RETRY, "SES_THROTTLED"),
    "LimitExceededException": (RETRY, "SES_THROTTLED"),
    "MessageRejected": (REFUSED, "SES_MESSAGE_REJECTED"),
    "MailFromDomainNotVerifiedException": (REFUSED, "SES_MAIL_FROM_DOMAIN_NOT_VERIFIED"),
    "BadRequestException": (REFUSED, "SES_BAD_REQUEST"),
    "SendingPausedException": (PAUSE, "SES_SENDING_PAUSED"),
    "AccountSuspendedException": (PAUSE, "SES_ACCOUNT_SUSPENDED"),
    "NotFoundException": (PAUSE, "SES_CONFIGURATION_SET_NOT_FOUND"),
    # The credentials or the IAM policy refuse every send until someone fixes them.
    "AccessDeniedException": (PAUSE, "SES_ACCESS_DENIED"),
    "UnrecognizedClientException": (PAUSE, "SES_ACCESS_DENIED"),
    "InvalidClientTokenId": (PAUSE, "SES_ACCESS_DENIED"),
    "SignatureDoesNotMatch": (PAUSE, "SES_ACCESS_DENIED"),
    "ExpiredTokenException": (RETRY, "SES_CREDENTIALS_EXPIRED"),  # refreshed by the credential chain
    # ListSuppressedDestinations: the NextToken of a listing expired; the listing starts again.
    "InvalidNextTokenException": (RETRY, "SES_INVALID_NEXT_TOKEN"),
}
# On a send that named a tenant, these are the tenant's (SES documents no error of its own for a tenant that may not
# send; these are SendEmail's documented ones that fit): not the account's, so dispatch does not pause for them.
SES_TENANT_ERRORS: dict[str, str] = {
    "SendingPausedException": "SES_TENANT_SENDING_PAUSED",
    "NotFoundException": "SES_TENANT_NOT_FOUND",
}
# Raised before a byte of the request left the machine, or when no connection was made: nothing was sent. botocore's
# (GetAccount, and the signer's credentials) and urllib3's (the SendEmail request, ses/transport.py).
NOT_SENT_ERRORS: dict[type[Exception], str] = {
    EndpointConnectionError: "SES_UNREACHABLE",  # connection refused, DNS failure
    ConnectTimeoutError: "SES_UNREACHABLE",
    urllib3.exceptions.ConnectTimeoutError: "SES_UNREACHABLE",  # with NewConnectionError, NameResolutionError
    urllib3.exceptions.SSLError: "SES_UNREACHABLE",  # the TLS handshake comes before the request
    urllib3.exceptions.ProxyError: "SES_UNREACHABLE",
    NoCredentialsError: "SES_NO_CREDENTIALS",
    PartialCredentialsError: "SES_NO_CREDENTIALS",
    CredentialRetrievalError: "SES_NO_CREDENTIALS",
    ParamValidationError: "SES_REQUEST_NOT_BUILT",
}
# The request left and no answer came: SES may have the message.
NO_ANSWER_ERRORS = (ReadTimeoutError, urllib3.exceptions.ReadTimeoutError)
# The SES texts that tell the two throttles apart (developer guide, "Errors related to sending quotas"); the daily one
# pauses dispatch, as a counted quota that is spent does (sending/pause.py).
DAILY_QUOTA_TEXT = "daily message quota"
SES_DAILY_QUOTA_EXCEEDED = "SES_DAILY_QUOTA_EXCEEDED"


def classify_ses_error(exc: Exception) -> Failure:
    """The failure for anything a call to SES raised instead of answering (or a boto3 ClientError)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        http_status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return classify_ses_answer(http_status, str(error.get("Code", "Unknown")), str(error.get("Message", "")))
    for kind, reason in NOT_SENT_ERRORS.items():
        if isinstance(exc, kind):
            return Failure(RETRY, reason, detail=type(exc).__name__)
    if isinstance(exc, NO_ANSWER_ERRORS):
        return Failure(MAYBE_SENT, "SES_NO_ANSWER", detail="SES did not answer in time")
    # Anything else (a connection reset mid-request, a response we cannot read): the request may have arrived.
    return Failure(MAYBE_SENT, "SES_NO_ANSWER", detail=type(exc).__name__)


def classify_ses_answer(http_status: int, code: str, text: str, *, tenant: bool = False) -> Failure:
    """The failure for an error SES answered: its HTTP status, error code and message (both bounded here, so whatever
    SES answers can be stored); `tenant`: the send named a tenant (SES_TENANT_ERRORS)."""
    code = storable_code(code)
    if tenant and code in SES_TENANT_ERRORS:
        return Failure(TENANT_HELD, SES_TENANT_ERRORS[code], ses_error_code=code, detail=error_text(http_status, text))
    outcome, reason = SES_ERRORS.get(code, (None, ""))
    if reason == "SES_THROTTLED" and DAILY_QUOTA_TEXT in text.lower():
        outcome, reason = PAUSE, SES_DAILY_QUOTA_EXCEEDED
    elif code == "MessageRejected" and "not verified" in text.lower():
        reason = "SES_IDENTITY_NOT_VERIFIED"
    elif outcome is None:
        outcome, reason = (RETRY, "SES_UNAVAILABLE") if http_status >= 500 else (REFUSED, "SES_ERROR")
    return Failure(outcome, reason, ses_error_code=code, detail=error_text(http_status, text))


def suppression_call_retried(failure: Failure) -> bool:
    """Whether a call on SES's suppression list (gateway/suppression/) is made again later. Putting or deleting an
    address twice does no harm, so "maybe sent" is retried as "not sent, retry" and "nobody can send" are; only
    "refused for good" (a BadRequestException: SES will not take that address) is not."""
    return failure.outcome is not REFUSED


RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 600.0  # SES's advice after a throttle: wait up to 10 minutes


def retry_delay(attempt: int, base: float = RETRY_BASE_SECONDS) -> float:
    """When to try a "not sent, retry" message again, after its attempt n: exponential backoff with jitter,
    between half and all of min(base x 2^(n-1), 10 min); base 1 s (tests inject less: core/loops.Timings)."""
    ceiling = min(RETRY_CAP_SECONDS, base * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


# --- the gateway's own reasons, beside SES's ---------------------------------------------------------------------

# Failures of a message the gateway decides itself (GetMessage's last_error.reason).
RECIPIENT_SUPPRESSED = "RECIPIENT_SUPPRESSED"  # the guard refused it at dispatch
MESSAGE_EXPIRED = "MESSAGE_EXPIRED"
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"  # also an RPC's answer (below)
INTERNAL = "INTERNAL"  # a bug: logged with its traceback
# The database refused to store an attempt's outcome as it was (a value it cannot hold): the message keeps the state
# that outcome led to, with this reason instead of SES's details, so it is neither lost nor sent again.
OUTCOME_NOT_STORED = "OUTCOME_NOT_STORED"
# Why dispatch pauses, beside SES's PAUSE reasons above: the reputation guard's rates.
REPUTATION_BOUNCE_RATE = "REPUTATION_BOUNCE_RATE"
REPUTATION_COMPLAINT_RATE = "REPUTATION_COMPLAINT_RATE"

LEASE_EXPIRED = Failure(MAYBE_SENT, "DISPATCH_INTERRUPTED", detail="the dispatcher holding it stopped mid-send")
NOT_DISPATCHED = Failure(RETRY, DATABASE_UNAVAILABLE)  # the guard could not look: nothing was sent
DISPATCH_FAILED = Failure(RETRY, INTERNAL, detail="the gateway failed to dispatch it")  # a bug before the send
# A bug in the transport: the request may have left.
TRANSPORT_FAILED = Failure(MAYBE_SENT, INTERNAL, detail="the transport failed unexpectedly")
EXPIRED = Failure(RETRY, MESSAGE_EXPIRED)


def recipient_suppressed(status: str) -> Failure:
    """The guard's refusal at dispatch: the recipient unsubscribed, bounced or complained since acceptance."""
    return Failure(REFUSED, RECIPIENT_SUPPRESSED, detail=f"the recipient is {status}")


# Every ErrorInfo reason an RPC answers with, and the gRPC status code it comes with (the README's "Errors" table);
# rpc/status.py answers by this table, core/errors.py names the reasons.
INVALID_REQUEST = "INVALID_REQUEST"
REQUEST_ID_REUSED = "REQUEST_ID_REUSED"
CONTACT_NOT_FOUND = "CONTACT_NOT_FOUND"
MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
DISPATCH_NOT_PAUSED = "DISPATCH_NOT_PAUSED"
UNAUTHENTICATED = "UNAUTHENTICATED"
ADMIN_CALLER_REQUIRED = "ADMIN_CALLER_REQUIRED"
# The caller policy (core/policy.py) and the gateway's own cap on queued messages: nothing was queued.
PRIORITY_NOT_ALLOWED = "PRIORITY_NOT_ALLOWED"
CALLER_QUEUE_FULL = "CALLER_QUEUE_FULL"
CALLER_RATE_LIMITED = "CALLER_RATE_LIMITED"
QUEUE_FULL = "QUEUE_FULL"
TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
TENANT_NOT_PAUSED = "TENANT_NOT_PAUSED"
CURSOR_EXPIRED = "CURSOR_EXPIRED"  # WatchEvents
TOO_MANY_WATCHERS = "TOO_MANY_WATCHERS"
MESSAGE_NOT_CANCELLABLE = "MESSAGE_NOT_CANCELLABLE"  # CancelMessage: a dispatcher holds it, or it is settled
RPC_CODES = {  # reason -> the name of its google.rpc.Code
    INVALID_REQUEST: "INVALID_ARGUMENT",
    REQUEST_ID_REUSED: "INVALID_ARGUMENT",
    RECIPIENT_SUPPRESSED: "FAILED_PRECONDITION",
    DISPATCH_NOT_PAUSED: "FAILED_PRECONDITION",
    CONTACT_NOT_FOUND: "NOT_FOUND",
    MESSAGE_NOT_FOUND: "NOT_FOUND",
    UNAUTHENTICATED: "UNAUTHENTICATED",
    ADMIN_CALLER_REQUIRED: "PERMISSION_DENIED",
    PRIORITY_NOT_ALLOWED: "PERMISSION_DENIED",
    CALLER_QUEUE_FULL: "RESOURCE_EXHAUSTED",
    CALLER_RATE_LIMITED: "RESOURCE_EXHAUSTED",
    QUEUE_FULL: "RESOURCE_EXHAUSTED",
    TENANT_NOT_FOUND: "NOT_FOUND",
    TENANT_NOT_PAUSED: "FAILED_PRECONDITION",
    CURSOR_EXPIRED: "OUT_OF_RANGE",
    TOO_MANY_WATCHERS: "RESOURCE_EXHAUSTED",
    MESSAGE_NOT_CANCELLABLE: "FAILED_PRECONDITION",
    DATABASE_UNAVAILABLE: "UNAVAILABLE",
    INTERNAL: "INTERNAL",
}

"""The Amazon SES (sesv2) transport: one SendEmail request per attempt, and the account's quotas for pacing.

SendEmail is the one call on the dispatch path, so it is made without botocore's request pipeline (parameter
validation, the event hooks, the response parser): botocore's credential chain, endpoint resolution and SigV4
signer build and sign it, urllib3 sends it. Measured here, a boto3 send_email costs 1.4-1.9 ms of CPU and this
0.8-0.9 ms, which is what lets the dispatcher keep up with a bare boto3 loop (bench line 3). GetAccount, a few
calls an hour, goes through boto3 as usual.
"""

import base64
import functools
import json
import logging
import os
from dataclasses import dataclass

import boto3
import botocore.loaders
import botocore.session
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from botocore.httpsession import get_cert_path
from botocore.utils import get_environ_proxies

from gateway.core.config import ConfigError
from gateway.core.failures import SendFailed, classify_ses_answer, classify_ses_error
from gateway.core.ids import is_token

TENANT_TAG = "tenant"  # the EmailTag that names a message's tenant (store/queue.TENANT_TAG)
# botocore's own retries are off: every attempt goes through the dispatcher, so the shared rate limit counts it,
# and a retry after "maybe sent" is never made behind the dispatcher's back.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=15)
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
SEND_PATH = "/v2/email/outbound-emails"
SIGNING_NAME = "ses"  # SES v2 signs as "ses", like v1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendQuota:
    """sesv2 GetAccount's SendQuota: messages per second, and the rolling 24-hour quota (-1: unlimited)."""

    max_send_rate: float
    max_24_hour_send: int
    sent_last_24_hours: int

    @property
    def remaining(self) -> int:
        """Messages SES takes before the 24-hour window frees some; -1 when unlimited."""
        if self.max_24_hour_send < 0:
            return -1
        return max(0, self.max_24_hour_send - self.sent_last_24_hours)


@functools.cache
def _data_loader() -> botocore.loaders.Loader:
    """botocore's loader of its service models, one per process: each new session would read and parse the same JSON
    files again (~50-100 ms of CPU a session); the models are read-only, and each session keeps its own credentials,
    region and endpoints."""
    return botocore.loaders.create_loader()


def aws_session(region: str | None = None) -> boto3.session.Session:
    """boto3's conventions: the credential chain, the profile, AWS_REGION or AWS_DEFAULT_REGION (or `region`)."""
    # botocore reads AWS_DEFAULT_REGION (and the config file); AWS_REGION is what the other AWS SDKs and
    # Lambda set, so it is honoured too.
    core = botocore.session.get_session()
    core.register_component("data_loader", _data_loader())
    session = boto3.session.Session(botocore_session=core, region_name=region or os.environ.get("AWS_REGION") or None)
    if not session.region_name:  # checked here: with an endpoint URL set, botocore would go on without one
        raise ConfigError("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION) for the SES transport")
    return session


class SesTransport:
    """Sends raw MIME through sesv2 SendEmail with the configuration set that publishes our feedback events."""

    paced_by_ses = True  # its rate and daily quota come from GetAccount unless MAILGW_SEND_RATE is set

    def __init__(
        self,
        configuration_set: str,
        *,
        tenants: bool = False,
        max_connections: int = 10,
        read_timeout: float = READ_TIMEOUT,
        session: boto3.session.Session | None = None,
    ):
        session = session or aws_session()
        # The client resolves the endpoint (AWS_ENDPOINT_URL_SESV2, FIPS, the partition) and answers GetAccount.
        self._client = session.client("sesv2", config=CLIENT_CONFIG.merge(Config(read_timeout=read_timeout)))
        self._credentials = session.get_credentials()  # refreshed by botocore when they are temporary
        self._region = self._client.meta.region_name
        self._url = self._client.meta.endpoint_url.rstrip("/") + SEND_PATH
        self._configuration_set = configuration_set
        self._tenants = tenants  # MAILGW_SES_TENANTS: a message's tenant (its EmailTag) is its SES TenantName
        self._http = _pool(self._url, max_connections, read_timeout)

    def send(self, raw: bytes, *, sender: str, recipient: str, tags: dict[str, str]) -> str | None:
        """One attempt; SES's message id (None: SES took it but named no usable id), or SendFailed with the classified
        failure."""
        request = {
            "FromEmailAddress": sender,
            "Destination": {"ToAddresses": [recipient]},
            "Content": {"Raw": {"Data": base64.b64encode(raw).decode("ascii")}},
            "ConfigurationSetName": self._configuration_set,
            "EmailTags": [{"Name": name, "Value": value} for name, value in tags.items()],
        }
        tenant = tags.get(TENANT_TAG) if self._tenants else None
        if tenant:
            request["TenantName"] = tenant
        body = json.dumps(request).encode()
        try:
            headers = self._signed_headers(body)
            response = self._http.urlopen("POST", self._url, body=body, headers=headers)
        except (urllib3.exceptions.HTTPError, BotoCoreError, OSError) as exc:
            raise SendFailed(classify_ses_error(exc)) from None
        if 200 <= response.status < 300:
            return _message_id_of(response)
        code, text = _error_of(response)
        raise SendFailed(classify_ses_answer(response.status, code, text, tenant=bool(tenant)))

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        if self._credentials is None:
            raise NoCredentialsError()
        request = AWSRequest("POST", self._url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_NAME, self._region).add_auth(request)
        return dict(request.headers.items())

    def send_quota(self) -> SendQuota:
        """The account's quotas now (sesv2 GetAccount); SendFailed when SES cannot say."""
        try:
            quota = self._client.get_account()["SendQuota"]
        except (ClientError, BotoCoreError) as exc:
            raise SendFailed(classify_ses_error(exc)) from None
        return SendQuota(
            max_send_rate=float(quota.get("MaxSendRate", 1.0)),
            max_24_hour_send=int(quota.get("Max24HourSend", -1)),
            sent_last_24_hours=int(quota.get("SentLast24Hours", 0)),
        )


def _pool(url: str, max_connections: int, read_timeout: float) -> urllib3.PoolManager:
    """Keep-alive connections to SES as botocore would make them: its CA bundle (or AWS_CA_BUNDLE), the proxy the
    environment names for that URL (HTTPS_PROXY, NO_PROXY), no retries (the dispatcher decides)."""
    options = {
        "maxsize": max_connections,
        "timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read_timeout),
        "retries": False,
        "ca_certs": get_cert_path(os.environ.get("AWS_CA_BUNDLE") or True),
    }
    proxies = get_environ_proxies(url)
    proxy = proxies.get(url.partition(":")[0])
    return urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)


def _message_id_of(response: urllib3.HTTPResponse) -> str | None:
    """SES's MessageId of an accepted send; None when the answer carries none that can be stored and looked up (SES
    took the message all the same: it is recorded SENT, and its events find it by the message_id tag)."""
    try:
        message_id = json.loads(response.data).get("MessageId")
    except (ValueError, AttributeError):
        message_id = None
    if isinstance(message_id, str) and is_token(message_id):
        return message_id
    log.warning("SES accepted a message but named no usable MessageId (HTTP %d): recorded without it", response.status)
    return None


def _error_of(response: urllib3.HTTPResponse) -> tuple[str, str]:
    """SES's error code and message from a REST-JSON error answer, read as botocore reads them: the code in the
    x-amzn-ErrorType header (before any ':') or the body's "code" / "__type" (after any '#'); a body that is not JSON
    (a proxy's HTML page) is the message, which failures.py keeps out of logs when it is markup."""
    body = response.data or b""
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        document = {"message": body.decode("utf-8", "replace")}
    if not isinstance(document, dict):
        document = {}
    code = response.headers.get("x-amzn-ErrorType", "").partition(":")[0]
    code = code or str(document.get("code") or document.get("__type") or "").rpartition("#")[2]
    text = document.get("message") or document.get("Message") or ""
    return code or str(response.status), str(text)

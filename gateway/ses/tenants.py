"""SES tenants through boto3's sesv2 client, as the gateway reads and sets them while it sends: a tenant's ARN
(GetTenant), its sending status (GetReputationEntity on the tenant's ARN), and its customer-managed status
(UpdateReputationEntityCustomerManagedStatus). Every error is classified by the one failure table (core/failures.py).
`mailgw aws bootstrap --tenant` creates tenants and their associations (aws/ses_side.py)."""

from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gateway.core.failures import RETRY, Failure, SendFailed, classify_ses_error
from gateway.ses.transport import CLIENT_CONFIG, aws_session

ENTITY_TYPE = "RESOURCE"  # a tenant is a resource-type reputation entity, referenced by its ARN
SENDABLE = ("ENABLED", "REINSTATED")  # a tenant sends unless its aggregate status is DISABLED
STATUSES = (*SENDABLE, "DISABLED")
MISSING = "MISSING"  # our name for a tenant SES does not have (GetTenant: NotFoundException)
MAX_CAUSE = 512  # StatusCause, at most (botocore's model)


@dataclass(frozen=True)
class TenantStatus:
    """What SES says of one tenant: its ARN ("" when it has none) and its aggregate sending status (ENABLED,
    REINSTATED, DISABLED, or MISSING), with the cause SES or we gave for a DISABLED one."""

    arn: str
    status: str
    cause: str = ""

    @property
    def sendable(self) -> bool:
        return self.status in SENDABLE


class SesTenants:
    """The calls; SendFailed (with the classified failure) when SES does not answer as asked."""

    def __init__(self, session: boto3.session.Session | None = None):
        self._client = (session or aws_session()).client("sesv2", config=CLIENT_CONFIG)

    def status(self, name: str, arn: str = "") -> TenantStatus:
        """The tenant's sending status now; its ARN is asked for first when not known (it never changes)."""
        try:
            if not arn:
                arn = self._client.get_tenant(TenantName=name)["Tenant"]["TenantArn"]
            entity = self._client.get_reputation_entity(
                ReputationEntityType=ENTITY_TYPE, ReputationEntityReference=arn
            )["ReputationEntity"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                return TenantStatus("", MISSING)  # GetTenant: no such tenant (or the entity of a deleted one)
            raise SendFailed(classify_ses_error(exc)) from None
        except BotoCoreError as exc:
            raise SendFailed(classify_ses_error(exc)) from None
        status = entity.get("SendingStatusAggregate")
        if status not in STATUSES:  # no status, or one we do not know: nothing learnt, and nothing let go
            unread = Failure(RETRY, "SES_UNREADABLE_STATUS", detail="GetReputationEntity named no sending status")
            raise SendFailed(unread)
        return TenantStatus(arn, status, _cause(entity) if status not in SENDABLE else "")

    def set_customer_status(self, arn: str, status: str) -> None:
        """Our own (customer-managed) status of the tenant: DISABLED while the gateway pauses it, ENABLED after."""
        try:
            self._client.update_reputation_entity_customer_managed_status(
                ReputationEntityType=ENTITY_TYPE, ReputationEntityReference=arn, SendingStatus=status
            )
        except (ClientError, BotoCoreError) as exc:
            raise SendFailed(classify_ses_error(exc)) from None


def _cause(entity: dict) -> str:
    """Who disabled it and why: SES's record first, then ours."""
    for who, key in (("SES", "AwsSesManagedStatus"), ("customer-managed", "CustomerManagedStatus")):
        record = entity.get(key) or {}
        if record.get("Status") == "DISABLED":
            return f"{who}: {record.get('Cause') or 'disabled'}"[:MAX_CAUSE]
    return ""

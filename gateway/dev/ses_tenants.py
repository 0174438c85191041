"""SES tenants in the stand-in: CreateTenant, GetTenant, ListTenants, DeleteTenant, the tenants' resource
associations, and the tenants' reputation entities (GetReputationEntity, UpdateReputationEntityCustomerManagedStatus),
with the paths, JSON shapes and error codes of botocore's sesv2 model (2019-09-27) and the SES v2 API reference
(moto has none of them). SES documents no error for a SendEmail through a tenant that cannot send; the stand-in
answers SendingPausedException (a disabled tenant), NotFoundException (no such tenant) and BadRequestException (a
resource not associated with it), from SendEmail's documented errors."""

import re
import time
import uuid
from collections import deque
from urllib.parse import unquote

from aiohttp import web

from gateway.dev.ses_answers import error

TENANTS_PATH = "/v2/email/tenants"
ENTITIES_PATH = "/v2/email/reputation/entities"
ACCOUNT = "123456789012"  # moto's default account
STATUSES = ("ENABLED", "REINSTATED", "DISABLED")
TENANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _record(status: str, cause: str = "") -> dict:
    record = {"Status": status, "LastUpdatedTimestamp": time.time()}
    return record | ({"Cause": cause} if cause else {})


class TenantsStandIn:
    """Tenants by name, each with its associated resource ARNs and its two status records; every call recorded as
    (operation, parameters); scripted errors per operation."""

    def __init__(self, region: str = "us-east-1"):
        self.region = region
        self.tenants: dict[str, dict] = {}
        self.resources: dict[str, dict[str, float]] = {}  # tenant -> resource ARN -> when associated
        self.calls: list[tuple[str, dict]] = []
        self.called_at: list[float] = []  # time.monotonic() of each call, as in `calls`
        self._failures: dict[str, deque] = {}

    # --- what a test does as SES would ---------------------------------------------------------------------------

    def create(self, name: str) -> str:
        """A tenant, as CreateTenant makes it; its ARN."""
        tenant_id = "tn-" + uuid.uuid4().hex[:20]
        self.tenants[name] = {
            "TenantName": name,
            "TenantId": tenant_id,
            "TenantArn": f"arn:aws:ses:{self.region}:{ACCOUNT}:tenant/{name}/{tenant_id}",
            "CreatedTimestamp": time.time(),
            "Tags": [],
            "customer": _record("ENABLED"),
            "ses": _record("ENABLED"),
        }
        self.resources[name] = {}
        return self.tenants[name]["TenantArn"]

    def set_ses_status(self, name: str, status: str, cause: str = "") -> None:
        """SES's own decision on the tenant (its reputation findings): DISABLED stops its mail whatever we set."""
        self.tenants[name]["ses"] = _record(status, cause)

    def customer_status(self, name: str) -> str:
        return self.tenants[name]["customer"]["Status"]

    def sending_status(self, name: str) -> str:
        """The aggregate: DISABLED when either record is; REINSTATED when ours is and SES allows; else ENABLED."""
        tenant = self.tenants[name]
        statuses = (tenant["customer"]["Status"], tenant["ses"]["Status"])
        if "DISABLED" in statuses:
            return "DISABLED"
        return "REINSTATED" if "REINSTATED" in statuses else "ENABLED"

    def fail(self, operation: str, status: int, code: str, message: str = "", times: int = 1) -> None:
        """The next `times` calls of `operation` (e.g. "GetReputationEntity") answer this error."""
        self._failures.setdefault(operation, deque()).extend([(status, code, message)] * times)

    def called(self, operation: str) -> list[dict]:
        return [params for name, params in self.calls if name == operation]

    def times_of(self, operation: str) -> list[float]:
        """When each call of `operation` arrived (time.monotonic(), as SesRequest.at)."""
        return [at for (name, _), at in zip(self.calls, self.called_at, strict=True) if name == operation]

    def refusal_of_send(self, body: dict) -> web.Response | None:
        """SendEmail through a tenant (TenantName): None when the tenant may send it, else SES's refusal."""
        name = body.get("TenantName")
        if name is None:
            return None
        if name not in self.tenants:
            return error(404, "NotFoundException", f"Tenant {name} does not exist.")
        if self.sending_status(name) == "DISABLED":
            return error(400, "SendingPausedException", f"Sending is disabled for tenant {name}.")
        config_set = body.get("ConfigurationSetName")
        wanted = [f"configuration-set/{config_set}"] if config_set else []
        domain = str(body.get("FromEmailAddress", "")).rpartition("@")[2].rstrip(">").lower()
        wanted.append(f"identity/{domain}")
        associated = {arn.split(":", 5)[-1].lower() for arn in self.resources[name]}
        missing = [resource for resource in wanted if resource.lower() not in associated]
        if missing:
            return error(400, "BadRequestException", f"{missing[0]} is not associated with tenant {name}.")
        return None

    # --- the routes ----------------------------------------------------------------------------------------------

    def register(self, app: web.Application) -> None:
        app.router.add_post(TENANTS_PATH, self._create)
        app.router.add_post(TENANTS_PATH + "/get", self._get)
        app.router.add_post(TENANTS_PATH + "/list", self._list)
        app.router.add_post(TENANTS_PATH + "/delete", self._delete)
        app.router.add_post(TENANTS_PATH + "/resources", self._associate)
        app.router.add_post(TENANTS_PATH + "/resources/delete", self._dissociate)
        app.router.add_post(TENANTS_PATH + "/resources/list", self._resources)
        app.router.add_put(ENTITIES_PATH + "/{kind}/{reference:.+}/customer-managed-status", self._update_status)
        app.router.add_get(ENTITIES_PATH + "/{kind}/{reference:.+}", self._entity)

    async def _begin(self, operation: str, request: web.Request) -> tuple[dict, web.Response | None]:
        """The call's parameters (its JSON body and path), recorded; a scripted error or a body that is no JSON."""
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return {}, error(400, "BadRequestException", "The request body is not JSON.")
        params = (body if isinstance(body, dict) else {}) | {k: unquote(v) for k, v in request.match_info.items()}
        self.calls.append((operation, params))
        self.called_at.append(time.monotonic())
        queued = self._failures.get(operation)
        if queued:
            return params, error(*queued.popleft())
        return params, None

    def _named(self, params: dict) -> tuple[dict | None, web.Response | None]:
        name = params.get("TenantName")
        if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
            return None, error(400, "BadRequestException", "TenantName must be 1-64 letters, digits, '-' or '_'.")
        if name not in self.tenants:
            return None, error(404, "NotFoundException", f"Tenant {name} does not exist.")
        return self.tenants[name], None

    @staticmethod
    def _shown(tenant: dict, *, full: bool) -> dict:
        keys = ("TenantName", "TenantId", "TenantArn", "CreatedTimestamp") + (("Tags",) if full else ())
        return {key: tenant[key] for key in keys}

    async def _create(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("CreateTenant", request)
        if failed:
            return failed
        name = params.get("TenantName")
        if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
            return error(400, "BadRequestException", "TenantName must be 1-64 letters, digits, '-' or '_'.")
        if name in self.tenants:
            return error(400, "AlreadyExistsException", f"Tenant {name} already exists.")
        self.create(name)
        self.tenants[name]["Tags"] = list(params.get("Tags") or [])
        tenant = self.tenants[name]
        return web.json_response(self._shown(tenant, full=True) | {"SendingStatus": self.sending_status(name)})

    async def _get(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("GetTenant", request)
        tenant, failed = (None, failed) if failed else self._named(params)
        if failed:
            return failed
        shown = self._shown(tenant, full=True) | {"SendingStatus": self.sending_status(tenant["TenantName"])}
        return web.json_response({"Tenant": shown})

    async def _list(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("ListTenants", request)
        if failed:
            return failed
        listed = [
            self._shown(tenant, full=False) | {"SendingStatus": self.sending_status(name)}
            for name, tenant in sorted(self.tenants.items())
        ]
        return web.json_response({"Tenants": listed})

    async def _delete(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("DeleteTenant", request)
        tenant, failed = (None, failed) if failed else self._named(params)
        if failed:
            return failed
        del self.tenants[tenant["TenantName"]], self.resources[tenant["TenantName"]]
        return web.json_response({})

    async def _associate(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("CreateTenantResourceAssociation", request)
        tenant, failed = (None, failed) if failed else self._named(params)
        if failed:
            return failed
        arn = params.get("ResourceArn")
        if not isinstance(arn, str) or _resource_type(arn) is None:
            return error(400, "BadRequestException", "ResourceArn names no SES resource.")
        resources = self.resources[tenant["TenantName"]]
        if arn in resources:
            return error(400, "AlreadyExistsException", f"{arn} is already associated with this tenant.")
        resources[arn] = time.time()
        return web.json_response({})

    async def _dissociate(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("DeleteTenantResourceAssociation", request)
        tenant, failed = (None, failed) if failed else self._named(params)
        if failed:
            return failed
        if self.resources[tenant["TenantName"]].pop(params.get("ResourceArn"), None) is None:
            return error(404, "NotFoundException", "That resource is not associated with this tenant.")
        return web.json_response({})

    async def _resources(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("ListTenantResources", request)
        tenant, failed = (None, failed) if failed else self._named(params)
        if failed:
            return failed
        wanted = (params.get("Filter") or {}).get("RESOURCE_TYPE")
        listed = [
            {"ResourceType": _resource_type(arn), "ResourceArn": arn}
            for arn in sorted(self.resources[tenant["TenantName"]])
            if wanted is None or _resource_type(arn) == wanted
        ]
        return web.json_response({"TenantResources": listed})

    def _entity_of(self, params: dict) -> tuple[dict | None, web.Response | None]:
        if params.get("kind") != "RESOURCE":
            return None, error(400, "BadRequestException", "ReputationEntityType must be RESOURCE.")
        for tenant in self.tenants.values():
            if tenant["TenantArn"] == params.get("reference"):
                return tenant, None
        return None, error(404, "NotFoundException", f"Reputation entity {params.get('reference')} does not exist.")

    async def _entity(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("GetReputationEntity", request)
        tenant, failed = (None, failed) if failed else self._entity_of(params)
        if failed:
            return failed
        entity = {
            "ReputationEntityReference": tenant["TenantArn"],
            "ReputationEntityType": "RESOURCE",
            "ReputationManagementPolicy": f"arn:aws:ses:{self.region}:aws:reputation-policy/standard",
            "CustomerManagedStatus": tenant["customer"],
            "AwsSesManagedStatus": tenant["ses"],
            "SendingStatusAggregate": self.sending_status(tenant["TenantName"]),
            "ReputationImpact": "LOW",
        }
        return web.json_response({"ReputationEntity": entity})

    async def _update_status(self, request: web.Request) -> web.Response:
        params, failed = await self._begin("UpdateReputationEntityCustomerManagedStatus", request)
        tenant, failed = (None, failed) if failed else self._entity_of(params)
        if failed:
            return failed
        if params.get("SendingStatus") not in STATUSES:
            return error(400, "BadRequestException", "SendingStatus must be ENABLED, REINSTATED or DISABLED.")
        tenant["customer"] = _record(params["SendingStatus"], "set through the API")
        return web.json_response({})


def _resource_type(arn: str) -> str | None:
    """EMAIL_IDENTITY, CONFIGURATION_SET or EMAIL_TEMPLATE, from an SES resource ARN; None for anything else."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "ses"]:
        return None
    kind = parts[5].partition("/")[0]
    return {"identity": "EMAIL_IDENTITY", "configuration-set": "CONFIGURATION_SET", "template": "EMAIL_TEMPLATE"}.get(
        kind
    )

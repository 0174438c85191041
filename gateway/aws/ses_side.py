"""The SES side: the configuration set every send names, and its event destination that publishes to the topic."""

from gateway.aws.outcome import Mode, Outcome, ensure

# What the sidecar acts on. SEND settles a message whose SES answer was lost (UNKNOWN), so it is not sent again;
# REJECT fails it; SUBSCRIPTION carries SES's own unsubscribes.
EVENT_TYPES = ("BOUNCE", "COMPLAINT", "DELIVERY", "REJECT", "SEND", "SUBSCRIPTION")


def configuration_set(sesv2, mode: Mode, name: str) -> Outcome:
    try:
        found = sesv2.get_configuration_set(ConfigurationSetName=name)
    except sesv2.exceptions.NotFoundException:
        found = None

    def create():
        sesv2.create_configuration_set(ConfigurationSetName=name)
        return {"ConfigurationSetName": name}

    def check(found):
        # A pause is an operator's decision (or SES's): reported, never undone here.
        if found.get("SendingOptions", {}).get("SendingEnabled", True) is False:
            yield "sending is paused on it"

    outcome, _ = ensure(mode, "configuration set", name, found, create=create, check=check)
    return outcome


def event_destination(sesv2, mode: Mode, configuration_set: str, name: str, topic_arn: str | None) -> Outcome:
    """The destination publishing to the topic (found by its topic, else by its name), with our event types."""
    try:
        destinations = sesv2.get_configuration_set_event_destinations(ConfigurationSetName=configuration_set)
    except sesv2.exceptions.NotFoundException:  # the configuration set is still to be created (a dry run)
        destinations = {"EventDestinations": []}
    listed = destinations.get("EventDestinations", [])
    by_topic = [d for d in listed if topic_arn and d.get("SnsDestination", {}).get("TopicArn") == topic_arn]
    by_name = [d for d in listed if d.get("Name") == name]
    found = (by_topic or by_name or [None])[0]
    if found is not None:
        name = found["Name"]

    def definition(event_types) -> dict:
        return {"Enabled": True, "MatchingEventTypes": sorted(event_types), "SnsDestination": {"TopicArn": topic_arn}}

    def create():
        sesv2.create_configuration_set_event_destination(
            ConfigurationSetName=configuration_set, EventDestinationName=name, EventDestination=definition(EVENT_TYPES)
        )
        return name

    def check(found):
        target = found.get("SnsDestination", {}).get("TopicArn")
        if target != topic_arn:
            yield f"publishes to {target or 'a destination other than SNS'}, not to the topic"
        if not found.get("Enabled", False):
            yield "disabled"
        missing = sorted(set(EVENT_TYPES) - set(found.get("MatchingEventTypes", [])))
        if missing:
            yield f"event types missing: {', '.join(missing)}"

    def fix(found):
        # Event types the operator added (OPEN, CLICK, ...) stay: the sidecar records them against the message.
        event_types = set(found.get("MatchingEventTypes", [])) | set(EVENT_TYPES)
        sesv2.update_configuration_set_event_destination(
            ConfigurationSetName=configuration_set, EventDestinationName=name, EventDestination=definition(event_types)
        )
        return name

    label = f"{configuration_set}/{name}"
    outcome, _ = ensure(mode, "event destination", label, found, create=create, check=check, fix=fix)
    return outcome


def tenant(sesv2, mode: Mode, name: str) -> tuple[Outcome, str | None]:
    """The SES tenant (MAILGW_SES_TENANTS), and its ARN (None when a dry run would create it)."""
    try:
        found = sesv2.get_tenant(TenantName=name)["Tenant"]
    except sesv2.exceptions.NotFoundException:
        found = None

    def create():
        return sesv2.create_tenant(TenantName=name)

    def check(found):
        # SES's decision, or an operator's: reported, never undone here.
        if found.get("SendingStatus") == "DISABLED":
            yield "its sending is disabled in SES (the gateway holds its mail until it is enabled)"

    outcome, state = ensure(mode, "SES tenant", name, found, create=create, check=check)
    return outcome, state["TenantArn"] if state else None


def tenant_resource(sesv2, mode: Mode, tenant_name: str, tenant_arn: str | None, kind: str, resource: str) -> Outcome:
    """`resource` (an identity, or a configuration set: `kind` as its ARN names it) associated with the tenant, as
    SendEmail with a TenantName requires. Its ARN is the tenant's own account and region."""
    label = f"{tenant_name} -> {kind} {resource}"
    if tenant_arn is None:  # a dry run that would create the tenant
        return ensure(mode, "tenant resource", label, None, create=lambda: None)[0]
    arn = f"{tenant_arn.partition(':tenant/')[0]}:{kind}/{resource}"
    associated: set[str] = set()
    request = {"TenantName": tenant_name}
    while True:
        page = sesv2.list_tenant_resources(**request)
        associated |= {entry.get("ResourceArn") for entry in page.get("TenantResources", [])}
        if not page.get("NextToken"):
            break
        request["NextToken"] = page["NextToken"]

    def create():
        sesv2.create_tenant_resource_association(TenantName=tenant_name, ResourceArn=arn)
        return arn

    return ensure(mode, "tenant resource", label, arn if arn in associated else None, create=create)[0]

"""The SNS side: the topic SES publishes to (signing with SHA256), and its subscriptions (HTTPS to the sidecar,
SQS to the queue), both delivering the signed envelope that the sidecar verifies."""

from dataclasses import replace

from gateway.aws.outcome import DIFFERS, FIXED, Mode, Outcome, ensure

SIGNATURE_VERSION = "2"  # SHA256withRSA; SNS's default, 1, signs with SHA1


def topic_arn(sns, name: str) -> str | None:
    """The ARN of the topic named `name` in the client's account and region, or None when there is none."""
    return next(
        (
            listed["TopicArn"]
            for page in sns.get_paginator("list_topics").paginate()
            for listed in page.get("Topics", [])
            if listed["TopicArn"].rsplit(":", 1)[-1] == name
        ),
        None,
    )


def topic(sns, mode: Mode, name: str) -> tuple[Outcome, str | None]:
    """The outcome and the topic's ARN (None when a dry run would create it)."""
    arn = topic_arn(sns, name)
    found = None if arn is None else sns.get_topic_attributes(TopicArn=arn)["Attributes"]

    def create():
        return sns.create_topic(Name=name, Attributes={"SignatureVersion": SIGNATURE_VERSION})["TopicArn"]

    def check(attributes):
        # "If the API response does not include the SignatureVersion attribute, [...] the topic has value 1."
        version = attributes.get("SignatureVersion", "1")
        if version != SIGNATURE_VERSION:
            yield f"SignatureVersion is {version} (SHA1), not {SIGNATURE_VERSION} (SHA256)"

    def fix(_attributes):
        sns.set_topic_attributes(TopicArn=arn, AttributeName="SignatureVersion", AttributeValue=SIGNATURE_VERSION)
        return arn

    outcome, state = ensure(mode, "SNS topic", name, found, create=create, check=check, fix=fix)
    return outcome, state if isinstance(state, str) else arn


def subscription(
    sns, mode: Mode, kind: str, label: str, topic_arn: str | None, protocol: str, endpoint: str | None
) -> Outcome:
    """The topic's subscription of `protocol` to `endpoint` (a URL, or a queue's ARN), delivering the envelope."""
    found = None
    if topic_arn and endpoint:
        for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
            for listed in page.get("Subscriptions", []):
                if listed.get("Protocol") == protocol and listed.get("Endpoint") == endpoint:
                    found = {"arn": listed["SubscriptionArn"], "attributes": {}}
        if found is not None and found["arn"].startswith("arn:"):  # not "PendingConfirmation"
            found["attributes"] = sns.get_subscription_attributes(SubscriptionArn=found["arn"])["Attributes"]

    def subscribe():
        # Raw delivery off: the sidecar verifies SNS's signed envelope, which raw delivery strips.
        answer = sns.subscribe(
            TopicArn=topic_arn,
            Protocol=protocol,
            Endpoint=endpoint,
            Attributes={"RawMessageDelivery": "false"},
            ReturnSubscriptionArn=True,
        )
        return answer["SubscriptionArn"]

    def pending(found) -> bool:
        return not found["arn"].startswith("arn:") or _true(found["attributes"].get("PendingConfirmation"))

    def raw(found) -> bool:
        return _true(found["attributes"].get("RawMessageDelivery"))

    def check(found):
        if pending(found):
            yield "not confirmed yet (the sidecar confirms it when SNS calls, if MAILGW_SNS_TOPIC_ARNS names the topic)"
        if raw(found):
            yield "raw message delivery is on (the sidecar needs SNS's signed envelope)"

    def fix(found):
        if raw(found):
            sns.set_subscription_attributes(
                SubscriptionArn=found["arn"], AttributeName="RawMessageDelivery", AttributeValue="false"
            )
        if pending(found):
            subscribe()  # SNS sends the confirmation again
        return found

    note = "SNS now asks the sidecar to confirm it" if protocol == "https" else ""
    outcome, _ = ensure(mode, kind, label, found, create=subscribe, check=check, fix=fix, created_note=note)
    if outcome.state == FIXED and pending(found):  # asking again is all bootstrap can do: the sidecar confirms it
        outcome = replace(outcome, state=DIFFERS, fixable=False, note="SNS asked to send the confirmation again")
    return outcome


def _true(value) -> bool:
    return str(value).lower() == "true"

"""The SQS side: the queue SNS delivers to (kept 14 days), its dead-letter queue, and a policy that lets only our
topic send to it."""

import fnmatch
import json

from gateway.aws.outcome import Mode, Outcome, ensure

RETENTION_SECONDS = 14 * 24 * 3600  # SQS's longest: feedback survives a two-week outage of the poller
MAX_RECEIVE_COUNT = 5  # a message that fails verification or parsing this often moves to the dead-letter queue
SNS_SERVICE = "sns.amazonaws.com"


def queue_state(sqs, name: str) -> dict | None:
    """{"url", "arn", "attributes"} of the queue named `name`, or None when there is none."""
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return None
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {"url": url, "arn": attributes["QueueArn"], "attributes": attributes}


def dead_letter_queue(sqs, mode: Mode, name: str) -> tuple[Outcome, dict | None]:
    def create():
        sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": str(RETENTION_SECONDS)})
        return queue_state(sqs, name)

    def fix(state):
        _set_attributes(sqs, state, {"MessageRetentionPeriod": str(RETENTION_SECONDS)})
        return queue_state(sqs, name)

    return ensure(
        mode, "dead-letter queue", name, queue_state(sqs, name), create=create, check=_retention_differs, fix=fix
    )


def queue(sqs, mode: Mode, name: str, dead_letter_name: str, dead_letters: dict | None) -> tuple[Outcome, dict | None]:
    """The queue SNS delivers to, its dead letters going to the queue `dead_letters` describes (None: a dry run
    would create it, under the ARN that its name, the account and the region make)."""
    state = queue_state(sqs, name)
    target = dead_letters["arn"] if dead_letters else None
    if target is None and state is not None:
        target = f"{state['arn'].rsplit(':', 1)[0]}:{dead_letter_name}"

    def redrive(max_receive_count: int = MAX_RECEIVE_COUNT) -> str:
        return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": max_receive_count})

    def create():
        attributes = {"MessageRetentionPeriod": str(RETENTION_SECONDS), "RedrivePolicy": redrive()}
        sqs.create_queue(QueueName=name, Attributes=attributes)
        return queue_state(sqs, name)

    def check(state):
        yield from _retention_differs(state)
        current = _redrive_policy(state)
        if not current.get("deadLetterTargetArn"):
            yield "no dead-letter queue"
        elif current["deadLetterTargetArn"] != target:
            yield f"dead letters go to {current['deadLetterTargetArn']}, not to the dead-letter queue"

    def fix(state):
        count = _redrive_policy(state).get("maxReceiveCount") or MAX_RECEIVE_COUNT  # an operator's count stays
        changes = {"MessageRetentionPeriod": str(RETENTION_SECONDS), "RedrivePolicy": redrive(int(count))}
        _set_attributes(sqs, state, changes)
        return queue_state(sqs, name)

    return ensure(mode, "queue", name, state, create=create, check=check, fix=fix)


def queue_policy(sqs, mode: Mode, name: str, state: dict | None, topic_arn: str | None) -> Outcome:
    """The queue's access policy: sns.amazonaws.com may SendMessage only for our topic (aws:SourceArn)."""
    found = None
    if state is not None and state["attributes"].get("Policy"):
        found = json.loads(state["attributes"]["Policy"])
    ours = None if state is None else _topic_statement(state["arn"], topic_arn)

    def create():
        policy = {"Version": "2012-10-17", "Id": f"{state['arn']}/mailgw", "Statement": [ours]}
        _set_attributes(sqs, state, {"Policy": json.dumps(policy)})
        return policy

    def check(policy):
        senders = [s for s in _statements(policy) if s.get("Effect") == "Allow" and _grants_send(s)]
        if not any(_topic_only(s, topic_arn) for s in senders):
            yield "does not let the topic send"
        for statement in senders:
            if not _topic_only(statement, topic_arn):
                label = f"statement {statement['Sid']!r}" if statement.get("Sid") else "a statement"
                yield f"{label} lets {_principal(statement)} send, not only the topic"

    def fix(policy):
        # Statements that grant no sending (an operator's ReceiveMessage for a role, a Deny) stay.
        kept = [s for s in _statements(policy) if not (s.get("Effect") == "Allow" and _grants_send(s))]
        policy = {**policy, "Version": policy.get("Version", "2012-10-17"), "Statement": [*kept, ours]}
        _set_attributes(sqs, state, {"Policy": json.dumps(policy)})
        return policy

    outcome, _ = ensure(mode, "queue policy", name, found, create=create, check=check, fix=fix)
    return outcome


def _set_attributes(sqs, state: dict, changes: dict[str, str]) -> None:
    # The policy is sent again unchanged with every change: one SetQueueAttributes then leaves the queue whole on
    # every implementation (moto forgets a Policy that a later call does not name).
    policy = state["attributes"].get("Policy")
    attributes = ({"Policy": policy} if policy else {}) | changes
    sqs.set_queue_attributes(QueueUrl=state["url"], Attributes=attributes)


def _retention_differs(state: dict):
    seconds = int(state["attributes"].get("MessageRetentionPeriod", 0))
    if seconds != RETENTION_SECONDS:
        yield f"keeps messages {seconds / 86400:g} days, not 14"


def _redrive_policy(state: dict) -> dict:
    text = state["attributes"].get("RedrivePolicy")
    return json.loads(text) if text else {}


def _topic_statement(queue_arn: str, topic_arn: str | None) -> dict:
    return {
        "Sid": "mailgw-feedback-topic",
        "Effect": "Allow",
        "Principal": {"Service": SNS_SERVICE},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
    }


def _statements(policy: dict) -> list[dict]:
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _grants_send(statement: dict) -> bool:
    if "NotAction" in statement:  # "everything but …": taken as sending unless it names SendMessage
        return not any(fnmatch.fnmatchcase("sqs:sendmessage", a.lower()) for a in _as_list(statement["NotAction"]))
    return any(fnmatch.fnmatchcase("sqs:sendmessage", a.lower()) for a in _as_list(statement.get("Action", [])))


def _topic_only(statement: dict, topic_arn: str | None) -> bool:
    """Only SNS, and only for our topic: the principal is the SNS service and aws:SourceArn is the topic's ARN."""
    principal = statement.get("Principal")
    if not isinstance(principal, dict) or set(principal) != {"Service"}:
        return False
    if _as_list(principal["Service"]) != [SNS_SERVICE] or topic_arn is None:
        return False
    for operator in ("ArnEquals", "ArnLike", "StringEquals"):
        for key, value in statement.get("Condition", {}).get(operator, {}).items():
            if key.lower() == "aws:sourcearn" and _as_list(value) == [topic_arn]:
                return True
    return False


def _principal(statement: dict) -> str:
    principal = statement.get("Principal", "*")
    if isinstance(principal, dict):
        return ", ".join(str(v) for values in principal.values() for v in _as_list(values))
    return str(principal)

"""The caller policy (MAILGW_CALLER_POLICY_FILE) over gRPC: each limit refuses with its typed status and details and
queues nothing; a gateway without a policy limits nothing; a policy the gateway cannot use stops it with one line."""

from dataclasses import replace

import grpc
import pytest

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.core.config import ConfigError
from gateway.core.policy import CallerPolicies
from gateway.process.gateway import create_server
from gateway.store.models import Message, database
from tests.rpc import error_info, rpc_failure

TOKENS = {name: f"{name}-token-0123456789abcdef" for name in ("auth", "newsletter", "billing", "stranger")}


def request(number: int = 0, **fields) -> pb.SendEmailRequest:
    return pb.SendEmailRequest(to=f"reader{number}@example.org", subject="Hi", text_body="Hello", **fields)


def as_caller(name: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[name]}")]


def queued_messages() -> list[tuple[str, int]]:
    with database.connection_context():
        return [(m.caller, m.priority) for m in Message.select().order_by(Message.id)]


@pytest.fixture
def policy_gateway(make_gateway, tmp_path):
    """A gateway with the given policy file text and the four callers' tokens; dispatch off unless asked, so what is
    queued stays queued."""

    def start(policy: str, **changes):
        path = tmp_path / "callers.toml"
        path.write_text(policy)
        tokens = ",".join(f"{name}={token}" for name, token in TOKENS.items())
        changes = {"dispatch_workers": 0} | changes
        return make_gateway(auth_tokens=tokens, caller_policy_file=str(path), **changes)[1]

    return start


def test_a_caller_asking_above_its_priority_is_denied_and_nothing_is_queued(policy_gateway):
    stub = policy_gateway('[callers.newsletter]\nmax_priority = "bulk"\n')

    for asked in (pb.PRIORITY_UNSPECIFIED, pb.PRIORITY_TRANSACTIONAL, pb.PRIORITY_CRITICAL):
        code, message, details = rpc_failure(stub.SendEmail, request(priority=asked), metadata=as_caller("newsletter"))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "bulk" in message
        info = error_info(details)
        assert (info.reason, dict(info.metadata)) == ("PRIORITY_NOT_ALLOWED", {"maxPriority": "bulk"})
    assert queued_messages() == []

    stub.SendEmail(request(priority=pb.PRIORITY_BULK), metadata=as_caller("newsletter"))
    stub.SendEmail(request(priority=pb.PRIORITY_CRITICAL), metadata=as_caller("auth"))  # not named: any priority
    assert queued_messages() == [("newsletter", 2), ("auth", 0)]


def test_a_full_caller_queue_is_refused_with_quota_and_retry_details_and_others_go_on(policy_gateway):
    stub = policy_gateway('[callers.newsletter]\nmax_queued = 3\nmax_priority = "bulk"\n')
    bulk = pb.PRIORITY_BULK
    for number in range(3):
        stub.SendEmail(request(number, priority=bulk), metadata=as_caller("newsletter"))

    code, _, details = rpc_failure(stub.SendEmail, request(3, priority=bulk), metadata=as_caller("newsletter"))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(details)
    assert (info.reason, dict(info.metadata)) == ("CALLER_QUEUE_FULL", {"limit": "3"})
    [quota] = details["QuotaFailure"]
    [violation] = quota.violations
    assert violation.subject == "caller:newsletter" and "3 queued" in violation.description
    [retry] = details["RetryInfo"]
    assert retry.retry_delay.ToMilliseconds() > 0
    assert len(queued_messages()) == 3
    stub.SendEmail(request(9), metadata=as_caller("billing"))  # another caller's queue is its own
    assert len(queued_messages()) == 4


def test_a_repeated_request_id_is_answered_even_when_the_queue_is_full(policy_gateway):
    stub = policy_gateway("[callers.billing]\nmax_queued = 1\n")
    first = stub.SendEmail(request(request_id="invoice-1"), metadata=as_caller("billing"))

    again = stub.SendEmail(request(request_id="invoice-1"), metadata=as_caller("billing"))

    assert again == first
    code, _, details = rpc_failure(stub.SendEmail, request(request_id="invoice-2"), metadata=as_caller("billing"))
    assert error_info(details).reason == "CALLER_QUEUE_FULL"


def test_a_caller_over_its_submit_rate_waits_as_the_retry_info_says(policy_gateway):
    stub = policy_gateway("[callers.billing]\nmax_submit_rate = 0.01\n")  # one message every 100 seconds

    accepted, refusals = 0, []
    for number in range(5):
        try:
            stub.SendEmail(request(number), metadata=as_caller("billing"))
            accepted += 1
        except grpc.RpcError:
            refusals.append(rpc_failure(stub.SendEmail, request(number), metadata=as_caller("billing")))

    assert accepted == 1  # a burst gets at most rate x elapsed + 1
    for code, _, details in refusals:
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(details)
        assert (info.reason, dict(info.metadata)) == ("CALLER_RATE_LIMITED", {"limit": "0.01"})
        [violation] = details["QuotaFailure"][0].violations
        assert violation.subject == "caller:billing"
        [retry] = details["RetryInfo"]
        assert 90_000 < retry.retry_delay.ToMilliseconds() <= 100_000  # when the next token is there
    assert len(queued_messages()) == 1
    stub.SendEmail(request(7), metadata=as_caller("auth"))  # the bucket is the caller's own


def test_callers_the_policy_does_not_name_take_its_star_table(policy_gateway):
    stub = policy_gateway(
        '[callers.auth]\nmax_priority = "critical"\n\n[callers."*"]\nmax_priority = "transactional"\n'
    )

    code, _, details = rpc_failure(
        stub.SendEmail, request(priority=pb.PRIORITY_CRITICAL), metadata=as_caller("stranger")
    )

    assert error_info(details).reason == "PRIORITY_NOT_ALLOWED"
    stub.SendEmail(request(priority=pb.PRIORITY_CRITICAL), metadata=as_caller("auth"))
    stub.SendEmail(request(), metadata=as_caller("stranger"))


def test_the_gateways_own_cap_refuses_every_caller_once_reached(make_gateway):
    _, stub = make_gateway(dispatch_workers=0, max_queued_messages=2)
    stub.SendEmail(request(1))
    stub.SendEmail(request(2))

    code, _, details = rpc_failure(stub.SendEmail, request(3))

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(details).reason == "QUEUE_FULL"
    assert details["QuotaFailure"][0].violations[0].subject == "gateway"
    assert len(queued_messages()) == 2


def test_without_a_policy_every_caller_may_use_every_priority(make_gateway):
    _, stub = make_gateway(dispatch_workers=0)

    for priority in (pb.PRIORITY_CRITICAL, pb.PRIORITY_TRANSACTIONAL, pb.PRIORITY_BULK, pb.PRIORITY_UNSPECIFIED):
        stub.SendEmail(request(priority=priority))

    assert [priority for _, priority in queued_messages()] == [0, 1, 2, 1]


# --- a policy the gateway cannot use ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[callers.auth]\nmax_priority = "urgent"\n', "[callers.auth]: max_priority: not a priority: 'urgent'"),
        ("[callers.auth]\nweight = 0\n", "[callers.auth]: weight must be more than 0"),
        ('[callers.auth]\nweight = "heavy"\n', "[callers.auth]: weight must be a number"),
        ("[callers.auth]\nmax_queued = 2.5\n", "[callers.auth]: max_queued must be a whole number"),
        ("[callers.auth]\nmax_submit_rate = -1\n", "[callers.auth]: max_submit_rate must be more than 0"),
        ("[callers.auth]\nmax_qeued = 5\n", "[callers.auth]: unknown key 'max_qeued'"),
        ("[caller.auth]\nweight = 2\n", "unknown table 'caller'"),
        ("[callers.auth\n", "not TOML"),
        ("callers = 3\n", "callers must be tables"),
    ],
)
@pytest.mark.one_database
def test_a_policy_the_gateway_cannot_use_stops_it_with_one_line(settings, tmp_path, text, problem):
    path = tmp_path / "callers.toml"
    path.write_text(text)

    with pytest.raises(ConfigError) as refused:
        create_server(replace(settings, caller_policy_file=str(path)))

    message = str(refused.value)
    assert message.startswith(f"MAILGW_CALLER_POLICY_FILE={path}: ")
    assert problem in message and "\n" not in message


def test_a_policy_file_that_is_not_there_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"MAILGW_CALLER_POLICY_FILE=.*missing.toml: cannot read it"):
        CallerPolicies.from_file(str(tmp_path / "missing.toml"))


def test_a_policy_reads_as_written(tmp_path):
    path = tmp_path / "callers.toml"
    path.write_text(
        '[callers.auth]\nmax_priority = "critical"\nweight = 4\n\n'
        '[callers.newsletter]\nmax_priority = "bulk"\nmax_queued = 200000\nmax_submit_rate = 50\n'
    )

    policies = CallerPolicies.from_file(str(path))

    assert policies.weight("auth") == 4.0 and policies.weight("anyone") == 1.0
    newsletter = policies.of("newsletter")
    assert (newsletter.max_priority.label, newsletter.max_queued, newsletter.max_submit_rate) == ("bulk", 200000, 50)

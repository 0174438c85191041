"""Two gateways and two sidecars on one database, racing: sends with duplicate request ids, bursts of bounces,
complaints, soft bounces and one-click unsubscribes for the same addresses, each SNS message delivered to both
sidecars at once, both gateways dispatching from one queue. Nothing may be lost, sent twice, applied twice, or fail
with a lock error."""

import asyncio
import functools
import itertools
import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.addresses import email_key
from gateway.store.models import (
    Contact,
    ContactStatus,
    FeedbackEvent,
    Message,
    MessageState,
    StatusChange,
    database,
    open_database,
)
from support import ses_samples
from support.processes import free_port, start
from support.sns_signing import TOPIC_ARN, signed_envelope

ADDRESSES = [f"Reader{i}@Example.org" for i in range(10)]
# The suppressing feedback each address gets: Unsubscribe (one-click), permanent Bounce, Complaint. Every
# address also gets SOFT_BOUNCES transient bounces, which only count.
PLAN = {0: "", 1: "U", 2: "B", 3: "C", 4: "UB", 5: "UC", 6: "BC", 7: "UBC", 8: "UB", 9: "UBC"}
STATUS_OF = {"U": ContactStatus.UNSUBSCRIBED, "B": ContactStatus.BOUNCED, "C": ContactStatus.COMPLAINED}
SOURCE_OF = {
    ContactStatus.UNSUBSCRIBED: "one-click",
    ContactStatus.BOUNCED: "ses:Bounce",
    ContactStatus.COMPLAINED: "ses:Complaint",
}
REQUEST_IDS_PER_ADDRESS = 8
CALLS_PER_GATEWAY = (2, 1)  # the racing rounds of one request id: calls sent to each gateway at the same time
UNSUBSCRIBES_PER_ADDRESS = 3  # alternating sidecars
SOFT_BOUNCES = 2
WORKERS = 12  # jobs at a time: send rounds and feedback bursts
PARTNERS = 48  # calls of the feedback bursts at a time
BURSTS_PER_ADDRESS = 2
RPC_TIMEOUT = 20.0
SEED = 20240611
OUTBOUND = "/v2/email/outbound-emails"


def expected_status(index: int) -> ContactStatus:
    return max((STATUS_OF[kind] for kind in PLAN[index]), key=lambda s: s.severity, default=ContactStatus.ACTIVE)


class Child:
    """A started process whose output is drained as it comes (a full pipe would block its logging)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.process = start(args, env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, ready, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.output}")
            try:
                if ready():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.output}")
            time.sleep(0.05)

    def stop(self) -> int | str:
        self.process.terminate()
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = "killed: still running 30 s after SIGTERM"
        self._reader.join(5)
        return code


@dataclass
class Cluster:
    stubs: list[pb_grpc.MailGatewayServiceStub]
    sidecars: list[str]  # base URLs
    children: list[Child]

    def logs(self) -> str:
        return "\n".join(f"--- {child.name}\n{child.output}" for child in self.children)


@pytest.fixture
def cluster(database_url, ses, sns_host):
    """Two `python -m gateway` and two `python -m feedback_http` on one database, all started at once."""
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    grpc_ports, http_ports = sorted(ports)[:2], sorted(ports)[2:]
    sidecars = [f"http://127.0.0.1:{port}" for port in http_ports]
    common = {
        "MAILGW_DATABASE_URL": database_url,
        "MAILGW_DEFAULT_FROM": "noreply@example.com",
        "MAILGW_PUBLIC_BASE_URL": sidecars[0],
        "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
        "AWS_ENDPOINT_URL_SNS": sns_host.url,
    }
    children: list[Child] = []
    channels: list[grpc.Channel] = []
    try:
        for n, port in enumerate(grpc_ports):
            # Each RPC thread keeps a database connection: 8 of them (and 4 for streams) keep the four processes
            # within PostgreSQL's 100 connections while the suite's other workers run their own gateways.
            env = common | {"MAILGW_GRPC_ADDR": f"127.0.0.1:{port}", "MAILGW_GRPC_WORKERS": "8"}
            children.append(Child(f"gateway{n}", ["-m", "gateway"], env))
        for n, port in enumerate(http_ports):
            env = common | {"MAILGW_HTTP_ADDR": f"127.0.0.1:{port}"}
            children.append(Child(f"sidecar{n}", ["-m", "feedback_http"], env))
        channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in grpc_ports]
        for child, channel in zip(children[:2], channels, strict=True):
            health = health_pb2_grpc.HealthStub(channel)
            child.wait_ready(lambda health=health: health.Check(health_pb2.HealthCheckRequest(), timeout=1))
        for child, base_url in zip(children[2:], sidecars, strict=True):
            child.wait_ready(lambda base_url=base_url: urllib.request.urlopen(f"{base_url}/healthz", timeout=1))
        yield Cluster([pb_grpc.MailGatewayServiceStub(channel) for channel in channels], sidecars, children)
    finally:
        for channel in channels:
            channel.close()
        exits = {child.name: child.stop() for child in children}
    assert all(code == 0 for code in exits.values()), (exits, Cluster([], [], children).logs())


# --- what the clients saw ----------------------------------------------------------------------------------


@dataclass
class RpcAnswer:
    call: str  # "send r<round>" or "status"
    address: str
    rid: str
    gateway: int
    code: grpc.StatusCode
    message: str = ""
    reason: str = ""
    metadata: dict = field(default_factory=dict)
    message_id: str = ""
    contact_id: str = ""


def rpc_answer(future, call: str, address: str, rid: str, gateway: int) -> RpcAnswer:
    answer = RpcAnswer(call, address, rid, gateway, grpc.StatusCode.OK)
    try:
        response = future.result()
    except grpc.RpcError as err:
        answer.code, answer.message = err.code(), err.details() or ""
        status = rpc_status.from_call(err)
        for detail in status.details if status else []:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                answer.reason, answer.metadata = info.reason, dict(info.metadata)
        return answer
    answer.message_id, answer.contact_id = getattr(response, "message_id", ""), response.contact_id
    return answer


@dataclass
class HttpAnswer:
    call: str  # "sns" or "unsubscribe"
    address: str
    sidecar: int
    status: int
    body: str
    notification_id: str = ""


def http_post(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


# --- the jobs, each run on a worker thread, in a shuffled order ------------------------------------------


def send_request(address: str, rid: str) -> pb.SendEmailRequest:
    return pb.SendEmailRequest(
        to=address, subject=f"Message {rid}", text_body=f"Hello, this is {rid}.", request_id=rid, tags={"rid": rid}
    )


def send_rounds(cluster: Cluster, address: str, rid: str, partners) -> list[RpcAnswer]:
    """The same request id to both gateways at the same time, round after round."""
    request, answers = send_request(address, rid), []
    for round_no, calls in enumerate(CALLS_PER_GATEWAY, 1):
        racing = [
            (gateway, cluster.stubs[gateway].SendEmail.future(request, timeout=RPC_TIMEOUT))
            for _ in range(calls)
            for gateway in (0, 1)
        ]
        answers += [rpc_answer(call, f"send r{round_no}", address, rid, gateway) for gateway, call in racing]
    return answers


def post_sns(cluster: Cluster, address: str, envelope: dict, sidecar: int) -> list[HttpAnswer]:
    status, text = http_post(f"{cluster.sidecars[sidecar]}/sns", json.dumps(envelope).encode(), "text/plain")
    return [HttpAnswer("sns", address, sidecar, status, text, envelope["MessageId"])]


def burst(calls, partners) -> list:
    """Calls to the sidecars all at once (each makes its own requests only, so none waits for a queued one)."""
    results = []
    for future in [partners.submit(call) for call in calls]:
        results += future.result()
    return results


def unsubscribe(cluster: Cluster, address: str, sidecar: int) -> list:
    """One-click unsubscribe; the contact id is looked up first (the contact may not exist yet)."""
    answers, give_up = [], time.monotonic() + 20
    while True:
        call = cluster.stubs[sidecar].GetContactStatus.future(
            pb.GetContactStatusRequest(email=address), timeout=RPC_TIMEOUT
        )
        answer = rpc_answer(call, "status", address, "", sidecar)
        if answer.code != grpc.StatusCode.NOT_FOUND or time.monotonic() > give_up:
            break
        time.sleep(0.02)  # nobody has mailed it or reported on it yet
    answers.append(answer)
    if answer.code == grpc.StatusCode.OK:
        status, text = http_post(
            f"{cluster.sidecars[sidecar]}/unsubscribe/{answer.contact_id}",
            b"List-Unsubscribe=One-Click",
            "application/x-www-form-urlencoded",
        )
        answers.append(HttpAnswer("unsubscribe", address, sidecar, status, text))
    return answers


def notifications(signer, address: str, kinds: str) -> list[dict]:
    """Signed SNS envelopes of the SES events planned for address; each has its own MessageId."""
    events = [
        ses_samples.bounce_event(
            "Transient",
            "MailboxFull",
            [ses_samples.bounced_recipient(address, status="4.2.2", diagnostic_code="smtp; 452 4.2.2 mailbox full")],
        ),
        ses_samples.bounce_event(
            "Transient",
            "General",
            [ses_samples.bounced_recipient(address, status=None, diagnostic_code=None, action=None)],
            identity=True,
        ),
    ][:SOFT_BOUNCES]
    if "B" in kinds:
        events += [
            ses_samples.bounce_event("Permanent", "General", [ses_samples.bounced_recipient(address)]),
            ses_samples.bounce_event("Permanent", "NoEmail", [ses_samples.bounced_recipient(address)], identity=True),
        ]
    if "C" in kinds:
        events += [
            ses_samples.complaint_event([address.lower()], "abuse"),
            ses_samples.complaint_event([address], None, identity=True),
        ]
    return [signed_envelope(signer, message=ses_samples.message(event)) for event in events]


def run_jobs(jobs) -> list:
    results, failures = [], []
    with ThreadPoolExecutor(WORKERS) as pool, ThreadPoolExecutor(PARTNERS) as partners:
        for future in [pool.submit(job, partners) for job in jobs]:
            try:
                results += future.result()
            except Exception as exc:  # a job that could not finish: reported, not hidden behind the others
                failures.append(repr(exc))
    assert not failures, failures
    return results


def replays(cluster: Cluster, sends: list[tuple[str, str]]) -> list[RpcAnswer]:
    """After everything: every request id once more to each gateway, and a new one per address (the guard)."""
    calls = [
        (address, rid, gateway, cluster.stubs[gateway].SendEmail.future(send_request(address, rid), timeout=30))
        for address, rid in sends
        for gateway in (0, 1)
    ]
    answers = [rpc_answer(call, "send replay", address, rid, gateway) for address, rid, gateway, call in calls]
    for index, address in enumerate(ADDRESSES):
        rid, gateway = f"final-{index}", index % 2
        call = cluster.stubs[gateway].SendEmail.future(send_request(address, rid), timeout=RPC_TIMEOUT)
        answers.append(rpc_answer(call, "send final", address, rid, gateway))
    return answers


def stored_state(database_url: str):
    """Everything in the database, once both gateways have dispatched every accepted message."""
    open_database(database_url)
    in_flight = Message.state.in_([MessageState.QUEUED, MessageState.SENDING])
    deadline = time.monotonic() + 60
    while True:
        with database.connection_context():
            if not Message.select().where(in_flight).exists() or time.monotonic() > deadline:
                break
        time.sleep(0.1)
    with database.connection_context():
        contacts = {contact.email: contact for contact in Contact.select()}
        history = defaultdict(list)
        for change in StatusChange.select().order_by(StatusChange.id):
            history[change.contact_id].append(change)
        notification_ids = [event.notification_id for event in FeedbackEvent.select()]
        messages = list(Message.select())
    return contacts, history, notification_ids, messages


# --- the test ----------------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_gateways_and_two_sidecars_race_on_one_database(cluster, ses, signer, database_url):
    rng = random.Random(SEED)
    sends = [(address, f"rid-{i}-{j}") for i, address in enumerate(ADDRESSES) for j in range(REQUEST_IDS_PER_ADDRESS)]
    envelopes = {i: notifications(signer, address, PLAN[i]) for i, address in enumerate(ADDRESSES)}
    posted_ids = {envelope["MessageId"] for batch in envelopes.values() for envelope in batch}
    send_jobs = [lambda partners, a=address, r=rid: send_rounds(cluster, a, r, partners) for address, rid in sends]
    # Each SNS message goes to both sidecars (a redelivery racing the delivery), each unsubscribe to one of
    # them in turn; an address's feedback is split into bursts whose calls all start at once.
    feedback_jobs = []
    for index, address in enumerate(ADDRESSES):
        calls = [
            functools.partial(post_sns, cluster, address, envelope, sidecar)
            for envelope in envelopes[index]
            for sidecar in (0, 1)
        ]
        if "U" in PLAN[index]:
            calls += [functools.partial(unsubscribe, cluster, address, n % 2) for n in range(UNSUBSCRIBES_PER_ADDRESS)]
        rng.shuffle(calls)
        feedback_jobs += [functools.partial(burst, calls[n::BURSTS_PER_ADDRESS]) for n in range(BURSTS_PER_ADDRESS)]
    # A head start for some sends, so that every address is mailed before feedback arrives; then both mixed.
    rng.shuffle(send_jobs)
    head_start = len(send_jobs) // 4
    jobs = send_jobs[head_start:] + feedback_jobs
    rng.shuffle(jobs)
    jobs = send_jobs[:head_start] + jobs

    # Blocking clients on threads: this loop must stay free to serve the sidecars the SNS signing certificate.
    started = time.monotonic()
    answers = await asyncio.to_thread(run_jobs, jobs)
    answers += await asyncio.to_thread(replays, cluster, sends)
    elapsed = time.monotonic() - started
    contacts, history, notification_ids, message_rows = await asyncio.to_thread(stored_state, database_url)
    logs = cluster.logs()

    rpc = [a for a in answers if isinstance(a, RpcAnswer)]
    http = [a for a in answers if isinstance(a, HttpAnswer)]
    summary = (
        f"{database_url.split(':')[0]}: {len(rpc)} RPCs ({Counter(a.code.name for a in rpc)}), "
        f"{len(http)} HTTP posts ({Counter(a.call for a in http)}), {len(ses.sent)} SES requests, "
        f"in {elapsed:.1f}s"
    )
    print(summary)

    # Every answer is one a caller can act on: nothing retryable-because-broken, nothing about locks.
    allowed = {(grpc.StatusCode.OK, ""), (grpc.StatusCode.FAILED_PRECONDITION, "RECIPIENT_SUPPRESSED")}
    bad_rpc = [a for a in rpc if a.call.startswith("send") and (a.code, a.reason) not in allowed]
    bad_rpc += [a for a in rpc if a.call == "status" and a.code != grpc.StatusCode.OK]
    bad_rpc += [a for a in rpc if "locked" in a.message.lower()]
    assert not bad_rpc, (summary, bad_rpc[:10])
    bad_http = [a for a in http if a.status != 200 or "locked" in a.body.lower()]
    assert not bad_http, (summary, bad_http[:10])
    for needle in ("locked", "Traceback", "database unavailable"):
        assert needle not in logs, f"{needle!r} in the processes' logs:\n{logs[-20000:]}"

    # One contact per address, the same contact id in every answer that names one.
    keys = {address: email_key(address) for address in ADDRESSES}
    assert set(contacts) == set(keys.values())
    contact_id = {address: contacts[key].contact_id for address, key in keys.items()}
    named = [(a.address, a.contact_id or a.metadata.get("contactId")) for a in rpc]
    assert [pair for pair in named if pair[1] != contact_id[pair[0]]] == []

    # No duplicate send: every request id that succeeded names one message; each message reached SES at most
    # once, from either gateway; a message not sent was refused by the guard at dispatch, after its recipient opted
    # out between acceptance and dispatch.
    ok = defaultdict(set)
    for answer in rpc:
        if answer.call.startswith("send") and answer.code == grpc.StatusCode.OK:
            ok[answer.rid].add(answer.message_id)
    assert {rid: ids for rid, ids in ok.items() if len(ids) != 1} == {}, "one request id, different message ids"
    message_of = {rid: ids.pop() for rid, ids in ok.items()}
    ses_requests = Counter(request.tags.get("rid") for request in ses.sent)
    duplicates = {rid: count for rid, count in ses_requests.items() if count > 1}
    assert duplicates == {}, f"request ids sent to SES more than once: {duplicates}"
    assert set(ses_requests) <= set(ok), "SES got a message no call was told was accepted"
    assert {r.tags["rid"]: r.tags["message_id"] for r in ses.sent} == {rid: message_of[rid] for rid in ses_requests}
    address_of = {rid: address for address, rid in sends} | {f"final-{i}": a for i, a in enumerate(ADDRESSES)}
    wrong_contact = [r.tags for r in ses.sent if r.tags["contact_id"] != contact_id[address_of[r.tags["rid"]]]]
    assert wrong_contact == []
    # A request id that succeeded keeps answering with its first response, also after its recipient is suppressed.
    replayed = [a for a in rpc if a.call == "send replay" and a.rid in ok]
    assert replayed and all(a.code == grpc.StatusCode.OK for a in replayed), [
        a for a in replayed if a.code != grpc.StatusCode.OK
    ][:10]
    # One row per accepted request id, each settled: sent (SES has it) or suppressed at dispatch (SES never saw it).
    states = {row.request_id: (row.message_id, row.state) for row in message_rows}
    assert {rid: message_id for rid, (message_id, _) in states.items()} == message_of
    expected_states = {rid: MessageState.SENT if rid in ses_requests else MessageState.SUPPRESSED for rid in message_of}
    assert {rid: state for rid, (_, state) in states.items()} == expected_states
    suppressed_at_dispatch = sum(state is MessageState.SUPPRESSED for _, state in states.values())
    print(f"{suppressed_at_dispatch} messages refused by the guard at dispatch")

    # SNS: each MessageId stored once and applied by exactly one of the two sidecars.
    assert len(notification_ids) == len(set(notification_ids)) == len(posted_ids)
    assert set(notification_ids) == posted_ids
    recorded = Counter(a.notification_id for a in http if a.call == "sns" and a.body == "recorded")
    assert recorded == Counter(posted_ids), "a notification applied by both sidecars, or by neither"

    # Statuses: the most severe event wins, reached by a strictly rising chain with one row per change.
    for index, address in enumerate(ADDRESSES):
        contact = contacts[keys[address]]
        expected = expected_status(index)
        rows = history[contact.id]
        steps = [(change.from_status, change.to_status, change.source) for change in rows]
        context = (address, PLAN[index], steps)
        # A report the status already covered (a one-click after a bounce) is kept as evidence: a row from the status
        # of its moment to itself, naming what its source reported.
        assert all(before.to_status == after.from_status for before, after in itertools.pairwise(rows)), context
        evidence = [change for change in rows if change.from_status == change.to_status]
        assert all(change.source == SOURCE_OF[change.evidence] for change in evidence), context
        assert {change.evidence for change in evidence} <= {STATUS_OF[kind] for kind in PLAN[index]}, context
        chain = [change for change in rows if change.from_status != change.to_status]
        path = [ContactStatus.ACTIVE, *(change.to_status for change in chain)]
        assert contact.status == expected, context
        assert path[-1] == expected, context
        assert [change.from_status for change in chain] == path[:-1], context
        assert all(low.severity < high.severity for low, high in itertools.pairwise(path)), context
        assert all(change.source == SOURCE_OF[change.to_status] for change in chain), context
        assert {change.to_status for change in chain} <= {STATUS_OF[kind] for kind in PLAN[index]}, context
        assert contact.soft_bounces == SOFT_BOUNCES, context
        # The guard agrees with the record, and never refused for a status this address was not given.
        refusals = {
            a.metadata.get("status") for a in rpc if a.address == address and a.reason == "RECIPIENT_SUPPRESSED"
        }
        assert refusals <= {STATUS_OF[kind].value for kind in PLAN[index]}, (context, refusals)
        final = next(a for a in rpc if a.call == "send final" and a.address == address)
        if expected.suppressed:
            assert (final.code, final.metadata.get("status")) == (grpc.StatusCode.FAILED_PRECONDITION, expected.value)
        else:
            assert final.code == grpc.StatusCode.OK, final

"""Signed webhooks: a caller's records POSTed to its URL in log order, signed so that the README's own `verify` (and
its Node and Go twins) accepts them and refuses anything else; retried with backoff on a failure, paused and
resumed with the backlog in order, never redirected; one gateway delivering at a time. Real gateways on both
databases, a real HTTP endpoint on loopback."""

import datetime
import logging
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.core.config import ConfigError
from gateway.core.webhooks import signature, webhooks_from
from gateway.events.watch import position_of
from gateway.store import event_log
from gateway.store.database import database_now, unit_of_work
from gateway.store.models import WebhookCursor
from support.processes import wait_until
from support.scrape import scrape, value
from support.timings import FAST
from support.webhook_receiver import TRICKLE, Receiver
from tests.rpc import settled
from tests.test_events import CRM, OTHER, TOKENS, as_, send

README = Path(__file__).resolve().parent.parent / "README.md"
SECRET = "whsec-crm-0123456789abcdef0123456789"


def readme_block(language: str) -> str:
    """The README's first code block in `language` of its "Webhooks" section."""
    section = README.read_text().split("### Webhooks\n", 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def readme_verify():
    namespace: dict = {}
    exec(readme_block("python"), namespace)  # noqa: S102 (the README's snippet, as a reader would paste it)
    return namespace["verify"]


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def hooked(receiver: Receiver, **changes) -> dict:
    """Gateway settings with crm's webhook pointing at `receiver`."""
    return TOKENS | {"webhook_urls": f"crm={receiver.url}", "webhook_secrets": f"crm={SECRET}"} | changes


def delivering(caller: str = "crm") -> None:
    """Wait until a gateway has taken the caller's webhook cursor: what happens from then on is its to deliver."""

    def taken():
        with unit_of_work():
            return WebhookCursor.select().where(WebhookCursor.caller == caller).exists()

    wait_until(taken)


def resigned(post, *, seconds_earlier: int) -> dict[str, str]:
    """The POST's headers as the gateway would have signed them `seconds_earlier`: what a replay of an old POST
    carries."""
    timestamp = int(post.headers["X-Mailgw-Timestamp"]) - seconds_earlier
    return post.headers | {
        "X-Mailgw-Timestamp": str(timestamp),
        "X-Mailgw-Signature": signature(SECRET, timestamp, post.body),
    }


def positions(events: list[dict]) -> list[int]:
    return [position_of(event["cursor"]) for event in events]


def test_the_readmes_verify_is_its_first_python_block():
    first = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert first == readme_block("python") and "def verify(secret: str, headers, body: bytes" in first


def test_a_callers_records_arrive_signed_in_log_order_and_the_readmes_verify_accepts_only_them(make_gateway, receiver):
    gateway, stub = make_gateway(**hooked(receiver))
    delivering()
    ids = [send(stub, f"r{i}@example.org", request_id=f"order-{i}", tenant="acme") for i in range(3)]
    send(stub, "someone@example.org", token=OTHER)  # another caller's: never in crm's webhook
    for message_id in ids:
        settled(stub, message_id, metadata=as_(CRM))

    events = wait_until(lambda: len(receiver.acknowledged()) >= 6 and receiver.acknowledged())

    assert len(events) == 6 and positions(events) == sorted(positions(events))
    assert sorted((event["messageId"], event["type"]) for event in events) == sorted(
        (message_id, kind) for message_id in ids for kind in ("EVENT_TYPE_QUEUED", "EVENT_TYPE_SENT")
    )
    first = next(event for event in events if event["messageId"] == ids[0])
    assert (first["requestId"], first["tenant"], first["priority"]) == ("order-0", "acme", "PRIORITY_TRANSACTIONAL")
    assert (first["state"], first["previousState"], first["bounceType"]) == (
        "MESSAGE_STATE_QUEUED",
        "MESSAGE_STATE_UNSPECIFIED",
        "",
    )
    verify = readme_verify()
    post = receiver.posts[0]
    assert post.headers["Content-Type"] == "application/json"
    assert verify(SECRET, post.headers, post.body)
    assert not verify("another-secret-0123456789", post.headers, post.body)
    assert not verify(SECRET, post.headers, post.body.replace(b"EVENT_TYPE_QUEUED", b"EVENT_TYPE_SENT"))
    replayed = resigned(post, seconds_earlier=600)  # a genuine signature, ten minutes old
    assert verify(SECRET, replayed, post.body, tolerance=900) and not verify(SECRET, replayed, post.body)
    assert not verify(SECRET, post.headers | {"X-Mailgw-Timestamp": "9" * 5000}, post.body)


def test_a_failing_endpoint_is_retried_with_backoff_paused_and_gets_its_backlog_in_order_when_it_answers(
    make_gateway, receiver, caplog
):
    caplog.set_level(logging.INFO, logger="gateway.events.webhooks")
    receiver.otherwise = 500
    gateway, stub = make_gateway(**hooked(receiver), metrics_addr="127.0.0.1:0")
    delivering()
    first = send(stub, "ada@example.org")

    wait_until(lambda: len(receiver.posts) >= 6)  # five failures pause it; the sixth is a probe
    failed = receiver.posts[:6]
    assert {post.status for post in failed} == {500}
    assert {(post.events[0]["messageId"], post.events[0]["cursor"]) for post in failed} == {
        (first, failed[0].events[0]["cursor"])
    }  # the first waiting record, again and again
    gaps = [later.arrived - earlier.arrived for earlier, later in zip(failed, failed[1:], strict=False)]
    backoffs = [0.02, 0.04, 0.08, 0.16, 0.2]  # FAST timings: 0.02 s doubling, at most 0.2 s
    assert all(gap >= 0.9 * backoff for gap, backoff in zip(gaps, backoffs, strict=True)), gaps
    # Counted once the gateway has the answer, which the receiver sent after recording the POST: waited for.
    page = wait_until(
        lambda: (
            (p := scrape(gateway.metrics.port))
            and value(p, "mailgw_webhook_posts_total", caller="crm", result="failed") >= 6
            and p
        )
    )
    assert value(page, "mailgw_webhook_paused", caller="crm") == 1
    assert any(
        "webhook of caller crm paused" in r.getMessage() and "HTTP 500" in r.getMessage() for r in caplog.records
    )
    more = [send(stub, f"r{i}@example.org") for i in range(4)]
    for message_id in [first, *more]:
        settled(stub, message_id, metadata=as_(CRM))

    receiver.otherwise = 200
    events = wait_until(lambda: len(receiver.acknowledged()) >= 10 and receiver.acknowledged())

    assert positions(events) == sorted(set(positions(events)))  # in order, none twice
    assert [e["messageId"] for e in events if e["type"] == "EVENT_TYPE_QUEUED"] == [first, *more]
    wait_until(lambda: value(scrape(gateway.metrics.port), "mailgw_webhook_paused", caller="crm") == 0)
    assert any("webhook of caller crm resumed" in r.getMessage() for r in caplog.records)
    assert not any(SECRET in r.getMessage() for r in caplog.records)


@pytest.mark.one_database
def test_a_redirect_is_a_failure_and_is_not_followed(make_gateway, receiver):
    elsewhere = Receiver().start()
    try:
        receiver.otherwise, receiver.location = 307, elsewhere.url
        gateway, stub = make_gateway(**hooked(receiver))
        delivering()
        message_id = send(stub, "ada@example.org")

        wait_until(lambda: len(receiver.posts) >= 3)

        assert elsewhere.posts == []
        assert {post.events[0]["messageId"] for post in receiver.posts} == {message_id}  # retried, never acknowledged
    finally:
        elsewhere.stop()


def test_one_gateway_delivers_at_a_time_and_a_stopped_one_hands_over_where_it_stopped(make_gateway, receiver):
    pairs = [make_gateway(**hooked(receiver)), make_gateway(**hooked(receiver))]
    delivering()
    before = [send(pairs[0][1], f"a{i}@example.org") for i in range(5)]
    wait_until(lambda: len(receiver.acknowledged()) >= 10)
    with unit_of_work():
        owner = WebhookCursor.get_by_id("crm").owner
    [(holder, _)] = [pair for pair in pairs if pair[0].webhooks.owner == owner]
    holder.stop(5.0)
    [(other, other_stub)] = [pair for pair in pairs if pair[0] is not holder]

    after = [send(other_stub, f"b{i}@example.org") for i in range(5)]

    events = wait_until(lambda: len(receiver.acknowledged()) >= 20 and receiver.acknowledged())
    assert positions(events) == sorted(set(positions(events)))  # in order, none twice: one sender at a time
    assert [e["messageId"] for e in events if e["type"] == "EVENT_TYPE_QUEUED"] == before + after
    with unit_of_work():
        assert WebhookCursor.get_by_id("crm").owner == other.webhooks.owner


@pytest.mark.parametrize(
    ("urls", "secrets", "message"),
    [
        (
            "crm=https://crm.internal/hooks",
            "",
            "MAILGW_WEBHOOK_SECRETS: caller 'crm' of MAILGW_WEBHOOK_URLS has no secret",
        ),
        ("", f"crm={SECRET}", "an entry names a caller that MAILGW_WEBHOOK_URLS does not"),
        ("crm=ftp://crm.internal/hooks", f"crm={SECRET}", "not an http(s) URL with a host"),
        ("crm=https://crm.internal/hooks", "crm=short-secret", "a secret is 16+ printable ASCII"),
        ("crm=https://a/1,crm=https://b/2", f"crm={SECRET}", "caller 'crm' is named twice"),
        ("crm=https://a/1", f"crm{SECRET}", "MAILGW_WEBHOOK_SECRETS: entry 1 is not caller=value"),
        ("crm=https://user:pw@a/1", f"crm={SECRET}", "user:password in a URL is not sent"),
        # A base64 secret set without "crm=": the text before its padding reads as a caller, and is never shown.
        (
            "crm=https://a/1",
            f"crm={SECRET},{SECRET}AAAA==",
            "an entry names a caller that MAILGW_WEBHOOK_URLS does not",
        ),
    ],
)
def test_a_webhook_setting_that_cannot_work_is_one_line_that_never_shows_a_secret(urls, secrets, message):
    with pytest.raises(ConfigError) as refused:
        webhooks_from(urls, secrets)
    assert (
        message in str(refused.value) and SECRET not in str(refused.value) and "short-secret" not in str(refused.value)
    )


@pytest.mark.slow
@pytest.mark.one_database
@pytest.mark.parametrize("language", ["js", "go"])
def test_the_readmes_node_and_go_verify_accept_a_real_post_and_refuse_a_changed_one(
    make_gateway, receiver, tmp_path, language
):
    gateway, stub = make_gateway(**hooked(receiver))
    delivering()
    send(stub, "ada@example.org")
    post = wait_until(lambda: receiver.posts and receiver.posts[0])
    (tmp_path / "body").write_bytes(post.body)
    (tmp_path / "changed").write_bytes(post.body.replace(b"QUEUED", b"SENT"))
    if language == "js":
        program = tmp_path / "verify.mjs"
        program.write_text(
            readme_block("js")
            + "\nimport { readFileSync } from 'node:fs';\n"
            + "const [secret, timestamp, signature, path] = process.argv.slice(2);\n"
            + "const headers = { 'x-mailgw-timestamp': timestamp, 'x-mailgw-signature': signature };\n"
            + "console.log(verify(secret, headers, readFileSync(path)));\n"
        )
        command = ["node", str(program)]
    else:
        program = tmp_path / "verify.go"
        program.write_text(
            "package main\n\n"
            + readme_block("go").replace("import (\n", 'import (\n\t"fmt"\n\t"os"\n', 1)
            + "\nfunc main() {\n"
            + "\tbody, _ := os.ReadFile(os.Args[4])\n"
            + "\theader := http.Header{}\n"
            + '\theader.Set("X-Mailgw-Timestamp", os.Args[2])\n'
            + '\theader.Set("X-Mailgw-Signature", os.Args[3])\n'
            + "\tfmt.Println(Verify(os.Args[1], header, body, 5*time.Minute))\n}\n"
        )
        built = tmp_path / "verify"
        subprocess.run(
            ["go", "build", "-o", str(built), str(program)],
            check=True,
            env={
                "GO111MODULE": "off",
                "GOPATH": str(tmp_path / "gopath"),
                "GOCACHE": str(tmp_path / "cache"),
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
            },
        )
        command = [str(built)]

    def run(secret: str, body: str, headers: dict[str, str] = post.headers) -> str:
        stamp, signed = headers["X-Mailgw-Timestamp"], headers["X-Mailgw-Signature"]
        return subprocess.run(
            [*command, secret, stamp, signed, str(tmp_path / body)], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert run(SECRET, "body") == "true"
    assert run(SECRET, "changed") == "false"
    assert run("another-secret-0123456789", "body") == "false"
    assert run(SECRET, "body", resigned(post, seconds_earlier=600)) == "false"  # a replay of an old POST


@pytest.mark.one_database
def test_no_webhook_loop_runs_without_a_webhook_and_one_runs_for_each_configured_caller(make_gateway, receiver):
    gateway, stub = make_gateway(**TOKENS)
    assert gateway.webhooks is None and not any(loop.name.startswith("webhook") for loop in gateway.loops)
    hooked_gateway, _ = make_gateway(**hooked(receiver))
    assert [loop.name for loop in hooked_gateway.loops if loop.name.startswith("webhook")] == ["webhook:crm"]


@pytest.mark.one_database
def test_a_webhook_for_a_caller_no_token_names_stops_the_gateway_at_start(make_gateway, receiver):
    with pytest.raises(ConfigError, match="caller 'crn' is not a caller of MAILGW_AUTH_TOKENS"):
        make_gateway(**hooked(receiver, webhook_urls=f"crn={receiver.url}", webhook_secrets=f"crn={SECRET}"))


@pytest.mark.one_database
def test_an_answer_trickled_byte_by_byte_is_cut_at_the_post_limit_and_tried_again(make_gateway, receiver):
    receiver.answers = [TRICKLE]  # 200, then a byte every 0.1 s for a minute
    gateway, stub = make_gateway(**hooked(receiver), timings=replace(FAST, webhook_post_seconds=0.5))
    delivering()
    message_id = send(stub, "ada@example.org")

    events = wait_until(lambda: receiver.acknowledged())

    first, second = receiver.posts[0], receiver.posts[1]
    assert first.status == TRICKLE and second.arrived - first.arrived < 5  # not the trickle's minute
    assert events[0]["messageId"] == message_id and events[0]["cursor"] == first.events[0]["cursor"]


def test_a_gateway_that_died_holding_a_webhook_is_replaced_when_its_lease_ends(make_gateway, receiver):
    _, stub = make_gateway(**TOKENS)  # no webhook yet: these records were acknowledged by the gateway that died
    acknowledged = send(stub, "before@example.org")
    settled(stub, acknowledged, metadata=as_(CRM))
    with unit_of_work():
        event_log.sequence()
        position = event_log.last_position()
        ends = database_now() + datetime.timedelta(seconds=0.5)
        WebhookCursor.create(caller="crm", position=position, owner="dead-gateway:123:abc", lease_until=ends)
    gateway, stub = make_gateway(**hooked(receiver))
    waiting = send(stub, "after@example.org")

    events = wait_until(lambda: receiver.acknowledged())

    with unit_of_work():
        assert database_now() >= ends  # not before the dead gateway's lease ended
    assert positions(events)[0] == position + 1 and events[0]["messageId"] == waiting
    assert acknowledged not in {event["messageId"] for event in events}

"""The Grafana dashboard queries only metrics that a running gateway and sidecar expose, and shows all of ours.

Every PromQL expression in ops/grafana/mail-gateway.json is parsed (promql-parser) and each metric it selects must be
on a real /metrics page of `python -m gateway` or `python -m feedback_http` after some traffic: a send, a refused
send, an SES refusal, a bounce, a forged notification (a histogram is queried by its _bucket, _sum or _count
samples, which is what the pages carry).
"""

import asyncio
import json
from pathlib import Path

import aiohttp
import grpc
import promql_parser
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from support import ses_samples
from support.processes import free_port, start, wait_until
from support.scrape import names, scrape_async, value
from support.sns_signing import TOPIC_ARN, signed_envelope
from tests.rpc import rpc_failure, settled
from tests.test_webhooks import receiver  # noqa: F401 (a fixture)

DASHBOARD = Path(__file__).resolve().parents[1] / "ops" / "grafana" / "mail-gateway.json"
GRAFANA_RANGES = ("$__rate_interval", "$__interval", "$__range")
OURS = ("mailgw_", "grpc_server_")
TOKEN = "ops-token-0123456789abcdef"


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels and all(panel.get("targets") for panel in panels)
    return [target["expr"] for panel in panels for target in panel["targets"]]


def selected_metrics(node) -> set[str]:
    """The metric names an expression selects, from its syntax tree."""
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name}
    children = [getattr(node, name, None) for name in ("vector_selector", "lhs", "rhs", "expr", "param")]
    children += list(getattr(node, "args", None) or [])
    return set().union(*(selected_metrics(child) for child in children if child is not None and _is_node(child)))


def _is_node(value) -> bool:
    return type(value).__module__.startswith("promql_parser")


def queried_metrics() -> set[str]:
    found = set()
    for expr in dashboard_expressions():
        for variable in GRAFANA_RANGES:
            expr = expr.replace(variable, "5m")
        found |= selected_metrics(promql_parser.parse(expr))  # raises on a syntax error
    return found


@pytest.mark.slow  # it starts a gateway and a sidecar process
async def test_every_metric_the_dashboard_queries_is_exposed_and_every_one_of_ours_is_shown(
    tmp_path,
    ses,
    sns_host,
    signer,
    receiver,  # noqa: F811
):
    database_url = f"sqlite:///{tmp_path}/mailgw.db"
    gateway_metrics, sidecar_metrics, grpc_addr, http_port = free_port(), free_port(), free_port(), free_port()
    common = {"MAILGW_DATABASE_URL": database_url, "MAILGW_LOG_LEVEL": "WARNING"}
    sidecar = start(
        ["-m", "feedback_http"],
        common
        | {
            "MAILGW_HTTP_ADDR": f"127.0.0.1:{http_port}",
            "MAILGW_FEEDBACK_METRICS_ADDR": f"127.0.0.1:{sidecar_metrics}",
            "MAILGW_SNS_TOPIC_ARNS": TOPIC_ARN,
            "AWS_ENDPOINT_URL_SNS": sns_host.url,
        },
    )
    gateway = start(
        ["-m", "gateway"],
        common
        | {
            "MAILGW_GRPC_ADDR": f"127.0.0.1:{grpc_addr}",
            "MAILGW_METRICS_ADDR": f"127.0.0.1:{gateway_metrics}",
            "MAILGW_DEFAULT_FROM": "noreply@example.com",
            "MAILGW_AUTH_TOKENS": f"ops={TOKEN}",
            "MAILGW_WEBHOOK_URLS": f"ops={receiver.url}",  # its metrics are the configured callers'
            "MAILGW_WEBHOOK_SECRETS": "ops=ops-webhook-secret-0123456789",
            "MAILGW_SES_TENANTS": "true",  # its gauge is shown only then
        },
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{grpc_addr}")
    try:
        health = health_pb2_grpc.HealthStub(channel)
        wait_until(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1, gateway)
        stub = pb_grpc.MailGatewayServiceStub(channel)
        sns = f"http://127.0.0.1:{http_port}/sns"
        event = ses_samples.bounce_event("Permanent", "General", [ses_samples.bounced_recipient("gone@example.org")])
        bounce = signed_envelope(signer, message=ses_samples.message(event))
        forged = dict(bounce, MessageId="forged-1", Message=bounce["Message"].replace("Permanent", "Transient"))
        async with aiohttp.ClientSession() as session:
            for envelope, status in ((bounce, 200), (forged, 403)):
                async with session.post(sns, data=json.dumps(envelope)) as response:
                    assert response.status == status

        request = pb.SendEmailRequest(subject="Hi", text_body="Hello")
        call = {"metadata": [("authorization", f"Bearer {TOKEN}")]}
        rpc_failure(stub.SendEmail, pb.SendEmailRequest(to="gone@example.org", subject="Hi", text_body="x"), **call)
        ses.fail(400, "MessageRejected", "Email content rejected")
        request.to = "ada@example.org"
        assert settled(stub, stub.SendEmail(request, **call).message_id, **call).state == pb.MESSAGE_STATE_FAILED
        request.to = "bob@example.org"
        assert settled(stub, stub.SendEmail(request, **call).message_id, **call).state == pb.MESSAGE_STATE_SENT

        gateway_page = await scrape_async(gateway_metrics)
        for _ in range(100):  # a send is counted right after its outcome's commit, which GetMessage may see first
            if value(gateway_page, "mailgw_sends_total", outcome="sent"):
                break
            await asyncio.sleep(0.05)
            gateway_page = await scrape_async(gateway_metrics)
        sidecar_page = await scrape_async(sidecar_metrics)
    finally:
        channel.close()
        for process in (gateway, sidecar):
            process.terminate()
            process.wait(30)

    on_pages = names(gateway_page) | names(sidecar_page)
    queried = queried_metrics()
    assert queried - on_pages == set(), "the dashboard queries metrics nobody exposes"
    ours = {name.removesuffix("_total") for name in on_pages if name.startswith(OURS)}
    ours = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in ours}
    shown = {name.removesuffix("_total").removesuffix("_bucket") for name in queried}
    assert ours - shown == set(), "metrics without a panel"

"""Line 9, the message: 5 MB attachments sent by 16 callers at once to a gateway process (SQLite) and delivered to
the SES stand-in; how long accepting took, when the last reached SES, and the gateway's peak RSS (VmHWM) over the
whole run. `python -m bench.message [--each N]`."""

import argparse
import json
import os
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from bench.harness import Profile, Row, gateway, peak_rss_mb, process
from bench.lanes import percentile

CALLERS = 16
ATTACHMENT_BYTES = 5 * 1024 * 1024


def attachment_run(database_url: str, *, each: int, callers: int = CALLERS) -> dict:
    import grpc

    from bench.lines import wait_for_arrivals  # bench.lines lists this line: imported when it runs
    from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
    from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc

    content = os.urandom(ATTACHMENT_BYTES)  # incompressible, as a scanned PDF is
    tokens = {f"caller{n}": f"caller{n}-bench-token-0123456789" for n in range(callers)}
    accept_seconds: list[float] = []
    failures: list[str] = []
    with ExitStack() as stack:
        _, ses_port = stack.enter_context(process(["-m", "bench.peers", "ses"], {}))
        ses_url = f"http://127.0.0.1:{ses_port}"
        env = {
            "AWS_ENDPOINT_URL_SESV2": ses_url,
            "MAILGW_SEND_RATE": "1000",
            "MAILGW_AUTH_TOKENS": ",".join(f"{name}={token}" for name, token in tokens.items()),
        }
        server, address = stack.enter_context(gateway(database_url, env))
        channel = stack.enter_context(grpc.insecure_channel(address))
        stub = pb_grpc.MailGatewayServiceStub(channel)

        def caller(name: str) -> None:
            for n in range(each):
                request = pb.SendEmailRequest(
                    to=f"{name}-{n}@example.org",
                    subject="Your scanned contract",
                    text_body="Attached.",
                    attachments=[
                        pb.Attachment(filename="contract.pdf", content_type="application/pdf", content=content)
                    ],
                )
                started = time.monotonic()
                try:
                    stub.SendEmail(request, metadata=[("authorization", f"Bearer {tokens[name]}")], timeout=120)
                except grpc.RpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")
                accept_seconds.append(time.monotonic() - started)

        started = time.monotonic()
        threads = [threading.Thread(target=caller, args=(name,)) for name in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        accepted = time.monotonic()
        times = wait_for_arrivals(ses_url, callers * each, timeout=300)
        delivered = time.monotonic()
        rss = peak_rss_mb(server.pid)
    if failures:
        raise RuntimeError(f"{len(failures)} sends refused: {failures[0]}")
    return {
        "accept_p50_s": percentile(accept_seconds, 0.5),
        "accept_p99_s": percentile(accept_seconds, 0.99),
        "all_accepted_s": accepted - started,
        "all_delivered_s": delivered - started,
        "delivered": len(times),
        "peak_rss_mb": rss,
    }


def rows(profile: Profile, tmp: Path) -> list[Row]:
    callers, each = (CALLERS, 4) if profile.rounds > 1 else (4, 1)  # the smoke run proves the line runs, no more
    run = attachment_run(f"sqlite:///{tmp}/message.db", each=each, callers=callers)
    line = f"9 a 5 MB attachment from {callers} callers at once, {each} each (SQLite)"
    return [
        Row(line, "SendEmail p50", "s", [run["accept_p50_s"]]),
        Row(line, "SendEmail p99", "s", [run["accept_p99_s"]]),
        Row(line, "all delivered to SES after", "s", [run["all_delivered_s"]]),
        Row(line, "gateway peak RSS", "MB", [run["peak_rss_mb"]], target="<= 300"),
    ]


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.message", description=__doc__)
    parser.add_argument("--each", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailgw-message-") as tmp:
        print(json.dumps(attachment_run(f"sqlite:///{tmp}/message.db", each=args.each), indent=2))


if __name__ == "__main__":
    main()

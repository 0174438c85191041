"""Baselines and stand-ins, each run as its own process: `python -m bench.peers NAME [ARG]` prints `PORT <n>`."""

import asyncio
import json
import sys
import uuid
from concurrent import futures

import grpc
from aiohttp import web

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.dev.ses_standin import MAX_REQUEST, SesStandIn

ECHO_METHOD = "/bench.v1.EchoService/Echo"


def announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def run_http(app: web.Application) -> None:
    async def serve():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        announce(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(serve())


def ses_peer() -> None:
    """The SES v2 stand-in the tests use (gateway/dev/ses_standin.py), answering at once, plus the bench's own route:
    the arrival times of the sends so far, then forgotten (the dispatch line's rate)."""
    standin = SesStandIn()
    standin.max_send_rate = 1_000_000.0  # a production account that paces nobody (the benchmarks set MAILGW_SEND_RATE)

    async def arrivals(request: web.Request) -> web.Response:
        times = [sent.at for sent in standin.sent]
        standin.requests.clear()
        return web.json_response(times)

    async def sends(request: web.Request) -> web.Response:
        """Every send so far, kept: its arrival time and its EmailTags (the lanes line reads who and how urgent)."""
        return web.json_response([{"at": s.at, "tags": s.tags, "ses_id": s.message_id} for s in standin.sent])

    app = web.Application(client_max_size=MAX_REQUEST)
    standin.register(app)
    app.router.add_post("/_bench/arrivals", arrivals)
    app.router.add_get("/_bench/sends", sends)
    run_http(app)


async def bare_sns_handler(request: web.Request) -> web.Response:
    """The least a webhook can do: parse the JSON it received and answer 200."""
    json.loads(await request.read())
    return web.Response(text="ok")


def echo_grpc(workers: int) -> None:
    """A bare grpcio service with the gateway's thread pool, answering a SendEmailResponse-sized message."""
    response = pb.SendEmailResponse(message_id=f"0100019{uuid.uuid4().hex}-000000", contact_id="x" * 22)
    response = response.SerializeToString()
    handler = grpc.method_handlers_generic_handler(
        "bench.v1.EchoService", {"Echo": grpc.unary_unary_rpc_method_handler(lambda request, context: response)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    announce(port)
    server.wait_for_termination()


def cert_host(pem_path: str) -> None:
    pem = open(pem_path, "rb").read()
    app = web.Application()
    app.router.add_get("/{name:.*\\.pem}", lambda request: web.Response(body=pem))
    run_http(app)


if __name__ == "__main__":
    name, args = sys.argv[1], sys.argv[2:]
    if name == "ses":
        ses_peer()
    elif name == "echo-http":
        app = web.Application()
        app.router.add_post("/sns", bare_sns_handler)
        run_http(app)
    elif name == "echo-grpc":
        echo_grpc(int(args[0]))
    elif name == "cert-host":
        cert_host(args[0])
    else:
        raise SystemExit(f"unknown peer {name}")

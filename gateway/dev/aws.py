"""`mailgw dev aws`: one local AWS endpoint on loopback. The SES v2 stand-in answers the SES operations it knows
(sending, the account, configuration sets and their event destinations, the suppression list); everything else
(SNS, SQS, the SNS signing certificate, the rest of SES v2) goes to moto's server with its fixes.

moto is a WSGI application and the stand-in an aiohttp one, so moto runs in this process on a private loopback port
(its own threaded server, as moto ships it) and a small aiohttp front routes by path, proxying the rest to it: no
WSGI-to-asyncio bridge of our own, and one port, one process, one Ctrl-C for the user."""

import asyncio
import errno
import signal

import aiohttp
from aiohttp import web
from yarl import URL

from gateway.core.config import ConfigError
from gateway.core.startup import AddressInUse, claim_address
from gateway.dev.ses_standin import MAX_REQUEST, SesStandIn

HOST = "127.0.0.1"
# moto signs SNS envelopes with a certificate that its fixes serve for us-east-1 only (gateway/dev/moto_fixes.py).
REGION = "us-east-1"
RECORDED_REQUESTS = 1000  # the SES requests the stand-in remembers: a long-lived server must not grow without end
# Hop-by-hop headers (RFC 9110 7.6.1) and the length, which the proxy's client and server set again.
NOT_FORWARDED = frozenset(
    ("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "content-length")
)
MOTO = web.AppKey("moto", aiohttp.ClientSession)


def environment(url: str) -> dict[str, str]:
    """What to export so that mailgw (and boto3, the aws CLI) use this endpoint: every service through
    AWS_ENDPOINT_URL, and AWS_ENDPOINT_URL_SNS as well, the one endpoint the sidecar fetches signing certificates
    from; throwaway credentials, since nothing here checks them."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ENDPOINT_URL_SNS": url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }


def create_app(moto_url: str, ses: SesStandIn) -> web.Application:
    """The front: the stand-in's routes first, every other request proxied to moto's server at `moto_url`."""
    app = web.Application(client_max_size=MAX_REQUEST)
    ses.register(app)

    async def client_session(app: web.Application):
        # No timeout: an SQS ReceiveMessage long-polls for up to 20 s, and the caller keeps its own read timeout.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False) as session:
            app[MOTO] = session
            yield

    async def to_moto(request: web.Request) -> web.Response:
        # The Host header goes along unchanged: moto builds the queue URLs it returns from it, so they name this port.
        headers = {name: value for name, value in request.headers.items() if name.lower() not in NOT_FORWARDED}
        body = await request.read()
        target = URL(moto_url + request.raw_path, encoded=True)  # as the client signed it, not re-quoted
        async with app[MOTO].request(
            request.method, target, headers=headers, data=body, allow_redirects=False
        ) as answer:
            content = await answer.read()
            kept = {name: value for name, value in answer.headers.items() if name.lower() not in NOT_FORWARDED}
            return web.Response(status=answer.status, body=content, headers=kept)

    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", to_moto)
    return app


def serve(port: int) -> int:
    """Serve on 127.0.0.1:`port` until SIGINT or SIGTERM; the exports are printed once the port is ours."""
    claim_address(f"{HOST}:{port}", "--port")  # one line and exit 1 when taken (ops.startup.run)
    from moto.server import ThreadedMotoServer

    from gateway.dev import moto_fixes  # noqa: F401  (patches moto's server as it is imported)

    moto = ThreadedMotoServer(HOST, 0, verbose=False)
    moto.start()
    try:
        moto_host, moto_port = moto.get_host_and_port()
        return asyncio.run(_front(port, f"http://{moto_host}:{moto_port}"))
    finally:
        moto.stop()


async def _front(port: int, moto_url: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Ctrl-C means now: a long poll under way (SQS ReceiveMessage waits up to 20 s) is cut, not waited for.
    app = create_app(moto_url, SesStandIn(keep=RECORDED_REQUESTS))
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, HOST, port).start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:  # taken between the check and the bind
                raise AddressInUse(f"--port={HOST}:{port}: the address is in use by another process") from None
            raise ConfigError(f"--port={HOST}:{port}: cannot listen there: {exc.strerror}") from None
        url = f"http://{HOST}:{runner.addresses[0][1]}"
        print(f"# A local AWS at {url}: SES v2 (the stand-in) and moto's SNS and SQS. Ctrl-C stops it.")
        print("# Export these where mailgw runs (bootstrap, the sidecar, mailgw dev bounce):")
        for name, value in environment(url).items():
            print(f"export {name}={value}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0

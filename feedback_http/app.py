"""The feedback sidecar's aiohttp application: POST /sns, the unsubscribe pages, /healthz."""

import asyncio
import logging
import signal
from urllib.parse import parse_qs

from aiohttp import web

from feedback_http import intake, metrics, pages, unsubscribe
from feedback_http.config import FeedbackSettings, sns_endpoint
from feedback_http.writer import GroupWriter
from gateway.core.config import host_port
from gateway.core.errors import UndoRefused
from gateway.core.ids import is_contact_id
from gateway.core.logs import setup_logging
from gateway.core.startup import AddressInUse, claim_address, run
from gateway.core.states import StatusSource
from gateway.store.database import UNAVAILABLE, database
from gateway.store.models import open_database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", FeedbackSettings)
WRITER = web.AppKey("writer", GroupWriter)
PAGES = web.AppKey("pages", pages.Pages)
SNS_ENDPOINT = web.AppKey("sns_endpoint", str | None)
INTAKE = web.AppKey("intake", intake.Intake)
# What POST /sns answers when an envelope is not done with (intake.Outcome.done): 4xx, SNS does not retry; 5xx, it does.
HTTP_REFUSALS = {
    intake.Outcome.MALFORMED: web.HTTPBadRequest,
    intake.Outcome.REJECTED: web.HTTPForbidden,
    intake.Outcome.RETRY_LATER: web.HTTPServiceUnavailable,
    intake.Outcome.DATABASE_UNAVAILABLE: web.HTTPServiceUnavailable,
}

SHUTDOWN_GRACE_SECONDS = 25  # in-flight requests may finish after SIGTERM, as the gateway's RPCs and sends may

RAW_DELIVERY = (
    "raw message delivery is on for this subscription: turn it off, "
    "without the SNS envelope the message cannot be verified"
)


class DatabaseUnavailable(web.HTTPServiceUnavailable):
    """The database did not answer; SNS retries a 5xx."""

    def __init__(self):
        super().__init__(text="database unavailable, retry later")


async def in_database(request: web.Request, work, *args, writes: bool = False, **kwargs):
    """Run blocking Peewee work off the event loop; work that `writes` in a transaction committed before this
    returns (GroupWriter)."""
    writer = request.app[WRITER]
    try:
        return await (writer.write if writes else writer.read)(work, *args, **kwargs)
    except UNAVAILABLE as exc:
        log.warning("database unavailable: %s", type(exc).__name__)
        raise DatabaseUnavailable() from None


async def read_body(request: web.Request) -> bytes:
    """The whole body within the body timeout (a slow client cannot hold a handler); its size is capped by
    client_max_size (413)."""
    settings = request.app[SETTINGS]
    if (request.content_length or 0) > settings.max_body_bytes:  # refused before waiting for it
        raise web.HTTPRequestEntityTooLarge(max_size=settings.max_body_bytes, actual_size=request.content_length)
    if request.content.is_eof():  # all of it arrived with the headers, as a notification's body does
        return await request.read()
    try:
        async with asyncio.timeout(settings.http_body_timeout_seconds):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout(text="request body not received in time") from None


@metrics.counted
async def sns_webhook(request: web.Request) -> web.Response:
    """Verify, then act; 4xx means "do not retry", 5xx means "retry later", 200 only after the commit."""
    if request.headers.get("x-amz-sns-rawdelivery", "").lower() == "true":
        raise web.HTTPBadRequest(text=RAW_DELIVERY)
    result = await request.app[INTAKE].take(await read_body(request))
    metrics.note_type(request, result.kind)
    if result.outcome.done:
        return web.Response(text=result.text)
    raise HTTP_REFUSALS[result.outcome](text=result.text)


async def unsubscribe_page(request: web.Request) -> web.Response:
    """A confirm button: mail scanners fetch every link, so GET changes nothing unless the operator asks for it. A
    recipient unsubscribed already is told so, not offered the button again."""
    contact_id = request.match_info["contact_id"]
    if request.app[SETTINGS].unsubscribe_on_get:
        return await _unsubscribe(request, contact_id, source=StatusSource.UNSUBSCRIBE_LINK)
    contact = is_contact_id(contact_id) and await in_database(request, unsubscribe.look_up, contact_id)
    if not contact:
        return request.app[PAGES].not_found(request)
    if contact.status.suppressed:
        return request.app[PAGES].already(request, contact)
    return request.app[PAGES].confirm(request, contact)


async def unsubscribe_post(request: web.Request) -> web.Response:
    """The page's button and RFC 8058 one-click (body List-Unsubscribe=One-Click): unsubscribe at once, 200."""
    # Any POST to a valid link unsubscribes: the body only tells which path the recipient took, so it is not
    # parsed as a form (urlencoded or multipart, as RFC 8058 allows), and a malformed one changes nothing.
    one_click = b"One-Click" in await read_body(request)
    source = StatusSource.ONE_CLICK if one_click else StatusSource.UNSUBSCRIBE_PAGE
    return await _unsubscribe(request, request.match_info["contact_id"], source=source)


async def _unsubscribe(request: web.Request, contact_id: str, *, source: StatusSource) -> web.Response:
    # Only the page flow's answer is read by the person who unsubscribed: it alone carries the undo. A mail client's
    # one-click POST gets none (nobody sees its answer), nor does a GET that unsubscribes (a link scanner's).
    window = request.app[SETTINGS].undo_window if source is StatusSource.UNSUBSCRIBE_PAGE else None
    done = is_contact_id(contact_id) and await in_database(
        request, unsubscribe.unsubscribe, contact_id, source=source, undo_window=window, writes=True
    )
    if not done:
        return request.app[PAGES].not_found(request)
    return request.app[PAGES].done(request, done.contact, undo_secret=done.undo_secret)


UNDO_FIELD = "undo"  # the done page's hidden field: the secret its unsubscribe minted
MAX_UNDO_FIELD = 100


async def resubscribe_post(request: web.Request) -> web.Response:
    """The done page's undo button: POST only (a link scanner's GET cannot press it), with the secret that page was
    given in its form; the contact id alone lifts nothing. A form on another site is refused before anything is read
    (Sec-Fetch-Site, sent by every current browser), and could not know the secret anyway."""
    contact_id = request.match_info["contact_id"]
    if not is_contact_id(contact_id):
        return request.app[PAGES].not_found(request)
    if request.headers.get("Sec-Fetch-Site", "same-origin").lower() != "same-origin":
        contact = await in_database(request, unsubscribe.look_up, contact_id)
        if not contact:
            return request.app[PAGES].not_found(request)
        return request.app[PAGES].undo_refused(request, contact, UndoRefused.NOT_OFFERED)
    done = await in_database(
        request, unsubscribe.resubscribe, contact_id, _undo_secret(await read_body(request)), writes=True
    )
    if not done:
        return request.app[PAGES].not_found(request)
    if done.refused:
        return request.app[PAGES].undo_refused(request, done.contact, done.refused)
    return request.app[PAGES].resubscribed(request, done.contact)


def _undo_secret(body: bytes) -> str:
    """The form's undo secret; "" when the body is no form or carries none (the undo is then refused)."""
    try:
        fields = parse_qs(body.decode("ascii"), max_num_fields=10)
    except ValueError:  # not ASCII, or more fields than the page's form has
        return ""
    return next(iter(fields.get(UNDO_FIELD, [])), "")[:MAX_UNDO_FIELD]


async def healthz(request: web.Request) -> web.Response:
    await in_database(request, lambda: database.execute_sql("SELECT 1"))
    return web.Response(text="ok")


def create_app(settings: FeedbackSettings, *, sns_endpoint_url: str | None = None) -> web.Application:
    """The sidecar's application; its HTTP client session, verifier and thread pool live as long as it does.
    `sns_endpoint_url` (AWS_ENDPOINT_URL_SNS) redirects certificate fetches, for tests and local stacks."""
    unsubscribe_pages = pages.Pages(settings)  # tries every template first: a broken override stops the start
    open_database(settings.database_url)
    intake.warn_about(settings, sns_endpoint_url)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[SNS_ENDPOINT] = sns_endpoint_url
    app[PAGES] = unsubscribe_pages
    app.router.add_post("/sns", sns_webhook)
    app.router.add_get("/unsubscribe/{contact_id}", unsubscribe_page)
    app.router.add_post("/unsubscribe/{contact_id}", unsubscribe_post)
    app.router.add_post("/unsubscribe/{contact_id}/resubscribe", resubscribe_post)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_resources)
    if settings.feedback_metrics_addr:
        app.cleanup_ctx.append(metrics.listener(settings.feedback_metrics_addr))
    if settings.sqs_queue_url:
        app.cleanup_ctx.append(_sqs_intake)  # after _resources: closed before it
    return app


async def _resources(app: web.Application):
    async with intake.opened(
        app[SETTINGS], sns_endpoint_url=app[SNS_ENDPOINT], on_rejected=metrics.verification_failed
    ) as feedback_intake:
        app[INTAKE], app[WRITER] = feedback_intake, feedback_intake.writer
        yield


async def _sqs_intake(app: web.Application):
    """MAILGW_SQS_QUEUE_URL: the SQS poller beside the HTTP server, sharing its intake; it finishes its batch before
    the intake closes."""
    from feedback_http import sqs  # boto3 is imported only when a queue is configured

    async with sqs.polling(app[INTAKE], app[SETTINGS]):
        yield


def main() -> None:
    setup_logging()
    run(_start)


def _start() -> None:
    settings, endpoint = FeedbackSettings.from_env(), sns_endpoint()
    claim_address(settings.http_addr, "MAILGW_HTTP_ADDR")
    if settings.feedback_metrics_addr:
        claim_address(settings.feedback_metrics_addr, "MAILGW_FEEDBACK_METRICS_ADDR")
    asyncio.run(serve(create_app(settings, sns_endpoint_url=endpoint), settings))


async def serve(app: web.Application, settings: FeedbackSettings) -> None:
    """Serve `app` on MAILGW_HTTP_ADDR until SIGTERM or SIGINT, then drain in-flight requests (up to 25 s) before the
    cleanup contexts close, as web.run_app does; but each listener is a log line, not run_app's banner on stdout, so
    that with MAILGW_LOG_FORMAT=json every line the sidecar writes is JSON."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)  # reuse_port stays off: one process owns the port
        try:
            await site.start()
        except OSError as exc:  # taken since the start-up check, or not an address of this host
            raise AddressInUse(f"MAILGW_HTTP_ADDR={settings.http_addr}: cannot listen on this address") from exc
        for host, port, *_ in runner.addresses:
            log.info("sidecar listening: HTTP on http://%s", host_port(host, port))
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)  # a second signal while draining changes nothing
        await stopping.wait()
        log.info("sidecar stopping: draining in-flight requests")
    finally:
        await runner.cleanup()

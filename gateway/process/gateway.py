"""Builds and runs the gateway: the gRPC service, health checking, reflection, the dispatcher, graceful shutdown."""

import logging
import multiprocessing
import os
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.api.mailgateway.v1 import admin_pb2, admin_pb2_grpc
from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.core.config import ConfigError, Settings, host_port, listen_address
from gateway.core.errors import CannotUseDatabase
from gateway.core.logs import setup_logging
from gateway.core.loops import PRODUCTION, Loop, Timings
from gateway.core.policy import CallerPolicies
from gateway.core.startup import AddressInUse, claim_address, claim_port_group, give_large_blocks_back, run
from gateway.core.webhooks import plain_http, webhooks_from
from gateway.events.feed import EventFeed
from gateway.events.watch import Watchers
from gateway.events.webhooks import WebhookDelivery
from gateway.process import exposition
from gateway.rpc.admin_service import MailGatewayAdminServicer
from gateway.rpc.auth import admin_authenticator, authenticator, check_exposure, server_credentials
from gateway.rpc.metrics import ServerMetrics
from gateway.rpc.service import MailGatewayServicer
from gateway.sending import reputation
from gateway.sending.admission import Admission
from gateway.sending.dispatch import Dispatcher, Transport
from gateway.sending.order import Order
from gateway.sending.pacing import Pacer
from gateway.sending.pause import Pause
from gateway.sending.tenant_guard import TenantLimits
from gateway.ses.outbox import OutboxTransport
from gateway.ses.suppression_list import SesSuppressionList
from gateway.ses.transport import SesTransport
from gateway.store.models import open_database
from gateway.suppression.job import SuppressionJob

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MailGatewayService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["MailGatewayAdminService"].full_name
DISPATCH_HEALTH = "mailgateway.v1.Dispatch"  # NOT_SERVING while dispatch is paused (the gateway still accepts)
REPUTATION_HEALTH = "mailgateway.v1.ReputationGuard"  # NOT_SERVING while our own bounce or complaint rate pauses it
TENANTS_HEALTH = "mailgateway.v1.TenantReputation"  # NOT_SERVING while a tenant's own rates hold its mail
# HTTP/2 pings: a connection quiet for a minute is pinged, and closed when the ping is not answered in 20 s, so a
# WatchEvents stream whose client vanished (a machine gone, a NAT that forgot it) gives its thread back. Clients may
# ping every 10 s (grpc-go's and grpc-js's keepalive included) without being told "too many pings".
KEEPALIVE = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)
SHUTDOWN_GRACE_SECONDS = 25.0
SIGNAL_CHECK_SECONDS = 0.5


def make_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport(settings.outbox_dir)
    return SesTransport(
        settings.ses_configuration_set, tenants=settings.ses_tenants, max_connections=max(1, settings.dispatch_workers)
    )


@dataclass
class Gateway:
    """The gRPC server and this process's dispatcher (None with MAILGW_DISPATCH_WORKERS=0), started and stopped
    together."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    dispatcher: Dispatcher | None
    suppression: SuppressionJob | None = None  # the SES suppression-list sync (MAILGW_SES_SUPPRESSION_SYNC_SECONDS)
    metrics: exposition.MetricsListener | None = None  # MAILGW_METRICS_ADDR; None when unset (or in a copy)
    events: EventFeed | None = None  # the event log's sequencer and this process's watchers' pulse
    webhooks: WebhookDelivery | None = None  # MAILGW_WEBHOOK_URLS: a loop per caller; None when unset

    @property
    def loops(self) -> list[Loop]:
        """Every background loop this process runs (core/loops.py), in the order they start."""
        jobs = (self.dispatcher, self.suppression, self.events, self.webhooks)
        return [loop for job in jobs if job is not None for loop in job.loops]

    def start(self) -> None:
        self.server.start()
        if self.dispatcher is not None:
            self.health.set(DISPATCH_HEALTH, health_pb2.HealthCheckResponse.SERVING)  # until it pauses
            self.health.set(REPUTATION_HEALTH, health_pb2.HealthCheckResponse.SERVING)
            self.health.set(TENANTS_HEALTH, health_pb2.HealthCheckResponse.SERVING)
            self.dispatcher.start()
        if self.suppression is not None:
            self.suppression.start()
        if self.events is not None:
            self.events.start()
        if self.webhooks is not None:
            self.webhooks.start()
        if self.loops:
            log.info("background loops: %s", ", ".join(f"{loop.name} (every {loop.every:g} s)" for loop in self.loops))

    def stop(self, grace: float | None = None) -> None:
        """Refuse new RPCs and stop claiming; in-flight RPCs and sends get `grace` seconds to finish."""
        self.health.enter_graceful_shutdown()
        stopped = self.server.stop(grace)
        if self.webhooks is not None:
            self.webhooks.stop(grace or 0.0)  # a POST in hand finishes; each caller's cursor is handed over
        if self.events is not None:
            self.events.stop(grace or 0.0)  # ends the watchers' streams
        if self.dispatcher is not None:
            self.dispatcher.stop(grace or 0.0)
        if self.suppression is not None:
            self.suppression.stop(grace or 0.0)
        stopped.wait()
        if self.metrics is not None:
            self.metrics.stop()


def create_server(
    settings: Settings,
    *,
    transport: Transport | None = None,
    shared_port: bool = False,
    timings: Timings = PRODUCTION,
) -> Gateway:
    """A gateway ready to start, bound to settings.grpc_addr; port 0 picks a free port. `timings`: the periods of its
    loops and backoffs (core/loops.py; tests pass shorter ones).

    The port has one owner: it must be free (AddressInUse otherwise), unless `shared_port`, which only the copies
    of one `MAILGW_GRPC_PROCESSES` group pass, after their parent claimed the port for them (serve_processes).
    """
    check_exposure(settings)
    for warning in settings.warnings():
        log.warning("%s", warning)
    credentials, callers = server_credentials(settings), authenticator(settings)
    admins = admin_authenticator(settings, callers)
    if not shared_port:
        claim_address(settings.grpc_addr, "MAILGW_GRPC_ADDR")
    policies = CallerPolicies.from_file(settings.caller_policy_file)
    hooks = webhooks_from(settings.webhook_urls, settings.webhook_secrets)
    check_callers(hooks, callers)
    for caller in plain_http(hooks):
        log.warning(
            "MAILGW_WEBHOOK_URLS: caller %s's records go over plain http to a host that is not loopback", caller
        )
    open_database(settings.database_url)
    health_servicer = health.HealthServicer()
    dispatcher = None
    if settings.dispatch_workers:
        transport = transport or make_transport(settings)
        dispatcher = Dispatcher(
            transport,
            Pacer(transport, settings.send_rate),
            settings,
            on_pause=lambda pause: report_pause(health_servicer, pause),
            on_tenants_paused=lambda names: report_paused_tenants(health_servicer, names),
            timings=timings,
            order=Order(policies.weight, settings.lower_class_min_share, ses_tenants=settings.ses_tenants),
        )
    suppression = None
    if settings.transport == "ses" and settings.dispatch_workers and settings.ses_suppression_sync_seconds:
        suppression = SuppressionJob(settings, timings=timings)
    events = EventFeed(every=timings.event_poll_seconds)
    server = grpc.server(
        # A WatchEvents stream holds one of these threads while it is open: MAILGW_MAX_WATCHERS of them at most, so
        # the calls keep the rest (more threads would mean more database connections: each keeps its own).
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="rpc"),
        options=[
            ("grpc.so_reuseport", int(shared_port)),
            # A message within MAILGW_MAX_MESSAGE_BYTES always arrives (and one over it is told so, field by field,
            # up to a MiB over); protobuf's framing and the other fields take far less than the MiB added.
            ("grpc.max_receive_message_length", settings.max_message_bytes + 1024 * 1024),
            *KEEPALIVE,
        ],
        interceptors=[ServerMetrics()],
    )
    servicer = MailGatewayServicer(
        settings.default_from,
        callers,
        dispatcher.wake if dispatcher else lambda: None,
        public_base_url=settings.public_base_url,
        admission=Admission(policies, settings.max_queued_messages),
        feed=events,
        watchers=Watchers(per_caller=settings.max_watchers_per_caller, total=settings.watchers),
        max_message_bytes=settings.max_message_bytes,
    )
    pb_grpc.add_MailGatewayServiceServicer_to_server(servicer, server)
    admin = MailGatewayAdminServicer(
        admins,
        # A reactivation takes the address off SES's list where this gateway talks to SES, as the sync does: an
        # accept-only replica needs no AWS region or credentials, and leaves the removal to the sync.
        ses_list=SesSuppressionList() if settings.transport == "ses" and settings.dispatch_workers else None,
        limits=reputation.Limits.from_settings(settings),
        tenant_limits=TenantLimits.of(reputation.Limits.from_settings(settings), settings.tenant_reputation_min_sends),
    )
    admin_pb2_grpc.add_MailGatewayAdminServiceServicer_to_server(admin, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME, ADMIN_SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        if credentials:
            port = server.add_secure_port(settings.grpc_addr, credentials)
        else:
            port = server.add_insecure_port(settings.grpc_addr)
    except RuntimeError:  # grpcio: "Failed to bind to address"; taken since the check, or not an address here
        port = 0
    if port == 0:
        raise AddressInUse(f"MAILGW_GRPC_ADDR={settings.grpc_addr}: cannot listen on this address")
    metrics = None
    if settings.metrics_addr and not shared_port:  # a copy's metrics are served by its parent (serve_processes)
        metrics = exposition.listen(settings.metrics_addr, exposition.gateway_registry())
    webhooks = WebhookDelivery(hooks, events, timings) if hooks else None
    return Gateway(server, port, health_servicer, dispatcher, suppression, metrics, events, webhooks)


def check_callers(hooks: dict, callers) -> None:
    """With bearer tokens, each webhook's caller is one of theirs: a misspelt name would deliver nothing, silently.
    (Without tokens, client certificates name callers, which no setting lists.)"""
    names = {name for name, _ in callers.tokens}
    if unknown := sorted(set(hooks) - names) if names else []:
        raise ConfigError(f"MAILGW_WEBHOOK_URLS: caller {unknown[0]!r} is not a caller of MAILGW_AUTH_TOKENS(_FILE)")


def report_pause(health_servicer: health.HealthServicer, pause: Pause | None) -> None:
    """Dispatch health NOT_SERVING while paused, whatever the cause; the reputation guard's health NOT_SERVING too when
    the cause is our own rates, so a monitor tells "SES refuses" from "we stopped ourselves" (logs say the rate)."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    health_servicer.set(DISPATCH_HEALTH, not_serving if pause else serving)
    by_reputation = pause is not None and pause.reason in reputation.REASONS
    health_servicer.set(REPUTATION_HEALTH, not_serving if by_reputation else serving)


def report_paused_tenants(health_servicer: health.HealthServicer, names: list[str]) -> None:
    """Health `mailgateway.v1.TenantReputation` is NOT_SERVING while a tenant is paused (the gateway sends the rest)."""
    status = health_pb2.HealthCheckResponse.NOT_SERVING if names else health_pb2.HealthCheckResponse.SERVING
    health_servicer.set(TENANTS_HEALTH, status)
    if names:
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        log.warning("tenants paused by their own bounce or complaint rates: %s", shown)


def serve(settings: Settings, *, shared_port: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then refuse new RPCs, stop claiming, and let in-flight RPCs and sends finish."""
    stopping = threading.Event()

    def stop(signum, _frame):
        if not stopping.is_set():
            log.info("signal %d: draining in-flight RPCs and sends", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    gateway = create_server(settings, shared_port=shared_port)
    gateway.start()
    log.info(
        "gateway listening: gRPC on %s (transport %s, %d dispatch workers)",
        host_port(listen_address(settings.grpc_addr, "MAILGW_GRPC_ADDR")[0], gateway.port),
        settings.transport,
        settings.dispatch_workers,
    )
    if gateway.metrics is not None:
        log_metrics_listener(settings, gateway.metrics)
    # Woken every half second rather than waiting once: SIGTERM may be delivered to one of grpc's or the loops' threads,
    # and Python runs its handler only when the main thread next runs; one long wait would never see it.
    while not stopping.wait(SIGNAL_CHECK_SECONDS):
        pass
    gateway.stop(SHUTDOWN_GRACE_SECONDS)
    log.info("gateway stopped")


def log_metrics_listener(settings: Settings, listener: exposition.MetricsListener) -> None:
    host = listen_address(settings.metrics_addr, "MAILGW_METRICS_ADDR")[0]
    log.info("gateway listening: metrics on http://%s/metrics", host_port(host, listener.port))


def serve_processes(settings: Settings) -> int:
    """MAILGW_GRPC_PROCESSES copies of the server on one port: they bind with SO_REUSEPORT, so the kernel spreads
    client connections over them and each copy has a GIL of its own. This process holds the port's claim while
    they run, so no other gateway joins them. SIGTERM and SIGINT reach every copy."""
    claim = claim_port_group(settings.grpc_addr, "MAILGW_GRPC_ADDR")
    try:
        # Once here (and for the queue's gauges, read at scrape time): a database that cannot be used is one line,
        # not one from every copy.
        open_database(settings.database_url)
    except CannotUseDatabase:
        claim.close()
        raise
    metrics = listener = None
    if settings.metrics_addr:  # one /metrics for the copies: set up before they start, so they write their values
        metrics = exposition.Multiprocess()
        try:
            listener = exposition.listen(settings.metrics_addr, exposition.gateway_registry(metrics.directory))
        except AddressInUse:
            metrics.close()
            claim.close()
            raise
        log_metrics_listener(settings, listener)
    spawn = multiprocessing.get_context("spawn")  # gRPC must not be forked once it has started
    copies = [
        spawn.Process(target=_serve_copy, args=(replace(settings, grpc_processes=1),))
        for _ in range(settings.grpc_processes)
    ]
    for copy in copies:
        copy.start()
    forwarded: set[int] = set()

    def forward(signum, _frame):
        forwarded.add(signum)
        for copy in copies:
            if copy.is_alive():
                os.kill(copy.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for copy in copies:
        while copy.is_alive():  # as in serve(): the forwarding handler runs when this thread wakes
            copy.join(SIGNAL_CHECK_SECONDS)
        if metrics is not None:
            metrics.process_stopped(copy.pid)
    if metrics is not None:
        listener.stop()
        metrics.close()
    claim.close()
    # A copy still starting (importing, before its handlers are set) when asked to stop dies of the signal it was
    # sent: it had served nothing, so that is a clean stop too.
    return max(0 if -(copy.exitcode or 0) in forwarded else abs(copy.exitcode or 0) for copy in copies)


def _serve_copy(settings: Settings) -> None:
    setup_logging()
    give_large_blocks_back()
    run(lambda: serve(settings, shared_port=True))


def main() -> None:
    setup_logging()
    give_large_blocks_back()
    run(_start)


def _start() -> int:
    settings = Settings.from_env()
    if settings.grpc_processes > 1:
        return serve_processes(settings)
    serve(settings)
    return 0

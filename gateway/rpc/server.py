"""Builds and runs the gateway's gRPC server: the service, health checking, reflection, graceful shutdown."""

import logging
import multiprocessing
import os
import signal
from concurrent import futures
from dataclasses import replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gateway.api.mailgateway.v1 import mail_gateway_pb2 as pb
from gateway.api.mailgateway.v1 import mail_gateway_pb2_grpc as pb_grpc
from gateway.ops.config import Settings
from gateway.ops.logs import setup_logging
from gateway.ops.startup import AddressInUse, claim_address, claim_port_group, run
from gateway.rpc.auth import authenticator, check_exposure, server_credentials
from gateway.rpc.service import MailGatewayServicer
from gateway.sending.mailer import Mailer, Transport
from gateway.sending.outbox import OutboxTransport
from gateway.sending.ses import SesTransport, ses_client
from gateway.store.models import open_database

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["MailGatewayService"].full_name
SHUTDOWN_GRACE_SECONDS = 25.0


def make_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport(settings.outbox_dir)
    return SesTransport(ses_client(settings.grpc_workers), settings.ses_configuration_set)


def create_server(
    settings: Settings,
    *,
    transport: Transport | None = None,
    health_servicer: health.HealthServicer | None = None,
    shared_port: bool = False,
) -> tuple[grpc.Server, int]:
    """A started-ready (not started) server bound to settings.grpc_addr; port 0 picks a free port.

    The port has one owner: it must be free (AddressInUse otherwise), unless `shared_port`, which only the copies
    of one `MAILGW_GRPC_PROCESSES` group pass, after their parent claimed the port for them (serve_processes).
    """
    check_exposure(settings)
    for warning in settings.warnings():
        log.warning("%s", warning)
    credentials, callers = server_credentials(settings), authenticator(settings)
    if not shared_port:
        claim_address(settings.grpc_addr, "MAILGW_GRPC_ADDR")
    open_database(settings.database_url)
    mailer = Mailer(transport or make_transport(settings), settings.public_base_url)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="rpc"),
        options=[("grpc.so_reuseport", int(shared_port))],
    )
    pb_grpc.add_MailGatewayServiceServicer_to_server(
        MailGatewayServicer(mailer, settings.default_from, callers), server
    )
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if credentials:
            port = server.add_secure_port(settings.grpc_addr, credentials)
        else:
            port = server.add_insecure_port(settings.grpc_addr)
    except RuntimeError:  # grpcio: "Failed to bind to address"; taken since the check, or not an address here
        port = 0
    if port == 0:
        raise AddressInUse(f"MAILGW_GRPC_ADDR={settings.grpc_addr}: cannot listen on this address")
    return server, port


def serve(settings: Settings, *, shared_port: bool = False) -> None:
    """Run until SIGTERM or SIGINT, then refuse new RPCs and let in-flight ones finish."""
    health_servicer = health.HealthServicer()
    server, port = create_server(settings, health_servicer=health_servicer, shared_port=shared_port)
    server.start()
    log.info("gateway listening on port %d (transport %s)", port, settings.transport)

    def stop(signum, _frame):
        log.info("signal %d: draining in-flight RPCs", signum)
        health_servicer.enter_graceful_shutdown()
        server.stop(SHUTDOWN_GRACE_SECONDS)  # returns at once; wait_for_termination below waits

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.wait_for_termination()
    log.info("gateway stopped")


def serve_processes(settings: Settings) -> int:
    """MAILGW_GRPC_PROCESSES copies of the server on one port: they bind with SO_REUSEPORT, so the kernel spreads
    client connections over them and each copy has a GIL of its own. This process holds the port's claim while
    they run, so no other gateway joins them. SIGTERM and SIGINT reach every copy."""
    claim = claim_port_group(settings.grpc_addr, "MAILGW_GRPC_ADDR")
    spawn = multiprocessing.get_context("spawn")  # gRPC must not be forked once it has started
    copies = [
        spawn.Process(target=_serve_copy, args=(replace(settings, grpc_processes=1),))
        for _ in range(settings.grpc_processes)
    ]
    for copy in copies:
        copy.start()

    def forward(signum, _frame):
        for copy in copies:
            if copy.is_alive():
                os.kill(copy.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for copy in copies:
        copy.join()
    claim.close()
    return max(abs(copy.exitcode or 0) for copy in copies)


def _serve_copy(settings: Settings) -> None:
    setup_logging()
    run(lambda: serve(settings, shared_port=True))


def main() -> None:
    setup_logging()
    run(_start)


def _start() -> int:
    settings = Settings.from_env()
    if settings.grpc_processes > 1:
        return serve_processes(settings)
    serve(settings)
    return 0

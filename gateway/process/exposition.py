"""The gateway's /metrics listener (MAILGW_METRICS_ADDR): its own port, one owner, Prometheus text; what it shows
beside this process's metrics (the queue, read from the database at scrape time); MAILGW_GRPC_PROCESSES copies
aggregated in prometheus_client's multiprocess mode.

Queue depth and ages are read from the database when Prometheus scrapes, not counted: counters in each of several
gateways would drift from what the queue holds (a message claimed by one gateway and settled by the sidecar's
event), while the table is the truth every replica shares.
"""

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass

import peewee
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.core.config import listen_address
from gateway.core.startup import AddressInUse, claim_address
from gateway.core.states import Priority
from gateway.store import budget, lanes, queue
from gateway.store.database import database, database_now

log = logging.getLogger(__name__)

METRICS_VARIABLE = "MAILGW_METRICS_ADDR"
MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name; read when it is imported
SES_BUDGET = "ses"  # pacing.BUDGET


class QueueCollector(Collector):
    """The send queue as the database holds it at scrape time: messages and the oldest one's age, per in-flight
    state; SES's daily quota as counted down in the shared budget; whether the database answered."""

    def describe(self):
        return []  # nothing is queried when the collector is registered

    def collect(self):
        up = GaugeMetricFamily("mailgw_database_up", "1 when the database answered the scrape's queue queries.")
        try:
            with database.connection_context():
                depth = queue.depth_by_state()
                by_priority = {depth.name: depth for depth in lanes.depth_by("priority")}
                quota = budget.quota_remaining(SES_BUDGET)
                now = database_now()
        except peewee.DatabaseError as exc:
            log.warning("metrics: the database did not answer the queue queries: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        messages = GaugeMetricFamily(
            "mailgw_queue_messages",
            "Messages in the send queue by in-flight state (queued, scheduled, sending, unknown), for all replicas.",
            labels=["state"],
        )
        oldest = GaugeMetricFamily(
            "mailgw_queue_oldest_message_age_seconds",
            "Age of the oldest message in each in-flight state, since it could first be sent (accepted, or its "
            "send_at); 0 when there is none (or it is not due yet).",
            labels=["state"],
        )
        for state in queue.IN_FLIGHT:
            count, created_at = depth.get(state, (0, None))
            messages.add_metric([state], count)
            oldest.add_metric([state], max(0.0, (now - created_at).total_seconds()) if created_at else 0.0)
        yield messages
        yield oldest
        queued = GaugeMetricFamily(
            "mailgw_queued_messages",
            "Queued messages (due now or after a backoff) by priority, for all replicas.",
            labels=["priority"],
        )
        waiting = GaugeMetricFamily(
            "mailgw_queued_oldest_message_age_seconds",
            "Age of the oldest queued message of each priority, since it could first be sent (accepted, or its "
            "send_at); 0 when there is none.",
            labels=["priority"],
        )
        for priority in Priority:
            depth = by_priority.get(int(priority), lanes.Depth(int(priority), 0, 0, None))
            queued.add_metric([priority.label], depth.queued)
            age = max(0.0, (now - depth.oldest).total_seconds()) if depth.oldest else 0.0
            waiting.add_metric([priority.label], age)
        yield queued
        yield waiting
        if quota is not None:
            yield GaugeMetricFamily(
                "mailgw_ses_quota_remaining_messages",
                "Sends left in SES's rolling 24-hour quota as the shared budget counts them down (-1: unlimited).",
                value=quota,
            )


class _Everything(Collector):
    """This process's metrics (the default registry: ours, prometheus_client's process and Python collectors)."""

    def __init__(self, source: CollectorRegistry):
        self._source = source

    def describe(self):
        return []

    def collect(self):
        return self._source.collect()


def gateway_registry(multiprocess_directory: str | None = None) -> CollectorRegistry:
    """What the gateway's /metrics shows: this process's metrics, or those of every copy in
    `multiprocess_directory`; and the queue."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_directory:
        prometheus_multiprocess.MultiProcessCollector(registry, path=multiprocess_directory)
    else:
        registry.register(_Everything(REGISTRY))
    registry.register(QueueCollector())
    return registry


@dataclass
class MetricsListener:
    """An HTTP server in a thread of its own, answering GET /metrics."""

    server: object
    port: int

    def stop(self) -> None:
        """Stop serving at once: prometheus_client's server looks for shutdown() only between requests or every
        0.5 s, so a connection of our own wakes it (a stop took half a second)."""
        stopping = threading.Thread(target=self.server.shutdown, name="metrics-stop")
        stopping.start()
        host = self.server.server_address[0]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        with contextlib.suppress(OSError), socket.create_connection((host, self.port), timeout=0.5):
            pass
        stopping.join()
        self.server.server_close()


def listen(address: str, registry: CollectorRegistry, variable: str = METRICS_VARIABLE) -> MetricsListener:
    """Serve `registry` on `address` (host:port, port 0 picks one); AddressInUse when another process has it. Like
    the other listeners it binds without SO_REUSEPORT, so nobody can share the port."""
    claim_address(address, variable)
    host, port = listen_address(address, variable)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise AddressInUse(f"{variable}={address}: cannot listen on this address ({exc.strerror})") from None
    return MetricsListener(server, server.server_address[1])


class Multiprocess:
    """MAILGW_GRPC_PROCESSES copies, one /metrics: the parent sets PROMETHEUS_MULTIPROC_DIR to a directory of its
    own before spawning them (so each copy's prometheus_client writes its values there), serves the sum, and
    removes the directory when they have stopped."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="mailgw-metrics-")
        os.environ[MULTIPROCESS_DIRECTORY] = self.directory

    def process_stopped(self, pid: int) -> None:
        prometheus_multiprocess.mark_process_dead(pid, self.directory)

    def close(self) -> None:
        os.environ.pop(MULTIPROCESS_DIRECTORY, None)
        shutil.rmtree(self.directory, ignore_errors=True)

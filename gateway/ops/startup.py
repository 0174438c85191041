"""Process start-up for both servers: one owner per listening address, and one clear line instead of a traceback."""

import errno
import logging
import socket
import sys
from collections.abc import Callable

from gateway.ops.config import ConfigError, listen_address

log = logging.getLogger(__name__)

EXIT_CONFIG = 2  # a setting is wrong: fix the environment
EXIT_CANNOT_START = 1  # the address is taken: stop the other process or choose another port


class AddressInUse(Exception):
    """Another process already listens on an address this process was told to own."""


def claim_address(value: str, variable: str) -> None:
    """Raise AddressInUse when anything listens on `value` (host:port) already; port 0 is always free.

    The probe binds as the servers do, without SO_REUSEPORT: grpcio sets that option by default, and a second
    gateway (say, a stale one pointed at another database) then shared the port, the kernel splitting calls
    between the two. A socket bound without the option cannot join, nor can one join it.
    """
    host, port = listen_address(value, variable)
    if port == 0:
        return
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do: TIME_WAIT is no owner
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise AddressInUse(f"{variable}={value}: the address is in use by another process") from None
                # Any other error (an address family this host lacks) is the server's to report when it binds.


def claim_port_group(value: str, variable: str) -> socket.socket:
    """For MAILGW_GRPC_PROCESSES > 1, whose copies share one port with SO_REUSEPORT: a lock (an abstract Unix
    socket, gone with the process) that a second group of copies cannot take, plus the check that the port is
    free. The caller keeps the socket open for as long as its copies run."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lock.bind(f"\0mailgw-grpc-port-{listen_address(value, variable)[1]}")
        claim_address(value, variable)
    except OSError:
        lock.close()
        raise AddressInUse(f"{variable}={value}: another mailgw gateway serves this port") from None
    except AddressInUse:
        lock.close()
        raise
    return lock


def run(start: Callable[[], object]) -> None:
    """Run a process's main function; a bad setting or a taken address ends it with one line and a non-zero exit
    code (2 for configuration, 1 for an address in use), never a traceback."""
    try:
        code = start()
    except ConfigError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except AddressInUse as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CANNOT_START) from None
    raise SystemExit(code or 0)

"""Process start-up for both servers and the commands: one owner per listening address, and one clear line instead
of a traceback."""

import ctypes
import errno
import logging
import socket
import sys
from collections.abc import Callable

from gateway.core.config import ConfigError, listen_address
from gateway.core.errors import CannotUseDatabase

log = logging.getLogger(__name__)

EXIT_CONFIG = 2  # a setting is wrong: fix the environment
EXIT_CANNOT_START = 1  # the address is taken, or the database cannot be used: fix what the line names


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


# glibc's mallopt parameter that fixes the size from which a block comes from mmap (and goes back when freed).
M_MMAP_THRESHOLD = -3
MMAP_FROM = 128 * 1024


def give_large_blocks_back() -> None:
    """Blocks of 128 KiB and more always from mmap, so memory freed after a large message goes back to the system.
    glibc otherwise raises that threshold to the largest block freed (up to 32 MiB), and a 5 MB attachment's copies,
    made and freed on many threads, then stay in the heap: 16 callers sending 5 MB at once left the gateway at 730 MB
    instead of 430 (bench line 9). Elsewhere than glibc, nothing to do."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_FROM)
    except (OSError, AttributeError):
        pass


def run(start: Callable[[], object]) -> None:
    """Run a process's main function and exit with its code (see exit_code)."""
    raise SystemExit(exit_code(start))


def exit_code(start: Callable[[], object]) -> int:
    """What `start()` returns (None: 0), or, for what stops a process or command before it can work, one line on
    stderr and a non-zero code, never a traceback: 2 for a bad setting (EXIT_CONFIG), 1 for an address in use or a
    database that cannot be used (EXIT_CANNOT_START)."""
    try:
        return int(start() or 0)
    except ConfigError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (AddressInUse, CannotUseDatabase) as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START

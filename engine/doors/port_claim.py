"""One `praneya serve` per address: its own workers share the port, nobody else's do.

The workers bind with SO_REUSEPORT so that the kernel spreads connections over them. The same option
lets a second `praneya serve` on that port (same user, SO_REUSEPORT too) join the first's group
silently and take a share of its calls: a stale or misconfigured release answering beside the live one.
So before any worker binds, the supervisor claims the address, in two steps:

1. A lock named after host:port, held for the supervisor's whole life. On Linux, an abstract Unix
   socket (`\\0praneya-serve:HOST:PORT`): it lives in the kernel, per network namespace like the
   ports themselves, and goes away when the process dies however it dies, so there is no file to go
   stale and no runtime directory to agree on. Elsewhere, an flock on a file in the temp dir. A second
   supervisor fails here even while the first one is restarting a worker and the port is free.
2. One bind of the port WITHOUT SO_REUSEPORT, closed at once. It fails when anything listens there
   (reuseport or not): another program, or workers orphaned by a supervisor that was SIGKILLed (they
   outlive it and keep the port, but not its lock).

Holding a probe socket on the port for the supervisor's lifetime instead does not work: bound
without SO_REUSEPORT it keeps our own workers out too, bound with it it lets the second instance in.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["PortClaim", "PortInUse", "claim_port"]


class PortInUse(Exception):
    """Another server holds the address; the message says `address in use` and what holds it."""


class PortClaim:
    """The supervisor's hold on host:port (see the module docstring); release() or leave the `with`."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._lock_socket: socket.socket | None = None
        self._lock_fd: int | None = None

    def __enter__(self) -> PortClaim:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        if self._lock_socket is not None:
            self._lock_socket.close()
            self._lock_socket = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _lock(self) -> None:
        name = f"praneya-serve:{self.host}:{self.port}"
        if sys.platform.startswith("linux"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.bind("\0" + name)
            except OSError as exc:
                s.close()
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(
                        f"address in use: {self.host}:{self.port} (another praneya serve is running there)"
                    ) from None
                raise
            self._lock_socket = s  # not inheritable (Python's default): the workers never hold it
            return
        import fcntl

        path = Path(tempfile.gettempdir()) / (name.replace(":", "_").replace("/", "_") + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PortInUse(
                f"address in use: {self.host}:{self.port} (another praneya serve is running there)"
            ) from None
        self._lock_fd = fd

    def _probe(self) -> None:
        try:
            addresses = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror:
            return  # the workers' own bind reports an unknown host
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as s:
                # SO_REUSEADDR: connections of an earlier run in TIME_WAIT are no listener. Never
                # SO_REUSEPORT: without it the bind fails against every listener on the port.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(address)
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        raise PortInUse(
                            f"address in use: {self.host}:{self.port} (something already listens on port {self.port})"
                        ) from None
                    # EADDRNOTAVAIL, EAFNOSUPPORT (no IPv6 here, say): the workers will not bind it either.


def claim_port(host: str, port: int) -> PortClaim:
    """Claims host:port for this process's workers, or raises PortInUse. Port 0 claims nothing."""
    claim = PortClaim(host, port)
    if port == 0:
        return claim  # an ephemeral port is this process's alone
    claim._lock()
    try:
        claim._probe()
    except BaseException:
        claim.release()
        raise
    return claim

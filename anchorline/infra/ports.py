"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return count distinct free ports on 127.0.0.1."""
    # Holding every socket open until all are bound keeps the OS from handing one out twice.
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def port_taken(port: int, *, host: str = "127.0.0.1") -> bool:
    """Whether something holds `port` on `host` (a listener, or a socket bound to it)."""
    with socket.socket() as probe:
        # As servers bind: a connection of a stopped server in TIME_WAIT does not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False

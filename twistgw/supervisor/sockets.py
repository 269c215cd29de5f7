"""Listening sockets, bound once by the supervisor and shared by every worker.

All workers accept from the same socket (one shared accept queue): the kernel hands
each new connection to one of the workers waiting on it, a worker that dies takes
none of the queue with it, and a new worker serves at once from the same socket.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from twisted.logger import Logger

from twistgw.routing.ir import RoutingTable

log = Logger()

BACKLOG = 1024
Key = tuple[str, int]


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def bind_stream(address: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on address:port (raises OSError)."""
    sock = socket.socket(family_of(address), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ListenerSockets:
    """The sockets a routing table needs: bound when a bind appears, closed when it goes."""

    def __init__(self) -> None:
        self.sockets: dict[Key, socket.socket] = {}
        self.failed: dict[Key, str] = {}
        self.unusable: set[str] = set()

    def apply(self, table: RoutingTable) -> tuple[list[Key], list[Key]]:
        """Bind what is new, close what is gone; returns (opened, closed) keys."""
        wanted = {(bind.address, bind.port) for bind in table.binds}
        opened, closed = [], []
        for key in sorted(wanted - set(self.sockets)):
            try:
                self.sockets[key] = bind_stream(*key)
            except OSError as exc:
                self.failed[key] = exc.strerror or str(exc)
                if exc.errno == errno.EADDRNOTAVAIL:
                    self.unusable.add(key[0])
                log.error(
                    "cannot listen on {address}:{port}: {error}",
                    address=key[0],
                    port=key[1],
                    error=self.failed[key],
                )
                continue
            self.failed.pop(key, None)
            self.unusable.discard(key[0])
            opened.append(key)
            log.info("listening on {address}:{port}", address=key[0], port=key[1])
        for key in sorted(set(self.sockets) - wanted):
            self.sockets.pop(key).close()
            closed.append(key)
            log.info("stopped listening on {address}:{port}", address=key[0], port=key[1])
        for key in list(self.failed):
            if key not in wanted:
                del self.failed[key]
        self.unusable &= {address for address, _ in wanted}
        return opened, closed

    def feedback(self) -> tuple[dict[Key, str], frozenset[str]]:
        """What could not be bound: (address, port) -> why, and unusable addresses."""
        return dict(self.failed), frozenset(self.unusable)

    def close_all(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

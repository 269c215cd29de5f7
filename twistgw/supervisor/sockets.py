"""Listening sockets, bound by the supervisor: one per worker for every address, port
and transport.

Each worker accepts from a socket of its own; all of them are bound to the same
address and port with ``SO_REUSEPORT``, so the kernel spreads new connections evenly
over the workers by a hash of the connection's addresses (a single shared accept
queue lets whichever worker happens to be awake take nearly all of them). For UDP the
same hash sends every datagram of one client address to the same worker, which keeps
its session. The supervisor keeps every socket open, so connections waiting in a dead
worker's accept queue stay there, and a client's datagrams keep going to the same
socket, until its replacement adopts it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from twisted.logger import Logger

from twistgw.routing.ir import BindKey, RoutingTable

log = Logger()

BACKLOG = 1024
Key = BindKey


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def bind_socket(address: str, port: int, transport: str) -> socket.socket:
    """A non-blocking TCP listening socket (or a UDP socket) on address:port that other
    sockets of this user may share (``SO_REUSEPORT``); raises OSError."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family_of(address), kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def where(key: Key) -> str:
    """``address:port/transport``, as logs and the config dump name a socket."""
    address, port, transport = key
    return f"{address}:{port}/{transport}"


class ListenerSockets:
    """The sockets a routing table needs, ``count`` per bind (one per worker index):
    bound when a bind appears, closed when it goes."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sockets: dict[Key, list[socket.socket]] = {}
        self.failed: dict[Key, str] = {}
        self.unusable: set[str] = set()

    def apply(self, table: RoutingTable) -> tuple[list[Key], list[Key]]:
        """Bind what is new, close what is gone; returns (opened, closed) keys."""
        wanted = {bind.key for bind in table.binds}
        opened, closed = [], []
        for key in sorted(wanted - set(self.sockets)):
            bound: list[socket.socket] = []
            try:
                for _ in range(self.count):
                    bound.append(bind_socket(*key))
            except OSError as exc:
                for sock in bound:
                    sock.close()
                self.failed[key] = exc.strerror or str(exc)
                if exc.errno == errno.EADDRNOTAVAIL:
                    self.unusable.add(key[0])
                log.error(
                    "cannot listen on {where}: {error}", where=where(key), error=self.failed[key]
                )
                continue
            self.sockets[key] = bound
            self.failed.pop(key, None)
            self.unusable.discard(key[0])
            opened.append(key)
            log.info("listening on {where}", where=where(key))
        for key in sorted(set(self.sockets) - wanted):
            for sock in self.sockets.pop(key):
                sock.close()
            closed.append(key)
            log.info("stopped listening on {where}", where=where(key))
        for key in list(self.failed):
            if key not in wanted:
                del self.failed[key]
        self.unusable &= {address for address, _, _ in wanted}
        return opened, closed

    def descriptor(self, key: Key, index: int) -> int:
        """The descriptor of worker ``index``'s socket for a bind."""
        return self.sockets[key][index].fileno()

    def feedback(self) -> tuple[dict[Key, str], frozenset[str]]:
        """What could not be bound: (address, port, transport) -> why, and unusable
        addresses."""
        return dict(self.failed), frozenset(self.unusable)

    def close_all(self) -> None:
        for bound in self.sockets.values():
            for sock in bound:
                sock.close()
        self.sockets.clear()

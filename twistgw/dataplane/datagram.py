"""UDP listeners: a session per client address, proxied to a backend of the
listener's UDPRoute.

A client's first datagram picks a backend by weight and opens a connected socket to
one of its endpoints; the client's later datagrams go through that socket, and what
the backend sends back goes to the client from the listener's address. Sessions end
after ``udp_session_timeout`` seconds without a datagram either way, when the backend's
host answers with an ICMP error (port unreachable), or, beyond ``udp_max_sessions``,
least recently active first. With several workers, the kernel's ``SO_REUSEPORT`` hash
sends all of a client address's datagrams to one worker's socket, so its session stays
in one process.
"""

from __future__ import annotations

import contextlib
import socket
from collections import OrderedDict
from time import monotonic

from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from twistgw.dataplane.http.router import WeightedBackends
from twistgw.ipc.settings import DataPlaneSettings
from twistgw.metrics import Metrics
from twistgw.routing.ir import Bind, StreamListener

log = Logger()
#: The largest UDP payload (65,535 less the IPv4 and UDP headers).
MAX_DATAGRAM = 65507

Address = tuple[str, int]


@implementer(IReadDescriptor)
class Session:
    """One client's association with one backend endpoint, over a connected socket
    watched by the reactor directly (a Twisted port per session would log two lines
    for each)."""

    def __init__(
        self,
        server: UDPServer,
        client: Address,
        labels: tuple[str, str, str],
        endpoint: tuple[str, int],
    ) -> None:
        self.server = server
        self.client = client
        self.labels = labels
        self.active = monotonic()
        self.received = 0  # bytes from the client
        self.sent = 0  # bytes to the client
        family = socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(endpoint)
        server.reactor.addReader(self)

    def forward(self, data: bytes) -> None:
        """Send a client's datagram on; raises OSError (ICMP errors show up here too)."""
        self.active = monotonic()
        self.received += len(data)
        with contextlib.suppress(BlockingIOError):  # a full buffer: UDP may drop, and does
            self.sock.send(data)

    def doRead(self) -> None:
        for _ in range(64):  # then let other sockets have their turn
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except OSError as exc:  # ECONNREFUSED: an ICMP error from the backend's host
                self.server.end(self, exc.strerror or str(exc))
                return
            self.active = monotonic()
            self.sent += len(data)
            self.server.reply(self, data)

    def close(self) -> None:
        self.server.reactor.removeReader(self)
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "udp-session"

    def connectionLost(self, reason) -> None:
        self.server.end(self, "socket lost")


class UDPServer(DatagramProtocol):
    """What one UDP socket serves; each new table is compiled by ``prepare`` and put in
    place by ``install`` (sessions keep the backend they chose)."""

    noisy = False

    def __init__(self, bind: Bind, reactor, metrics: Metrics, settings: DataPlaneSettings) -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.settings = settings
        self.label = f"{bind.address}:{bind.port}/udp"
        self.sessions: OrderedDict[Address, Session] = OrderedDict()
        self.install(self.prepare(bind))

    @property
    def open_connections(self) -> int:
        return len(self.sessions)

    @property
    def streams(self) -> list[Session]:
        return list(self.sessions.values())

    def prepare(self, bind: Bind) -> tuple[StreamListener | None, WeightedBackends | None]:
        """This socket's part of a table, compiled; nothing changes until ``install``."""
        listener = next((li for li in bind.listeners if isinstance(li, StreamListener)), None)
        route = listener.route if listener is not None else None
        return listener, WeightedBackends(route.backends) if route is not None else None

    def install(self, prepared: tuple[StreamListener | None, WeightedBackends | None]) -> None:
        self.listener, self.backends = prepared

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        session = self.sessions.get(addr)
        if session is None:
            session = self._open(addr)
            if session is None:
                return
        else:
            self.sessions.move_to_end(addr)
        try:
            session.forward(data)
        except OSError as exc:  # e.g. an earlier ICMP error reported on this send
            self.end(session, str(exc))

    def _open(self, client: Address) -> Session | None:
        if self.backends is None:
            return None
        backend = self.backends.pick()
        endpoint = backend.endpoint() if backend is not None and not backend.invalid else None
        if endpoint is None:
            return None  # the backend's share of sessions is refused: the datagram dropped
        while len(self.sessions) >= self.settings.udp_max_sessions:
            _, oldest = self.sessions.popitem(last=False)
            self._close(oldest)
        labels = (self.listener.name, self.listener.route.route, backend.name)
        try:
            session = Session(self, client, labels, (endpoint.address, endpoint.port))
        except OSError as exc:
            log.info(
                "cannot open a UDP session to {backend}: {error}", backend=backend.name, error=exc
            )
            return None
        self.sessions[client] = session
        self.metrics.stream_opened(*labels)
        return session

    def reply(self, session: Session, data: bytes) -> None:
        if self.sessions.get(session.client) is not session:
            return  # ended meanwhile
        self.sessions.move_to_end(session.client)
        try:
            self.transport.write(data, session.client)
        except OSError as exc:
            log.info("cannot answer UDP client {client}: {error}", client=session.client, error=exc)

    def end(self, session: Session, why: str) -> None:
        if self.sessions.get(session.client) is session:
            del self.sessions[session.client]
            log.debug("UDP session {client} ended: {why}", client=session.client, why=why)
            self._close(session)

    def _close(self, session: Session) -> None:
        self.metrics.stream_closed(*session.labels, session.received, session.sent)
        session.close()

    def expire(self, now: float) -> None:
        """End the sessions idle for longer than the session timeout (the least recently
        active come first)."""
        limit = now - self.settings.udp_session_timeout
        while self.sessions:
            client, session = next(iter(self.sessions.items()))
            if session.active > limit:
                break
            self.end(session, "idle")

    def drain(self) -> None:
        self.abort_all()

    def abort_all(self) -> None:
        for session in list(self.sessions.values()):
            self.end(session, "stopping")

"""A worker's data plane: serves the routing table on the listening sockets it is handed."""

from __future__ import annotations

import ctypes
import os
import socket
from collections import Counter
from collections.abc import Callable
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from twistgw.dataplane.datagram import MAX_DATAGRAM, UDPServer
from twistgw.dataplane.http import accesslog as access_log
from twistgw.dataplane.http.clientaddr import Networks
from twistgw.dataplane.http.policies import Guards
from twistgw.dataplane.http.pyfilters import FilterRegistry
from twistgw.dataplane.http.router import Router
from twistgw.dataplane.http.server import HTTPProxyFactory
from twistgw.dataplane.http.sessions import SessionKeys
from twistgw.dataplane.http.upstream import UpstreamPool
from twistgw.dataplane.proxyfront import ProxyHeaderFactory
from twistgw.dataplane.ratelimit import SharedBuckets
from twistgw.dataplane.stream.tcp import TCPFrontFactory
from twistgw.dataplane.stream.tlsfront import TLSFrontFactory
from twistgw.dataplane.tls import SNIContexts
from twistgw.dataplane.tlswrite import BatchedTLSFactory
from twistgw.extensions.filters import allowed_plugins
from twistgw.ipc.settings import DEFAULT_SETTINGS, DataPlaneSettings
from twistgw.metrics import Metrics
from twistgw.routing.ir import Bind, BindKey, HTTPListener, RoutingTable

if TYPE_CHECKING:
    from twistgw.dataplane.http.otlp import SpanExport

log = Logger()

Key = BindKey
T = TypeVar("T")
#: Seconds between samples of the open-connections gauge.
GAUGE_INTERVAL = 1.0
#: Seconds between additions of the requests counted in the worker to the metrics.
METRICS_FLUSH_INTERVAL = 0.25
#: Seconds a worker may stay past its memory limit before it is replaced.
MEMORY_RECYCLE_AFTER = 30.0
#: Share of the memory limit a shedding worker's resident memory must fall below before
#: it accepts connections again.
MEMORY_RESUME = 0.9
MB = 1024 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident memory (resident pages of /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim  # glibc's
    _malloc_trim.argtypes = [ctypes.c_size_t]
except (OSError, AttributeError):  # another C library: nothing to call
    _malloc_trim = None


def release_free_memory() -> None:
    """Give the system back the free memory the C allocator keeps. glibc returns a
    freed block inside its heap only at a trim, and shrinks the heap only down to its
    highest block still in use: after a large request head is freed, the worker's
    resident memory could stay past its limit (one block allocated meanwhile above
    it) though nothing uses it. ``malloc_trim`` returns every free page (a few ms)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


class TableRejected(Exception):
    """A routing table this worker cannot compile; the message names the bind."""


@attrs.frozen
class Prepared:
    """A bind compiled for a BindServer, ready to be put in place in one step."""

    router: Router
    scheme: str
    contexts: SNIContexts | None
    entry: Factory


class BindServer(Factory):
    """What one listening TCP socket serves: HTTP, HTTP inside TLS for HTTPS binds, for
    TLS binds whatever listener the ClientHello's SNI names (passthrough, terminated
    stream or HTTPS), or spliced streams for TCP binds.
    Each new table is compiled by ``prepare`` and put in place by ``install``, even a
    switch of protocol on the socket.
    A connection past the worker's or this socket's connection limit is closed at once
    (``buildProtocol`` returning None) and counted.
    With ``proxy_protocol`` (the port is in ``--proxy-protocol``) every connection first
    goes through a ``ProxyHeaderFactory`` that reads its PROXY header, then to the entry
    factory; other ports have no such layer. ``keys``: the gateway's
    session keys, which routers compile session persistence with."""

    noisy = False

    def __init__(
        self,
        http: HTTPProxyFactory,
        bind: Bind,
        min_tls_version: str,
        worker_connections: Callable[[], int],
        proxy_protocol: bool = False,
        keys: SessionKeys | None = None,
    ) -> None:
        self.http = http
        self.keys = keys
        self.label = http.label
        self.min_tls_version = min_tls_version
        self.worker_connections = worker_connections
        self.contexts: SNIContexts | None = None
        self.entry: Factory = http
        self.streams: set = set()  # open spliced connections, whatever table made them
        self.headers: set = set()  # connections whose PROXY header is being read
        self.proxy: ProxyHeaderFactory | None = None
        if proxy_protocol:
            self.proxy = ProxyHeaderFactory(
                lambda: self.entry,
                http.clock,
                http.settings.header_timeout,
                http.metrics,
                self.label,
                self.headers,
            )
        #: what a new connection is handed to: the PROXY header reader, else the entry
        self.front: Factory = http
        self.install(self.prepare(bind))

    @property
    def open_connections(self) -> int:
        return self.http.open_connections + len(self.streams) + len(self.headers)

    def drain(self) -> None:
        """HTTP connections close once idle; spliced streams end when their peers end
        them (the drain timeout aborts what is left)."""
        self.http.drain()

    def abort_all(self) -> None:
        self.http.abort_all()
        for stream in [*self.streams, *self.headers]:
            stream.transport.abortConnection()

    def prepare(self, bind: Bind) -> Prepared:
        """Compile this socket's part of a table; nothing changes until ``install``."""
        http = self.http
        if bind.protocol == "TCP":
            entry = TCPFrontFactory(
                bind, http.clock, http.metrics, http.pool.tls_creators, self.streams
            )
            return Prepared(Router(Bind(bind.address, bind.port, "HTTP")), "http", None, entry)
        if bind.protocol == "TLS":
            https = tuple(li for li in bind.listeners if isinstance(li, HTTPListener))
            router = Router(Bind(bind.address, bind.port, "HTTPS", https), self.keys)
            entry = TLSFrontFactory(
                bind,
                SNIContexts(bind, self.min_tls_version),
                http,
                http.clock,
                http.metrics,
                http.pool.tls_creators,
                self.streams,
            )
            return Prepared(router, "https", None, entry)
        if bind.protocol == "HTTPS":
            contexts = SNIContexts(bind, self.min_tls_version)
            entry = BatchedTLSFactory(contexts, False, http)
            return Prepared(Router(bind, self.keys), "https", contexts, entry)
        return Prepared(Router(bind, self.keys), "http", None, http)

    def install(self, prepared: Prepared) -> None:
        """Serve a prepared table: new connections and requests use it, those in
        flight keep what they started with."""
        self.http.router = prepared.router
        self.http.scheme = prepared.scheme
        self.contexts = prepared.contexts
        self.entry = prepared.entry
        self.front = self.proxy if self.proxy is not None else prepared.entry

    def buildProtocol(self, addr):
        settings = self.http.settings
        if self.open_connections >= settings.max_connections_per_port:
            return self._refuse("port")
        if self.worker_connections() >= settings.max_connections:
            return self._refuse("worker")
        return self.front.buildProtocol(addr)

    def _refuse(self, limit: str) -> None:
        self.http.metrics.connections_refused.labels(self.label, limit).inc()


class DataPlane:
    """Listening sockets adopted from the supervisor, each with a factory whose router
    follows the routing table. Applying a table swaps each factory's router in one
    assignment; requests in flight keep the router they started with."""

    def __init__(
        self,
        reactor,
        metrics: Metrics,
        settings: DataPlaneSettings = DEFAULT_SETTINGS,
        resident: Callable[[], int] = resident_bytes,
        spans: SpanExport | None = None,
        buckets: SharedBuckets | None = None,
        release: Callable[[], None] = release_free_memory,
    ) -> None:
        self.reactor = reactor
        self.guards = Guards(
            reactor,
            metrics,
            Networks(filter(None, settings.trusted_proxies.split(","))),
            buckets if buckets is not None else SharedBuckets(slots=settings.rate_limit_keys),
            fail_open=settings.rate_limit_redis_failure == "open",
            filters=FilterRegistry(allowed_plugins(settings.filter_plugins), metrics),
        )
        self.spans = spans
        self.metrics = metrics
        self.settings = settings
        #: the session keys every worker shares (settings.session_key; random if unset)
        self.session_keys = SessionKeys.from_hex(settings.session_key)
        self.min_tls_version = settings.tls_min_version
        self.pool = UpstreamPool(reactor, settings, waiting=metrics.count_waiting)
        self.binds: dict[Key, Bind] = {}
        self.servers: dict[Key, BindServer | UDPServer] = {}
        #: servers compiled for the current table's sockets not adopted yet
        self.waiting: dict[Key, BindServer | UDPServer] = {}
        self.ports: dict[Key, IListeningPort] = {}
        self.retired: list[BindServer] = []  # closed sockets, connections still open
        self.draining = False
        self.resident = resident
        self.release = release  # hands freed memory back to the system
        self.shedding = False  # past the memory limit: not accepting
        self.shedding_since = 0.0
        #: called once when the worker stays past its memory limit (the worker drains
        #: and exits, and the supervisor starts a fresh one)
        self.on_stuck: Callable[[], None] | None = None
        metrics.memory_shedding.set(0)
        # the gauges are sampled, not updated per connection (each update of a
        # multiprocess metric is a locked write to a shared file)
        self._sampler = LoopingCall(self.sample_connections)
        self._sampler.clock = reactor
        self._sampler.start(GAUGE_INTERVAL, now=False)
        # requests are counted in the worker and added to the shared metrics in batches
        self._flusher = LoopingCall(metrics.flush)
        self._flusher.clock = reactor
        self._flusher.start(METRICS_FLUSH_INTERVAL, now=False)
        self._streams_seen: set[tuple[str, str, str]] = set()
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = reactor
        self._sweeper.start(
            max(0.05, min(1.0, settings.stream_idle_timeout / 4, settings.udp_session_timeout / 4)),
            now=False,
        )

    def _bind(self, key: Key, binds: dict[Key, Bind] | None = None) -> Bind:
        """The bind of ``key`` in ``binds`` (the current table's), or an empty one."""
        found = (self.binds if binds is None else binds).get(key)
        return found or Bind(key[0], key[1], "UDP" if key[2] == "udp" else "HTTP")

    def _server(self, key: Key, bind: Bind) -> BindServer | UDPServer:
        """A server for a socket not adopted yet, serving ``bind``."""
        if key[2] == "udp":
            return UDPServer(bind, self.reactor, self.metrics, self.settings)
        factory = HTTPProxyFactory(
            Router(Bind(key[0], key[1], "HTTP")),
            self.pool,
            self.metrics,
            self.reactor,
            settings=self.settings,
            access_log=access_log.emit if self.settings.access_log else None,
            spans=self.spans,
            guards=self.guards,
        )
        return BindServer(
            factory,
            bind,
            self.min_tls_version,
            self.open_connections,
            proxy_protocol=key[1] in self.settings.proxy_protocol,
            keys=self.session_keys,
        )

    def apply(self, table: RoutingTable) -> None:
        """Compile every bind of ``table`` (for the sockets served and those still to
        come), then put them all in place. If any does not compile, raise TableRejected
        with nothing changed: the last good table keeps serving."""
        binds = {bind.key: bind for bind in table.binds}
        prepared = [
            (server, _compile(server.prepare, self._bind(key, binds)))
            for key, server in self.servers.items()
        ]
        waiting = {
            key: _compile(partial(self._server, key), bind)
            for key, bind in binds.items()
            if key not in self.servers
        }
        self.binds = binds
        for server, state in prepared:
            server.install(state)
        self.waiting = waiting
        self.guards.health.update(table)
        self.guards.filters.new_table(table)

    def adopt(self, key: Key, descriptor: int, family: socket.AddressFamily) -> None:
        """Serve a socket the supervisor bound (listening TCP, or UDP) with what the
        current table compiled for it."""
        try:
            if key in self.ports or self.draining:
                return
            server = self.waiting.pop(key, None)
            if server is None:  # a socket of a rejected table: an empty bind, nothing served
                server = self._server(key, self._bind(key))
            if isinstance(server, UDPServer):
                self.ports[key] = self.reactor.adoptDatagramPort(
                    descriptor, family, server, maxPacketSize=MAX_DATAGRAM
                )
            else:
                self.ports[key] = self.reactor.adoptStreamPort(descriptor, family, server)
                if self.shedding:
                    self.ports[key].stopReading()
            self.servers[key] = server
        finally:
            os.close(descriptor)  # the reactor holds its own duplicate

    def close(self, key: Key) -> None:
        """Stop serving a socket; its open connections finish on their own (UDP
        sessions end with it: their replies would have no socket to leave from)."""
        server = self.servers.pop(key, None)
        if isinstance(server, UDPServer):
            server.abort_all()
        elif server is not None:
            self.retired.append(server)
        port = self.ports.pop(key, None)
        if port is not None:
            port.stopListening()

    def sweep(self) -> None:
        """Close TCP and TLS streams idle for longer than the stream idle timeout, and
        end UDP sessions past theirs."""
        now = monotonic()
        limit = now - self.settings.stream_idle_timeout
        for server in [*self.servers.values(), *self.retired]:
            if isinstance(server, UDPServer):
                server.expire(now)
                continue
            for stream in [s for s in server.streams if s.idle_since() < limit]:
                stream.transport.loseConnection()  # nothing moves: a FIN, not a reset

    def sample_connections(self) -> None:
        counts: dict[str, int] = {}
        streams: Counter[tuple[str, str, str]] = Counter()
        for server in [*self.servers.values(), *self.retired]:
            counts[server.label] = counts.get(server.label, 0) + server.open_connections
            streams.update(s.labels for s in server.streams if s.labels is not None)
        for label, count in counts.items():
            self.metrics.connection_gauge(label).set(count)
        for labels in self._streams_seen - set(streams):
            self.metrics.stream_active.labels(*labels).set(0)
        for labels, count in streams.items():
            self.metrics.stream_active.labels(*labels).set(count)
        self._streams_seen = set(streams)
        self.retired = [server for server in self.retired if server.open_connections]
        self.check_memory()

    def check_memory(self) -> None:
        """Past the worker memory limit, stop accepting connections and close the idle
        keep-alive ones (at each check); accept again below MEMORY_RESUME of it."""
        limit = self.settings.worker_memory_limit_mb * MB
        if not limit:
            return
        resident = self.resident()
        if resident > limit or (self.shedding and resident >= limit * MEMORY_RESUME):
            # what the allocator keeps free counts as resident: hand it back first
            self.release()
            resident = self.resident()
        if resident > limit:
            if not self.shedding:
                self._shed(True, resident)
                self.shedding_since = self.reactor.seconds()
            elif (
                self.on_stuck is not None
                and self.reactor.seconds() - self.shedding_since > MEMORY_RECYCLE_AFTER
            ):
                # CPython seldom gives freed memory back: a worker still past the limit
                # after this long is replaced, or it would hold its share of new
                # connections in its socket's backlog for good
                log.warn("worker memory stays past the limit: draining for a fresh worker")
                on_stuck, self.on_stuck = self.on_stuck, None
                on_stuck()
            for server in [*self.servers.values(), *self.retired]:
                if isinstance(server, BindServer):
                    server.http.close_idle()
        elif self.shedding and resident < limit * MEMORY_RESUME:
            self._shed(False, resident)

    def _shed(self, shedding: bool, resident: int) -> None:
        """Stop or resume accepting on every listening TCP socket."""
        self.shedding = shedding
        self.metrics.memory_shedding.set(int(shedding))
        log.warn(
            "worker memory {resident} MB {state} --worker-memory-limit {limit} MB: {action}",
            resident=resident // MB,
            state="past" if shedding else "below 90 % of",
            limit=self.settings.worker_memory_limit_mb,
            action="not accepting connections, closing idle ones"
            if shedding
            else "accepting connections again",
        )
        for key, port in self.ports.items():
            if key[2] != "udp":
                if shedding:
                    port.stopReading()
                else:
                    port.startReading()

    def open_connections(self) -> int:
        self.retired = [server for server in self.retired if server.open_connections]
        return sum(server.open_connections for server in [*self.servers.values(), *self.retired])

    def drain(self, timeout: float) -> defer.Deferred:
        """Stop accepting, close idle keep-alive connections, let requests in flight
        finish; fires when none is left or ``timeout`` seconds have passed."""
        if not self.draining:
            self.draining = True
            for key in list(self.servers):
                self.close(key)
            for server in self.retired:
                server.drain()
        deadline = self.reactor.seconds() + timeout

        def wait(_=None):
            left = self.open_connections()
            if left == 0 or self.reactor.seconds() >= deadline:
                if left:
                    log.warn("drain timeout: closing {count} connections", count=left)
                    for server in self.retired:
                        server.abort_all()
                self.pool.close_idle()
                self.metrics.flush()
                return None
            return deferLater(self.reactor, 0.05, wait)

        return defer.maybeDeferred(wait)


def _compile(make: Callable[[Bind], T], bind: Bind) -> T:
    """``make(bind)``; whatever it raises becomes a TableRejected naming the bind."""
    try:
        return make(bind)
    except Exception as exc:
        where = f"{bind.address}:{bind.port} {bind.protocol}"
        raise TableRejected(f"{where}: {type(exc).__name__}: {exc}") from exc

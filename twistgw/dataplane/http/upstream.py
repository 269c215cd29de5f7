"""Connections to backends: the HTTP/1.1 client codec on a socket, and a keep-alive pool
per endpoint, in plaintext or, for Services with a BackendTLSPolicy, over verified TLS;
for HTTP/2 backends, multiplexed connections (``h2.client``) from the same pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol, IReactorTCP
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twistgw.dataplane.backend_tls import BackendConnectionCreator, BackendTLSCreators
from twistgw.dataplane.fastwrite import writer_for
from twistgw.dataplane.http.h1.client import TUNNEL, ClientCodec
from twistgw.dataplane.http.h2.client import H2UpstreamConnection
from twistgw.ipc.settings import DEFAULT_SETTINGS, DataPlaneSettings
from twistgw.routing.ir import BackendTLS, CertificateKey, Endpoint

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange

log = Logger()

#: What a pooled connection is kept under: where it goes and how (TLS creator or None;
#: whether it speaks HTTP/2).
PoolKey = tuple[Endpoint, BackendConnectionCreator | None, bool]


@implementer(IHalfCloseableProtocol)
class UpstreamConnection(Protocol):
    """One keep-alive connection to a backend endpoint, serving one exchange at a time
    (``exchange``), or, after a ``101``, one end of a tunnel."""

    def __init__(self, pool: UpstreamPool, key: PoolKey) -> None:
        self.pool = pool
        self.key = key
        self.endpoint = key[0]
        self.exchange: Exchange | None = None
        self.connected = False
        self.reused = False
        self.read_closed = self.write_closed = False
        self.tls = key[1] is not None
        self.codec = ClientCodec(self, pool.reactor, pool.settings)

    # -- Protocol

    def connectionMade(self) -> None:
        self.connected = True
        self.transport.setTcpNoDelay(True)
        self.write = writer_for(self.transport)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        self.codec.receive(data)
        exchange = self.exchange
        if exchange is not None:
            exchange.flush()

    def readConnectionLost(self) -> None:
        exchange = self.exchange
        self.read_closed = True
        if self.codec.state == TUNNEL and exchange is not None and not self.write_closed:
            client = exchange.conn
            if client.tls or client.transport is None:
                client.close()  # TLS has no half-close
            else:
                client.transport.loseWriteConnection()
            return
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        self.write_closed = True
        if self.codec.state != TUNNEL or self.read_closed:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:
        self.connected = False
        self.pool.forget(self)
        exchange = self.exchange
        if self.codec.state == TUNNEL and exchange is not None:
            self.exchange = None
            exchange.tunnel_closed()
            exchange.conn.close()
            return
        self.codec.receive_eof()
        exchange = self.exchange
        if exchange is not None:
            exchange.flush()

    # -- for the codec (ClientIO) and the exchange

    def close(self) -> None:
        if self.connected:
            self.transport.loseConnection()

    def release(self) -> None:
        """The exchange is done with this connection: pool it or close it."""
        self.exchange = None
        if self.codec.reusable and self.connected:
            self.pool.give_back(self)
        else:
            self.close()

    def abort(self) -> None:
        self.exchange = None
        self.codec.detach()
        if self.connected:
            self.transport.abortConnection()


class _ConnectFactory(ClientFactory):
    noisy = False  # one per upstream connection: no log lines

    def __init__(self, pool: UpstreamPool, key: PoolKey, exchange: Exchange) -> None:
        self.pool, self.key, self.exchange = pool, key, exchange

    def buildProtocol(self, addr) -> UpstreamConnection:
        connection = UpstreamConnection(self.pool, self.key)
        # the connection outlives this exchange in the pool: the factory (which the
        # connector keeps) must not keep the exchange, nor its client connection
        connection.exchange, self.exchange = self.exchange, None
        return connection

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        self.pool.slot_freed(self.key)
        if self.exchange is not None:
            self.exchange.upstream_failed(reason.getErrorMessage())


class _H2ConnectFactory(ClientFactory):
    """Connects an HTTP/2 backend connection; the exchanges that wait for it (up to
    its stream limit) are ``pending``."""

    noisy = False

    def __init__(self, pool: UpstreamPool, key: PoolKey, exchange: Exchange) -> None:
        self.pool, self.key = pool, key
        self.pending: list[Exchange] = [exchange]
        self.connection: H2UpstreamConnection | None = None

    def has_room(self) -> bool:
        return len(self.pending) < self.pool.settings.h2_max_concurrent_streams

    def buildProtocol(self, addr) -> H2UpstreamConnection:
        pending, self.pending = self.pending, []
        self.connection = H2UpstreamConnection(self.pool, self.key, pending)
        self.pool.h2_connected(self)
        return self.connection

    def clientConnectionFailed(self, connector, reason: Failure) -> None:
        pending, self.pending = self.pending, []
        self.pool.h2_connect_failed(self)
        for exchange in pending:
            exchange.upstream_failed(reason.getErrorMessage())


class UpstreamPool:
    """Idle keep-alive connections per endpoint (and TLS settings), most recently used
    first, and the endpoint's circuit breaker: at most ``backend_max_connections``
    connections (connecting, in use or idle); a request finding them all busy waits, in
    order of arrival, for the next one released (or, if a released one cannot be reused,
    for its slot), at most ``backend_max_pending`` of them for at most the connect
    timeout; the others are told ``upstream_overflow``. ``waiting`` is told (backend
    name, +1 or -1) as requests start and stop waiting (the metrics' gauge)."""

    def __init__(
        self,
        reactor: IReactorTCP,
        settings: DataPlaneSettings = DEFAULT_SETTINGS,
        max_idle: int = 256,
        waiting: Callable[[str, int], None] | None = None,
    ) -> None:
        self.reactor = reactor
        self.settings = settings
        self.max_idle = max_idle
        self.count_waiting = waiting
        self.tls_creators = BackendTLSCreators()
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self._open: dict[PoolKey, int] = {}
        #: exchanges waiting for a connection, per key in order of arrival, with their timeouts
        self._waiting: dict[PoolKey, dict[Exchange, IDelayedCall]] = {}
        self._waiting_key: dict[Exchange, PoolKey] = {}
        #: HTTP/2 connections with streams to spare or not, and those connecting
        self._h2: dict[PoolKey, list[H2UpstreamConnection]] = {}
        self._h2_connecting: dict[PoolKey, list[_H2ConnectFactory]] = {}

    def acquire(
        self,
        endpoint: Endpoint,
        exchange: Exchange,
        tls: BackendTLS | None = None,
        client_certificate: CertificateKey | None = None,
        http2: bool = False,
    ) -> None:
        """Hand ``exchange`` a connection (``http2``: a stream): at once if one is
        idle, else once connected (over TLS, verified as ``tls`` says, when it is
        given)."""
        creator = self.tls_creators.get(tls, client_certificate, http2) if tls is not None else None
        key = (endpoint, creator, http2)
        if http2:
            self._acquire_stream(key, exchange)
            return
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.connected:
                connection.reused = True
                exchange.upstream_ready(connection)
                return
        if self._open.get(key, 0) < self.settings.backend_max_connections:
            self._connect(key, exchange)
            return
        self._wait(key, exchange)

    def _wait(self, key: PoolKey, exchange: Exchange) -> None:
        """Queue ``exchange`` for the next connection (or stream) of ``key``."""
        if len(self._waiting.get(key, ())) >= self.settings.backend_max_pending:
            exchange.upstream_overflow("pending")
            return
        waiting = self._waiting.setdefault(key, {})
        timeout = self.settings.backend_connect_timeout
        waiting[exchange] = self.reactor.callLater(timeout, self._timed_out, exchange)
        self._waiting_key[exchange] = key
        if self.count_waiting is not None:
            self.count_waiting(exchange.backend.name, 1)

    def _acquire_stream(self, key: PoolKey, exchange: Exchange) -> None:
        for connection in self._h2.get(key, ()):
            if connection.has_room():
                connection.open_stream(exchange)
                return
        for factory in self._h2_connecting.get(key, ()):
            if factory.has_room():
                factory.pending.append(exchange)
                return
        if self._open.get(key, 0) < self.settings.backend_max_connections:
            self._connect(key, exchange)
            return
        self._wait(key, exchange)

    def _connect(self, key: PoolKey, exchange: Exchange) -> None:
        self._open[key] = self._open.get(key, 0) + 1
        endpoint, creator, http2 = key
        if http2:
            factory = _H2ConnectFactory(self, key, exchange)
            self._h2_connecting.setdefault(key, []).append(factory)
        else:
            factory = _ConnectFactory(self, key, exchange)
        timeout = self.settings.backend_connect_timeout
        if creator is None:
            self.reactor.connectTCP(endpoint.address, endpoint.port, factory, timeout=timeout)
        else:
            self.reactor.connectSSL(
                endpoint.address, endpoint.port, factory, creator, timeout=timeout
            )

    def _next_waiting(self, key: PoolKey) -> Exchange | None:
        """The exchange waiting longest for ``key``, out of the queue."""
        waiting = self._waiting.get(key)
        if not waiting:
            return None
        exchange = next(iter(waiting))
        self.cancel(exchange)
        return exchange

    def _dequeue(self, exchange: Exchange) -> IDelayedCall | None:
        """Take ``exchange`` out of its queue; its timeout, if it was waiting."""
        key = self._waiting_key.pop(exchange, None)
        if key is None:
            return None
        waiting = self._waiting[key]
        timeout = waiting.pop(exchange)
        if not waiting:
            del self._waiting[key]
        if self.count_waiting is not None:
            self.count_waiting(exchange.backend.name, -1)
        return timeout

    def _timed_out(self, exchange: Exchange) -> None:
        self._dequeue(exchange)
        exchange.upstream_overflow("timeout")

    def cancel(self, exchange: Exchange) -> None:
        """``exchange`` no longer waits for a connection (if it did)."""
        timeout = self._dequeue(exchange)
        if timeout is not None:
            timeout.cancel()

    def slot_freed(self, key: PoolKey) -> None:
        """A connection for ``key`` closed or failed: the next waiting exchange may
        open one."""
        left = self._open[key] - 1
        if left:
            self._open[key] = left
        else:
            del self._open[key]
        exchange = self._next_waiting(key)
        if exchange is not None:
            self._connect(key, exchange)

    # -- HTTP/2 connections

    def h2_connected(self, factory: _H2ConnectFactory) -> None:
        key = factory.key
        self._forget_factory(factory)
        self._h2.setdefault(key, []).append(factory.connection)

    def h2_connect_failed(self, factory: _H2ConnectFactory) -> None:
        self._forget_factory(factory)
        self.slot_freed(factory.key)

    def _forget_factory(self, factory: _H2ConnectFactory) -> None:
        connecting = self._h2_connecting.get(factory.key)
        if connecting and factory in connecting:
            connecting.remove(factory)
            if not connecting:
                del self._h2_connecting[factory.key]

    def h2_room(self, connection: H2UpstreamConnection) -> None:
        """A stream of ``connection`` ended: a waiting exchange may have one."""
        while connection.has_room():
            exchange = self._next_waiting(connection.key)
            if exchange is None:
                return
            connection.open_stream(exchange)

    def h2_closed(self, connection: H2UpstreamConnection) -> None:
        """``connection`` takes no more streams (GOAWAY, idle, or closed)."""
        key = connection.key
        connections = self._h2.get(key)
        if connections and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._h2[key]
            self.slot_freed(key)

    def give_back(self, connection: UpstreamConnection) -> None:
        exchange = self._next_waiting(connection.key)
        if exchange is not None:
            connection.reused = True
            exchange.upstream_ready(connection)
            return
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.max_idle:
            connection.transport.loseConnection()
            return
        idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        """``connection`` closed."""
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
        self.slot_freed(connection.key)

    def close_idle(self) -> None:
        for idle in self._idle.values():
            for connection in list(idle):
                connection.transport.loseConnection()
        self._idle.clear()
        for connections in list(self._h2.values()):
            for connection in list(connections):
                if not connection.session.streams:
                    connection.close()

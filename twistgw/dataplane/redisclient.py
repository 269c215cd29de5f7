"""A small non-blocking Redis client (RESP2) on Twisted: one pipelined connection,
reconnected with capped exponential backoff, every command with a timeout.

It holds a sans-I/O reply parser (``RespParser``), the command encoding, the URL
reader (``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS) and
``RedisClient``. Bounds, so a broken or hostile server cannot exhaust memory or hold
callers: a reply is at most ``MAX_REPLY`` bytes in all (bulk strings included), has
at most ``MAX_ITEMS`` array items (all levels counted) and at most ``MAX_DEPTH``
nested arrays; a reply over them, malformed or unasked for drops the connection. At
most ``max_waiting`` commands wait for replies on the connection; a command fails at
once when there are more, or when there is no ready connection (no queue grows while
Redis is away). A command failing after its timeout still has its reply read in
turn, so later replies stay matched; a connection whose oldest command has waited
``dead_after`` seconds is dropped and made anew."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import attrs
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.interfaces import IConnector, IDelayedCall, IReactorTCP
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

log = Logger()

MAX_REPLY = 1 << 20
MAX_ITEMS = 1024
MAX_DEPTH = 4
#: Reconnection waits: the first, doubled after each failed attempt up to the last.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0

_INTEGER = re.compile(rb"-?[0-9]{1,19}")


class ProtocolError(Exception):
    """The server sent what is not a reply within the bounds."""


class ReplyError(Exception):
    """An error reply (``-ERR ...``): a value of the parser, the failure of a command."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RedisUnavailable(Exception):
    """No answer: no ready connection, too many commands waiting, the connection lost
    or the command timed out."""


Reply = str | bytes | int | ReplyError | list["Reply"] | None


class _Incomplete(Exception):
    pass


class RespParser:
    """Replies from the bytes of a connection, as ``feed`` receives them: simple
    strings as ``str``, bulk strings as ``bytes``, integers, errors as ``ReplyError``,
    arrays as lists, null bulk strings and arrays as ``None``. After a
    ``ProtocolError`` the parser is not to be used again."""

    def __init__(
        self, max_reply: int = MAX_REPLY, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH
    ) -> None:
        self.max_reply = max_reply
        self.max_items = max_items
        self.max_depth = max_depth
        self._buffer = bytearray()
        self._limit = 0  # where the reply being read must end by
        self._items = 0  # array items of the reply being read

    def feed(self, data: bytes) -> list[Reply]:
        """The replies ``data`` completes (the rest is kept for the next call)."""
        buffer = self._buffer
        buffer += data
        replies: list[Reply] = []
        start = 0
        try:
            while start < len(buffer):
                self._limit = start + self.max_reply
                self._items = 0
                try:
                    value, start_next = self._value(start, 0)
                except _Incomplete:
                    if len(buffer) - start > self.max_reply:
                        raise ProtocolError(f"a reply over {self.max_reply} bytes") from None
                    break
                replies.append(value)
                start = start_next
        finally:
            del buffer[:start]
        return replies

    def _value(self, position: int, depth: int) -> tuple[Reply, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", position)
        if end < 0:
            raise _Incomplete
        after = end + 2
        if after > self._limit:
            raise ProtocolError(f"a reply over {self.max_reply} bytes")
        kind = buffer[position]
        line = bytes(buffer[position + 1 : end])
        if kind == 0x2B:  # +
            return line.decode("utf-8", "replace"), after
        if kind == 0x2D:  # -
            return ReplyError(line.decode("utf-8", "replace")), after
        if kind == 0x3A:  # :
            return _integer(line), after
        if kind == 0x24:  # $
            length = _integer(line)
            if length == -1:
                return None, after
            stop = after + length
            if length < 0 or stop + 2 > self._limit:
                raise ProtocolError(f"a bulk string of {length} bytes")
            if len(buffer) < stop + 2:
                raise _Incomplete
            if buffer[stop : stop + 2] != b"\r\n":
                raise ProtocolError("a bulk string longer than it said")
            return bytes(buffer[after:stop]), stop + 2
        if kind == 0x2A:  # *
            count = _integer(line)
            if count == -1:
                return None, after
            if count < 0:
                raise ProtocolError(f"an array of {count} items")
            if depth >= self.max_depth:
                raise ProtocolError(f"arrays nested over {self.max_depth} deep")
            self._items += count
            if self._items > self.max_items:
                raise ProtocolError(f"a reply of over {self.max_items} array items")
            items: list[Reply] = []
            for _ in range(count):
                value, after = self._value(after, depth + 1)
                items.append(value)
            return items, after
        raise ProtocolError(f"an unknown reply type {bytes([kind])!r}")


def _integer(line: bytes) -> int:
    if not _INTEGER.fullmatch(line):
        raise ProtocolError(f"not an integer: {line[:30]!r}")
    return int(line)


def encode_command(args: Sequence[bytes]) -> bytes:
    """A command as RESP sends it: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


@attrs.frozen
class RedisAddress:
    """Where a Redis server is and how to log in to it."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls: bool = False


def parse_url(url: str) -> RedisAddress:
    """A ``redis://`` or ``rediss://`` URL read (ValueError if it is not one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis:// or rediss:// URL: {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError("a Redis URL needs a host")
    if parts.query or parts.fragment:
        raise ValueError("a Redis URL takes no query or fragment")
    path = parts.path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise ValueError(f"not a database number: {path!r}")
    try:
        port = parts.port or 6379
    except ValueError as error:
        raise ValueError(f"not a port: {error}") from None
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=parts.scheme == "rediss",
    )


class _Connection(Protocol):
    """Commands in flight on one connection, answered in the order they were sent."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.parser = RespParser()
        self.waiting: deque[tuple[Deferred[Reply], IDelayedCall, float]] = deque()
        self.closed = False

    def connectionMade(self) -> None:
        self.client._made(self)

    def call(self, args: Sequence[bytes]) -> Deferred[Reply]:
        """Send a command; its Deferred fails with ``ReplyError`` on an error reply and
        with ``RedisUnavailable`` on a timeout or a lost connection."""
        client = self.client
        if self.closed:
            return fail(RedisUnavailable("the connection is closing"))
        if len(self.waiting) >= client.max_waiting:
            return fail(RedisUnavailable("too many commands waiting"))
        done: Deferred[Reply] = Deferred()
        timer = client.reactor.callLater(client.timeout, self._timed_out, done)
        self.waiting.append((done, timer, client.reactor.seconds()))
        self.transport.write(encode_command(args))
        return done

    def _timed_out(self, done: Deferred[Reply]) -> None:
        client = self.client
        if client.reactor.seconds() - self.waiting[0][2] >= client.dead_after:
            self.drop(f"no reply for {client.dead_after} s")
        done.errback(RedisUnavailable("no reply in time"))

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self.parser.feed(data)
        except ProtocolError as error:
            self.drop(str(error))
            return
        for reply in replies:
            if not self.waiting:
                self.drop("a reply to no command")
                return
            done, timer, _ = self.waiting.popleft()
            if timer.active():
                timer.cancel()
            if done.called:  # (timed out: its reply is only read past)
                continue
            if isinstance(reply, ReplyError):
                done.errback(reply)
            else:
                done.callback(reply)

    def drop(self, why: str) -> None:
        """Abort the connection (the client makes a new one)."""
        if not self.closed:
            log.warn("dropping the Redis connection: {why}", why=why)
            self.closed = True
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.closed = True
        self.client._lost(self)  # (first: the callbacks below may use the client)
        waiting, self.waiting = self.waiting, deque()
        for done, timer, _ in waiting:
            if timer.active():
                timer.cancel()
            if not done.called:
                done.errback(RedisUnavailable("the connection was lost"))


class _Factory(ClientFactory):
    noisy = False

    def __init__(self, client: RedisClient) -> None:
        self.client = client

    def buildProtocol(self, addr: object) -> _Connection:
        return _Connection(self.client)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.client._lost(None)


class RedisClient:
    """One connection to the Redis server at ``url``, made by ``start`` and remade
    whenever lost until ``stop``; ``execute`` sends a command on it. ``reactor``
    provides ``IReactorTCP`` and ``IReactorTime``; ``ca_pem`` is the CA a
    ``rediss://`` server's certificate is checked against (else the system's)."""

    def __init__(
        self,
        url: str,
        reactor: IReactorTCP,
        *,
        timeout: float = 0.25,
        max_waiting: int = 1000,
        dead_after: float = 5.0,
        connect_timeout: float = 2.0,
        ca_pem: bytes | None = None,
    ) -> None:
        self.address = parse_url(url)
        self.reactor = reactor
        self.timeout = timeout
        self.max_waiting = max_waiting
        self.dead_after = dead_after
        self.connect_timeout = connect_timeout
        self.ca_pem = ca_pem
        self._running = False
        self._ready: _Connection | None = None
        self._connector: IConnector | None = None
        self._retry: IDelayedCall | None = None
        self._attempts = 0  # failed in a row

    @property
    def connected(self) -> bool:
        """Whether there is a ready (logged in) connection."""
        return self._ready is not None

    def start(self) -> None:
        """Connect, and keep reconnecting."""
        if not self._running:
            self._running = True
            self._connect()

    def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connector is not None:
            self._connector.disconnect()

    def execute(self, *args: bytes) -> Deferred[Reply]:
        """Send a command: its Deferred fires with the reply, fails with
        ``ReplyError`` on an error reply, or ``RedisUnavailable``."""
        if self._ready is None:
            return fail(RedisUnavailable("not connected"))
        return self._ready.call(args)

    def _connect(self) -> None:
        self._retry = None
        address = self.address
        factory: ClientFactory = _Factory(self)
        if address.tls:
            trust = Certificate.loadPEM(self.ca_pem) if self.ca_pem is not None else None
            options = optionsForClientTLS(address.host, trustRoot=trust)
            factory = TLSMemoryBIOFactory(options, True, factory)
        self._connector = self.reactor.connectTCP(
            address.host, address.port, factory, timeout=self.connect_timeout
        )

    def _made(self, connection: _Connection) -> None:
        address = self.address
        commands: list[tuple[bytes, ...]] = []
        if address.password is not None:
            login = (address.username or "").encode(), address.password.encode()
            commands.append((b"AUTH", *login) if address.username else (b"AUTH", login[1]))
        if address.db:
            commands.append((b"SELECT", b"%d" % address.db))
        calls = [connection.call(command) for command in commands]
        answered = gatherResults(calls, consumeErrors=True)
        answered.addCallbacks(
            lambda _: self._logged_in(connection),
            lambda failure: connection.drop(
                f"logging in failed: {failure.value.subFailure.getErrorMessage()}"
            ),
        )

    def _logged_in(self, connection: _Connection) -> None:
        if self._running and not connection.closed:
            self._ready = connection
            self._attempts = 0
            log.info("connected to Redis at {host}:{port}", **self._where())

    def _lost(self, connection: _Connection | None) -> None:
        if connection is not None and connection is self._ready:
            self._ready = None
            log.warn("lost the Redis connection to {host}:{port}", **self._where())
        if not self._running or self._retry is not None:
            return
        delay = min(RETRY_FIRST * 2 ** min(self._attempts, 16), RETRY_MAX)
        self._attempts += 1
        self._retry = self.reactor.callLater(delay, self._connect)

    def _where(self) -> dict[str, object]:
        return {"host": self.address.host, "port": self.address.port}

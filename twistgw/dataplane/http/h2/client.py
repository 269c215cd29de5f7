"""HTTP/2 towards a backend: one connection carries the streams of many exchanges
(h2c with prior knowledge, or h2 over TLS chosen by ALPN), as many at once as the
backend's SETTINGS_MAX_CONCURRENT_STREAMS allows (and at most the gateway's own
bound). Each stream is an exchange's ``upstream``: its codec and its flow-controlled
transport.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgw.dataplane.fastwrite import writer_for
from twistgw.dataplane.http.deadline import Deadline
from twistgw.dataplane.http.h2.flow import Session, StreamFlow, tolerate_goaway
from twistgw.dataplane.http.messages import Headers, Response

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange
    from twistgw.dataplane.http.upstream import PoolKey, UpstreamPool

log = Logger()

#: Request fields that concern an HTTP/1.1 connection only (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: Methods whose requests carry a content-length even when it is 0.
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
#: Final statuses with no body (RFC 9110 §6.4.1); DATA on them is dropped.
BODILESS = frozenset({204, 304})


class H2UpstreamConnection(Protocol):
    """One HTTP/2 connection to a backend endpoint; ``pending`` exchanges get a stream
    once it is connected."""

    def __init__(self, pool: UpstreamPool, key: PoolKey, pending: list[Exchange]) -> None:
        self.pool = pool
        self.key = key
        self.endpoint = key[0]
        self.tls = key[1] is not None
        self.pending = pending
        self.connected = False
        self.goaway = False
        self.streams_opened = 0
        h2 = H2Connection(
            H2Configuration(
                client_side=True,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        h2.local_settings.update(
            {
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: pool.settings.h2_stream_window,
                SettingCodes.MAX_HEADER_LIST_SIZE: pool.settings.max_header_bytes,
            }
        )
        tolerate_goaway(h2)
        self.session = Session(h2)
        self.idle = Deadline(pool.reactor, self._idle)

    @property
    def max_streams(self) -> int:
        """Streams this connection may carry at once."""
        return min(
            self.session.h2.remote_settings.max_concurrent_streams,
            self.pool.settings.h2_max_concurrent_streams,
        )

    def has_room(self) -> bool:
        if self.goaway or not self.connected:
            return False
        return len(self.session.streams) + len(self.pending) < self.max_streams

    # -- Protocol

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's interface)
        self.connected = True
        self.write = writer_for(self.transport)
        self.transport.setTcpNoDelay(True)
        h2 = self.session.h2
        h2.initiate_connection()
        extra = self.pool.settings.h2_connection_window - 65535
        if extra > 0:
            h2.increment_flow_control_window(extra)
        self.session.dirty = True
        self.transport.registerProducer(self, True)
        pending, self.pending = self.pending, []
        for exchange in pending:
            self.open_stream(exchange)
        self.flush()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        session = self.session
        try:
            events = session.h2.receive_data(data)
        except H2ProtocolError as error:
            log.info(
                "backend {endpoint} broke HTTP/2: {error}", endpoint=self.endpoint, error=error
            )
            self.flush()
            self.connected = False  # (no stream may be opened on it from now on)
            self.pool.h2_closed(self)
            self._fail_all("backend broke HTTP/2")
            self.transport.loseConnection()
            return
        touched: list[UpstreamStream] = []
        streams = session.streams
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.response_data(event.data, event.flow_controlled_length)
                    touched.append(stream)
                elif event.flow_controlled_length:
                    session.h2.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                    session.dirty = True
            elif kind is ResponseReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.response_head(event.headers)
                    touched.append(stream)
            elif kind is TrailersReceived:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.response_trailers = list(event.headers)
            elif kind is StreamEnded:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.response_ended()
            elif kind is StreamReset:
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.reset_by_backend(event.error_code)
            elif kind is WindowUpdated:
                session.window_opened(event.stream_id)
            elif kind is RemoteSettingsChanged:
                if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    session.window_opened(0)
            elif kind is ConnectionTerminated:
                self._goaway(event.last_stream_id)
        self.flush()
        for stream in touched:
            exchange = stream.exchange
            if exchange is not None:
                exchange.flush()

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802
        self.connected = False
        self.idle.cancel()
        self.pool.h2_closed(self)  # (first: retries must not come back to it)
        self._fail_all("backend connection lost")

    # the producer the backend's socket pauses while its send buffer is full
    def pauseProducing(self) -> None:  # noqa: N802
        self.session.pause_producers(True)

    def resumeProducing(self) -> None:  # noqa: N802
        self.session.pause_producers(False)

    def stopProducing(self) -> None:  # noqa: N802
        """(The connection is closing; connectionLost follows.)"""

    # -- streams

    def open_stream(self, exchange: Exchange) -> None:
        """A new stream for ``exchange``, handed to it at once."""
        self.idle.clear()
        stream_id = self.session.h2.get_next_available_stream_id()
        stream = UpstreamStream(self, stream_id)
        stream.reused = self.streams_opened > 0
        self.streams_opened += 1
        self.session.streams[stream_id] = stream
        exchange.upstream_ready(stream)

    def stream_closed(self, stream: UpstreamStream) -> None:
        if self.session.streams.pop(stream.id, None) is None:
            return
        if self.goaway:
            if not self.session.streams and self.connected:
                self.transport.loseConnection()
            return
        self.pool.h2_room(self)
        if not self.session.streams:
            self.idle.set(self.pool.settings.idle_timeout)

    def flush(self) -> None:
        session = self.session
        if session.dirty and self.connected:
            session.dirty = False
            data = session.h2.data_to_send()
            if data:
                self.write(data)

    def close(self) -> None:
        if self.connected:
            self.transport.loseConnection()

    def _idle(self) -> None:
        if not self.session.streams and self.connected:
            self.goaway = True
            self.pool.h2_closed(self)
            with suppress(H2ProtocolError):
                self.session.h2.close_connection(ErrorCodes.NO_ERROR)
            self.session.dirty = True
            self.flush()
            self.transport.loseConnection()

    def _goaway(self, last_stream_id: int | None) -> None:
        """The backend takes no new streams; those past ``last_stream_id`` were never
        processed, so they may be retried elsewhere."""
        self.goaway = True
        self.pool.h2_closed(self)
        for stream in list(self.session.streams.values()):
            if last_stream_id is not None and stream.id > last_stream_id:
                stream.reused = True  # (safe to retry)
                stream.fail("backend refused the stream (GOAWAY)")
        if not self.session.streams:
            self.transport.loseConnection()

    def _fail_all(self, reason: str) -> None:
        pending, self.pending = self.pending, []
        for exchange in pending:
            exchange.upstream_failed(reason)
        for stream in list(self.session.streams.values()):
            stream.fail(reason)


class UpstreamStream(StreamFlow):
    """One exchange's request and response on an HTTP/2 backend connection."""

    def __init__(self, connection: H2UpstreamConnection, stream_id: int) -> None:
        super().__init__(connection.session, stream_id)
        self.connection = connection
        self.tls = connection.tls
        self.head_request = False
        self.bodiless = False
        self.exchange: Exchange | None = None
        self.reused = False
        self.responded = False
        self.done = False
        self.response_trailers: list[tuple[bytes, bytes]] | None = None
        self.deadline = Deadline(connection.pool.reactor, self._timed_out)

    @property
    def connected(self) -> bool:
        return self.connection.connected and not self.done

    @property
    def codec(self) -> UpstreamStream:
        """The exchange calls its upstream's codec: the stream itself."""
        return self

    # -- the request (the exchange calls these as its upstream's codec)

    def send_request(
        self,
        sink: Exchange,
        method: bytes,
        target: bytes,
        headers: Headers,
        length: int | None,
        upgrade: bytes | None = None,
    ) -> None:
        """Send the request's HEADERS (``headers`` hold Host, which becomes
        ``:authority``); ``length`` 0 ends the stream with them."""
        authority = b""
        fields = []
        for name, value in headers:
            name = name.lower()  # (route filters add names as their authors wrote them)
            if name == b"host":
                authority = value
            elif name not in CONNECTION_SPECIFIC and (name != b"te" or value == b"trailers"):
                fields.append((name, value))
        pseudo = [
            (b":method", method),
            (b":scheme", b"https" if self.tls else b"http"),
            (b":authority", authority),
            (b":path", target),
        ]
        if length is not None and (length or method in BODY_METHODS):
            fields.append((b"content-length", b"%d" % length))
        end = length == 0
        self.head_request = method == b"HEAD"
        try:
            self.session.h2.send_headers(self.id, pseudo + fields, end_stream=end)
        except H2ProtocolError:
            self.reused = True  # (never sent: safe to retry)
            self.fail("backend connection closing")
            return
        self.session.dirty = True
        if end:
            self.local_closed = True
            self.deadline.set(self.connection.pool.settings.backend_response_timeout)
        self.connection.flush()

    def send_data(self, data: bytes) -> None:
        self.send_body(data)
        self.connection.flush()

    def send_end(self) -> None:
        self.send_finish()
        self.connection.flush()

    def sent_all(self) -> None:
        """The request has gone: the backend's answer is now awaited."""
        if not self.responded and not self.done:
            self.deadline.set(self.connection.pool.settings.backend_response_timeout)

    def write(self, data: bytes) -> None:
        """(No tunnels over HTTP/2 backends: an upgrade request is sent without it.)"""

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        """(Resumed from outside the connection's reads: a filter that answered, a
        client that drained: the window update goes out at once.)"""
        if self.held:
            super().resumeProducing()
            self.connection.flush()

    # -- the response

    def response_head(self, headers: Headers) -> None:
        status = 0
        length: int | None = None
        fields = []
        for name, value in headers:
            if name[0] == 58:  # ":"
                if name == b":status" and len(value) == 3 and value.isdigit():
                    status = int(value)
            elif name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name not in CONNECTION_SPECIFIC:
                fields.append((name, value))
        if not 200 <= status <= 599:  # (hyper-h2 hands 1xx over as informational)
            self._reset()
            self.fail("backend sent a malformed :status")
            return
        self.bodiless = self.head_request or status in BODILESS
        self.responded = True
        self.deadline.set(self.connection.pool.settings.backend_response_timeout)
        exchange = self.exchange
        if exchange is not None:
            exchange.response_head(Response(status, fields, length), None)

    def response_data(self, data: bytes, size: int) -> None:
        self.deadline.set(self.connection.pool.settings.backend_response_timeout)
        exchange = self.exchange
        if exchange is not None and not self.bodiless:  # (a body on 204/304/HEAD: dropped)
            exchange.response_data(data)
        self.received(size)

    def response_ended(self) -> None:
        self.deadline.cancel()
        exchange = self.exchange
        if exchange is not None:
            exchange.response_end(self.response_trailers)
        else:
            self._close()

    def reset_by_backend(self, code: int) -> None:
        if code == ErrorCodes.REFUSED_STREAM:
            self.reused = True  # never processed: safe to retry
        self.local_closed = True
        self.fail(f"backend reset the stream ({ErrorCodes(code).name})")

    def fail(self, reason: str) -> None:
        """The stream cannot go on: the exchange hears of it."""
        self.deadline.cancel()
        exchange, self.exchange = self.exchange, None
        self._close()
        if exchange is not None:
            exchange.upstream_error(502, reason, self.responded)

    def _timed_out(self) -> None:
        exchange, self.exchange = self.exchange, None
        self._reset()
        if exchange is not None:
            exchange.upstream_error(504, "backend did not answer in time", self.responded)

    # -- the end (the exchange calls these as its upstream)

    def release(self) -> None:
        """The exchange is done with the stream (its response ended)."""
        self.exchange = None
        if not self.local_closed:
            self._reset()  # answered before the request's body ended
        else:
            self._close()

    def abort(self) -> None:
        """The client went away: cancel the stream."""
        self.exchange = None
        self._reset()

    def _reset(self) -> None:
        if not self.done:
            with suppress(H2ProtocolError):
                self.session.h2.reset_stream(self.id, ErrorCodes.CANCEL)
            self.session.dirty = True
            self.local_closed = True
            self._close()
            self.connection.flush()

    def _close(self) -> None:
        if self.done:
            return
        self.done = True
        self.deadline.cancel()
        self.discard()
        self.connection.stream_closed(self)

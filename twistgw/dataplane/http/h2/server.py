"""The client side of an HTTP/2 connection: hyper-h2's events turned into exchanges,
one per stream, and their responses into frames.

Bytes in (``receive``, ``receive_eof``), bytes out (``io.write``); every stream is an
exchange's ``down`` codec and its ``conn`` (what it needs of the connection, and the
flow-controlled transport its body is paired with). The defences of RFC 9113 §10.5
and the attacks named after it live here: a bounded number of concurrent streams and
of header bytes (SETTINGS), a budget of control frames (PING, SETTINGS, PRIORITY,
RST_STREAM, WINDOW_UPDATE floods, rapid reset), empty DATA frames, an idle timeout
and a per-stream body timeout. hyper-h2 itself bounds CONTINUATION frames and HPACK.
"""

from __future__ import annotations

import re
import weakref
from contextlib import suppress
from typing import TYPE_CHECKING, Protocol

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError as H2ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twistgw.dataplane.http.deadline import Deadline
from twistgw.dataplane.http.h1.heads import VALID_NAME, VALID_VALUE
from twistgw.dataplane.http.h2.flow import Session, StreamFlow, tolerate_goaway
from twistgw.dataplane.http.messages import HOST, Headers, Request, Response, has_content_type

if TYPE_CHECKING:
    from twistgw.dataplane.http.exchange import Exchange
    from twistgw.dataplane.http.server import HTTPServerProtocol
    from twistgw.ipc.settings import DataPlaneSettings

log = Logger()

#: What a client speaking HTTP/2 with prior knowledge sends first (RFC 9113 §3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: Response fields that concern an HTTP/1.1 connection only (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
#: A request's ``:path``: origin-form (visible ASCII, no fragment) or ``*``, as an
#: HTTP/1.1 request line could carry it.
TARGET = re.compile(rb"/[\x21\x22\x24-\x7e]*|\*")
#: Control frames a connection may send at once, and how many more it earns per second
#: (and per DATA frame the gateway sends, for the WINDOW_UPDATEs that answer them).
CONTROL_BURST = 1000
CONTROL_PER_SECOND = 100
CONTROL_PER_DATA_FRAME = 2
#: Empty DATA frames in a row (without END_STREAM) that end the connection.
MAX_EMPTY_DATA = 3
#: Streams the client resets before their answer, past which (if they are at least
#: half of all its streams) the connection ends: rapid reset, CVE-2023-44487.
MAX_PREMATURE_RESETS = 100


class ConnectionIO(Protocol):
    """What the codec needs of the connection (HTTPServerProtocol)."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class H2ServerCodec:
    """One client connection's HTTP/2 state; ``conn`` is its HTTPServerProtocol."""

    def __init__(
        self, conn: HTTPServerProtocol, clock: IReactorTime, settings: DataPlaneSettings
    ) -> None:
        self.io = weakref.proxy(conn)  # the connection owns its codec: no cycle
        self.clock = clock
        self.settings = settings
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        h2 = H2Connection(config)
        h2.local_settings.update(
            {
                SettingCodes.MAX_CONCURRENT_STREAMS: settings.h2_max_concurrent_streams,
                SettingCodes.INITIAL_WINDOW_SIZE: settings.h2_stream_window,
                SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_bytes,
                SettingCodes.ENABLE_PUSH: 0,
            }
        )
        tolerate_goaway(h2)
        h2.initiate_connection()
        extra = settings.h2_connection_window - 65535
        if extra > 0:
            h2.increment_flow_control_window(extra)
        self.session = Session(h2)
        self.session.dirty = True
        self.closed = False
        self.draining = False
        self.served = False  # a stream was answered: no longer a fresh connection
        self.tokens = float(CONTROL_BURST)
        self.tokens_at = clock.seconds()
        self.frames_credited = 0
        self.empty_data = 0
        self.streams_opened = 0
        self.premature_resets = 0
        self.deadline = Deadline(clock, self._idle)
        self.deadline.set(settings.idle_timeout)

    # -- bytes in

    def receive(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.session.h2.receive_data(data)
        except H2ProtocolError as error:
            log.debug("HTTP/2 protocol error from a client: {error}", error=error)
            self._end_connection(None)
            return
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                self._data(event)
            elif kind is RequestReceived:
                self._request(event)
            elif kind is StreamEnded:
                stream = self.session.streams.get(event.stream_id)
                if stream is not None:
                    stream.request_ended()
            elif kind is WindowUpdated:
                if self._spend(1):
                    self.session.window_opened(event.stream_id)
            elif kind is StreamReset:
                self._reset(event)
            elif kind is TrailersReceived:
                stream = self.session.streams.get(event.stream_id)
                if stream is not None:
                    stream.request_trailers = list(event.headers)
            elif kind is ConnectionTerminated:
                self._client_goaway()
            elif kind is RemoteSettingsChanged:
                if self._spend(1) and SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                    self.session.window_opened(0)
            elif kind in (PingReceived, PriorityUpdated, UnknownFrameReceived):
                self._spend(1)
            if self.closed:
                return
        self.flush()

    def receive_eof(self) -> None:
        """The client closed its side: HTTP/2 has no half-close, the connection ends."""
        self._end_connection(None)

    def connection_lost(self) -> None:
        self.closed = True
        self.deadline.cancel()
        streams, self.session.streams = self.session.streams, {}
        for stream in streams.values():
            stream.gone()

    # -- bytes out

    def flush(self) -> None:
        session = self.session
        if session.dirty:
            session.dirty = False
            data = session.h2.data_to_send()
            if data:
                self.io.write(data)

    # -- the connection's life

    def drain(self) -> None:
        """The gateway is stopping: no new streams; close once the open ones end."""
        self.draining = True
        if not self.close_if_idle() and not self.closed:
            # hyper-h2 sends nothing more once it has sent GOAWAY: the open streams
            # still have answers to send, so the frame is made here
            goaway = GoAwayFrame(0)
            goaway.last_stream_id = self.session.h2.highest_inbound_stream_id
            goaway.error_code = ErrorCodes.NO_ERROR
            self.session.dirty = True
            self.flush()
            self.io.write(goaway.serialize())

    def close_if_idle(self, fresh: bool = True) -> bool:
        """Close (with GOAWAY) if no stream is open and, unless ``fresh``, one was
        answered before; return whether it did."""
        if self.session.streams or self.closed or (not fresh and not self.served):
            return False
        self._end_connection(ErrorCodes.NO_ERROR)
        return True

    # the producer the socket pauses while its send buffer is full: the backends
    # feeding the streams pause, and so does reading what the client sends (whose
    # control frames would otherwise pile up answers nobody reads)
    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        self.session.pause_producers(True)
        self.io.pause_reading()

    def resumeProducing(self) -> None:  # noqa: N802
        self.session.pause_producers(False)
        self.io.resume_reading()

    def stopProducing(self) -> None:  # noqa: N802
        """(The connection is closing; connection_lost follows.)"""

    def _end_connection(self, code: ErrorCodes | None) -> None:
        """GOAWAY with ``code`` (None: hyper-h2 prepared one already), then close."""
        if self.closed:
            return
        if code is not None:
            with suppress(H2ProtocolError):  # (already closed)
                self.session.h2.close_connection(code)
        self.session.dirty = True
        self.flush()
        self.closed = True
        self.deadline.cancel()
        self.io.close()

    def _idle(self) -> None:
        self._end_connection(ErrorCodes.NO_ERROR)

    def _client_goaway(self) -> None:
        """The client will open no more streams: close once the open ones end."""
        self.draining = True
        if not self.session.streams:
            self._end_connection(None)

    def _spend(self, frames: int) -> bool:
        """Take ``frames`` from the control-frame budget; past it, GOAWAY."""
        now = self.clock.seconds()
        sent = self.session.data_frames  # each DATA frame sent may draw a WINDOW_UPDATE
        earned = (now - self.tokens_at) * CONTROL_PER_SECOND
        earned += (sent - self.frames_credited) * CONTROL_PER_DATA_FRAME
        tokens = min(CONTROL_BURST, self.tokens + earned)
        self.tokens_at, self.frames_credited = now, sent
        self.tokens = tokens - frames
        if self.tokens >= 0:
            return True
        log.info("HTTP/2 client sent too many control frames: connection closed")
        self.io.refused_h2("control-frames")
        self._end_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        return False

    # -- streams

    def _request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        self.deadline.clear()
        self.streams_opened += 1
        stream = ServerStream(self, stream_id, self.io)
        stream.remote_closed = event.stream_ended is not None
        self.session.streams[stream_id] = stream
        if self.draining:
            stream.reset(ErrorCodes.REFUSED_STREAM)
            return
        request, problem = _request(event, self.settings)
        if request is None:
            self.io.refused_h2(problem)
            stream.answer_locally(400 if problem != "headers" else 431, problem)
            return
        if request.method == b"CONNECT":
            stream.answer_locally(405, "CONNECT is not supported")
            return
        stream.start(request)

    def _data(self, event: DataReceived) -> None:
        size = event.flow_controlled_length
        if size or event.stream_ended:
            self.empty_data = 0
        else:
            self.empty_data += 1
            if self.empty_data > MAX_EMPTY_DATA:
                log.info("HTTP/2 client sent empty DATA frames: connection closed")
                self.io.refused_h2("empty-data")
                self._end_connection(ErrorCodes.ENHANCE_YOUR_CALM)
                return
        stream = self.session.streams.get(event.stream_id)
        if stream is None:
            # an answered or reset stream's body: give the connection its window back
            if size:
                self.session.h2.acknowledge_received_data(size, event.stream_id)
                self.session.dirty = True
            return
        stream.request_data(event.data, size)

    def _reset(self, event: StreamReset) -> None:
        stream = self.session.streams.get(event.stream_id)
        if not self._spend(1) or stream is None:
            return
        premature = not stream.local_closed
        stream.gone()
        if premature:
            self.premature_resets += 1
            if (
                self.premature_resets >= MAX_PREMATURE_RESETS
                and self.premature_resets * 2 >= self.streams_opened
            ):
                log.info("HTTP/2 client reset too many streams early: connection closed")
                self.io.refused_h2("rapid-reset")
                self._end_connection(ErrorCodes.ENHANCE_YOUR_CALM)

    def stream_done(self, stream: ServerStream) -> None:
        """``stream`` is over at both ends (or was reset): forget it."""
        streams = self.session.streams
        if streams.pop(stream.id, None) is None:
            return
        stream.exchange = None  # (it holds the stream: no cycle is left behind)
        stream.discard()
        self.served = True
        if not streams:
            if self.draining:
                self._end_connection(ErrorCodes.NO_ERROR)
            else:
                self.deadline.set(self.settings.idle_timeout)


class ServerStream(StreamFlow):
    """One request stream: the exchange's ``down`` codec and its ``conn``."""

    def __init__(self, codec: H2ServerCodec, stream_id: int, conn: HTTPServerProtocol) -> None:
        super().__init__(codec.session, stream_id)
        self.codec = codec
        self.connection = conn
        self.clock = conn.clock
        self.factory = conn.factory
        self.pool = conn.pool
        self.metrics = conn.metrics
        self.settings = conn.settings
        self.access_log = conn.access_log
        self.scheme = conn.scheme
        self.scheme_bytes = conn.scheme_bytes
        self.tls = conn.tls
        self.peer_host = conn.peer_host
        self.exchange: Exchange | None = None
        self.head_request = False
        self.remote_closed = False
        self.request_trailers: list[tuple[bytes, bytes]] | None = None
        self.head: list[tuple[bytes, bytes]] | None = None  # response HEADERS not sent yet
        self.body_deadline: Deadline | None = None

    def start(self, request: Request) -> None:
        self.head_request = request.method == b"HEAD"
        if not self.remote_closed:
            self.body_deadline = Deadline(self.clock, self._body_timed_out)
            self.body_deadline.set(self.settings.idle_timeout)
        exchange = self.exchange = self.connection.new_stream_exchange(self, request)
        exchange.start()

    # -- from the client

    def request_data(self, data: bytes, size: int) -> None:
        if self.body_deadline is not None:
            self.body_deadline.set(self.settings.idle_timeout)
        exchange = self.exchange
        if exchange is not None and not exchange.finished:
            exchange.request_data(data)
        self.received(size)

    def request_ended(self) -> None:
        self.remote_closed = True
        if self.body_deadline is not None:
            self.body_deadline.cancel()
            self.body_deadline = None
        exchange = self.exchange
        if exchange is not None:
            exchange.request_end()
        if self.local_closed:
            self.codec.stream_done(self)

    def _body_timed_out(self) -> None:
        exchange = self.exchange
        if exchange is not None and not exchange.responded and not exchange.finished:
            exchange.respond_local(408, b"request body not received in time\n")
        else:
            self.reset(ErrorCodes.CANCEL)
        self.codec.flush()

    def gone(self) -> None:
        """The client reset the stream, or the connection ended."""
        self._teardown(None)

    # -- the exchange's conn

    def local_port(self) -> int:
        return self.connection.local_port()

    def handshake_listener(self) -> str | None:
        return self.connection.handshake_listener()

    def abort(self) -> None:
        """The response broke off: reset the stream, not the connection (now: nothing
        else may write on it soon)."""
        self.reset(ErrorCodes.INTERNAL_ERROR)
        self.codec.flush()

    # (resumed from outside the codec's own reads, by a check or filter that went on
    # later, or a backend that drained: the window update goes out at once)
    def resume_reading(self) -> None:
        if self.paused:
            super().resume_reading()
            self.codec.flush()

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        if self.held:
            super().resumeProducing()
            self.codec.flush()

    def close(self) -> None:
        self.reset(ErrorCodes.CANCEL)

    def reset(self, code: ErrorCodes) -> None:
        """End the stream with RST_STREAM ``code``."""
        self._teardown(code)

    def _teardown(self, code: ErrorCodes | None) -> None:
        """The stream ends here (with RST_STREAM ``code`` unless None): its exchange
        hears of it (and drops its backend if still busy), its window is given back."""
        if code is not None and not (self.local_closed and self.remote_closed):
            with suppress(H2ProtocolError):  # (closed already)
                self.session.h2.reset_stream(self.id, code)
            self.session.dirty = True
        self.local_closed = self.remote_closed = True
        self.head = None
        if self.body_deadline is not None:
            self.body_deadline.cancel()
        self.discard()
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.client_gone()  # (counted as 499 if unanswered; drops the backend)
        self.codec.stream_done(self)

    # -- the exchange's down codec

    @property
    def out(self) -> bool:
        return self.session.dirty or self.head is not None or bool(self.waiting)

    def flush(self) -> None:
        self._send_head(False)
        if self.waiting:
            self.send_waiting()
        self.codec.flush()

    def _send_head(self, end: bool) -> None:
        """Send the response's HEADERS, held until its first data, its end or the end
        of the backend's read: a response that ends with its head goes in one frame
        with END_STREAM (gRPC's trailers-only answers must)."""
        head, self.head = self.head, None
        if head is not None:
            try:
                self.session.h2.send_headers(self.id, head, end_stream=end)
            except H2ProtocolError:
                self.gone()  # (the client reset it, or the connection is ending)
                return
            self.session.dirty = True
            if end:
                self._closed_locally()

    def accept_body(self) -> None:
        """(HTTP/2 has no 100-continue handshake to make.)"""

    def send_response(self, response: Response, upgrade: bytes | None) -> None:
        headers = [(b":status", b"%d" % response.status)]
        for name, value in response.headers:
            name = name.lower()  # (route filters add names as their authors wrote them)
            if name not in CONNECTION_SPECIFIC:
                headers.append((name, value))
        if response.length is not None:
            headers.append((b"content-length", b"%d" % response.length))
        self.head = headers

    def send_data(self, data: bytes) -> None:
        """Body bytes, held like the head until the end of the backend's read (flush)
        or the response's end: a body that ends within the read goes out with
        END_STREAM on its last DATA frame, not in an empty DATA frame of its own."""
        if data and not self.head_request:
            self._send_head(False)
            if not self.local_closed:
                self.waiting.append(data)

    def send_end(self, trailers: Headers | None = None) -> None:
        if self.head is not None and not trailers:
            self._send_head(True)
        else:
            self._send_head(False)
            self.send_finish(list(trailers) if trailers else None)
        self.codec.flush()  # (the exchange is over: nobody else will)

    def send_local(
        self, code: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        headers = [(b":status", b"%d" % code)]
        if extra:
            headers += extra
        if body and not has_content_type(extra):
            headers.append((b"content-type", b"text/plain"))
        headers.append((b"content-length", b"%d" % len(body)))
        empty = not body or self.head_request
        try:
            self.session.h2.send_headers(self.id, headers, end_stream=empty)
        except H2ProtocolError:
            self.gone()
            return
        self.session.dirty = True
        if empty:
            self._closed_locally()
        else:
            self.send_body(body)
            self.send_finish()
        self.codec.flush()

    def answer_locally(self, code: int, reason: str) -> None:
        """Answer a request refused before it became an exchange."""
        self.send_local(code, reason.encode() + b"\n")

    def sent_all(self) -> None:
        self.codec.served = True
        if self.remote_closed:
            self.codec.stream_done(self)
        elif self.exchange is None or self.exchange.finished:
            # answered before the request's body ended: tell the client to stop
            self.reset(ErrorCodes.NO_ERROR)


def _request(event: RequestReceived, settings: DataPlaneSettings) -> tuple[Request | None, str]:
    """The exchange's request from a HEADERS frame (hyper-h2 checked the pseudo-header
    fields and refused connection-specific ones), or None and why."""
    method = authority = path = None
    host = None
    length: int | None = None
    cookies: list[bytes] = []
    headers: list[tuple[bytes, bytes]] = []
    fields = event.headers
    if len(fields) > settings.max_header_count + 4:
        return None, "headers"
    underscores = settings.headers_with_underscores
    for name, value in fields:
        if name[0] == 58:  # ":"
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":authority":
                authority = value
            continue
        if name == b"cookie":
            cookies.append(value)  # RFC 9113 §8.2.3: joined again for HTTP/1.1
            continue
        if VALID_NAME.fullmatch(name) is None or VALID_VALUE.fullmatch(value) is None:
            return None, "malformed header field"
        if name == b"host":
            host = value
        elif name == b"content-length":
            if not value.isdigit() or len(value) > 18:
                return None, "malformed content-length"
            length = int(value)
        elif b"_" in name and underscores != "allow":
            if underscores == "reject":
                return None, "header names with underscores are refused"
        else:
            headers.append((name, value))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if authority is None:
        authority = host or b""
    if HOST.fullmatch(authority) is None:
        return None, "malformed :authority"
    if method is None or path is None:
        if method == b"CONNECT":
            return Request(method, authority, b"", headers), ""
        return None, "missing :method or :path"
    ended = event.stream_ended is not None
    if ended:
        length = 0
    if VALID_NAME.fullmatch(method) is None:
        return None, "malformed :method"
    if TARGET.fullmatch(path) is None:
        return None, "malformed :path"
    return Request(method, authority, path, headers, not ended, length, protocol="HTTP/2"), ""

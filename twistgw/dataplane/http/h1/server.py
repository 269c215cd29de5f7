"""The client side of an HTTP/1.1 connection as a state machine apart from I/O.

Bytes in (``receive``), request events out (to the exchange the ``start`` callable
returns); response calls in (``send_response``, ``send_data``, ``send_end``,
``send_local``), bytes out (to ``io.write``). Time comes from an injected clock.
Requests are served one at a time: a pipelined request waits, unparsed, until the
response before it has ended, and is never seen once the connection must close (an
answer that left a request body unread, ``Connection: close``, a protocol error).
Every refusal is answered with a response and a close, never a bare close.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime

from twistgw.dataplane.http.deadline import Deadline
from twistgw.dataplane.http.h1.bodies import (
    EMPTY,
    LAST_CHUNK,
    BodyReader,
    EmptyBody,
    LengthBody,
    chunk,
)
from twistgw.dataplane.http.h1.framing import Connection, request_body
from twistgw.dataplane.http.h1.heads import (
    Fields,
    ProtocolError,
    RequestHead,
    has_bare_newline,
    head_end,
    parse_request_head,
    serialize,
)
from twistgw.dataplane.http.messages import HOST, Headers, Request, Response, has_content_type

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, phrase) for code, phrase in REASONS.items()}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Most request body bytes read and dropped to keep a connection whose request was
#: answered before its body ended (beyond, the connection is closed).
MAX_DISCARDED = 1024 * 1024
ABSOLUTE = re.compile(rb"(?i:https?)://([^/?#@]+)([/?][\x21-\x7e]*)?")

# reading states
HEAD, BODY, DONE, TUNNEL, CLOSED = range(5)


def status_line(code: int) -> bytes:
    line = STATUS_LINES.get(code)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % code


class ConnectionIO(TypingProtocol):
    """What the codec needs of its connection."""

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def backed_up(self) -> bool: ...
    def when_drained(self, callback: Callable[[], None]) -> None: ...
    def new_exchange(self, codec: ServerCodec, request: Request) -> RequestSink: ...
    def refused(self, status: int) -> None: ...


class RequestSink(TypingProtocol):
    """What receives a request's events: the exchange."""

    def start(self) -> None: ...
    def request_data(self, data: bytes) -> None: ...
    def request_end(self) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def client_gone(self) -> None: ...


class Limits(TypingProtocol):
    """The data-plane settings the codec reads."""

    max_request_line: int
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    idle_timeout: float
    headers_with_underscores: str


class ServerCodec:
    """One client connection's HTTP/1.1 protocol state."""

    def __init__(self, io: ConnectionIO, clock: IReactorTime, limits: Limits) -> None:
        # weakly: the connection owns its codec, and no cycle may outlive a connection
        # until the cyclic collector runs
        self.io = weakref.proxy(io)
        self.limits = limits
        self.buffer = b""
        self.state = HEAD
        self.sink: RequestSink | None = None
        self.body: BodyReader = EMPTY
        self.version = b"1.1"
        self.head_request = False
        self.persistent = True
        self.draining = False
        self.expecting = False
        self.responding = False  # a response head went out and its end did not yet
        self.chunked = False
        self.bodiless = False  # the response under way has no body (HEAD, 204, 304)
        self.out: list[bytes] = []
        self.processing = False
        self.partial: list[bytes] | None = None  # an incomplete head's pieces
        self.partial_size = 0
        self.tail = b""  # its last bytes (a blank line may straddle two reads)
        self.line_seen = False  # whether its request line is complete
        self.eof = False  # the client closed its sending side
        self.held = False  # a pipelined request waits for the client to read
        self.discarding = False  # the rest of an answered request's body is dropped
        self.kept_alive = False  # a request was answered and the connection goes on
        self.deadline = Deadline(clock, self._timed_out)
        self.deadline.set(limits.header_timeout)  # for the first request's head
        self.head_started = True

    # -- bytes in

    def receive(self, data: bytes) -> None:
        state = self.state
        if state == BODY and not self.buffer:
            self._feed_body(data)
        elif state == TUNNEL:
            self.sink.tunnel_data(data)
            return
        elif state == CLOSED:
            return
        elif self.partial is not None:  # (state HEAD) more of an incomplete head
            if not self._extend(data):
                return
        else:
            self.buffer += data
            if state == DONE:
                self.io.pause()  # a pipelined request waits for the response before it
        self._process()

    def connection_lost(self) -> None:
        self.state = CLOSED
        self.deadline.cancel()
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.client_gone()

    def _process(self) -> None:
        """Parse what is buffered while the state allows it (re-entry safe: the end of a
        response may come back here from within ``start``)."""
        if self.processing:
            return
        self.processing = True
        try:
            while True:
                state = self.state
                if state == HEAD and self.buffer and not self.held:
                    if not self._head():
                        break
                elif state == BODY and self.buffer:
                    data, self.buffer = self.buffer, b""
                    self._feed_body(data)
                elif state == TUNNEL and self.buffer:
                    data, self.buffer = self.buffer, b""
                    self.sink.tunnel_data(data)
                else:
                    break
        finally:
            self.processing = False
        self.flush()

    def _head(self) -> bool:
        """Parse a request head from the buffer; False when it is incomplete."""
        limits = self.limits
        buffer = self.buffer
        start = 0
        while buffer.startswith(b"\r\n", start):  # RFC 9112 §2.2: empty lines before it
            start += 2
        end = head_end(buffer, start)
        if end == -1 or end - start > limits.max_header_bytes:
            size = (len(buffer) if end == -1 else end) - start
            if buffer.find(b"\r\n", start, start + limits.max_request_line + 2) == -1 and (
                size > limits.max_request_line
            ):
                return self._refuse(414, "request line too long")
            if size > limits.max_header_bytes:
                return self._refuse(431, "request header too large")
            if has_bare_newline(buffer):
                return self._refuse(400, "bare LF in the request head")
            if b"\0" in buffer:
                return self._refuse(400, "NUL in the request head")
            # keep the pieces apart until the blank line comes (see _extend)
            self.partial = [buffer[start:]]
            self.partial_size = len(buffer) - start
            self.tail = buffer[-3:]
            self.line_seen = buffer.find(b"\r\n", start) != -1
            self.buffer = b""
            if not self.head_started:  # trickling bytes do not move the deadline
                self.head_started = True
                self.deadline.set(limits.header_timeout)
            return False
        self.head_started = False
        self.deadline.clear()
        try:
            head = parse_request_head(
                buffer[:end], limits.max_request_line, limits.max_header_count, start
            )
            request = self._request(head)
        except ProtocolError as error:
            self.version = b"1.1"
            return self._refuse(error.status, error.reason)
        self.buffer = buffer[end:]
        self.sink = sink = self.io.new_exchange(self, request)
        if request.has_body:
            self.state = BODY
            self.deadline.set(self.limits.idle_timeout)  # a body that never comes: 408
            sink.start()
        else:
            self.state = DONE
            sink.start()
            sink.request_end()  # (a no-op for an exchange that answered already)
        return True

    def _next(self) -> None:
        """Go on with a pipelined request."""
        self.held = False
        if self.state == HEAD:
            self.io.resume()
            self._process()

    def receive_eof(self) -> None:
        """The client closed its sending side: answer what it asked, then close."""
        self.eof = True
        if self.state == DONE:
            return  # the response under way ends the connection (send_end)
        if self.state == HEAD and not self.buffer and self.partial is None:
            if not self.responding:
                self._close()
            return
        self._close()  # an incomplete request: nothing to answer
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.client_gone()

    def _extend(self, data: bytes) -> bool:
        """Add bytes to an incomplete head; True once it may be complete. Only the new
        bytes are scanned, so a head sent a byte at a time costs linear work."""
        limits = self.limits
        window = self.tail + data
        self.partial.append(data)
        self.partial_size += len(data)
        if b"\r\n\r\n" in window:
            self.buffer = b"".join(self.partial)
            self.partial = None
            return True
        if not self.line_seen:
            self.line_seen = b"\r\n" in window
            if not self.line_seen and self.partial_size > limits.max_request_line:
                self._refuse(414, "request line too long")
                return False
        if self.partial_size > limits.max_header_bytes:
            self._refuse(431, "request header too large")
        elif data.count(b"\n") != (self.tail[-1:] + data).count(b"\r\n"):
            self._refuse(400, "bare LF in the request head")
        elif b"\0" in data:
            self._refuse(400, "NUL in the request head")
        self.tail = window[-3:]
        self.flush()
        return False

    def _request(self, head: RequestHead) -> Request:
        """The exchange's view of a request head, after RFC 9112's checks."""
        parsed = head.fields
        host = parsed.request_host
        if host is None:
            host = parsed.request_host = _plain_host(parsed)
        if host is not False and head.version == b"1.1" and head.target[0] == 47:
            # the commonest request (Host alone, origin-form, no body): what the full
            # rules below would conclude, without their bookkeeping
            if host is INVALID:
                raise ProtocolError(400, "invalid Host")
            self.version = b"1.1"
            self.body = EMPTY
            self.persistent = not self.draining
            self.head_request = head.method == b"HEAD"
            return Request(head.method, host, head.target, parsed.headers)
        fields = Connection(parsed)
        version = self.version = head.version
        method = head.method
        hosts = fields.hosts
        if len(hosts) > 1 or (version == b"1.1" and not hosts):
            raise ProtocolError(400, "a request needs exactly one Host")
        authority = hosts[0] if hosts else b""
        if HOST.fullmatch(authority) is None:
            raise ProtocolError(400, "invalid Host")
        target = head.target
        if target[0] != 47:  # not origin-form ("/...")
            if method == b"CONNECT":
                raise ProtocolError(501, "CONNECT is not supported")
            if target == b"*":
                if method != b"OPTIONS":
                    raise ProtocolError(400, "asterisk-form is for OPTIONS only")
            else:
                match = ABSOLUTE.fullmatch(target)
                if match is None or HOST.fullmatch(match.group(1)) is None:
                    raise ProtocolError(400, "invalid request target")
                authority = match.group(1)  # RFC 9112 §3.2.2: it replaces Host
                target = match.group(2) or b"/"
                if target[0] == 63:  # "?query" without a path
                    target = b"/" + target
        self.body = body = request_body(fields, version, self.limits.max_header_bytes)
        self.persistent = fields.persistent(version) and not self.draining
        self.head_request = method == b"HEAD"
        headers = fields.headers
        underscores = self.limits.headers_with_underscores
        if fields.underscores and underscores != "allow":
            if underscores == "reject":
                raise ProtocolError(400, "header names with underscores are refused")
            headers = [field for field in headers if b"_" not in field[0]]
        has_body = not isinstance(body, EmptyBody)
        expect = fields.expect
        if expect is not None:
            if expect != b"100-continue":
                raise ProtocolError(417, "unsupported expectation")
            self.expecting = has_body and version == b"1.1"
        upgrade = None
        if fields.upgrade is not None and b"upgrade" in fields.tokens and not has_body:
            # (a request with a body is forwarded without its upgrade: after a switch,
            # the rest of its body would be tunnel bytes, and no two parties agree)
            protocol = fields.upgrade.split(b",")[0].strip(b" \t")
            if protocol.lower().split(b"/")[0] != b"h2c":  # h2c is this hop's own business
                upgrade = fields.upgrade
        return Request(
            method,
            authority,
            target,
            headers,
            has_body,
            body.remaining if isinstance(body, LengthBody) else None if has_body else 0,
            "HTTP/" + version.decode(),
            upgrade,
        )

    def _feed_body(self, data: bytes) -> None:
        try:
            pieces, rest = self.body.feed(data)
        except ProtocolError as error:
            self._refuse(error.status, error.reason)
            return
        if self.discarding:
            if self.body.received > MAX_DISCARDED:
                self._close()  # more than is worth reading to keep the connection
                return
        elif pieces:
            # one piece per read, however many chunks it held
            self.sink.request_data(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            if self.state == CLOSED:
                return  # (answered and closed at that: a body too large for a filter)
        if rest is None:
            self.deadline.set(self.limits.idle_timeout)  # a stalled body ends in 408
            return
        self.buffer = rest + self.buffer if self.buffer else rest
        self.deadline.clear()
        self._request_done()

    def _request_done(self) -> None:
        self.state = DONE
        self.expecting = False
        if self.discarding:  # its response went out already
            self.discarding = False
            self._next_cycle()
            return
        if self.buffer:
            self.io.pause()  # a pipelined request waits for the response before it
        self.sink.request_end()

    # -- responses out

    def accept_body(self) -> None:
        """The request's body is wanted: ask for it if the client waits to be asked."""
        if self.expecting and self.body.received == 0 and not self.responding:
            self.out.append(CONTINUE)
        self.expecting = False

    def send_response(self, response: Response, upgrade: bytes | None = None) -> None:
        """Write a response head; ``upgrade`` completes a 101 (the tunnel follows)."""
        status = response.status
        length = response.length
        extra = []
        # no body follows, whatever a backend sends (HTTP/2 backends can send DATA)
        self.bodiless = self.head_request or status in (204, 304)
        if upgrade is not None:
            extra.append(b"connection: upgrade\r\nupgrade: %s\r\n" % upgrade)
        elif self.head_request or status in (204, 304):
            if length is not None and status != 204:
                extra.append(b"content-length: %d\r\n" % length)
        elif length is not None:
            extra.append(b"content-length: %d\r\n" % length)
        elif self.version == b"1.1":
            self.chunked = True
            extra.append(b"transfer-encoding: chunked\r\n")
        else:
            self.persistent = False  # the close ends the body
        if upgrade is None:
            if not self.persistent or self.draining:
                self.persistent = False
                extra.append(b"connection: close\r\n")
            elif self.version == b"1.0":
                extra.append(b"connection: keep-alive\r\n")
        self.responding = True
        self.out.append(serialize(status_line(status), response.headers, b"".join(extra)))

    def send_data(self, data: bytes) -> None:
        if self.bodiless or not data:
            return
        self.out.append(chunk(data) if self.chunked else data)

    def send_end(self, trailers: Headers | None = None) -> None:
        """The response is complete (``trailers`` are not passed on over HTTP/1.1)."""
        if self.chunked:
            self.out.append(LAST_CHUNK)
            self.chunked = False
        self.responding = False
        self.sink = None
        if self.state == BODY and self.persistent and self._may_discard():
            # answered before the body ended (a backend that answers early): the rest
            # of the body is read and dropped, then the connection goes on, as the
            # answer promised no close
            self.discarding = True
            self.flush()
            return
        self.expecting = False
        if self.state == DONE and self.persistent:
            self._next_cycle()
            return
        # Connection: close, or an answer that left a request body unread: the rest
        # of the connection is not read (RFC 9112 §9.6)
        self._close()

    def _may_discard(self) -> bool:
        """Whether the rest of a request body is small enough to read and drop."""
        if self.expecting or self.eof:
            return False  # (a client waiting for 100 Continue may never send it)
        remaining = getattr(self.body, "remaining", 0)
        return self.body.received + remaining <= MAX_DISCARDED

    def _next_cycle(self) -> None:
        """The exchange is over and the connection persists: on to the next request
        (unless a drain or a refusal decided otherwise meanwhile)."""
        if not self.persistent or self.draining:
            self._close()
            return
        self.state = HEAD
        self.head_request = False
        self.kept_alive = True
        if self.buffer:
            self.head_started = True
            self.deadline.set(self.limits.header_timeout)
            if self.io.backed_up():
                # the client is not reading its answers: the next request waits
                self.held = True
                self.io.pause()
                self.flush()
                self.io.when_drained(self._next)
            else:
                self._next()
        elif self.eof:
            self._close()  # the client said it sends no more
        else:
            self.flush()
            self.deadline.set(self.limits.idle_timeout)

    def send_local(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        """A complete response made here (an error, a redirect)."""
        if self.state == BODY:
            self.persistent = False  # the rest of the body is not worth reading
        fields = (
            [(b"content-type", b"text/plain")] if body and not has_content_type(headers) else []
        )
        if headers:
            fields += headers
        self.send_response(Response(status, fields, len(body)))
        self.send_data(body)
        self.send_end()

    def flush(self) -> None:
        """Write what the responses produced since the last flush, in one write."""
        out = self.out
        if out:
            self.out = []
            self.io.write(out[0] if len(out) == 1 else b"".join(out))

    # -- tunnels and closing

    def start_tunnel(self) -> bytes:
        """After a 101: the connection carries raw bytes from now on; returns the bytes
        the client sent after its request, for the other side."""
        self.state = TUNNEL
        self.deadline.clear()
        self.flush()
        data, self.buffer = self.buffer, b""
        self.io.resume()
        return data

    def drain(self) -> None:
        """The gateway is stopping: close now if idle, else after this response."""
        self.draining = True
        if not self.close_if_idle():
            self.persistent = False

    def close_if_idle(self, fresh: bool = True) -> bool:
        """Close the connection if it waits for a request (nothing of one received, no
        response under way) and, unless ``fresh``, has answered one before (a client
        that just connected is about to send its first); return whether it did."""
        if self.state != HEAD or self.buffer or self.partial is not None or self.responding:
            return False
        if not fresh and not self.kept_alive:
            return False
        self._close()
        return True

    def _refuse(self, status: int, reason: str) -> bool:
        """Answer a request that breaks the protocol, then close."""
        self.io.refused(status)
        self.persistent = False
        if self.responding or self.discarding:
            self._close()  # a response is under way or sent: it cannot be replaced
            return False
        self.sink, sink = None, self.sink
        self.state = DONE
        body = reason.encode() + b"\n"
        self.send_response(Response(status, [(b"content-type", b"text/plain")], len(body)))
        self.out.append(body)
        self.responding = False
        self._close()
        if sink is not None:
            sink.client_gone()
        return False

    def _close(self) -> None:
        self.state = CLOSED
        self.buffer = b""
        self.partial = None
        self.deadline.cancel()
        self.flush()
        self.io.close()

    def _timed_out(self) -> None:
        state = self.state
        if state == HEAD and (self.buffer or self.partial is not None):
            self._refuse(408, "request head not received in time")
        elif state == BODY and not self.responding and not self.discarding:
            self._refuse(408, "request body not received in time")
        else:
            self._close()  # idle keep-alive, or nothing was ever sent
            sink, self.sink = self.sink, None
            if sink is not None:
                sink.client_gone()


#: ``_plain_host``'s answer for a Host that breaks RFC 9110's syntax.
INVALID = object()


def _plain_host(fields: Fields) -> bytes | bool | object:
    """The Host of fields whose only connection field it is (none with ``_`` in
    its name either), INVALID if it is malformed; False for other fields."""
    connection = fields.connection
    if len(connection) != 1 or connection[0][0] != b"host" or fields.underscores:
        return False
    authority = connection[0][1]
    return authority if HOST.fullmatch(authority) is not None else INVALID

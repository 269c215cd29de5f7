"""The backend side of an HTTP/1.1 connection as a state machine apart from I/O.

Request calls in (``send_request``, ``send_data``, ``send_end``), bytes out (to
``io.write``); bytes in (``receive``, ``receive_eof``), response events out (to the
sink, the exchange). One exchange at a time; the connection may serve the next one
only if ``reusable`` says so once the response has ended. Interim responses are
dropped, a ``101`` to an upgrade request turns the connection into a tunnel, and a
body delimited by the close ends when the backend closes.
"""

from __future__ import annotations

import weakref
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
from twistgw.dataplane.http.h1.framing import MAX_LENGTH_DIGITS, Connection, response_body
from twistgw.dataplane.http.h1.heads import (
    ProtocolError,
    ResponseHead,
    has_bare_newline,
    head_end,
    parse_response_head,
    serialize,
)
from twistgw.dataplane.http.messages import Headers, Response

#: Interim (1xx) responses accepted before the final one.
MAX_INTERIM = 8
#: Connection header values that only say whether the connection persists.
PERSISTENCE = frozenset({b"keep-alive", b"close"})

# states of the response
WAITING, BODY, ENDED, TUNNEL = range(4)


class ResponseSink(TypingProtocol):
    """What receives a response's events: the exchange."""

    def response_head(self, response: Response, upgrade: bytes | None) -> None: ...
    def response_data(self, data: bytes) -> None: ...
    def response_end(self) -> None: ...
    def upstream_error(self, status: int, reason: str, started: bool) -> None: ...
    def backend_tunnel_data(self, data: bytes) -> None: ...


class ClientIO(TypingProtocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class ClientLimits(TypingProtocol):
    max_header_bytes: int
    max_header_count: int
    backend_response_timeout: float


class ClientCodec:
    """One backend connection's HTTP/1.1 protocol state."""

    def __init__(self, io: ClientIO, clock: IReactorTime, limits: ClientLimits) -> None:
        self.io = weakref.proxy(io)  # the connection owns its codec: no cycle
        self.limits = limits
        self.sink: ResponseSink | None = None
        self.state = ENDED
        self.buffer = b""
        self.body: BodyReader = EMPTY
        self.head_request = False
        self.upgrade_request = False
        self.chunked = False
        self.request_done = False
        self.persistent = False
        self.interim = 0
        self.deadline = Deadline(clock, self._timed_out)

    @property
    def reusable(self) -> bool:
        """Whether another exchange may use this connection now."""
        return self.state == ENDED and self.persistent and self.request_done

    # -- requests out

    def send_request(
        self,
        sink: ResponseSink,
        method: bytes,
        target: bytes,
        headers: Headers,
        length: int | None,
        upgrade: bytes | None = None,
    ) -> None:
        """Write a request head (``headers`` hold Host); ``length`` None: chunked."""
        self.sink = sink
        self.state = WAITING
        self.buffer = b""
        self.interim = 0
        self.head_request = method == b"HEAD"
        self.upgrade_request = upgrade is not None
        self.request_done = False
        self.persistent = False
        self.chunked = length is None
        if length is None:
            extra = b"transfer-encoding: chunked\r\n"
        elif length or method in (b"POST", b"PUT", b"PATCH"):
            extra = b"content-length: %d\r\n" % length
        else:
            extra = b""
        if upgrade is not None:  # the framing still applies to the request's own body
            extra += b"connection: upgrade\r\nupgrade: %s\r\n" % upgrade
        data = serialize(b"%s %s HTTP/1.1\r\n" % (method, target), headers, extra)
        self.io.write(data)

    def send_data(self, data: bytes) -> None:
        if data:
            self.io.write(chunk(data) if self.chunked else data)

    def send_end(self) -> None:
        """The request is complete: the backend's answer is now awaited."""
        if self.chunked:
            self.io.write(LAST_CHUNK)
        self.request_done = True
        if self.state == WAITING:
            self.deadline.set(self.limits.backend_response_timeout)

    # -- bytes in

    def receive(self, data: bytes) -> None:
        state = self.state
        if state == BODY and not self.buffer:
            self._feed_body(data)
            return
        if state == TUNNEL:
            self.sink.backend_tunnel_data(data)
            return
        if state == ENDED:  # an idle connection must not speak
            self.persistent = False
            self.io.close()
            return
        self.buffer += data
        try:
            while self.state == WAITING and self.buffer and self._head():
                pass
        except ProtocolError as error:
            self._fail(error.status, error.reason)
            return
        if self.state == BODY:
            if self.buffer:
                data, self.buffer = self.buffer, b""
                self._feed_body(data)
            else:  # the head without body bytes yet
                self.deadline.set(self.limits.backend_response_timeout)
        elif self.state == TUNNEL and self.buffer:
            data, self.buffer = self.buffer, b""
            self.sink.backend_tunnel_data(data)

    def _head(self) -> bool:
        limits = self.limits
        buffer = self.buffer
        end = head_end(buffer)
        if end == -1 or end > limits.max_header_bytes:
            if len(buffer) > limits.max_header_bytes:
                raise ProtocolError(502, "response head too large")
            if has_bare_newline(buffer):
                raise ProtocolError(502, "bare LF in the response head")
            return False
        head = parse_response_head(buffer[:end], limits.max_header_count)
        self.buffer = buffer[end:]
        status = head.status
        if (
            status >= 200
            and not self.head_request
            and not self.upgrade_request
            and self._plain(head)
        ):
            return True
        fields = Connection(head.fields)
        if status < 200 and status != 101:
            self.interim += 1
            if self.interim > MAX_INTERIM:
                raise ProtocolError(502, "too many interim responses")
            return True  # 100 Continue, 103 Early Hints: not passed on
        self.deadline.clear()
        upgrade = None
        if status == 101:
            if not self.upgrade_request or fields.upgrade is None:
                raise ProtocolError(502, "a 101 response to a request without Upgrade")
            upgrade = fields.upgrade
            self.state = TUNNEL
        self.body, length = response_body(
            fields, status, self.head_request, limits.max_header_bytes
        )
        self.persistent = (
            fields.persistent(head.version)
            and not self.body.eof()
            and not self.upgrade_request  # it may have been switched: never reused
        )
        if upgrade is None:
            self.state = BODY
        self.sink.response_head(Response(status, fields.headers, length), upgrade)
        if self.state == BODY and isinstance(self.body, EmptyBody):
            self._end()
        return True

    def _plain(self, head: ResponseHead) -> bool:
        """The commonest response (a Content-Length, perhaps ``Connection: keep-alive``
        or ``close``, a status with a body): handled as the full rules in ``_head``
        would, without their bookkeeping; False for anything else."""
        status = head.status
        if status == 204 or status == 304:
            return False
        fields = head.fields
        plain = fields.response_framing
        if plain is None:
            plain = fields.response_framing = _plain_framing(fields.connection)
        if plain is False:
            return False
        length, keep_alive, close = plain
        persistent = head.version == b"1.1" or keep_alive
        self.deadline.clear()
        self.body = LengthBody(length) if length else EMPTY
        self.persistent = persistent and not close
        self.state = BODY
        self.sink.response_head(Response(status, fields.headers, length), None)
        if not length and self.state == BODY:
            self._end()
        return True

    def _feed_body(self, data: bytes) -> None:
        try:
            pieces, rest = self.body.feed(data)
        except ProtocolError as error:
            self._fail(error.status, error.reason)
            return
        if pieces and self.sink is not None:  # (None: the exchange let go, e.g. to retry)
            # one piece per read, however many chunks it held
            self.sink.response_data(pieces[0] if len(pieces) == 1 else b"".join(pieces))
        if rest is None:
            # a body that stops coming is a backend that stopped answering
            self.deadline.set(self.limits.backend_response_timeout)
            return
        if rest:
            self.persistent = False  # bytes after the response: not to be trusted
        self._end()

    def _end(self) -> None:
        self.deadline.clear()
        self.state = ENDED
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_end()

    def receive_eof(self) -> None:
        """The backend closed the connection."""
        self.deadline.cancel()
        self.persistent = False
        if self.state == BODY and self.body.eof():
            self._end()
            return
        if self.state in (WAITING, BODY):
            self._fail(502, "the backend closed the connection", report=True)

    def _fail(self, status: int, reason: str, report: bool = True) -> None:
        started = self.state != WAITING
        self.state = ENDED
        self.persistent = False
        self.deadline.cancel()
        sink, self.sink = self.sink, None
        self.io.close()
        if sink is not None and report:
            sink.upstream_error(status, reason, started)

    def _timed_out(self) -> None:
        if self.state == WAITING:
            self._fail(504, "the backend did not answer in time")
        elif self.state == BODY:
            self._fail(504, "the backend stopped sending its response")

    def start_tunnel(self) -> bytes:
        """After a 101: bytes the backend sent after it, for the client."""
        self.deadline.clear()
        data, self.buffer = self.buffer, b""
        return data

    def detach(self) -> None:
        """The exchange no longer listens (its client went away)."""
        self.sink = None
        self.deadline.cancel()


def _plain_framing(connection: tuple[tuple[bytes, bytes], ...]) -> tuple[int, bool, bool] | bool:
    """(Content-Length, ``Connection: keep-alive``, ``Connection: close``) of a
    response whose connection fields are only those, at most one of each kind;
    False for any other."""
    length = None
    keep_alive = close = False
    for name, value in connection:
        if name == b"content-length" and length is None and value.isdigit():
            if len(value) > MAX_LENGTH_DIGITS:
                return False
            length = int(value)
        elif name == b"connection" and value.lower() in PERSISTENCE:
            if value.lower() == b"close":
                close = True
            else:
                keep_alive = True
        else:
            return False
    return False if length is None else (length, keep_alive, close)

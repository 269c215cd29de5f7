"""The HTTP/2 server codec with no socket: a hyper-h2 client makes the frames (or a
test writes them raw), a recording connection takes the bytes out, exchanges record
their requests and answer as a test says, on ``task.Clock``."""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, Event
from twisted.internet.task import Clock

from twistgw.dataplane.http.h2.server import H2ServerCodec, ServerStream
from twistgw.dataplane.http.messages import Request, Response
from twistgw.ipc.settings import DataPlaneSettings


class Producer:
    """A backend's socket as the stream's producer: records pauses."""

    def __init__(self) -> None:
        self.paused = False

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False


class Sink:
    """An exchange: records the request's events; answers at once if ``auto``."""

    def __init__(self, driver: H2Driver, stream: ServerStream, request: Request) -> None:
        self.driver, self.stream, self.request = driver, stream, request
        self.data = b""
        self.ended = not request.has_body
        self.gone = False
        self.finished = False
        self.responded = False

    def start(self) -> None:
        if self.driver.auto:
            self.answer(200, b"ok")

    def answer(self, status: int, body: bytes, trailers=None) -> None:
        self.responded = True
        self.stream.send_response(Response(status, [(b"x-answer", b"1")], len(body)), None)
        self.stream.send_data(body)
        self.finished = True
        self.stream.send_end(trailers)

    def request_data(self, data: bytes) -> None:
        self.data += data

    def request_end(self) -> None:
        self.ended = True

    def respond_local(self, code: int, body: bytes) -> None:
        self.finished = True
        self.stream.send_local(code, body)

    def client_gone(self) -> None:
        self.gone = True


class H2Driver:
    """A codec, the client facing it, and what came out of it."""

    def __init__(self, settings: DataPlaneSettings | None = None, auto: bool = True) -> None:
        self.clock = Clock()
        self.settings = settings or DataPlaneSettings()
        self.auto = auto
        self.written = b""
        self.closed = False
        self.paused = False
        self.sinks: list[Sink] = []
        self.refusals: list[str] = []
        # what the codec's streams copy from their connection
        self.factory = self.pool = self.metrics = self.access_log = None
        self.scheme, self.scheme_bytes, self.tls, self.peer_host = "http", b"http", False, b"c"
        self.codec = H2ServerCodec(self, self.clock, self.settings)
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.client.initiate_connection()
        self.events: list[Event] = []
        self.send(self.client.data_to_send())

    # the connection, as the codec sees it
    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def refused_h2(self, reason: str) -> None:
        self.refusals.append(reason)

    def new_stream_exchange(self, stream: ServerStream, request: Request) -> Sink:
        sink = Sink(self, stream, request)
        self.sinks.append(sink)
        return sink

    # the client
    def send(self, data: bytes) -> list[Event]:
        """Feed the codec ``data``; the client's events from what came back."""
        self.codec.receive(data)
        return self.take()

    def take(self) -> list[Event]:
        out, self.written = self.written, b""
        if not out:
            return []
        events = self.client.receive_data(out)
        self.events += events
        reply = self.client.data_to_send()
        if reply and not self.closed:
            self.codec.receive(reply)
            self.take()
        return events

    def request(
        self, path: bytes = b"/", headers=(), end: bool = True, method: bytes = b"GET"
    ) -> int:
        stream_id = self.client.get_next_available_stream_id()
        fields = [
            (b":method", method),
            (b":scheme", b"http"),
            (b":authority", b"a.test"),
            (b":path", path),
            *headers,
        ]
        self.client.send_headers(stream_id, fields, end_stream=end)
        self.send(self.client.data_to_send())
        return stream_id

    def goaway(self) -> ConnectionTerminated | None:
        for event in self.events:
            if isinstance(event, ConnectionTerminated):
                return event
        return None


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One raw HTTP/2 frame."""
    head = len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")
    return head + payload

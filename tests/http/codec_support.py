"""Sans-I/O drivers for the HTTP/1.1 codecs: bytes in, recorded events and bytes out,
on a ``task.Clock``."""

from __future__ import annotations

import re

from twisted.internet.task import Clock

from twistgw.dataplane.http.h1.client import ClientCodec
from twistgw.dataplane.http.h1.server import ServerCodec
from twistgw.dataplane.http.messages import Request, Response
from twistgw.ipc.settings import DataPlaneSettings


class ServerDriver:
    """A ServerCodec with a recording connection and exchanges that answer each request
    once its body has ended (``auto``), or never (the test answers)."""

    def __init__(self, settings: DataPlaneSettings | None = None, auto: bool = True) -> None:
        self.clock = Clock()
        self.written = b""
        self.closed = False
        self.paused = False
        self.events: list[tuple] = []
        self.auto = auto
        self.unread = False  # whether the client leaves written bytes unread
        self.drained: list = []
        self.refusals: list[int] = []
        self.requests: list[Request] = []
        self.codec = ServerCodec(self, self.clock, settings or DataPlaneSettings())

    # ConnectionIO
    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def backed_up(self) -> bool:
        return self.unread

    def when_drained(self, callback) -> None:
        self.drained.append(callback)

    def client_reads(self) -> None:
        """The client takes what was written: go on with what waited for that."""
        self.unread = False
        waiting, self.drained = self.drained, []
        for callback in waiting:
            callback()

    def refused(self, status: int) -> None:
        self.refusals.append(status)

    def new_exchange(self, codec: ServerCodec, request: Request) -> _Sink:
        self.requests.append(request)
        return _Sink(self, request)

    def feed(self, *chunks: bytes) -> ServerDriver:
        for data in chunks:
            if self.closed:
                break
            self.codec.receive(data)
        return self

    def take(self) -> bytes:
        written, self.written = self.written, b""
        return written

    def statuses(self) -> list[int]:
        """The status codes of the responses written (interim ones included)."""
        return [int(code) for code in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", self.written)]


class _Sink:
    def __init__(self, driver: ServerDriver, request: Request) -> None:
        self.driver = driver
        self.request = request
        self.done = False

    def start(self) -> None:
        r = self.request
        self.driver.events.append(("request", r.method, r.authority, r.target))

    def request_data(self, data: bytes) -> None:
        self.driver.events.append(("data", data))

    def request_end(self) -> None:
        if self.done:
            return
        self.driver.events.append(("end",))
        if self.driver.auto:
            self.done = True
            codec = self.driver.codec
            codec.send_response(Response(200, [(b"x-path", self.request.target)], 2))
            codec.send_data(b"ok")
            codec.send_end()

    def tunnel_data(self, data: bytes) -> None:
        self.driver.events.append(("tunnel", data))

    def client_gone(self) -> None:
        self.driver.events.append(("gone",))


class ClientDriver:
    """A ClientCodec with a recording connection and sink."""

    def __init__(self, settings: DataPlaneSettings | None = None) -> None:
        self.clock = Clock()
        self.written = b""
        self.closed = False
        self.events: list[tuple] = []
        self.codec = ClientCodec(self, self.clock, settings or DataPlaneSettings())

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def request(
        self, method: bytes = b"GET", length: int | None = 0, upgrade: bytes | None = None
    ) -> ClientDriver:
        self.codec.send_request(self, method, b"/", [(b"host", b"backend")], length, upgrade)
        self.codec.send_end()
        return self

    def feed(self, *chunks: bytes) -> ClientDriver:
        for data in chunks:
            self.codec.receive(data)
        return self

    # ResponseSink
    def response_head(self, response: Response, upgrade: bytes | None) -> None:
        self.events.append(("head", response.status, response.length, upgrade))
        self.headers = response.headers

    def response_data(self, data: bytes) -> None:
        self.events.append(("data", data))

    def response_end(self) -> None:
        self.events.append(("end",))

    def upstream_error(self, status: int, reason: str, started: bool) -> None:
        self.events.append(("error", status, started))

    def backend_tunnel_data(self, data: bytes) -> None:
        self.events.append(("tunnel", data))

    def body(self) -> bytes:
        return b"".join(e[1] for e in self.events if e[0] == "data")

"""Filter plugins with HTTP/2 on either side, and gRPC, without sockets (the real data
plane on a MemoryReactorClock): what a filter holds up goes on once it answers (window
updates are sent, not only queued), a rewriter that fails resets its own stream, a
body-less response keeps no rewritten body, a gateway's gRPC answer from a filter's
Answer is a valid one, one connection's streams hold at most its share of the bodies
being read."""

from __future__ import annotations

import pytest
from h2.events import DataReceived, ResponseReceived, StreamReset
from twisted.internet.defer import Deferred

from tests.http.dataplane_support import DataPlane, H2Backend, H2Client, python_filter
from tests.http.test_exchange_filters import HeadFilter, Plugin
from twistgw.dataplane.http import pyfilters
from twistgw.extensions.filters import Answer
from twistgw.routing import ir

GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"


def _filters(*specs: ir.PythonFilter) -> ir.Filters:
    return ir.Filters(python=specs)


class WaitsThenReads:
    """ "wait": on_request returns a Deferred the test fires; "read": it reads the body."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.waiting: list[Deferred] = []
        self.seen: list[int] = []
        self.request_body_limit = 1024 * 1024 if config.get("read") else 0

    def on_request(self, request):
        if self.config.get("wait"):
            self.waiting.append(Deferred())
            return self.waiting[-1]
        self.seen.append(len(request.body))
        return None


def test_an_http2_backends_held_response_flows_again_once_the_filter_answers() -> None:
    plugin = Plugin(HeadFilter)
    plane = DataPlane(plugin, http2_backend=True, filters=_filters(python_filter(wait=True)))
    plane.protocol.dataReceived(GET)
    backend = H2Backend(*plane.connect_backends()[0])
    stream = backend.streams()[0]
    backend.h2.send_headers(stream, [(b":status", b"200")])
    while window := backend.h2.local_flow_control_window(stream):  # (all it may send)
        backend.h2.send_data(stream, b"a" * min(16384, window))
    backend.push()
    assert plane.client.value() == b""  # held
    plugin.made[0].waiting[0].callback(None)
    backend.pull()
    assert backend.h2.local_flow_control_window(stream) > 0  # (a window update came)
    assert plane.client.value().startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("connects_late", [False, True])
def test_an_http2_upload_held_back_flows_again(connects_late) -> None:
    """Past 256 KiB a body waits (a check that takes time, a backend that connects):
    once it may go on, the client is told it may send more."""
    plugin = Plugin(WaitsThenReads)
    specs = () if connects_late else (python_filter("a", wait=True), python_filter("b", read=True))
    plane = DataPlane(plugin, filters=_filters(*specs))
    client = H2Client(plane)
    body = b"x" * (600 * 1024)
    length = [(b"content-length", b"%d" % len(body))]
    stream = client.request(method=b"POST", headers=length, end=False)
    left = client.send_while_open(stream, body)
    assert left  # (held back)
    if connects_late:
        plane.connect_backends()
    else:
        plugin.made[0].waiting[0].callback(None)
    client.pull()
    assert len(client.send_while_open(stream, left)) < len(left)


def test_a_rewriter_that_fails_resets_its_http2_stream_only() -> None:
    plugin = Plugin(HeadFilter)
    plane = DataPlane(plugin, filters=_filters(python_filter(upper=True, fail_after=1)))
    client = H2Client(plane)
    first, second = client.request(), client.request()
    (one, _), (two, _) = plane.connect_backends()
    one.dataReceived(b"HTTP/1.1 200 X\r\nContent-Length: 6\r\n\r\nabc")
    two.dataReceived(b"HTTP/1.1 200 X\r\nContent-Length: 3\r\n\r\nabc")
    one.dataReceived(b"def")  # the rewriter fails
    client.pull()
    assert client.of(first, StreamReset) and not client.of(second, StreamReset)
    assert b"".join(e.data for e in client.of(second, DataReceived)) == b"ABC!"


@pytest.mark.parametrize("status", [204, 304])
def test_a_bodyless_response_gets_no_rewritten_body(status) -> None:
    plugin = Plugin(HeadFilter)
    plane = DataPlane(plugin, filters=_filters(python_filter(upper=True)))
    client = H2Client(plane)
    stream = client.request()
    plane.connect_backends()[0][0].dataReceived(b"HTTP/1.1 %d X\r\n\r\n" % status)
    client.pull()
    assert client.of(stream, ResponseReceived) and not client.of(stream, DataReceived)


class Answers:
    def __init__(self, config: dict) -> None:
        self.config = config

    def on_request(self, request):
        return Answer(403, self.config["body"].encode("latin-1"), [("Content-Type", "text/html")])


def test_a_filters_answer_to_a_grpc_call_is_a_valid_grpc_answer() -> None:
    spec = python_filter(body="denied\rfor\x00you %\n" + "x" * 5000)
    plane = DataPlane(Plugin(Answers), http2_backend=True, grpc=True, filters=_filters(spec))
    client = H2Client(plane)
    grpc = [(b"content-type", b"application/grpc"), (b"te", b"trailers")]
    stream = client.request(path=b"/pkg.Svc/M", method=b"POST", headers=grpc)
    fields = client.of(stream, ResponseReceived)[0].headers
    assert [v for n, v in fields if n == b"content-type"] == [b"application/grpc"]
    message = dict(fields)[b"grpc-message"]
    assert message.startswith(b"denied%0Dfor%00you %25 xxx") and len(message) < 1100
    assert dict(fields)[b"grpc-status"] == b"7"  # (403: PERMISSION_DENIED)


def test_one_http2_connection_holds_at_most_its_share_of_bodies_being_read(monkeypatch) -> None:
    monkeypatch.setattr(pyfilters, "MAX_BODIES_READING_PER_CONNECTION", 1024 * 1024)
    plugin = Plugin(WaitsThenReads)
    plane = DataPlane(plugin, filters=_filters(python_filter("b", read=True)))
    client = H2Client(plane)
    length = [(b"content-length", b"%d" % (700 * 1024))]
    first = client.request(method=b"POST", headers=length, end=False)
    second = client.request(method=b"POST", headers=length, end=False)
    statuses = [dict(e.headers)[b":status"] for e in client.of(second, ResponseReceived)]
    assert statuses == [b"503"] and not client.of(first, ResponseReceived)
    registry = plane.factory.guards.filters
    assert list(registry.reading_by.values()) == [700 * 1024]
    client.send_while_open(first, b"x" * (700 * 1024))
    client.h2.end_stream(first)
    client.push()
    assert plugin.made[0].seen == [700 * 1024] and registry.reading_by == {}

"""The HTTP/2 server codec, bytes in and events out, without sockets: requests as the
exchange sees them, refusals, flow control both ways, timeouts, and the attacks
(rapid reset, CONTINUATION and HPACK floods, SETTINGS/PING/empty-DATA floods) played
with raw frames."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset, TrailersReceived

from tests.http.h2_support import H2Driver, Producer, frame
from twistgw.dataplane.http.h2.server import CONTROL_BURST, MAX_PREMATURE_RESETS
from twistgw.dataplane.http.messages import Response
from twistgw.ipc.settings import DataPlaneSettings

HEADERS, DATA, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 1, 0, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def _status(events) -> list[bytes]:
    return [dict(e.headers)[b":status"] for e in events if isinstance(e, ResponseReceived)]


def test_a_request_becomes_an_exchange_and_its_answer_frames() -> None:
    driver = H2Driver()
    cookies = ((b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-one", b"1"))
    driver.request(b"/p?q=1", cookies)
    (sink,) = driver.sinks
    request = sink.request
    assert (request.method, request.authority, request.target) == (b"GET", b"a.test", b"/p?q=1")
    assert request.protocol == "HTTP/2" and not request.has_body
    assert (b"cookie", b"a=1; b=2") in request.headers and (b"x-one", b"1") in request.headers
    assert _status(driver.events) == [b"200"]
    assert b"".join(e.data for e in driver.events if isinstance(e, DataReceived)) == b"ok"
    assert any(isinstance(e, StreamEnded) for e in driver.events)
    assert not driver.codec.session.streams  # forgotten once over at both ends


@pytest.mark.parametrize(
    ("name", "headers", "method", "status"),
    [
        ("name outside token", ((b"x(y", b"1"),), b"GET", b"400"),
        ("control char in value", ((b"x-a", b"a\x01b"),), b"GET", b"400"),
        ("underscore rejected", ((b"x_a", b"1"),), b"GET", b"400"),
        ("too many fields", tuple((b"x-%d" % i, b"v") for i in range(200)), b"GET", b"431"),
        ("request line in :method", (), b"GET /admin HTTP/1.1\x0bx:", b"400"),
    ],
)
def test_malformed_requests_are_answered_and_counted(name, headers, method, status) -> None:
    settings = DataPlaneSettings(headers_with_underscores="reject")
    driver = H2Driver(settings)
    driver.request(b"/", headers, method=method)
    assert _status(driver.events) == [status] and not driver.sinks
    assert driver.refusals and not driver.closed  # the connection goes on
    driver.request(b"/next")
    assert _status(driver.events) == [status, b"200"]


def test_underscore_names_are_dropped_by_default() -> None:
    driver = H2Driver()
    driver.request(b"/", ((b"x_a", b"1"), (b"x-b", b"2")))
    assert driver.sinks[0].request.headers == [(b"x-b", b"2")]


def test_connect_is_refused() -> None:
    driver = H2Driver()
    stream_id = driver.client.get_next_available_stream_id()
    driver.client.send_headers(stream_id, [(b":method", b"CONNECT"), (b":authority", b"h:443")])
    driver.send(driver.client.data_to_send())
    assert _status(driver.events) == [b"405"] and not driver.sinks


@pytest.mark.parametrize(
    "headers",
    [((b"Upper", b"1"),), ((b"connection", b"close"),), ((b"x-a", b"a\r\nb: 1"),)],
    ids=["uppercase", "connection-specific", "CRLF"],
)
def test_requests_hyper_h2_refuses_end_the_connection(headers) -> None:
    driver = H2Driver()
    driver.client.config.validate_outbound_headers = False
    driver.client.config.normalize_outbound_headers = False
    driver.request(b"/", headers)
    assert driver.closed and not driver.sinks
    assert driver.goaway().error_code == ErrorCodes.PROTOCOL_ERROR


def test_rapid_reset_ends_the_connection() -> None:
    driver = H2Driver(auto=False)
    for _ in range(MAX_PREMATURE_RESETS):
        stream_id = driver.request(b"/", end=True)
        driver.client.reset_stream(stream_id)
        driver.send(driver.client.data_to_send())
        if driver.closed:
            break
    assert driver.closed and driver.refusals == ["rapid-reset"]
    assert driver.goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert all(sink.gone for sink in driver.sinks)  # each reset reached its exchange


def test_resets_of_answered_streams_are_no_attack() -> None:
    driver = H2Driver()
    for _ in range(MAX_PREMATURE_RESETS + 10):
        driver.request(b"/")
    assert not driver.closed and len(driver.sinks) == MAX_PREMATURE_RESETS + 10


@pytest.mark.parametrize(
    ("kind", "flags", "payload"),
    [(PING, 0, b"12345678"), (SETTINGS, 0, b"")],
    ids=["ping", "settings"],
)
def test_control_frame_floods_end_the_connection(kind, flags, payload) -> None:
    driver = H2Driver()
    flood = frame(kind, flags, 0, payload) * (CONTROL_BURST + 10)
    driver.codec.receive(flood)
    assert driver.closed and driver.refusals == ["control-frames"]
    driver.take()
    assert driver.goaway().error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_control_frames_at_a_modest_rate_are_fine() -> None:
    driver = H2Driver()
    for _ in range(30):
        driver.codec.receive(frame(PING, 0, 0, b"12345678") * 50)
        driver.clock.advance(1)
    assert not driver.closed


def test_empty_data_frames_end_the_connection() -> None:
    driver = H2Driver(auto=False)
    stream_id = driver.request(b"/", end=False, method=b"POST")
    driver.codec.receive(frame(DATA, 0, stream_id) * 10)
    assert driver.closed and driver.refusals == ["empty-data"]


def test_a_continuation_flood_is_cut_off() -> None:
    driver = H2Driver()
    block = b"\x82\x84\x86\x41\x06a.test"  # GET / http a.test, HPACK-encoded
    flood = frame(HEADERS, 0, 1, block) + frame(CONTINUATION, 0, 1, b"\x40\x01a\x01b") * 10_000
    driver.codec.receive(flood)
    assert driver.closed and not driver.sinks


def test_a_header_list_past_the_limit_ends_the_connection() -> None:
    driver = H2Driver(DataPlaneSettings(max_header_bytes=4096))
    big = tuple((b"x-%d" % i, b"v" * 1000) for i in range(8))
    driver.request(b"/", big)
    assert driver.closed and not driver.sinks


def test_more_streams_than_allowed_end_the_connection() -> None:
    driver = H2Driver(DataPlaneSettings(h2_max_concurrent_streams=2), auto=False)
    driver.request(b"/1")
    driver.request(b"/2")
    driver.client.local_settings.max_concurrent_streams = 10  # (pretend not to know)
    driver.client.remote_settings.max_concurrent_streams = 10
    driver.request(b"/3")
    assert len(driver.sinks) == 2 and driver.closed


def test_response_data_waits_for_the_clients_window() -> None:
    driver = H2Driver(auto=False)
    driver.client.update_settings({4: 10})  # INITIAL_WINDOW_SIZE 10 bytes
    driver.send(driver.client.data_to_send())
    driver.request(b"/")
    (sink,) = driver.sinks
    stream = sink.stream
    backend = Producer()
    stream.registerProducer(backend, True)
    stream.send_response(Response(200, [], 25), None)
    stream.send_data(b"x" * 25)
    stream.flush()
    driver.take()
    got = b"".join(e.data for e in driver.events if isinstance(e, DataReceived))
    assert got == b"x" * 10 and backend.paused  # the backend waits for the window
    driver.client.increment_flow_control_window(100, 1)
    driver.send(driver.client.data_to_send())
    got = b"".join(e.data for e in driver.events if isinstance(e, DataReceived))
    assert got == b"x" * 25 and not backend.paused


def test_request_data_is_acknowledged_unless_the_backend_pushes_back() -> None:
    driver = H2Driver(auto=False)
    stream_id = driver.request(b"/", end=False, method=b"POST")
    (sink,) = driver.sinks
    sink.stream.pauseProducing()  # the backend's socket is full
    window = driver.client.local_flow_control_window(stream_id)
    for _ in range(window // 16384 + 1):
        size = min(16384, driver.client.local_flow_control_window(stream_id))
        driver.client.send_data(stream_id, b"y" * size)
        driver.send(driver.client.data_to_send())
    assert driver.client.local_flow_control_window(stream_id) == 0
    sink.stream.resumeProducing()
    driver.codec.flush()
    driver.take()
    assert driver.client.local_flow_control_window(stream_id) > 0
    assert sink.data == b"y" * window


def test_trailers_and_a_head_only_answer() -> None:
    driver = H2Driver(auto=False)
    driver.request(b"/a")
    driver.sinks[0].answer(200, b"body", [(b"grpc-status", b"0")])
    driver.take()
    trailers = [e for e in driver.events if isinstance(e, TrailersReceived)]
    assert trailers and dict(trailers[0].headers)[b"grpc-status"] == b"0"
    driver.events.clear()
    driver.request(b"/b")
    driver.sinks[1].answer(200, b"")
    driver.take()
    (head,) = [e for e in driver.events if isinstance(e, ResponseReceived)]
    assert head.stream_ended is not None  # one HEADERS frame with END_STREAM


def test_a_stalled_body_is_answered_408() -> None:
    driver = H2Driver(DataPlaneSettings(idle_timeout=5.0), auto=False)
    driver.request(b"/", end=False, method=b"POST")
    driver.clock.advance(6)
    driver.take()
    assert _status(driver.events) == [b"408"]


def test_an_idle_connection_says_goaway_and_closes() -> None:
    driver = H2Driver(DataPlaneSettings(idle_timeout=5.0))
    driver.request(b"/")
    driver.clock.advance(4)
    assert not driver.closed
    driver.clock.advance(2)
    driver.take()
    assert driver.closed and driver.goaway().error_code == ErrorCodes.NO_ERROR


def test_drain_refuses_new_streams_and_closes_once_the_open_ones_end() -> None:
    driver = H2Driver(auto=False)
    driver.request(b"/busy")
    driver.codec.drain()
    driver.take()
    assert driver.goaway() is not None and not driver.closed
    driver.sinks[0].answer(200, b"done")
    assert driver.closed


def test_a_client_reset_reaches_the_exchange_and_late_data_keeps_the_window() -> None:
    driver = H2Driver(auto=False)
    stream_id = driver.request(b"/", end=False, method=b"POST")
    driver.client.reset_stream(stream_id)
    driver.send(driver.client.data_to_send())
    assert driver.sinks[0].gone and not driver.codec.session.streams
    assert not any(isinstance(e, StreamReset) for e in driver.events)


@pytest.mark.parametrize(
    "path", [b"/a HTTP/1.0", b"/a\tb", b"/a#frag", b"/\x7f", b"/\xc3\xa9", b"x"]
)
def test_a_path_an_http1_request_line_could_not_carry_is_refused(path) -> None:
    driver = H2Driver()
    driver.client.config.validate_outbound_headers = False
    driver.request(path)
    assert _status(driver.events) == [b"400"] and not driver.sinks


def test_a_clients_graceful_goaway_lets_its_open_stream_finish() -> None:
    driver = H2Driver(auto=False)
    stream_id = driver.request(b"/slow")
    goaway = stream_id.to_bytes(4, "big") + bytes(4)  # last stream id, NO_ERROR
    driver.send(frame(GOAWAY, 0, 0, goaway))  # (raw: the test's client keeps reading)
    assert not driver.closed
    driver.sinks[0].answer(200, b"late")
    driver.take()
    assert _status(driver.events) == [b"200"] and driver.closed


def test_a_fast_download_earns_its_window_updates() -> None:
    """A client acknowledging every DATA frame sends one WINDOW_UPDATE per frame: far
    past the control-frame burst over a large download, and no flood."""
    driver = H2Driver(auto=False)
    driver.request(b"/big")
    stream = driver.sinks[0].stream
    stream.send_response(Response(200, [], None), None)
    for _ in range(3 * CONTROL_BURST):
        stream.send_data(b"z" * 16384)
        stream.flush()
        for event in driver.take():
            if isinstance(event, DataReceived):
                driver.client.acknowledge_received_data(16384, event.stream_id)
                driver.client.increment_flow_control_window(16384, event.stream_id)
        driver.send(driver.client.data_to_send())
    assert not driver.closed and not driver.refusals


def test_resets_of_paused_uploads_give_the_connection_window_back() -> None:
    driver = H2Driver(auto=False)
    start = driver.client.outbound_flow_control_window
    for _ in range(30):
        stream_id = driver.request(b"/up", end=False, method=b"POST")
        driver.codec.session.streams[stream_id].pauseProducing()  # its backend is full
        driver.client.send_data(stream_id, b"u" * 16384)
        driver.client.send_data(stream_id, b"u" * 16384)
        driver.send(driver.client.data_to_send())
        driver.client.reset_stream(stream_id)
        driver.send(driver.client.data_to_send())
    assert driver.client.outbound_flow_control_window > start // 2

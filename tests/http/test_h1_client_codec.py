"""The backend-side HTTP/1.1 codec without sockets: response bytes in, events out, on
a task.Clock."""

from __future__ import annotations

import pytest

from tests.http.codec_support import ClientDriver
from twistgw.ipc.settings import DataPlaneSettings

#: (name, method, response bytes, events, connection reusable afterwards)
CASES = [
    (
        "content-length",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        [("head", 200, 3, None), ("data", b"abc"), ("end",)],
        True,
    ),
    (
        "chunked",
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        [("head", 200, None, None), ("data", b"abc"), ("end",)],
        True,
    ),
    (
        "HEAD has no body",
        b"HEAD",
        b"HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n",
        [("head", 200, 300, None), ("end",)],
        True,
    ),
    (
        "204",
        b"GET",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        [("head", 204, None, None), ("end",)],
        True,
    ),
    (
        "304 keeps its length",
        b"GET",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        [("head", 304, 10, None), ("end",)],
        True,
    ),
    (
        "interim responses dropped",
        b"GET",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        [("head", 200, 0, None), ("end",)],
        True,
    ),
    (
        "Connection: close",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na",
        [("head", 200, 1, None), ("data", b"a"), ("end",)],
        False,
    ),
    (
        "HTTP/1.0 response",
        b"GET",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na",
        [("head", 200, 1, None), ("data", b"a"), ("end",)],
        False,
    ),
    (
        "HTTP/1.0 keep-alive",
        b"GET",
        b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\na",
        [("head", 200, 1, None), ("data", b"a"), ("end",)],
        True,
    ),
    (
        "bytes after the response",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n",
        [("head", 200, 1, None), ("data", b"a"), ("end",)],
        False,
    ),
    (
        "Content-Length with Transfer-Encoding",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        [("error", 502, False)],
        False,
    ),
    (
        "gzip transfer coding",
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        [("error", 502, False)],
        False,
    ),
    (
        "differing Content-Lengths",
        b"GET",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        [("error", 502, False)],
        False,
    ),
    ("bare LF", b"GET", b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", [("error", 502, False)], False),
    (
        "CR inside a value (response splitting)",
        b"GET",
        b"HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x\r\nContent-Length: 0\r\n\r\n",
        [("error", 502, False)],
        False,
    ),
    (
        "obs-fold",
        b"GET",
        b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        [("error", 502, False)],
        False,
    ),
    ("garbage", b"GET", b"SSH-2.0-OpenSSH\r\n\r\n", [("error", 502, False)], False),
    (
        "101 without an upgrade request",
        b"GET",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        [("error", 502, False)],
        False,
    ),
    (
        "broken chunk",
        b"GET",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        [("head", 200, None, None), ("error", 502, True)],
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "data", "events", "reusable"), CASES, ids=[c[0] for c in CASES]
)
def test_response_bytes(name, method, data, events, reusable) -> None:
    driver = ClientDriver().request(method).feed(data)
    assert driver.events == events
    assert driver.codec.reusable is reusable
    assert driver.closed is (events[-1][0] == "error")


def test_close_delimited_body_ends_at_eof() -> None:
    driver = ClientDriver().request().feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nab", b"cd")
    assert driver.events == [("head", 200, None, None), ("data", b"ab"), ("data", b"cd")]
    driver.codec.receive_eof()
    assert driver.events[-1] == ("end",)
    assert not driver.codec.reusable


@pytest.mark.parametrize(
    ("data", "started"),
    [
        (b"", False),
        (b"HTTP/1.1 200 OK\r\nContent", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", True),
    ],
)
def test_eof_before_the_end_is_an_error(data: bytes, started: bool) -> None:
    driver = ClientDriver().request().feed(data)
    driver.codec.receive_eof()
    assert driver.events[-1] == ("error", 502, started)


def test_request_framing() -> None:
    driver = ClientDriver()
    codec = driver.codec
    codec.send_request(driver, b"POST", b"/up", [(b"host", b"b")], None)
    codec.send_data(b"abc")
    codec.send_end()
    assert driver.written == (
        b"POST /up HTTP/1.1\r\nhost: b\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    driver = ClientDriver()
    driver.codec.send_request(driver, b"POST", b"/", [(b"host", b"b")], 0)
    assert b"content-length: 0\r\n" in driver.written


def test_response_timeout_counts_from_the_request_end() -> None:
    driver = ClientDriver(DataPlaneSettings(backend_response_timeout=5.0))
    driver.codec.send_request(driver, b"POST", b"/", [(b"host", b"b")], 2)
    driver.clock.advance(10)  # the body is still coming: no timeout yet
    assert driver.events == []
    driver.codec.send_data(b"ab")
    driver.codec.send_end()
    driver.clock.advance(4)
    assert driver.events == []
    driver.clock.advance(2)
    assert driver.events == [("error", 504, False)] and driver.closed


def test_a_body_that_keeps_coming_is_not_timed_out_but_one_that_stops_is() -> None:
    driver = ClientDriver(DataPlaneSettings(backend_response_timeout=5.0)).request()
    driver.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    for piece in (b"a", b"b", b"c"):
        driver.clock.advance(4)
        driver.feed(piece)
    assert driver.events == [("head", 200, 5, None), ("data", b"a"), ("data", b"b"), ("data", b"c")]
    driver.clock.advance(5.5)
    assert driver.events[-1] == ("error", 504, True) and driver.closed


def test_upgrade_turns_into_a_tunnel() -> None:
    driver = ClientDriver().request(upgrade=b"websocket")
    assert b"connection: upgrade\r\nupgrade: websocket\r\n" in driver.written
    driver.feed(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: x\r\n\r\n\x81\x02hi"
    )
    assert driver.events == [("head", 101, None, b"websocket"), ("tunnel", b"\x81\x02hi")]
    assert list(driver.headers) == [(b"sec-websocket-accept", b"x")]
    driver.feed(b"more")
    assert driver.events[-1] == ("tunnel", b"more")


def test_an_idle_connection_that_speaks_is_closed() -> None:
    driver = ClientDriver().request().feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert driver.codec.reusable
    driver.feed(b"HTTP/1.1 200 OK\r\n")
    assert driver.closed and not driver.codec.reusable


def test_oversized_response_head() -> None:
    driver = ClientDriver(DataPlaneSettings(max_header_bytes=1000)).request()
    driver.feed(b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 2000)
    assert driver.events == [("error", 502, False)]


def test_an_upgrade_request_keeps_its_framing_and_its_connection_is_not_reused() -> None:
    driver = ClientDriver()
    driver.codec.send_request(driver, b"POST", b"/", [(b"host", b"b")], 3, b"x")
    assert b"content-length: 3\r\nconnection: upgrade\r\nupgrade: x\r\n" in driver.written
    driver.codec.send_data(b"abc")
    driver.codec.send_end()
    driver.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert driver.events == [("head", 200, 0, None), ("end",)]
    assert not driver.codec.reusable


def test_connection_close_wins_over_keep_alive() -> None:
    driver = (
        ClientDriver()
        .request()
        .feed(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
    )
    assert driver.events[-1] == ("end",) and not driver.codec.reusable

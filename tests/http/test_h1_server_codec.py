"""The client-side HTTP/1.1 codec without sockets: request bytes in, events and
response bytes out, on a task.Clock. The table holds the request-smuggling corpus
(ambiguous framing and Host) beside the ordinary cases."""

from __future__ import annotations

import pytest

from tests.http.codec_support import ServerDriver
from twistgw.dataplane.http.messages import Response
from twistgw.ipc.settings import DataPlaneSettings

OK = 200
GET = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"

#: (name, request bytes, expected status lines, expected events, closed afterwards)
CASES = [
    ("get", GET, [OK], [("request", b"GET", b"a.example", b"/"), ("end",)], False),
    (
        "pipelined requests answered in order",
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        [OK, OK],
        [("request", b"GET", b"a", b"/1"), ("end",), ("request", b"GET", b"a", b"/2"), ("end",)],
        False,
    ),
    (
        "empty lines before the request line",
        b"\r\n\r\n" + GET,
        [OK],
        [("request", b"GET", b"a.example", b"/"), ("end",)],
        False,
    ),
    (
        "HTTP/1.0 without Host closes",
        b"GET /x HTTP/1.0\r\n\r\n",
        [OK],
        [("request", b"GET", b"", b"/x"), ("end",)],
        True,
    ),
    (
        "HTTP/1.0 keep-alive stays open",
        b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        [OK],
        [("request", b"GET", b"", b"/x"), ("end",)],
        False,
    ),
    (
        "Connection: close",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        [OK],
        None,
        True,
    ),
    ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", [400], [], True),
    (
        "two Host fields",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "Host with a path",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "absolute-form target replaces Host",
        b"GET http://internal.example/secret?q=1 HTTP/1.1\r\nHost: www.example\r\n\r\n",
        [OK],
        [("request", b"GET", b"internal.example", b"/secret?q=1"), ("end",)],
        False,
    ),
    (
        "absolute-form without a path",
        b"GET HTTPS://b.example:8443 HTTP/1.1\r\nHost: a\r\n\r\n",
        [OK],
        [("request", b"GET", b"b.example:8443", b"/"), ("end",)],
        False,
    ),
    (
        "absolute-form with user info",
        b"GET http://user@b.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "absolute-form of another scheme",
        b"GET ftp://b.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "CONNECT",
        b"CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n",
        [501],
        [],
        True,
    ),
    (
        "OPTIONS *",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        [OK],
        [("request", b"OPTIONS", b"a", b"*"), ("end",)],
        False,
    ),
    ("GET *", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", [400], [], True),
    ("HTTP/0.9", b"GET /x\r\n\r\n", [400], [], True),
    (
        "HTTP/2.0 request line",
        b"GET /x HTTP/2.0\r\nHost: a\r\n\r\n",
        [505],
        [],
        True,
    ),
    (
        "HTTP/1.2",
        b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n",
        [505],
        [],
        True,
    ),
    ("lower-case version", b"GET / http/1.1\r\nHost: a\r\n\r\n", [400], [], True),
    ("two spaces", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", [400], [], True),
    (
        "control character in the target",
        b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "non-ASCII target",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        [400],
        [],
        True,
    ),
    # -- the smuggling corpus
    (
        "Content-Length and Transfer-Encoding",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "Transfer-Encoding before Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "gzip, chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        [501],
        [],
        True,
    ),
    (
        "Transfer-Encoding: identity",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "chunked not last",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "chunked in two fields",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "Transfer-Encoding with a space before the colon",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "Transfer-Encoding in HTTP/1.0",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "differing Content-Lengths",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        [400],
        [],
        True,
    ),
    (
        "differing Content-Lengths in one field",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\nabcd",
        [400],
        [],
        True,
    ),
    (
        "equal Content-Lengths count as one",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        [OK],
        [("request", b"POST", b"a", b"/"), ("data", b"abc"), ("end",)],
        False,
    ),
    (
        "signed Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc",
        [400],
        [],
        True,
    ),
    (
        "hex Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc",
        [400],
        [],
        True,
    ),
    (
        "huge Content-Length",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n",
        [400],
        [],
        True,
    ),
    ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n", [400], [], True),
    (
        "bare LF inside a complete head",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nX-B: c\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "bare CR in a value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
        [400],
        [],
        True,
    ),
    (
        "NUL in a value",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
        [400],
        [],
        True,
    ),
    ("empty field name", b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", [400], [], True),
    (
        "Connection nominating Content-Length",
        b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 35\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        [OK],
        [
            ("request", b"POST", b"a", b"/a"),
            ("data", b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
            ("end",),
        ],
        False,
    ),
    (
        "Connection nominating Host",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
        [OK],
        [("request", b"GET", b"a", b"/"), ("end",)],
        False,
    ),
    (
        "chunked body with an extension and trailers",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n",
        [OK],
        [("request", b"POST", b"a", b"/"), ("data", b"abcde"), ("end",)],
        False,
    ),
    (
        "bad chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        [400],
        [("request", b"POST", b"a", b"/"), ("gone",)],
        True,
    ),
    (
        "chunk size overflow",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        [400],
        [("request", b"POST", b"a", b"/"), ("gone",)],
        True,
    ),
    (
        "chunk longer than its size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        [400],
        [("request", b"POST", b"a", b"/"), ("gone",)],
        True,
    ),
    (
        "bare LF after a chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
        [400],
        [("request", b"POST", b"a", b"/"), ("gone",)],
        True,
    ),
    (
        "Expect other than 100-continue",
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\na",
        [417],
        [],
        True,
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "statuses", "events", "closed"), CASES, ids=[c[0] for c in CASES]
)
def test_request_bytes(name, data, statuses, events, closed) -> None:
    driver = ServerDriver().feed(data)
    assert driver.statuses() == statuses
    assert driver.refusals == [status for status in statuses if status >= 400]
    if events is not None:
        assert driver.events == events
    assert driver.closed is closed


@pytest.mark.parametrize("size", [1, 2, 7])
def test_any_split_gives_the_same_events(size: int) -> None:
    """Bytes arriving in pieces of any size parse like one piece."""
    data = (
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n" + GET
    )
    whole = ServerDriver().feed(data)
    split = ServerDriver().feed(*(data[i : i + size] for i in range(0, len(data), size)))
    assert split.written == whole.written
    joined = [e for e in split.events if e[0] != "data"]
    assert joined == [e for e in whole.events if e[0] != "data"]
    assert b"".join(e[1] for e in split.events if e[0] == "data") == b"abc"


def test_limits_answer_414_and_431() -> None:
    settings = DataPlaneSettings(max_request_line=100, max_header_bytes=400, max_header_count=5)
    line = ServerDriver(settings).feed(b"GET /" + b"a" * 200)
    assert line.statuses() == [414] and line.closed
    big = ServerDriver(settings).feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + b"b" * 500)
    assert big.statuses() == [431]
    many = b"".join(b"X-%d: v\r\n" % i for i in range(6))
    count = ServerDriver(settings).feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
    assert count.statuses() == [431]
    within = ServerDriver(settings).feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + many[:24] + b"\r\n")
    assert within.statuses() == [OK]


def test_an_endless_header_costs_linear_work_and_is_cut_at_the_limit() -> None:
    """64 KiB pieces of one header value: refused once past the limit, nothing kept."""
    driver = ServerDriver()
    driver.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: ")
    for _ in range(4):
        driver.feed(b"v" * 65536)
    assert driver.statuses() == [431]
    assert driver.closed and driver.codec.buffer == b""


@pytest.mark.parametrize(
    ("mode", "status", "forwarded"),
    [("drop", OK, False), ("reject", 400, False), ("allow", OK, True)],
)
def test_header_names_with_underscores(mode: str, status: bytes, forwarded: bool) -> None:
    driver = ServerDriver(DataPlaneSettings(headers_with_underscores=mode))
    driver.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX-B: 1\r\n\r\n")
    assert driver.statuses() == [status]
    if driver.requests:
        names = [name for name, _ in driver.requests[0].headers]
        assert (b"x_forwarded_for" in names) is forwarded and b"x-b" in names


def test_hop_by_hop_fields_are_not_passed_on() -> None:
    driver = ServerDriver().feed(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
        b"X-Secret: s\r\nTE: trailers\r\nX-Kept: k\r\nProxy-Connection: x\r\n\r\n"
    )
    assert driver.requests[0].headers == [(b"x-kept", b"k")]


def test_local_answer_before_the_body_closes_and_skips_pipelined_requests() -> None:
    """RFC 9112 §9.6: a response that leaves the body unread ends the connection; a
    request pipelined behind it is never processed."""
    driver = ServerDriver(auto=False)
    driver.feed(
        b"POST /nothing HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc"
        b"DELETE /api/thing HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    driver.codec.send_local(404, b"no route\n")
    assert driver.statuses() == [404]
    assert b"connection: close" in driver.written and driver.closed
    driver.feed(b"more")
    assert [e[0] for e in driver.events] == ["request", "data"]
    assert all(r.method != b"DELETE" for r in driver.requests)


def test_expect_100_continue_is_answered_when_the_body_is_wanted() -> None:
    driver = ServerDriver(auto=False)
    driver.feed(b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert driver.take() == b""
    driver.codec.accept_body()
    driver.codec.flush()
    assert driver.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    driver.feed(b"hi")
    assert driver.events[-2:] == [("data", b"hi"), ("end",)]
    assert list(driver.requests[0].headers) == []  # Expect is this hop's


def test_expect_100_continue_not_sent_once_the_body_arrived() -> None:
    driver = ServerDriver(auto=False)
    driver.feed(
        b"PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"
    )
    driver.codec.accept_body()
    driver.codec.flush()
    assert driver.take() == b""


def test_upgrade_requests() -> None:
    ws = ServerDriver(auto=False).feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: k\r\n\r\n"
    )
    assert ws.requests[0].upgrade == b"websocket"
    h2c = ServerDriver(auto=False).feed(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAA\r\n\r\n"
    )
    assert h2c.requests[0].upgrade is None
    assert list(h2c.requests[0].headers) == []
    no_token = ServerDriver(auto=False).feed(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
    )
    assert no_token.requests[0].upgrade is None


def test_tunnel_after_101() -> None:
    driver = ServerDriver(auto=False)
    driver.feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nearly"
    )
    driver.codec.send_response(Response(101, [(b"sec-websocket-accept", b"x")]), b"websocket")
    assert driver.codec.start_tunnel() == b"early"
    driver.feed(b"\x81\x05hello")
    assert driver.events[-1] == ("tunnel", b"\x81\x05hello")
    assert driver.written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"connection: upgrade\r\nupgrade: websocket\r\n" in driver.written


@pytest.mark.parametrize(
    ("request_line", "length", "framing"),
    [
        (b"GET / HTTP/1.1\r\nHost: a", None, b"transfer-encoding: chunked"),
        (b"GET / HTTP/1.1\r\nHost: a", 5, b"content-length: 5"),
        (b"GET / HTTP/1.0", None, b"connection: close"),
        (b"HEAD / HTTP/1.1\r\nHost: a", 5, b"content-length: 5"),
    ],
)
def test_response_framing(request_line: bytes, length: int | None, framing: bytes) -> None:
    driver = ServerDriver(auto=False).feed(request_line + b"\r\n\r\n")
    codec = driver.codec
    codec.send_response(Response(200, [], length))
    codec.send_data(b"hello")
    codec.send_end()
    head, _, body = driver.written.partition(b"\r\n\r\n")
    assert framing in head
    if request_line.startswith(b"HEAD"):
        assert body == b""
    elif length is None and b"1.1" in request_line:
        assert body == b"5\r\nhello\r\n0\r\n\r\n"
    else:
        assert body == b"hello"
    assert driver.closed is request_line.endswith(b"HTTP/1.0")


def test_header_timeout_answers_408_and_closes() -> None:
    driver = ServerDriver().feed(b"GET / HTTP/1.1\r\nHost:")
    driver.clock.advance(9.9)
    assert not driver.closed
    driver.feed(b" a\r\nX-Slow: 1\r\n")  # trickling bytes do not extend the deadline
    driver.clock.advance(0.2)
    assert driver.statuses() == [408] and driver.closed


def test_idle_keep_alive_connection_closes_quietly() -> None:
    settings = DataPlaneSettings(idle_timeout=30.0)
    driver = ServerDriver(settings).feed(GET)
    driver.take()
    driver.clock.advance(29)
    assert not driver.closed
    driver.clock.advance(2)
    assert driver.closed and driver.written == b""


def test_next_request_resets_the_idle_timeout() -> None:
    driver = ServerDriver(DataPlaneSettings(idle_timeout=30.0)).feed(GET)
    driver.clock.advance(20)
    driver.feed(GET)
    driver.clock.advance(20)
    assert not driver.closed
    driver.clock.advance(11)
    assert driver.closed


def test_silent_connection_closes_after_the_header_timeout() -> None:
    driver = ServerDriver()
    driver.clock.advance(10.5)
    assert driver.closed and driver.written == b""


def test_stalled_body_answers_408() -> None:
    driver = ServerDriver(DataPlaneSettings(idle_timeout=5.0), auto=False)
    driver.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    driver.clock.advance(6)
    assert driver.statuses() == [408] and driver.closed
    assert driver.events[-1] == ("gone",)


def test_pipelined_bytes_past_the_bound_pause_reading() -> None:
    driver = ServerDriver(auto=False).feed(GET)
    driver.feed(b"GET /" + b"a" * 70000)
    assert driver.paused
    driver.codec.send_local(200, b"")
    assert not driver.paused
    assert driver.statuses() == [OK, 414]


def test_drain_closes_idle_connections_and_busy_ones_after_their_response() -> None:
    idle = ServerDriver().feed(GET)
    idle.codec.drain()
    assert idle.closed
    busy = ServerDriver(auto=False).feed(GET)
    busy.codec.drain()
    assert not busy.closed
    busy.codec.send_local(200, b"")
    assert busy.closed and b"connection: close" in busy.written


def test_upgrade_with_a_body_is_forwarded_without_the_upgrade() -> None:
    """A switch after a body would make its rest tunnel bytes: the upgrade is dropped."""
    driver = ServerDriver(auto=False).feed(
        b"POST /form HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    request = driver.requests[0]
    assert request.upgrade is None and request.length == 5
    assert driver.events[-2:] == [("data", b"hello"), ("end",)]


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 10", b"Transfer-Encoding: chunked", b"Content-Length: 1"]
)
def test_a_promised_body_that_never_comes_gets_408(framing: bytes) -> None:
    driver = ServerDriver(DataPlaneSettings(idle_timeout=5.0), auto=False)
    driver.feed(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n" + framing + b"\r\n\r\n")
    driver.clock.advance(4)
    assert not driver.closed
    driver.clock.advance(2)
    assert driver.statuses() == [408] and driver.closed and driver.events[-1] == ("gone",)


def test_a_head_trickled_byte_by_byte_parses_once_complete() -> None:
    data = b"GET /t HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 3000 + b"\r\n\r\n"
    driver = ServerDriver().feed(*(data[i : i + 1] for i in range(len(data))))
    assert driver.events == [("request", b"GET", b"a", b"/t"), ("end",)]
    assert driver.statuses() == [200]
    bad = ServerDriver().feed(
        *(b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n"[i : i + 1] for i in range(30))
    )
    assert bad.statuses() == [400] and bad.closed
    limits = DataPlaneSettings(max_request_line=100, max_header_bytes=400)
    line = b"GET /" + b"a" * 150
    long_line = ServerDriver(limits).feed(*(line[i : i + 7] for i in range(0, len(line), 7)))
    assert long_line.statuses() == [414]
    big = ServerDriver(limits).feed(b"GET / HTTP/1.1\r\n", *[b"X-A: b\r\n"] * 60)
    assert big.statuses() == [431]


def test_pipelined_requests_wait_while_the_client_reads_no_answers() -> None:
    driver = ServerDriver()
    driver.unread = True  # the client's socket buffer is full
    driver.feed(GET + b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n" + b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert driver.statuses() == [200] and driver.paused
    assert [e for e in driver.events if e[0] == "request"] == [
        ("request", b"GET", b"a.example", b"/")
    ]
    driver.client_reads()
    assert driver.statuses() == [200, 200, 200] and not driver.closed


def test_half_close_after_a_request_is_answered_then_closed() -> None:
    driver = ServerDriver(auto=False).feed(GET)
    driver.codec.receive_eof()
    assert not driver.closed
    driver.codec.send_local(200, b"ok")
    assert driver.statuses() == [200] and driver.closed
    pipelined = ServerDriver(auto=False).feed(GET + GET)
    pipelined.codec.receive_eof()
    pipelined.codec.send_local(200, b"")
    assert not pipelined.closed  # the second request is answered too
    pipelined.codec.send_local(200, b"")
    assert pipelined.statuses() == [200, 200] and pipelined.closed
    partial = ServerDriver().feed(b"GET / HTTP/1.1\r\nHo")
    partial.codec.receive_eof()
    assert partial.closed and partial.written == b""


def test_the_line_cache_is_bounded_and_never_vouches_for_a_bad_line() -> None:
    from twistgw.dataplane.http.h1 import heads

    for index in range(heads.MAX_CACHED_LINES + 50):
        ServerDriver().feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-N: %d\r\n\r\n" % index)
    assert len(heads._LINES) <= heads.MAX_CACHED_LINES
    ServerDriver().feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"v" * 500 + b"\r\n\r\n")
    assert all(len(line) <= heads.MAX_CACHED_LINE for line in heads._LINES)
    ServerDriver().feed(GET)  # its lines are cached now
    bad = ServerDriver().feed(b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Bad: a\x00b\r\n\r\n")
    assert bad.statuses() == [400]


def test_an_early_answer_drops_the_rest_of_the_body_and_keeps_the_connection() -> None:
    """A backend that answers before the body has all come (its answer promised no
    close): the rest is read and dropped, and the next request is served."""
    driver = ServerDriver(auto=False)
    driver.feed(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    codec = driver.codec
    codec.send_response(Response(200, [], 2))
    codec.send_data(b"ok")
    codec.send_end()
    assert not driver.closed and b"connection: close" not in driver.written
    driver.feed(b"defghij", GET)
    assert [e for e in driver.events if e[0] == "data"] == [("data", b"abc")]
    assert driver.events[-2:] == [("request", b"GET", b"a.example", b"/"), ("end",)]


def test_a_dropped_body_that_stalls_ends_in_a_close_not_a_second_answer() -> None:
    driver = ServerDriver(DataPlaneSettings(idle_timeout=5.0), auto=False)
    driver.feed(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    driver.codec.send_response(Response(200, [], 0))
    driver.codec.send_end()
    driver.clock.advance(6)
    assert driver.closed and driver.statuses() == [200]


def test_an_early_answer_to_a_large_body_closes() -> None:
    driver = ServerDriver(auto=False)
    driver.feed(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\n\r\nabc")
    driver.codec.send_response(Response(200, [], 0))
    driver.codec.send_end()
    assert driver.closed


def test_a_drain_during_a_dropped_body_closes_once_it_has_come() -> None:
    driver = ServerDriver(auto=False)
    driver.feed(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
    driver.codec.send_response(Response(200, [], 0))
    driver.codec.send_end()
    driver.codec.drain()
    assert not driver.closed
    driver.feed(b"cdefghij")
    assert driver.closed


def test_a_malformed_chunk_in_a_dropped_body_closes_without_a_second_answer() -> None:
    driver = ServerDriver(auto=False)
    driver.feed(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab")
    driver.codec.send_response(Response(200, [], 0))
    driver.codec.send_end()
    assert not driver.closed
    driver.feed(b"c\r\nzz\r\n")
    assert driver.closed and driver.statuses() == [200]
    assert driver.refusals == [400]


def test_shedding_closes_kept_alive_connections_but_not_fresh_ones() -> None:
    fresh = ServerDriver()
    assert not fresh.codec.close_if_idle(fresh=False) and not fresh.closed
    kept = ServerDriver().feed(GET)
    assert kept.statuses() == [200] and not kept.closed
    assert kept.codec.close_if_idle(fresh=False) and kept.closed
    assert ServerDriver().codec.close_if_idle()  # a drain closes both

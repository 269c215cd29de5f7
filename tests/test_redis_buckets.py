"""Rate-limit buckets in Redis: the RESP parser and the client without sockets (on a
memory reactor), then RedisBuckets against a real ``redis-server`` in scripts with a
reactor of their own (skipped when there is no ``redis-server``, unless
TWISTGW_REQUIRE_REDIS=1)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from hashlib import blake2b

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from tests.support.certs import CA
from tests.support.checks import run_check
from tests.support.redisserver import RedisServer, redis_server_path
from twistgw.dataplane.ratelimit import Decision, decide
from twistgw.dataplane.redisbuckets import SCRIPT, SCRIPT_SHA, RedisBuckets
from twistgw.dataplane.redisclient import (
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_REPLY,
    ProtocolError,
    RedisAddress,
    RedisClient,
    RedisUnavailable,
    ReplyError,
    RespParser,
    encode_command,
    parse_url,
)

# -- the RESP parser


def plain(value):
    """A reply with its errors made comparable."""
    if isinstance(value, ReplyError):
        return ("error", value.message)
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


REPLIES = [
    (b"+OK\r\n", ["OK"]),
    (b"+\r\n", [""]),
    (b"-ERR wrong type\r\n", [("error", "ERR wrong type")]),
    (b":0\r\n", [0]),
    (b":-42\r\n", [-42]),
    (b"$5\r\nhello\r\n", [b"hello"]),
    (b"$0\r\n\r\n", [b""]),
    (b"$6\r\nhe\r\nlo\r\n", [b"he\r\nlo"]),
    (b"$-1\r\n", [None]),
    (b"*0\r\n", [[]]),
    (b"*-1\r\n", [None]),
    (b"*3\r\n:1\r\n$1\r\na\r\n*2\r\n+x\r\n-E\r\n", [[1, b"a", ["x", ("error", "E")]]]),
    (b"*1\r\n" * MAX_DEPTH + b":7\r\n", [[[[[7]]]]]),
    (b"+A\r\n:1\r\n$1\r\nb\r\n", ["A", 1, b"b"]),
]


@pytest.mark.parametrize(("data", "expected"), REPLIES)
def test_replies_read_whole_and_split_at_every_byte(data: bytes, expected: list) -> None:
    assert plain(RespParser().feed(data)) == expected
    for cut in range(1, len(data)):
        parser = RespParser()
        assert plain(parser.feed(data[:cut]) + parser.feed(data[cut:])) == expected
    parser = RespParser()
    assert plain([reply for byte in data for reply in parser.feed(bytes([byte]))]) == expected


REFUSED = [
    b"$%d\r\n" % (MAX_REPLY + 1),  # refused before its bytes come
    b"*2\r\n$%d\r\n%s\r\n$%d\r\n" % (MAX_REPLY // 2, b"x" * (MAX_REPLY // 2), MAX_REPLY // 2),
    b"+" + b"a" * (MAX_REPLY + 1),  # a line that never ends
    b"*%d\r\n" % (MAX_ITEMS + 1),
    b"*2\r\n*%d\r\n" % (MAX_ITEMS - 1),  # items of every level count
    b"*1\r\n" * (MAX_DEPTH + 1) + b":1\r\n",
    b":12a\r\n",
    b": 1\r\n",
    b":1_000\r\n",
    b":%d\r\n" % 10**25,
    b"$-2\r\n",
    b"*-2\r\n",
    b"$1\r\nab\r\n",
    b"!3\r\nabc\r\n",
]


@pytest.mark.parametrize("data", REFUSED)
def test_replies_out_of_bounds_or_malformed_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        RespParser().feed(data)


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert (
        encode_command([b"GET", b"a\r\nb", b""]) == b"*3\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n$0\r\n\r\n"
    )


# -- URLs


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://localhost", RedisAddress("localhost")),
        ("redis://10.0.0.1:6380/3", RedisAddress("10.0.0.1", 6380, db=3)),
        ("redis://:s%40cret@redis:7000", RedisAddress("redis", 7000, password="s@cret")),
        ("redis://gw:pw@redis/", RedisAddress("redis", username="gw", password="pw")),
        ("rediss://redis.example", RedisAddress("redis.example", tls=True)),
    ],
)
def test_urls(url: str, address: RedisAddress) -> None:
    assert parse_url(url) == address


@pytest.mark.parametrize(
    "url",
    ["http://redis", "redis://", "redis://redis/db0", "redis://redis:port", "redis://r/?db=1"],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_the_password_stays_out_of_reprs() -> None:
    assert "pw" not in repr(parse_url("redis://:pw@redis"))


# -- the client on a memory reactor


class Server:
    """The client's side of its connections: what it wrote, and replies to feed it."""

    def __init__(self, url: str = "redis://127.0.0.1:6379", **options) -> None:
        self.reactor = MemoryReactorClock()
        self.client = RedisClient(url, self.reactor, **options)
        self.client.start()

    def accept(self):
        """The connection the client asked for last, made."""
        _, _, factory, _, _ = self.reactor.tcpClients[-1]
        self.connection = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        return self.connection

    def written(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def lose(self) -> None:
        self.connection.connectionLost(Failure(ConnectionDone()))


def results(deferred) -> list:
    found: list = []
    deferred.addBoth(found.append)
    return found


def test_logs_in_and_selects_before_answering() -> None:
    server = Server("redis://gw:pw@127.0.0.1:6379/2")
    server.accept()
    assert server.written() == encode_command([b"AUTH", b"gw", b"pw"]) + encode_command(
        [b"SELECT", b"2"]
    )
    early = results(server.client.execute(b"PING"))
    assert not server.client.connected and early[0].check(RedisUnavailable)
    server.connection.dataReceived(b"+OK\r\n+OK\r\n")
    assert server.client.connected
    assert results(server.client.execute(b"PING")) == []  # sent, waiting
    assert server.written() == encode_command([b"PING"])


def test_a_refused_login_drops_the_connection_and_tries_again() -> None:
    server = Server("redis://:wrong@127.0.0.1:6379")
    server.accept()
    server.connection.dataReceived(b"-WRONGPASS invalid username-password pair\r\n")
    assert server.transport.disconnected and not server.client.connected
    server.lose()
    server.reactor.advance(0.1)
    assert len(server.reactor.tcpClients) == 2


def test_reconnection_waits_double_up_to_five_seconds_and_reset_once_connected() -> None:
    server = Server()
    waits = []
    for _ in range(9):
        _, _, factory, _, _ = server.reactor.tcpClients[-1]
        factory.clientConnectionFailed(None, Failure(ConnectionDone()))
        [retry] = server.reactor.getDelayedCalls()
        waits.append(retry.getTime() - server.reactor.seconds())
        server.reactor.advance(waits[-1])
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])
    assert len(server.reactor.tcpClients) == 10
    server.accept()  # no password: ready at once
    assert server.client.connected
    server.lose()
    assert not server.client.connected
    server.reactor.advance(0.1)
    assert len(server.reactor.tcpClients) == 11


def test_replies_match_commands_in_order_also_after_a_timeout() -> None:
    server = Server(timeout=0.25)
    server.accept()
    late = results(server.client.execute(b"GET", b"a"))
    server.reactor.advance(0.25)
    assert late[0].check(RedisUnavailable)
    first = results(server.client.execute(b"GET", b"b"))
    second = results(server.client.execute(b"GET", b"c"))
    assert server.written().count(b"GET") == 3  # pipelined
    server.connection.dataReceived(b"$1\r\na\r\n$1\r\nb\r\n-ERR c\r\n")
    assert first == [b"b"]
    assert second[0].check(ReplyError) and second[0].value.message == "ERR c"
    assert len(late) == 1 and server.client.connected


def test_too_many_waiting_fail_at_once() -> None:
    server = Server(max_waiting=3)
    server.accept()
    waiting = [results(server.client.execute(b"PING")) for _ in range(3)]
    over = results(server.client.execute(b"PING"))
    assert waiting == [[], [], []] and over[0].check(RedisUnavailable)
    server.connection.dataReceived(b"+PONG\r\n")
    assert results(server.client.execute(b"PING")) == []


def test_a_connection_without_replies_for_long_is_dropped() -> None:
    server = Server(timeout=0.25, dead_after=5.0)
    server.accept()
    server.client.execute(b"PING").addErrback(lambda _: None)
    server.reactor.advance(0.25)
    assert not server.transport.disconnected  # a slow reply is still read past
    server.reactor.advance(4.75)
    server.client.execute(b"PING").addErrback(lambda _: None)
    server.reactor.advance(0.25)
    assert server.transport.disconnected


def test_a_protocol_error_drops_the_connection_and_fails_what_waits() -> None:
    server = Server()
    server.accept()
    waiting = results(server.client.execute(b"PING"))
    server.connection.dataReceived(b"*1\r\n" * (MAX_DEPTH + 1))
    assert server.transport.disconnected
    assert results(server.client.execute(b"PING"))[0].check(RedisUnavailable)  # at once
    server.lose()
    assert waiting[0].check(RedisUnavailable) and not server.client.connected


def test_a_reply_to_no_command_drops_the_connection() -> None:
    server = Server()
    server.accept()
    server.connection.dataReceived(b"+unasked\r\n")
    assert server.transport.disconnected


def test_stopped_it_connects_no_more() -> None:
    server = Server()
    server.accept()
    server.client.stop()
    server.lose()
    server.reactor.advance(60)
    assert len(server.reactor.tcpClients) == 1


def test_rediss_connects_through_tls() -> None:
    server = Server("rediss://redis.example:6380")
    host, port, factory, _, _ = server.reactor.tcpClients[-1]
    assert (host, port) == ("redis.example", 6380)
    assert isinstance(factory, TLSMemoryBIOFactory)


# -- RedisBuckets without a server


def test_a_take_runs_the_script_and_loads_it_when_redis_lacks_it() -> None:
    server = Server()
    server.accept()
    buckets = RedisBuckets(server.client)
    decided = results(buckets.take(b"client 1", 10.0, 3, 100.0))
    name = b"twistgw:rl:" + blake2b(b"client 1", digest_size=16).hexdigest().encode()
    args = [name, b"100.0", b"10.0", b"3", b"31000"]
    assert server.written() == encode_command([b"EVALSHA", SCRIPT_SHA, b"1", *args])
    server.connection.dataReceived(b"-NOSCRIPT No matching script.\r\n")
    assert server.written() == encode_command([b"EVAL", SCRIPT, b"1", *args])
    server.connection.dataReceived(b"$5\r\n120.5\r\n")
    assert decided == [decide(120.5, 100.0, 10.0, 3)]
    assert buckets.failures == 0


def test_a_take_redis_cannot_answer_is_none_and_counted() -> None:
    server = Server()
    buckets = RedisBuckets(server.client)
    assert results(buckets.take(b"k", 1.0, 1, 0.0)) == [None]  # not connected yet
    server.accept()
    odd = results(buckets.take(b"k", 1.0, 1, 0.0))
    refused = results(buckets.take(b"k", 1.0, 1, 0.0))
    server.connection.dataReceived(b"*0\r\n-OOM command not allowed\r\n")
    assert odd == [None] and refused == [None]
    assert buckets.failures == 3


# -- against a real redis-server


@pytest.fixture(scope="module")
def redis_binary() -> str:
    path = redis_server_path()
    if path is None:
        if os.environ.get("TWISTGW_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not on PATH, and TWISTGW_REQUIRE_REDIS=1")
        pytest.skip("redis-server is not on PATH")
    return path


@pytest.fixture(scope="module")
def redis(redis_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(str(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


def decision(values: list | None) -> Decision | None:
    return None if values is None else Decision(*values)


def test_a_burst_then_refusals_then_refills(redis: RedisServer) -> None:
    found = run_check("redis_check.py", "basics", redis.url)
    allowed, refused = Decision(True, 0, 30.0), Decision(False, 0, 30.0, 10.0)
    assert [decision(taken) for taken in found["taken"]] == [
        Decision(True, 2, 10.0),  # at 100, 100, 100: the burst
        Decision(True, 1, 20.0),
        allowed,
        refused,  # at 100
        Decision(False, 0, 25.0, 5.0),  # at 105
        allowed,  # at 110: one refilled
        refused,
    ]
    assert decision(found["other"]) == Decision(True, 2, 10.0)  # keys apart
    assert [len(key) for key in found["keys"]] == [len("twistgw:rl:") + 32] * 2
    assert 0 < found["ttl"] <= 31_000  # the window and a second
    assert decision(found["after_flush"]) == Decision(True, 2, 10.0)  # the script reloaded
    assert found["failures"] == 0


def test_the_same_answers_as_the_shared_memory_buckets(redis: RedisServer) -> None:
    found = run_check("redis_check.py", "compare", redis.url)
    assert found["failures"] == 0
    refusals = 0
    for remote, local in found["pairs"]:
        assert remote[:2] == local[:2]
        assert remote[2:] == pytest.approx(local[2:])
        refusals += not local[0]
    assert 0 < refusals < len(found["pairs"])


def test_two_clients_share_one_bucket_exactly(redis: RedisServer) -> None:
    found = run_check("redis_check.py", "shared", redis.url)
    assert found == {"allowed": 50, "remaining": list(range(50)), "failures": 0}


def test_redis_away_answers_none_then_reconnects(redis_binary: str) -> None:
    found = run_check("redis_check.py", "restart")
    assert found["before"] == [True, 4, 10.0, 0.0]
    assert found["while_down"] is None and found["down_for_a_while"] is None
    assert found["took"] < 10  # (the command timeout is 2 s)
    assert found["reconnected"]
    assert found["after"] == [True, 4, 10.0, 0.0]  # a new server: an empty bucket
    assert found["failures"] == 2


def test_a_password_protected_server(redis_binary: str, tmp_path) -> None:
    server = RedisServer(str(tmp_path), password="s3cret").start()
    try:
        found = run_check("redis_check.py", "login", server.url, "s3cret")
    finally:
        server.stop()
    assert found["right"] == {"connected": True, "decision": [True, 4, 10.0, 0.0], "failures": 0}
    assert found["none"] == {"connected": True, "decision": None, "failures": 1}  # NOAUTH
    assert found["wrong"] == {"connected": False, "decision": None, "failures": 1}


def test_a_server_that_never_answers_times_out() -> None:
    found = run_check("redis_check.py", "silent")
    assert found["first"] is None and found["more"] == [None] * 5
    assert found["received"] > 0
    assert 0.2 < found["took"] < 10  # (the command timeout is 0.25 s)
    assert found["failures"] == 6


def test_rediss_with_a_private_ca(redis_binary: str, tmp_path) -> None:
    ca = CA()
    certificate, key = ca.issue("localhost")
    files = {}
    for name, data in (("ca.pem", ca.pem), ("cert.pem", certificate), ("key.pem", key)):
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    server = RedisServer(str(tmp_path), tls=(str(files["cert.pem"]), str(files["key.pem"])))
    server.start()
    try:
        found = run_check("redis_check.py", "tls", server.url, str(files["ca.pem"]))
    finally:
        server.stop()
    assert found == {"decision": [True, 4, 10.0, 0.0]}

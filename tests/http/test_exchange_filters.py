"""Filter plugins in the exchange without sockets (an HTTP/1.1 client connection on a
fake transport, ``task.Clock`` for the timers): a filter that asks for the request body
gets it whole, within its limit (413 past it, 408 when it stalls, 503 when the worker
reads too many at once), and may replace it; on_response may wait on a Deferred (the
backend's bytes held meanwhile) and give a body rewriter; a rewriter that fails cuts
the response short; filters a new table drops are closed; a backendRef's filters run
on each attempt sent to it, after the rule's."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred

from tests.http.test_exchange_resilience import _gateway, response
from twistgw.dataplane.http import pyfilters
from twistgw.dataplane.http.policies import CHECK_TIMEOUT
from twistgw.dataplane.http.pyfilters import RESPONSE_TIMEOUT, FilterRegistry
from twistgw.dataplane.http.router import CompiledRoute
from twistgw.extensions.filters import Answer, Fields
from twistgw.metrics import Metrics
from twistgw.routing import ir


class BodyFilter:
    """Sees the body (at most ``request_body_limit``); "replace" in the config makes it
    send that instead, "refuse" answers 400 to a body holding that text."""

    def __init__(self, config: dict) -> None:
        self.request_body_limit = config.get("limit", 16)
        self.config = config
        self.seen: list[bytes | None] = []

    def on_request(self, request):
        self.seen.append(request.body)
        if "replace" in self.config:
            request.body = self.config["replace"].encode()
        if "refuse" in self.config and self.config["refuse"].encode() in request.body:
            return Answer(400, b"refused\n")
        return None


class HeadFilter:
    """Has no request_body_limit; ``config`` says what it does to the response:
    "wait" (a Deferred the test fires), "upper" (a rewriter), "status", "body"
    (sets request.body, which it may not)."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.waiting: list[Deferred] = []
        self.closed = False

    def on_request(self, request):
        request.notes["seen"] = request.target
        if self.config.get("body"):
            request.body = b"x"
        return None

    def on_response(self, request, response):
        response.headers.set("x-seen", request.notes["seen"])
        if "status" in self.config:
            response.status = self.config["status"]
        rewriter = Upper(self.config.get("fail_after")) if self.config.get("upper") else None
        if self.config.get("wait"):
            self.waiting.append(Deferred())
            return self.waiting[-1].addCallback(lambda _: rewriter)
        return rewriter

    def close(self) -> None:
        self.closed = True


class Upper:
    """Upper-cases the body, ends it with "!"; fails after ``fail_after`` chunks."""

    def __init__(self, fail_after: int | None) -> None:
        self.left = fail_after

    def data(self, chunk: bytes) -> bytes:
        if self.left is not None:
            if self.left == 0:
                raise RuntimeError("rewriter broke")
            self.left -= 1
        return chunk.upper()

    def end(self) -> bytes:
        return b"!"


class Plugin:
    def __init__(self, kind) -> None:
        self.kind = kind
        self.made: list = []

    def make(self, config: dict):
        self.made.append(self.kind(config))
        return self.made[-1]


def _with(plugin_kind, **config):
    plugin = Plugin(plugin_kind)
    spec = ir.PythonFilter("default/f", "p", json.dumps(config, sort_keys=True))
    clock, pool, client, protocol = _gateway(filters=ir.Filters(python=(spec,)))
    registry = FilterRegistry({"p": plugin}, protocol.factory.metrics)
    protocol.factory.guards.filters = registry
    return clock, pool, client, protocol, plugin


def _post(body: bytes, *fields: bytes, length: int | None = None) -> bytes:
    head = b"POST /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n" % (
        len(body) if length is None else length
    )
    return head + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def _failures(protocol) -> float:
    return protocol.factory.metrics.filter_failures.labels("p")._value.get()


def test_a_filter_gets_the_whole_body_before_the_backend_is_asked() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter)
    protocol.dataReceived(_post(b"hello world")[:-5])
    assert not pool.backends and plugin.made[0].seen == []  # (not called yet)
    protocol.dataReceived(b"world")
    assert plugin.made[0].seen == [b"hello world"]
    assert pool.backends[0].transport.data.endswith(b"\r\n\r\nhello world")


def test_a_filter_may_replace_the_body_and_the_backend_gets_its_length() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter, replace="short")
    protocol.dataReceived(_post(b"a longer body"))
    sent = pool.backends[0].transport.data
    assert b"content-length: 5\r\n" in sent.lower() and sent.endswith(b"\r\n\r\nshort")


def test_a_chunked_body_is_read_whole_and_sent_on() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter)
    protocol.dataReceived(
        b"POST /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    assert plugin.made[0].seen == [b"abcde"]
    assert pool.backends[0].transport.data.endswith(b"\r\n\r\n5\r\nabcde\r\n0\r\n\r\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        _post(b"", length=17),  # its length says so: refused before it is sent
        b"POST /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n0123456789abcdef\r\n1\r\nx\r\n",  # chunks that grow past it
        b"POST /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n",  # and end in the same read
    ],
)
def test_a_body_past_the_limit_is_answered_413(request_bytes) -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter, limit=16)
    protocol.dataReceived(request_bytes)
    assert client.data.startswith(b"HTTP/1.1 413 ") and not pool.backends
    assert plugin.made == [] or plugin.made[0].seen == []


def test_a_client_that_expects_100_continue_is_asked_for_the_body() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter)
    protocol.dataReceived(_post(b"", b"Expect: 100-continue", length=4))
    assert client.data == b"HTTP/1.1 100 Continue\r\n\r\n" and not pool.backends
    protocol.dataReceived(b"body")
    assert plugin.made[0].seen == [b"body"] and len(pool.backends) == 1


def test_a_body_that_stalls_is_answered_408() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter)
    protocol.dataReceived(_post(b"par", length=10))
    clock.advance(CHECK_TIMEOUT)
    assert client.data.startswith(b"HTTP/1.1 408 ") and not pool.backends


def test_a_worker_reading_too_many_bodies_answers_503(monkeypatch) -> None:
    monkeypatch.setattr(pyfilters, "MAX_BODIES_READING", 20)
    clock, pool, client, protocol, plugin = _with(BodyFilter, limit=16)
    protocol.factory.guards.filters.reading = 11  # (another request's body is coming)
    protocol.dataReceived(_post(b"par", length=10))
    assert client.data.startswith(b"HTTP/1.1 503 ")


def test_the_reservation_ends_with_the_body_or_the_exchange() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter)
    registry = protocol.factory.guards.filters
    protocol.dataReceived(_post(b"par", length=10))
    assert registry.reading == 10  # (its length: less than the filter's limit)
    protocol.dataReceived(b"t of it")
    assert registry.reading == 0
    clock, pool, client, protocol, plugin = _with(BodyFilter)
    registry = protocol.factory.guards.filters
    protocol.dataReceived(_post(b"par", length=10))
    protocol.connectionLost(None)  # the client left mid-body
    assert registry.reading == 0


def test_a_filter_that_answers_on_the_body_answers() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter, refuse="evil")
    protocol.dataReceived(_post(b"an evil body"))
    assert client.data.startswith(b"HTTP/1.1 400 ") and not pool.backends


def test_a_filter_without_a_body_limit_cannot_set_the_body() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, body=True)
    protocol.dataReceived(_post(b"data"))
    assert client.data.startswith(b"HTTP/1.1 500 ") and _failures(protocol) == 1


def test_on_response_sees_notes_and_may_rewrite_the_body() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, upper=True)
    protocol.dataReceived(_post(b""))
    pool.backends[0].dataReceived(response(200, b"quiet"))
    assert b"x-seen: /x\r\n" in client.data.lower()
    assert b"transfer-encoding: chunked" in client.data.lower()  # (its length is unknown)
    assert client.data.endswith(b"5\r\nQUIET\r\n1\r\n!\r\n0\r\n\r\n")


def test_a_waiting_on_response_holds_the_backends_bytes_until_it_fires() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, wait=True, upper=True)
    protocol.dataReceived(_post(b""))
    backend = pool.backends[0]
    backend.dataReceived(response(200, b"quiet"))  # the whole response, held
    assert client.data == b""
    plugin.made[0].waiting[0].callback(None)
    assert client.data.startswith(b"HTTP/1.1 200 ")
    assert client.data.endswith(b"5\r\nQUIET\r\n1\r\n!\r\n0\r\n\r\n")


def test_an_on_response_that_never_answers_is_answered_504() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, wait=True)
    protocol.dataReceived(_post(b""))
    pool.backends[0].dataReceived(response(200, b"late"))
    clock.advance(RESPONSE_TIMEOUT)
    assert client.data.startswith(b"HTTP/1.1 504 ")
    plugin.made[0].waiting[0].callback(None)  # too late: nothing more is sent
    assert client.data.count(b"HTTP/1.1 ") == 1


def test_a_rewriter_that_fails_mid_body_cuts_the_response_short() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, upper=True, fail_after=1)
    protocol.dataReceived(_post(b""))
    backend = pool.backends[0]
    backend.dataReceived(b"HTTP/1.1 200 X\r\nContent-Length: 6\r\n\r\nabc")
    assert client.data.endswith(b"3\r\nABC\r\n")
    backend.dataReceived(b"def")
    assert client.aborted and backend.transport.aborted and _failures(protocol) == 1


@pytest.mark.parametrize(
    "status, code", [(418, b"418"), (99, b"500"), ("200", b"500"), (204, b"500"), (304, b"500")]
)
def test_on_response_may_change_the_status_to_a_final_one(status, code) -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, status=status)
    protocol.dataReceived(_post(b""))
    pool.backends[0].dataReceived(response(200, b"ok"))
    assert client.data.startswith(b"HTTP/1.1 " + code + b" ")


def test_a_filter_the_new_table_drops_is_closed() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter)
    protocol.dataReceived(_post(b""))
    made = plugin.made[0]
    protocol.factory.guards.filters.new_table(ir.RoutingTable())
    assert made.closed and protocol.factory.guards.filters.made == {}


class AttemptFilter:
    """Counts the attempts it sees in a request field; "answer" answers 403;
    ``on_response`` notes the order of filters in a response field."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.attempts = 0
        self.request_body_limit = config.get("limit", 0)

    def on_request(self, request):
        self.attempts += 1
        request.headers.add("x-attempt", str(self.attempts))
        if self.config.get("answer"):
            return Answer(403, b"not this backend\n")
        return None

    def on_response(self, request, response):
        response.headers.add("x-order", self.config.get("name", "?"))


def _with_backend_filters(rule: dict | None, own: dict, retry: ir.Retry | None = None):
    """A rule (with ``rule``'s config for a filter, if given) whose one backendRef has a
    filter of ``own``'s config."""
    plugin = Plugin(AttemptFilter)

    def spec(name: str, config: dict) -> ir.PythonFilter:
        return ir.PythonFilter(f"default/{name}", "p", json.dumps(config, sort_keys=True))

    clock, pool, client, protocol = _gateway(
        backend_filters=ir.Filters(python=(spec("own", own),)),
        filters=ir.Filters(python=(spec("rule", rule),) if rule is not None else ()),
        retry=retry,
    )
    protocol.factory.guards.filters = FilterRegistry({"p": plugin}, protocol.factory.metrics)
    return clock, pool, client, protocol, plugin


def test_a_backends_filter_sets_fields_for_each_attempt_anew() -> None:
    retry = ir.Retry(attempts=1, codes=(503,), backoff=0.1)
    clock, pool, client, protocol, plugin = _with_backend_filters(None, {}, retry)
    protocol.dataReceived(_post(b""))
    assert b"\r\nx-attempt: 1\r\n" in pool.backends[0].transport.data
    pool.backends[0].dataReceived(response(503))
    clock.advance(0.1)
    sent = pool.backends[1].transport.data
    assert b"\r\nx-attempt: 2\r\n" in sent and sent.count(b"x-attempt") == 1
    pool.backends[1].dataReceived(response(200, b"ok"))
    assert client.data.startswith(b"HTTP/1.1 200 ")


def test_the_rules_filters_then_the_backends_see_the_response() -> None:
    clock, pool, client, protocol, plugin = _with_backend_filters({"name": "rule"}, {"name": "own"})
    protocol.dataReceived(_post(b""))
    assert pool.backends[0].transport.data.count(b"x-attempt") == 2  # (one from each)
    pool.backends[0].dataReceived(response(200, b"ok"))
    assert b"x-order: rule\r\nx-order: own\r\n" in client.data


@pytest.mark.parametrize("own, code", [({"answer": True}, b"403"), ({"limit": 10}, b"500")])
def test_a_backends_filter_answers_or_fails_without_the_body(own, code) -> None:
    clock, pool, client, protocol, plugin = _with_backend_filters(None, own)
    protocol.dataReceived(_post(b"data"))
    assert client.data.startswith(b"HTTP/1.1 " + code + b" ") and not pool.backends


def _spec(name: str, **config) -> ir.PythonFilter:
    return ir.PythonFilter(f"default/{name}", "p", json.dumps(config, sort_keys=True))


def _with_specs(kind, *specs: ir.PythonFilter, **route):
    plugin = Plugin(kind)
    route.setdefault("filters", ir.Filters(python=specs))
    clock, pool, client, protocol = _gateway(**route)
    protocol.factory.guards.filters = FilterRegistry({"p": plugin}, protocol.factory.metrics)
    return clock, pool, client, protocol, plugin


CHUNKED_100 = (
    b"POST /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"64\r\n" + b"y" * 100 + b"\r\n0\r\n\r\n"
)


def test_a_body_read_whole_for_one_filter_is_still_bound_by_the_next_ones_limit() -> None:
    clock, pool, client, protocol, plugin = _with_specs(
        BodyFilter, _spec("big", limit=1000), _spec("small", limit=16)
    )
    protocol.dataReceived(CHUNKED_100)
    assert client.data.startswith(b"HTTP/1.1 413 ") and plugin.made[1].seen == []


def test_a_body_of_known_length_reserves_its_length() -> None:
    clock, pool, client, protocol, plugin = _with(BodyFilter, limit=1024 * 1024)
    protocol.dataReceived(_post(b"", length=10))
    assert protocol.factory.guards.filters.reading == 10


def test_the_backend_is_read_again_once_on_response_has_answered() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, wait=True)
    protocol.dataReceived(_post(b""))
    backend = pool.backends[0]
    backend.dataReceived(b"HTTP/1.1 200 X\r\nContent-Length: 6\r\n\r\nabc")
    assert backend.transport.paused and client.data == b""
    plugin.made[0].waiting[0].callback(None)
    assert not backend.transport.paused and client.data.endswith(b"abc")
    backend.dataReceived(b"def")
    assert client.data.endswith(b"def")


UPGRADE = b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n"


def test_an_upgrade_waits_for_on_response_with_the_backends_first_bytes() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, wait=True)
    protocol.dataReceived(UPGRADE)
    backend = pool.backends[0]
    backend.dataReceived(b"HTTP/1.1 101 X\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\nhello")
    assert client.data == b""
    plugin.made[0].waiting[0].callback(None)
    assert client.data.startswith(b"HTTP/1.1 101 ") and client.data.endswith(b"hello")
    assert not backend.transport.paused


def test_a_response_a_filter_waits_on_is_not_retried() -> None:
    clock, pool, client, protocol, plugin = _with_specs(
        HeadFilter,
        _spec("f", wait=True),
        retry=ir.Retry(attempts=1, codes=(503,), backoff=0.1),
        timeouts=ir.Timeouts(backend_request=1.0),
    )
    protocol.dataReceived(_post(b""))
    pool.backends[0].dataReceived(b"HTTP/1.1 200 X\r\nContent-Length: 6\r\n\r\nfir")
    clock.advance(1.1)  # the backendRequest timeout, while the filter waits
    assert client.data.startswith(b"HTTP/1.1 504 ") and len(pool.backends) == 1
    plugin.made[0].waiting[0].callback(None)  # too late: nothing more is sent
    assert client.data.count(b"HTTP/1.1 ") == 1


class ReplacesFields(HeadFilter):
    """Puts a list in response.headers (a careless filter), at once or later."""

    def on_response(self, request, response):
        def replace(_=None):
            response.headers = [("x-a", "b")]

        if self.config.get("wait"):
            self.waiting.append(Deferred())
            return self.waiting[-1].addCallback(replace)
        return replace()


@pytest.mark.parametrize("wait", [False, True])
def test_a_response_filter_that_breaks_the_fields_answers_500(wait) -> None:
    clock, pool, client, protocol, plugin = _with(ReplacesFields, wait=wait)
    protocol.dataReceived(_post(b""))
    pool.backends[0].dataReceived(response(200, b"ok"))
    if wait:
        plugin.made[0].waiting[0].callback(None)
    assert client.data.startswith(b"HTTP/1.1 500 ") and _failures(protocol) == 1


def _two_backends(monkeypatch, **route):
    """Backends a (with a filter) and b (without), chosen in turn, and ``route``."""
    a = ir.Backend(
        "default/a:80",
        1,
        (ir.Endpoint("127.0.0.1", 9),),
        filters=ir.Filters(python=(_spec("own"),)),
    )
    b = ir.Backend("default/b:80", 1, (ir.Endpoint("127.0.0.2", 9),))
    turns = iter([0, 1])
    monkeypatch.setattr(CompiledRoute, "pick_backend", lambda self: self.backends.all[next(turns)])
    return _with_specs(AttemptFilter, backends=(a, b), **route)


def test_a_backends_filter_fields_go_to_that_backend_only(monkeypatch) -> None:
    mirror = ir.Backend("default/m:80", 1, (ir.Endpoint("127.0.0.3", 9),))
    clock, pool, client, protocol, plugin = _two_backends(
        monkeypatch,
        retry=ir.Retry(attempts=1, codes=(503,), backoff=0.1),
        filters=ir.Filters(mirrors=(ir.Mirror(mirror),)),
    )
    protocol.dataReceived(_post(b""))
    sent = {b.key[0].address: b for b in pool.backends}
    assert b"x-attempt: 1" in sent["127.0.0.1"].transport.data
    assert b"x-attempt" not in sent["127.0.0.3"].transport.data  # (the mirror's copy)
    sent["127.0.0.1"].dataReceived(response(503))
    clock.advance(0.1)
    assert b"x-attempt" not in pool.backends[-1].transport.data  # (retried on b)


def test_a_new_table_keeps_the_backend_filters_it_still_uses() -> None:
    plugin = Plugin(HeadFilter)
    clock, pool, client, protocol = _gateway(backend_filters=ir.Filters(python=(_spec("own"),)))
    registry = protocol.factory.guards.filters = FilterRegistry({"p": plugin}, Metrics())
    protocol.dataReceived(_post(b""))
    registry.new_table(ir.RoutingTable(binds=(protocol.factory.router.bind,)))
    assert not plugin.made[0].closed and registry.made


class Cancellable:
    """Deferreds with a canceller that notes which was cancelled."""

    cancelled: list[str] = []

    def __init__(self, config: dict) -> None:
        self.config = config

    def on_request(self, request):
        if self.config.get("request"):
            return Deferred(lambda _: Cancellable.cancelled.append("on_request"))
        return None

    def on_response(self, request, response):
        return Deferred(lambda _: Cancellable.cancelled.append("on_response"))


@pytest.mark.parametrize("where", ["on_request", "on_response"])
@pytest.mark.parametrize("ending", ["deadline", "client gone"])
def test_a_filters_deferred_is_cancelled_when_its_request_ends(where, ending) -> None:
    Cancellable.cancelled = []
    clock, pool, client, protocol, plugin = _with(Cancellable, request=where == "on_request")
    protocol.dataReceived(_post(b""))
    if where == "on_response":
        pool.backends[0].dataReceived(response(200, b"ok"))
    if ending == "deadline":
        clock.advance(CHECK_TIMEOUT)
        assert client.data.startswith(b"HTTP/1.1 50")  # (503 for a check, 504 a response)
    else:
        protocol.connectionLost(None)
    assert Cancellable.cancelled == [where]


def test_a_response_held_whole_is_not_timed_out_by_its_backend_request_timeout() -> None:
    clock, pool, client, protocol, plugin = _with_specs(
        HeadFilter, _spec("f", wait=True), timeouts=ir.Timeouts(backend_request=1.0)
    )
    protocol.dataReceived(_post(b""))
    pool.backends[0].dataReceived(response(200, b"whole"))
    clock.advance(1.1)
    assert client.data == b""
    plugin.made[0].waiting[0].callback(None)
    assert client.data.startswith(b"HTTP/1.1 200 ") and client.data.endswith(b"whole")


def test_a_backend_that_fails_while_its_response_is_held_is_answered_502() -> None:
    clock, pool, client, protocol, plugin = _with(HeadFilter, wait=True)
    protocol.dataReceived(_post(b""))
    backend = pool.backends[0]
    backend.dataReceived(b"HTTP/1.1 200 X\r\nContent-Length: 6\r\n\r\nabc")
    pool.forget = lambda connection: None  # (the test's pool keeps no count to forget)
    backend.connectionLost(None)
    assert client.data.startswith(b"HTTP/1.1 502 ") and not client.aborted


@pytest.mark.parametrize(
    "name, value",
    [
        ("x-a", "a\r\nx-admin: yes"),
        ("x-a", "nul\0"),
        ("x-a", "bell\x07"),
        ("x-a", "del\x7f"),
        ("x-a", "\x1b[31m"),
        ("x-a", " padded"),
        ("x-a", "snow\u2603"),
        ("x-a", "x" * 8193),
        ("x-a", 7),
        ("content-length", "1"),
        ("transfer-encoding", "chunked"),
        ("x a", "name with a space"),
        ("x-a\n", "a name ending in LF"),
    ],
)
def test_a_field_a_filter_sets_is_refused_if_the_wire_cannot_carry_it(name, value) -> None:
    fields = Fields([])
    with pytest.raises(ValueError):
        fields.add(name, value)
    assert fields.as_list() == []


def test_a_field_a_filter_sets_may_hold_latin1_text_and_tabs() -> None:
    fields = Fields([])
    fields.set("X-A", "caf\u00e9\tb")
    assert fields.as_list() == [(b"x-a", "caf\u00e9\tb".encode("latin-1"))]

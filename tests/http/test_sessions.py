"""Session persistence without sockets: the value's encoding and checks (tampering,
another key or rule, expiry on an injected clock, an endpoint no longer the rule's),
the bounds on what a request may make the gateway check, the response fields, and
the exchange pinning requests (and choosing anew when the pinned endpoint refuses)."""

from __future__ import annotations

import base64
import string

import pytest
from twisted.internet.task import Clock

from twistgw.dataplane.http import sessions
from twistgw.dataplane.http.router import CompiledBackend, Router
from twistgw.dataplane.http.server import HTTPProxyFactory, HTTPServerProtocol
from twistgw.dataplane.http.sessions import (
    MAX_CANDIDATES,
    VALUE_LENGTH,
    CompiledSession,
    SessionKeys,
)
from twistgw.metrics import Metrics
from twistgw.routing import ir

from .test_exchange_resilience import Pool, Transport, response

NOW = 1_700_000_000.0
A = ir.Endpoint("10.0.0.1", 8080)
B = ir.Endpoint("10.0.0.2", 8080)
C = ir.Endpoint("10.0.0.3", 8080)
KEYS = SessionKeys(b"k" * 32)


class CountingKeys(SessionKeys):
    """Keys that count the tags they make (the HMACs a request costs)."""

    def __init__(self) -> None:
        super().__init__(b"k" * 32)
        self.calls = 0

    def tag(self, scope: bytes, body: bytes) -> bytes:
        self.calls += 1
        return super().tag(scope, body)


def _backend(*endpoints: ir.Endpoint, name: str = "default/app:8080", weight: int = 1):
    return CompiledBackend(ir.Backend(name, weight, endpoints))


def _session(
    backends=None,
    keys: SessionKeys = KEYS,
    kind: str = "Cookie",
    name: str = "sid",
    scope: str = "HTTPRoute/default/r/[0]",
    **fields,
) -> CompiledSession:
    spec = ir.SessionPersistence(kind, name, scope, **fields)
    return CompiledSession(spec, backends if backends is not None else [_backend(A, B)], keys)


def _value(session: CompiledSession, endpoint: ir.Endpoint = A, now: float = NOW) -> bytes:
    backend, _ = next(m for m in session.members.values() if m[1] == endpoint)
    return session.seal(session.ids[(backend, endpoint)], now)


def test_a_value_names_its_endpoint_in_44_opaque_characters():
    session = _session()
    value = _value(session, B)
    assert len(value) == VALUE_LENGTH
    assert set(value.decode()) <= set(string.ascii_letters + string.digits + "-_")
    assert b"10.0.0.2" not in base64.urlsafe_b64decode(value)
    _, backend, endpoint = session.open(value, NOW + 1)
    assert (backend.name, endpoint) == ("default/app:8080", B)


def test_every_changed_character_makes_the_value_worthless():
    session = _session()
    value = _value(session)
    for i in range(len(value)):
        for char in b"A_-z0":
            forged = value[:i] + bytes((char,)) + value[i + 1 :]
            if forged != value:
                assert session.open(forged, NOW) is None, (i, chr(char))


def test_a_value_of_another_key_or_another_rule_is_worthless():
    value = _value(_session())
    assert _session().open(value, NOW) is not None
    assert _session(keys=SessionKeys(b"x" * 32)).open(value, NOW) is None
    assert _session(scope="HTTPRoute/default/r/[1]").open(value, NOW) is None


def test_a_valid_tag_on_an_id_that_is_no_endpoint_of_the_rule_is_not_followed():
    session = _session()
    for made_up in (b"\0" * 8, KEYS.endpoint_id("default/app:8080", C)):
        assert session.open(session.seal(made_up, NOW), NOW) is None


def test_the_absolute_timeout_counts_from_the_session_start_on_the_given_clock():
    session = _session(absolute_timeout=10.0)
    value = _value(session)
    assert session.open(value, NOW + 9.999) is not None
    assert session.open(value, NOW + 10.0) is None
    assert _session().open(value, NOW + 10 * 365 * 86400) is not None  # (no timeout)
    assert _session(absolute_timeout=0.0).open(value, NOW) is None  # "0s": over at once


def test_a_start_in_the_future_beyond_the_clock_slack_is_refused():
    session = _session()
    assert session.open(_value(session, now=NOW + 59), NOW) is not None
    assert session.open(_value(session, now=NOW + 61), NOW) is None


def test_an_endpoint_removed_from_the_rule_ends_its_sessions():
    value = _value(_session(), B)
    assert _session([_backend(A)]).open(value, NOW) is None
    assert _session([_backend(A, B)]).open(value, NOW) is not None


def test_a_backend_of_weight_zero_keeps_its_sessions_but_another_backend_does_not_inherit():
    old = _session([_backend(A, name="default/v1:8080"), _backend(B, name="default/v2:8080")])
    value = _value(old, A)
    drained = _session(
        [_backend(A, name="default/v1:8080", weight=0), _backend(B, name="default/v2:8080")]
    )
    assert drained.open(value, NOW)[2] == A
    # the same address under another Service is another endpoint
    assert _session([_backend(A, name="default/other:8080")]).open(value, NOW) is None


@pytest.mark.parametrize(
    "value",
    [b"", b"short", b"A" * 43, b"A" * 45, b"A" * 4096, b"!" * 44, b"=" * 44, b"A" * 42 + b"=="],
)
def test_values_of_the_wrong_shape_are_refused_before_any_hmac(value):
    keys = CountingKeys()
    assert _session(keys=keys).open(value, NOW) is None
    assert keys.calls == 0


def test_a_request_makes_at_most_a_few_values_checked():
    keys = CountingKeys()
    session = _session(keys=keys)
    forged = _value(session)[:-1] + b"x"  # (well formed: only its tag is wrong)
    junk = b"; ".join([b"sid=" + forged] * 1000)
    keys.calls = 0
    assert session.pinned([(b"cookie", junk), (b"cookie", junk)], NOW) is None
    assert keys.calls == MAX_CANDIDATES


def test_the_session_cookie_is_found_among_others_and_across_cookie_fields():
    session = _session()
    value = _value(session, B)
    headers = [
        (b"accept", b"*/*"),
        (b"cookie", b"theme=dark; xsid=" + _value(session, A)),
        (b"cookie", b"lang=en;sid=" + value + b"; other=1"),
    ]
    assert session.values(headers) == [value]
    assert session.pinned(headers, NOW)[2] == B
    # a damaged first value does not hide a valid second one
    both = [(b"cookie", b"sid=" + b"A" * 44 + b"; sid=" + value)]
    assert session.pinned(both, NOW)[2] == B


def test_a_session_header_is_read_by_its_lower_case_name():
    session = _session(kind="Header", name="X-Session")
    value = _value(session, B)
    assert session.pinned([(b"x-session", value)], NOW)[2] == B
    assert session.pinned([(b"cookie", b"X-Session=" + value)], NOW) is None


def test_the_cookie_starting_a_session():
    session = _session()
    backend = session.members[next(iter(session.members))][0]
    name, cookie = session.field(backend, A, None, NOW, secure=False)
    assert name == b"set-cookie"
    value, *attributes = cookie.split(b"; ")
    assert value.startswith(b"sid=") and session.open(value[4:], NOW)[2] == A
    assert attributes == [b"Path=/", b"HttpOnly", b"SameSite=Lax"]
    _, cookie = session.field(backend, A, None, NOW, secure=True)
    assert cookie.endswith(b"; HttpOnly; SameSite=Lax; Secure")
    # no new value when the client holds one for the endpoint that answered
    held = session.ids[(backend, A)]
    assert session.field(backend, A, held, NOW, secure=False) is None
    assert session.field(backend, B, held, NOW, secure=False) is not None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"permanent": True, "absolute_timeout": 5400.0}, b"; Max-Age=5400"),
        ({"permanent": True, "absolute_timeout": 1.5}, b"; Max-Age=2"),
        ({"permanent": False, "absolute_timeout": 5400.0}, None),
        ({"path": "/account"}, b"; Path=/account;"),
    ],
)
def test_cookie_attributes_follow_the_rule(fields, expected):
    session = _session(**fields)
    backend = session.members[next(iter(session.members))][0]
    _, cookie = session.field(backend, A, None, NOW, secure=False)
    if expected is None:
        assert b"Max-Age" not in cookie and b"Expires" not in cookie
    else:
        assert expected in cookie


def test_the_session_header_replaces_the_backends_own():
    session = _session(kind="Header", name="X-Session")
    backend = session.members[next(iter(session.members))][0]
    headers = [(b"content-type", b"text/plain"), (b"X-Session", b"backend's")]
    out = session.respond(headers, backend, A, None, NOW, secure=True)
    assert [name for name, _ in out] == [b"content-type", b"x-session"]
    assert session.open(dict(out)[b"x-session"], NOW)[2] == A


def test_keys_come_from_the_settings_hex_or_are_random():
    given = SessionKeys.from_hex("ab" * 32).endpoint_id("b", A)
    assert given == SessionKeys(b"\xab" * 32).endpoint_id("b", A)
    first, second = SessionKeys.from_hex(""), SessionKeys.from_hex("")
    assert first.endpoint_id("b", A) != second.endpoint_id("b", A)
    with pytest.raises(ValueError):
        SessionKeys(b"short")


# -- the exchange, on fake transports


class RefusingPool(Pool):
    """Connects at once, except to ``refused`` endpoints (connection refused)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.refused: set[ir.Endpoint] = set()
        self.endpoints: list[ir.Endpoint] = []

    def acquire(self, endpoint, exchange, tls=None, client_certificate=None, http2=False):
        self.endpoints.append(endpoint)
        if endpoint in self.refused:
            exchange.upstream_failed("connection refused")
            return
        super().acquire(endpoint, exchange, tls, client_certificate, http2)


def _gateway(session: ir.SessionPersistence):
    clock = Clock()
    clock.advance(NOW)
    pool = RefusingPool(clock)
    backend = ir.Backend("default/app:8080", 1, (A, B))
    route = ir.Route("default/r", 0, ir.Match(), backends=(backend,), session=session)
    listener = ir.HTTPListener(
        "default/gw/http", "default/gw", None, (ir.VirtualHost("*", (route,)),)
    )
    router = Router(ir.Bind("127.0.0.1", 8080, "HTTP", (listener,)), KEYS)
    factory = HTTPProxyFactory(router, pool, Metrics(), clock)
    return clock, pool, factory


def _exchange(factory, pool, headers: bytes = b"") -> bytes:
    """One request on a new connection; the backend answers 200; the client's bytes."""
    protocol = HTTPServerProtocol(factory)
    protocol.transport = client = Transport()
    protocol.connectionMade()
    protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: example.com\r\n" + headers + b"\r\n")
    if pool.backends and pool.backends[-1].exchange is not None:
        pool.backends[-1].dataReceived(response(200, b"ok"))
    return client.data


def _set_cookie(answer: bytes) -> bytes | None:
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"set-cookie: "):
            return line[len(b"set-cookie: ") :]
    return None


COOKIE = ir.SessionPersistence("Cookie", "sid", "HTTPRoute/default/r/[0]", 60.0)


def test_requests_with_the_cookie_keep_their_endpoint_and_get_no_new_one():
    clock, pool, factory = _gateway(COOKIE)
    first = _set_cookie(_exchange(factory, pool))
    assert first is not None and first.startswith(b"sid=")
    pinned = pool.endpoints[-1]
    pair = first.split(b";")[0]
    for _ in range(6):
        answer = _exchange(factory, pool, b"Cookie: " + pair + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ") and _set_cookie(answer) is None
        assert pool.endpoints[-1] == pinned
    _exchange(factory, pool)
    _exchange(factory, pool)
    assert set(pool.endpoints[-2:]) == {A, B}  # without it: round robin
    clock.advance(60)  # the absolute timeout: routed anew, with a new cookie
    assert _set_cookie(_exchange(factory, pool, b"Cookie: " + pair + b"\r\n")) is not None


def test_a_pinned_endpoint_refusing_the_connection_is_replaced_at_once():
    clock, pool, factory = _gateway(COOKIE)
    pair = _set_cookie(_exchange(factory, pool)).split(b";")[0]
    pinned = pool.endpoints[-1]
    pool.refused.add(pinned)
    answer = _exchange(factory, pool, b"Cookie: " + pair + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert pool.endpoints[-2:] == [pinned, ({A, B} - {pinned}).pop()]
    new = _set_cookie(answer)
    assert new is not None and new.split(b";")[0] != pair


def test_the_session_header_type_in_the_exchange():
    header = ir.SessionPersistence("Header", "X-Session", "HTTPRoute/default/r/[0]")
    clock, pool, factory = _gateway(header)
    answer = _exchange(factory, pool)
    value = next(
        line.split(b": ", 1)[1]
        for line in answer.split(b"\r\n")
        if line.lower().startswith(b"x-session: ")
    )
    pinned = pool.endpoints[-1]
    for _ in range(4):
        answer = _exchange(factory, pool, b"X-Session: " + value + b"\r\n")
        assert b"x-session" not in answer.lower()
        assert pool.endpoints[-1] == pinned


def test_sessions_module_documents_its_layout():
    assert sessions.BODY_LENGTH + sessions.TAG_LENGTH == 33
    assert len(base64.urlsafe_b64encode(b"\0" * 33)) == VALUE_LENGTH

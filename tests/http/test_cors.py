"""The CORS filter without sockets: origin matching (exact, ``*.`` wildcards, ports,
``*``) and the fields of preflights and actual requests, with and without credentials."""

from __future__ import annotations

import pytest

from twistgw.dataplane.http.cors import (
    MAX_ORIGIN,
    CompiledCORS,
    OriginMatcher,
    parse_origin,
    with_fields,
)
from twistgw.routing import ir


@pytest.mark.parametrize(
    ("origin", "parsed"),
    [
        ("https://www.foo.com", ("https", "www.foo.com", 443)),
        ("HTTP://Foo.COM:8080", ("http", "foo.com", 8080)),
        ("http://[::1]", ("http", "[::1]", 80)),
        ("http://[::1]:81", ("http", "[::1]", 81)),
        ("null", None),
        ("ftp://foo.com", None),
        ("https://", None),
        ("https://foo.com:", None),
        ("https://foo.com:123456", None),
        ("https://foo.com:8٠", None),  # (a digit, but not an ASCII one)
        ("https://foo.com/path", None),
        ("https://a@b.foo.com", None),  # userinfo
        ("https://evil.com?.foo.com", None),
        ("https://evil.com#.foo.com", None),
        ("https://evil.com .foo.com", None),
        ("https://*.foo.com", None),  # a pattern, not an origin
        ("http://[::1]x", None),
    ],
)
def test_parse_origin(origin: str, parsed) -> None:
    assert parse_origin(origin) == parsed


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://www.foo.com", True),
        ("https://WWW.FOO.COM:443", True),  # the default port is the same origin
        ("https://www.foo.com:8443", False),
        ("http://www.foo.com", False),
        ("https://www.bar.com", True),
        ("https://a.b.www.bar.com", True),  # greedy: any number of labels
        ("https://bar.com", False),  # the wildcard needs a label
        ("https://.bar.com", False),
        ("https://evilbar.com", False),
        ("https://www.bar.com.evil", False),
        ("http://anything:8080", True),
        ("http://anything", False),
        ("null", False),
        ("https://" + "a." * 200 + "bar.com", False),  # longer than any DNS name
    ],
)
def test_origin_matching(origin: str, allowed: bool) -> None:
    matches = OriginMatcher(("https://www.foo.com", "https://*.bar.com", "http://*:8080"))
    assert matches(origin) is allowed


def test_star_allows_every_origin() -> None:
    matches = OriginMatcher(("*",))
    assert matches("null") and matches("https://x" * MAX_ORIGIN)


def cors(**fields) -> CompiledCORS:
    return CompiledCORS(ir.CORS(**fields))


EXACT = {
    "allow_origins": ("https://www.foo.com", "https://*.bar.com"),
    "allow_methods": ("GET", "OPTIONS"),
    "allow_headers": ("x-header-1", "x-header-2"),
    "expose_headers": ("x-header-3", "x-header-4"),
    "allow_credentials": True,
    "max_age": 3600,
}


def preflight(filter_: CompiledCORS, origin: bytes, method=b"PUT", asked=None):
    headers = [(b"origin", origin), (b"access-control-request-method", method)]
    if asked is not None:
        headers.append((b"access-control-request-headers", asked))
    return filter_.evaluate(b"OPTIONS", headers)


def test_preflight_from_an_allowed_origin_lists_what_is_allowed() -> None:
    found = preflight(cors(**EXACT), b"https://x.bar.com", b"GET", b"x-header-1")
    assert found == (
        True,
        [
            (b"access-control-allow-origin", b"https://x.bar.com"),
            (b"vary", b"origin"),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", b"x-header-3, x-header-4"),
            (b"access-control-allow-methods", b"GET, OPTIONS"),
            (b"access-control-allow-headers", b"x-header-1, x-header-2"),
            (b"access-control-max-age", b"3600"),
        ],
    )


def test_preflight_from_another_origin_gets_no_cors_fields() -> None:
    assert preflight(cors(**EXACT), b"https://foobar.com") == (True, [])


def test_wildcards_without_credentials_answer_star() -> None:
    filter_ = cors(
        allow_origins=("*",), allow_methods=("*",), allow_headers=("*",), expose_headers=("*",)
    )
    assert preflight(filter_, b"https://a.com", asked=b"x-a") == (
        True,
        [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-expose-headers", b"*"),
            (b"access-control-allow-methods", b"*"),
            (b"access-control-allow-headers", b"*"),
            (b"access-control-max-age", b"5"),
        ],
    )


def test_wildcards_with_credentials_echo_what_was_asked() -> None:
    filter_ = cors(
        allow_origins=("*",),
        allow_methods=("*",),
        allow_headers=("*",),
        expose_headers=("*", "x-b"),
        allow_credentials=True,
    )
    _, fields = preflight(filter_, b"https://a.com", b"PUT", b"x-a , bad name,,X-B")
    assert dict(fields) == {
        b"access-control-allow-origin": b"https://a.com",
        b"vary": b"origin",
        b"access-control-allow-credentials": b"true",
        b"access-control-expose-headers": b"x-b",
        b"access-control-allow-methods": b"PUT",
        b"access-control-allow-headers": b"x-a, X-B",
        b"access-control-max-age": b"5",
    }
    # a requested method that is no token is not echoed; no header names asked, none sent
    _, fields = preflight(filter_, b"https://a.com", b"P T")
    names = [name for name, _ in fields]
    assert b"access-control-allow-methods" not in names
    assert b"access-control-allow-headers" not in names


def test_actual_requests() -> None:
    filter_ = cors(**EXACT)
    assert filter_.evaluate(b"GET", [(b"origin", b"https://www.foo.com")]) == (
        False,
        [
            (b"access-control-allow-origin", b"https://www.foo.com"),
            (b"vary", b"origin"),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", b"x-header-3, x-header-4"),
        ],
    )
    assert filter_.evaluate(b"GET", [(b"origin", b"https://foobar.com")]) == (False, [])
    assert filter_.evaluate(b"GET", []) == (False, None)
    # an OPTIONS without Origin, or without Access-Control-Request-Method, is no preflight
    assert filter_.evaluate(b"OPTIONS", [(b"access-control-request-method", b"GET")]) == (
        False,
        None,
    )
    assert filter_.evaluate(b"OPTIONS", [(b"origin", b"https://www.foo.com")])[0] is False
    # two Origins: no origin is allowed (and the backend's CORS fields are removed)
    twice = [(b"origin", b"https://www.foo.com"), (b"origin", b"https://www.foo.com")]
    assert filter_.evaluate(b"GET", twice) == (False, [])


def test_the_filter_replaces_the_backends_fields() -> None:
    backend = [
        (b"Access-Control-Allow-Origin", b"*"),
        (b"access-control-allow-credentials", b"false"),
        (b"content-type", b"text/plain"),
    ]
    fields = [(b"access-control-allow-origin", b"https://a.com"), (b"vary", b"origin")]
    assert with_fields(backend, fields) == [(b"content-type", b"text/plain"), *fields]

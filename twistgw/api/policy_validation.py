"""Schema checks and defaults for twistgw's own policy kinds, TrafficPolicy and
SecurityPolicy (group ``gateway.twistgw.dev``, version ``v1alpha1``), after the CRDs in
``deploy/crds/``. As for the Gateway API kinds, a failure names the field."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

from hyperlink import DecodedURL

from twistgw.api.fields import (
    DURATION_RE,
    HEADER_NAME_RE,
    NAME_RE,
    SECTION_NAME_RE,
    fail,
    integer,
    item,
    list_of,
    mapping,
    parse_duration,
    string,
    target_refs,
)
from twistgw.httpfields import CONNECTION_FIELDS

#: The longest PythonFilter config, as JSON.
MAX_FILTER_CONFIG = 64 * 1024
#: What a policy may target: (group, kind); a Gateway's sectionName is a listener's
#: name, a route's a rule's.
TARGET_KINDS = (
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("gateway.networking.k8s.io", "GRPCRoute"),
)
#: A media type without parameters (type/subtype, RFC 9110 tokens), at most 128 bytes.
MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,63}/[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")
#: IPv4-mapped IPv6 addresses (a client's is judged as its IPv4 address).
MAPPED_IPV4 = ipaddress.ip_network("::ffff:0:0/96")
RATE_UNITS = {"Second": 1.0, "Minute": 60.0, "Hour": 3600.0}
RATE_KEYS = ("ClientIP", "Header", "Global")
#: The largest count a rate limit's requests and burst may have.
MAX_RATE_REQUESTS = 1_000_000_000
COMPRESSION_TYPES = ("gzip", "br", "zstd")
#: Content types compressed when a policy lists none: text the backend did not compress.
DEFAULT_CONTENT_TYPES = (
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "text/xml",
    "application/javascript",
    "application/json",
    "application/xml",
    "image/svg+xml",
)
#: Responses smaller than this (by Content-Length) are sent as they are, by default.
DEFAULT_MIN_SIZE = 1024
#: The longest an auth service may take to answer, by default.
DEFAULT_EXT_AUTH_TIMEOUT = "1s"
#: An auth service's path prefix: path characters only (RFC 3986 pchar and "/").
PATH_PREFIX_RE = re.compile(r"(/[A-Za-z0-9\-._~!$&'()*+,;=:@%]*)+")
#: A JWKS URI: http(s), without credentials or a fragment.
JWKS_URI_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+(/[\x21-\x7e]*)?")
POLICY_LISTS: dict[str, dict[str, int]] = {
    "TrafficPolicy": {
        "spec.targetRefs": 16,
        "spec.compression.types": 3,
        "spec.compression.contentTypes": 64,
        "spec.healthCheck.active.expectedStatuses": 64,
    },
    "SecurityPolicy": {
        "spec.targetRefs": 16,
        "spec.jwt.providers": 4,
        "spec.jwt.providers[].audiences": 8,
        "spec.jwt.providers[].claimToHeaders": 16,
        "spec.extAuth.http.headersToBackend": 64,
        "spec.extAuth.http.headersFromAuth": 64,
        "spec.ipAccess.allow": 256,
        "spec.ipAccess.deny": 256,
    },
}


def _target(ref: dict, where: str) -> None:
    ref.setdefault("group", "gateway.networking.k8s.io")
    group = string(ref, "group", where)
    kind = string(ref, "kind", where, required=True)
    string(ref, "name", where, required=True, pattern=NAME_RE)
    string(ref, "sectionName", where, pattern=SECTION_NAME_RE)
    if (group, kind) not in TARGET_KINDS:
        kinds = ", ".join(k for _, k in TARGET_KINDS)
        fail(where, f"must target a {kinds} of gateway.networking.k8s.io; got {kind}")


def _rate_limit(value: Any, where: str) -> None:
    limit = mapping(value, where)
    requests = integer(limit, "requests", where, 1, MAX_RATE_REQUESTS, required=True)
    string(limit, "unit", where, required=True, enum=tuple(RATE_UNITS))
    limit.setdefault("burst", requests)
    integer(limit, "burst", where, 1, MAX_RATE_REQUESTS)
    key = mapping(limit.setdefault("key", {}), f"{where}.key")
    kind = key.setdefault("type", "ClientIP")
    string(key, "type", f"{where}.key", enum=RATE_KEYS)
    header = string(key, "header", f"{where}.key", max_len=256, pattern=HEADER_NAME_RE)
    if (kind == "Header") != (header is not None):
        fail(f"{where}.key", "header is required with type Header, and only then")


def _compression(value: Any, where: str) -> None:
    compression = mapping(value, where)
    types = compression.setdefault("types", ["gzip"])
    for i, kind in enumerate(list_of(types, f"{where}.types")):
        if kind not in COMPRESSION_TYPES:
            fail(f"{where}.types[{i}]", f"must be one of {', '.join(COMPRESSION_TYPES)}")
    if not types or len(set(types)) != len(types):
        fail(f"{where}.types", "must list at least one type, each once")
    compression.setdefault("minSize", DEFAULT_MIN_SIZE)
    integer(compression, "minSize", where, 0, 2**31 - 1)
    content_types = compression.setdefault("contentTypes", list(DEFAULT_CONTENT_TYPES))
    for i, media in enumerate(list_of(content_types, f"{where}.contentTypes")):
        if not isinstance(media, str) or not MEDIA_TYPE_RE.fullmatch(media):
            fail(f"{where}.contentTypes[{i}]", "must be a media type such as text/html")


def _seconds(obj: dict, key: str, where: str, default: str, lo: float, hi: float) -> float:
    """A duration field (defaulted), bounded to [lo, hi] seconds."""
    obj.setdefault(key, default)
    text = string(obj, key, where, max_len=32)
    if not DURATION_RE.fullmatch(text):
        fail(f"{where}.{key}", f"{text!r} is not a duration (e.g. 500ms, 10s, 1m)")
    seconds = parse_duration(text)
    if not lo <= seconds <= hi:
        fail(f"{where}.{key}", f"must be from {lo:g}s to {hi:g}s; got {text}")
    return seconds


def _health_check(value: Any, where: str) -> None:
    health = mapping(value, where)
    active = mapping(health.get("active"), f"{where}.active")
    passive = mapping(health.get("passive"), f"{where}.passive")
    if "active" not in health and "passive" not in health:
        fail(where, "must set active, passive or both")
    if "active" in health:
        at = f"{where}.active"
        path = string(active, "path", at, required=True, max_len=1024)
        if not PATH_PREFIX_RE.fullmatch(path):
            fail(f"{at}.path", "must be a path such as /healthz (no query)")
        interval = _seconds(active, "interval", at, "5s", 1, 3600)
        timeout = _seconds(active, "timeout", at, "1s", 0.01, 3600)
        if timeout > interval:
            fail(f"{at}.timeout", "must not be longer than interval")
        for key, default in (("healthyThreshold", 2), ("unhealthyThreshold", 3)):
            active.setdefault(key, default)
            integer(active, key, at, 1, 100)
        statuses = active.setdefault("expectedStatuses", [200])
        for i, code in enumerate(list_of(statuses, f"{at}.expectedStatuses")):
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                fail(f"{at}.expectedStatuses[{i}]", "must be an HTTP status from 100 to 599")
        if not statuses:
            fail(f"{at}.expectedStatuses", "must list at least one status")
    if "passive" in health:
        at = f"{where}.passive"
        passive.setdefault("consecutiveErrors", 5)
        integer(passive, "consecutiveErrors", at, 1, 1000)
        _seconds(passive, "ejectionTime", at, "30s", 1, 86400)
        passive.setdefault("maxEjectionPercent", 50)
        integer(passive, "maxEjectionPercent", at, 0, 100)


def _networks(value: Any, where: str) -> None:
    for i, text in enumerate(list_of(value, where)):
        if not isinstance(text, str):
            fail(f"{where}[{i}]", "must be a string (a CIDR such as 10.0.0.0/8)")
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            fail(f"{where}[{i}]", f"{text[:64]!r} is not a CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)")
        if network.version == 6 and network.subnet_of(MAPPED_IPV4):
            fail(f"{where}[{i}]", "write IPv4 networks as IPv4: clients are judged by those")


def _ip_access(value: Any, where: str) -> None:
    access = mapping(value, where)
    _networks(access.get("allow"), f"{where}.allow")
    _networks(access.get("deny"), f"{where}.deny")
    if not access.get("allow") and not access.get("deny"):
        fail(where, "must list at least one CIDR in allow or deny")


def _basic_auth(value: Any, where: str) -> None:
    auth = mapping(value, where)
    ref = mapping(auth.get("secretRef"), f"{where}.secretRef")
    if not ref:
        fail(f"{where}.secretRef", "is required")
    string(ref, "name", f"{where}.secretRef", required=True, pattern=NAME_RE)
    string(auth, "realm", where, max_len=128)
    realm = auth.get("realm")
    if realm is not None and not all(" " <= c <= "~" and c not in '"\\' for c in realm):
        fail(f"{where}.realm", "must be printable ASCII without quotes or backslashes")


def _jwt(value: Any, where: str) -> None:
    jwt = mapping(value, where)
    providers = list_of(jwt.get("providers"), f"{where}.providers")
    if not providers:
        fail(f"{where}.providers", "must have at least one provider")
    names = set()
    for i, provider in enumerate(providers):
        at = f"{where}.providers[{i}]"
        provider = item(provider, at)
        name = string(provider, "name", at, required=True, pattern=NAME_RE)
        if name in names:
            fail(f"{at}.name", f"{name!r} names an earlier provider too")
        names.add(name)
        string(provider, "issuer", at, max_len=253)
        for j, audience in enumerate(list_of(provider.get("audiences"), f"{at}.audiences")):
            if not isinstance(audience, str) or not 0 < len(audience) <= 253:
                fail(f"{at}.audiences[{j}]", "must be a string of 1 to 253 characters")
        jwks = mapping(provider.get("jwks"), f"{at}.jwks")
        ref = mapping(jwks.get("secretRef"), f"{at}.jwks.secretRef")
        if ref:
            string(ref, "name", f"{at}.jwks.secretRef", required=True, pattern=NAME_RE)
        uri = string(jwks, "uri", f"{at}.jwks", max_len=2048)
        if uri is not None and not _fetchable(uri):
            fail(f"{at}.jwks.uri", "must be an http or https URL without credentials")
        if bool(ref) == (uri is not None):
            fail(f"{at}.jwks", "must have exactly one of secretRef and uri")
        for j, pair in enumerate(list_of(provider.get("claimToHeaders"), f"{at}.claimToHeaders")):
            pair = item(pair, f"{at}.claimToHeaders[{j}]")
            string(pair, "claim", f"{at}.claimToHeaders[{j}]", required=True, max_len=256)
            where = f"{at}.claimToHeaders[{j}]"
            header = string(pair, "header", where, required=True, pattern=HEADER_NAME_RE)
            _settable(header, f"{where}.header")


def _fetchable(uri: str) -> bool:
    """Whether ``uri`` is an http(s) URL without credentials that a client can fetch
    (a host, a port that is one)."""
    if not JWKS_URI_RE.fullmatch(uri):
        return False
    try:
        url = DecodedURL.from_text(uri)
        host = url.host
        labels_ok = ":" in host or "" not in host.split(".")  # (an IPv6 literal, or labels)
        return bool(host) and labels_ok and not any(url.userinfo) and 0 < (url.port or 0) < 65536
    except (ValueError, TypeError):
        return False


def _header_names(value: Any, where: str, settable: bool = False) -> None:
    """Header names; ``settable``: ones the gateway sets on a request (not a field the
    codecs own, whose value would change the request's framing)."""
    for i, name in enumerate(list_of(value, where)):
        if not isinstance(name, str) or not HEADER_NAME_RE.fullmatch(name) or len(name) > 256:
            fail(f"{where}[{i}]", "must be a header name")
        if settable:
            _settable(name, f"{where}[{i}]")


def _settable(name: str, where: str) -> None:
    if name.lower() in CONNECTION_FIELDS:
        fail(where, f"{name!r} is a field the gateway frames requests with; it cannot be set")


def _ext_auth(value: Any, where: str) -> None:
    ext = mapping(value, where)
    http = mapping(ext.get("http"), f"{where}.http")
    if not http:
        fail(f"{where}.http", "is required")
    at = f"{where}.http"
    ref = mapping(http.get("backendRef"), f"{at}.backendRef")
    if not ref:
        fail(f"{at}.backendRef", "is required")
    ref.setdefault("group", "")
    ref.setdefault("kind", "Service")
    string(ref, "name", f"{at}.backendRef", required=True, pattern=NAME_RE)
    string(ref, "namespace", f"{at}.backendRef", max_len=63)
    integer(ref, "port", f"{at}.backendRef", 1, 65535, required=True)
    path = http.setdefault("path", "")
    string(http, "path", at, max_len=1024)
    if path and (
        not path.startswith("/") or path.endswith("/") or not PATH_PREFIX_RE.fullmatch(path)
    ):
        fail(f"{at}.path", "must be a path such as /auth (no trailing /, no query)")
    _header_names(http.get("headersToBackend"), f"{at}.headersToBackend")
    _header_names(http.get("headersFromAuth"), f"{at}.headersFromAuth", settable=True)
    # (a request's checks get 15 s in all: a longer wait would only hold a connection)
    _seconds(ext, "timeout", where, DEFAULT_EXT_AUTH_TIMEOUT, 0.001, 15)
    if not isinstance(ext.setdefault("failOpen", False), bool):
        fail(f"{where}.failOpen", "must be true or false")


#: Each kind's sections and their checks.
SECTION_CHECKS: dict[str, dict[str, Callable[[Any, str], None]]] = {
    "TrafficPolicy": {
        "rateLimit": _rate_limit,
        "compression": _compression,
        "healthCheck": _health_check,
    },
    "SecurityPolicy": {
        "ipAccess": _ip_access,
        "basicAuth": _basic_auth,
        "jwt": _jwt,
        "extAuth": _ext_auth,
    },
}


def _policy(body: dict) -> None:
    spec = mapping(body.get("spec"), "spec")
    target_refs(spec, _target)
    for section, check in SECTION_CHECKS[body["kind"]].items():
        if section in spec:
            check(spec[section], f"spec.{section}")


def _python_filter(body: dict) -> None:
    """A PythonFilter: which installed plugin (``spec.plugin``) and its ``config`` (an
    object of at most MAX_FILTER_CONFIG bytes as JSON; the plugin's own schema judges
    it when a route references the filter)."""
    spec = mapping(body.get("spec"), "spec")
    string(spec, "plugin", "spec", required=True, pattern=NAME_RE, max_len=63)
    config = mapping(spec.setdefault("config", {}), "spec.config")
    try:
        size = len(json.dumps(config, allow_nan=False))
    except (TypeError, ValueError):  # (YAML's dates, binary, NaN...: the plugin gets JSON)
        fail("spec.config", "must be JSON data: strings, numbers, booleans, lists, objects")
    if size > MAX_FILTER_CONFIG:
        # (every rule that references it carries a copy into the routing table)
        fail("spec.config", f"must be JSON of at most {MAX_FILTER_CONFIG} bytes (64 KiB)")


POLICY_VALIDATORS = {**dict.fromkeys(SECTION_CHECKS, _policy), "PythonFilter": _python_filter}

"""Schema checks and defaults for the objects twistgw reads, after the Gateway API CRDs.

The API server rejects an object that breaks its CRD's schema; in host mode nothing
stands in front of the gateway, so these checks do that job. Each failure names the
field (``spec.listeners[1].port``) and what was wrong. Defaults are filled in as the
API server would, so the translator can rely on them.

Some values the schema accepts cannot go on the wire: a header value with a CR or LF
or a character outside Latin-1, a rewrite path with a space. The API server stores
such objects, so they are not invalid objects here either: ``wire_problems`` names
them and the translator drops the rule, with the field and the reason in the route's
status. The same goes for a regular expression RE2 cannot compile
(``regex_problems``): the schema leaves the dialect to the implementation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from twistgw.api.fields import (
    DURATION_RE,
    HEADER_NAME_RE,
    NAME_RE,
    SECTION_NAME_RE,
    parse_duration,
    target_refs,
)
from twistgw.api.fields import (
    InvalidObject as InvalidObject,  # (raised here, caught by importers of this module)
)
from twistgw.api.fields import fail as _fail
from twistgw.api.fields import integer as _int
from twistgw.api.fields import item as _item
from twistgw.api.fields import list_of as _list
from twistgw.api.fields import mapping as _mapping
from twistgw.api.fields import string as _string
from twistgw.api.policy_validation import POLICY_LISTS, POLICY_VALIDATORS
from twistgw.regex import RegexError, compile_regex

#: A namespace's name: an RFC 1123 label.
NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
HOSTNAME_RE = re.compile(
    r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
#: A Gateway API PreciseHostname: no wildcard (redirect and rewrite hostnames).
PRECISE_HOSTNAME_RE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
PROTOCOL_RE = re.compile(
    r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]+$"
)
#: A CORS allowed origin: ``*``, or ``http(s)://host[:port]`` where the host may be ``*``
#: or start with ``*.`` (the CRD's pattern; ASCII only, so it goes on the wire as it is).
CORS_ORIGIN_RE = re.compile(
    r"^\*$|^https?://((\*\.)?([a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+|\*)(:[0-9]{1,5})?$"
)
#: The CRD's bound on a CORS filter's maxAge (an int32).
MAX_CORS_MAX_AGE = 2**31 - 1
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
#: A gRPC service and method name in an Exact GRPCMethodMatch (the CRD's rules; the
#: service's ``(?i)`` spelled out, ASCII only, so the name goes on the wire as it is).
GRPC_SERVICE_RE = re.compile(r"^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$")
GRPC_METHOD_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")
GRPC_FILTER_TYPES = (
    "ResponseHeaderModifier",
    "RequestHeaderModifier",
    "RequestMirror",
    "ExtensionRef",
)
#: The HTTPRoute and GRPCRoute CRDs' bound on matches across all rules: their rule
#: (CEL) allows this many, though its message says "less than 128".
ROUTE_MAX_MATCHES = 128
REDIRECT_CODES = (301, 302, 303, 307, 308)


#: LabelSelector operators.
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _duration(obj: dict, key: str, path: str) -> float | None:
    value = _string(obj, key, path, max_len=32)
    if value is None:
        return None
    if not DURATION_RE.fullmatch(value):
        _fail(f"{path}.{key}", f"{value!r} is not a duration (e.g. 500ms, 10s, 1m30s)")
    return parse_duration(value)


def _timeouts(value: Any, where: str) -> None:
    """HTTPRouteTimeouts: durations, backendRequest no longer than a non-zero request."""
    timeouts = _mapping(value, where)
    request = _duration(timeouts, "request", where)
    backend = _duration(timeouts, "backendRequest", where)
    if request and backend is not None and backend > request:
        _fail(where, "backendRequest timeout cannot be longer than request timeout")


def _retry(value: Any, where: str) -> None:
    """HTTPRouteRetry: codes 400-599 (a set), attempts >= 1, backoff a duration."""
    retry = _mapping(value, where)
    codes = _list(retry.get("codes"), f"{where}.codes")
    for i, code in enumerate(codes):
        if isinstance(code, bool) or not isinstance(code, int) or not 400 <= code <= 599:
            _fail(f"{where}.codes[{i}]", f"must be an integer from 400 to 599; got {code!r}")
    if len(set(codes)) != len(codes):
        _fail(f"{where}.codes", "must not repeat a code")
    _int(retry, "attempts", where, 1, 2**31 - 1)
    _duration(retry, "backoff", where)


#: Fields of sessionPersistence in the API's earlier shape (before GEP-1619 made it a
#: union of ``cookie`` and ``header``): named in the message when the CRD's rules fail,
#: as the API server would have dropped them as unknown.
_OLD_SESSION_FIELDS = ("sessionName", "idleTimeout", "cookieConfig")


def _session_persistence(value: Any, where: str) -> None:
    """A rule's sessionPersistence (HTTPRoute and GRPCRoute): ``type`` defaults to
    Cookie and ``cookie.lifetimeType`` to Session, ``cookie.path`` to ``/``; then the
    CRD's rules: the ``cookie`` or ``header`` of its type and not the other's, and
    absoluteTimeout with a Permanent cookie."""
    if value is None:
        return
    session = _mapping(value, where)
    session.setdefault("type", "Cookie")
    kind = _string(session, "type", where, enum=("Cookie", "Header"))
    _duration(session, "absoluteTimeout", where)
    if session.get("cookie") is not None:
        at = f"{where}.cookie"
        cookie = _mapping(session["cookie"], at)
        cookie.setdefault("lifetimeType", "Session")
        cookie.setdefault("path", "/")
        _string(cookie, "lifetimeType", at, enum=("Permanent", "Session"))
        _token(cookie, "name", at)
        _string(cookie, "path", at, max_len=1024)
    if session.get("header") is not None:
        at = f"{where}.header"
        _token(_mapping(session["header"], at), "name", at, required=True)
    old = [field for field in _OLD_SESSION_FIELDS if field in session]
    hint = (
        f" ({', '.join(old)}: not fields of this API version, which has cookie and header)"
        if old
        else ""
    )
    cookie = session.get("cookie")
    permanent = cookie is not None and cookie["lifetimeType"] == "Permanent"
    if permanent and session.get("absoluteTimeout") is None:
        _fail(where, "AbsoluteTimeout must be specified when cookie lifetimeType is Permanent")
    for field, other in (("cookie", "Cookie"), ("header", "Header")):
        if session.get(field) is not None and kind != other:
            _fail(where, f"{field} must be nil if type is not {other}{hint}")
        if session.get(field) is None and kind == other:
            _fail(where, f"{field} must be specified for {other} type{hint}")


def _token(obj: dict, key: str, where: str, required: bool = False) -> None:
    """A cookie or header name: 1 to 256 characters of an RFC 9110 token."""
    name = _string(obj, key, where, required=required, max_len=256)
    if name is not None and not HEADER_NAME_RE.fullmatch(name):
        _fail(f"{where}.{key}", f"{name!r} is not a valid name (an RFC 9110 token)")


# --- shared pieces ---------------------------------------------------------------------


def _parent_refs(spec: dict, path: str) -> None:
    for i, ref in enumerate(_list(spec.get("parentRefs"), f"{path}.parentRefs")):
        where = f"{path}.parentRefs[{i}]"
        ref = _item(ref, where)
        ref.setdefault("group", "gateway.networking.k8s.io")
        ref.setdefault("kind", "Gateway")
        _string(ref, "group", where)
        _string(ref, "kind", where)
        _string(ref, "name", where, required=True, pattern=NAME_RE)
        _string(ref, "namespace", where, max_len=63)
        _string(ref, "sectionName", where, pattern=SECTION_NAME_RE)
        _int(ref, "port", where, 1, 65535)


def _hostnames(spec: dict, path: str) -> None:
    for i, name in enumerate(_list(spec.get("hostnames"), f"{path}.hostnames")):
        if not isinstance(name, str) or not HOSTNAME_RE.fullmatch(name):
            _fail(f"{path}.hostnames[{i}]", f"{name!r} is not a valid hostname")


def _backend_ref(ref: Any, where: str, weighted: bool = True) -> None:
    """A BackendRef (``weighted``) or a BackendObjectReference (a mirror's)."""
    ref = _item(ref, where)
    ref.setdefault("group", "")
    ref.setdefault("kind", "Service")
    _string(ref, "group", where)
    _string(ref, "kind", where)
    _string(ref, "name", where, required=True)
    _string(ref, "namespace", where, max_len=63)
    _int(ref, "port", where, 1, 65535)
    if weighted:
        ref.setdefault("weight", 1)
        _int(ref, "weight", where, 0, 1000000)
    if ref["group"] == "" and ref["kind"] == "Service" and ref.get("port") is None:
        _fail(f"{where}.port", "is required when referring to a Service")


def _header_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not HEADER_NAME_RE.fullmatch(name):
        _fail(where, f"{name!r} is not a valid header name (an RFC 9110 token)")
    if len(name) > 256:
        _fail(where, "must be at most 256 characters")


def _header_modifier(value: Any, where: str) -> None:
    mod = _mapping(value, where)
    for verb in ("set", "add"):
        for i, header in enumerate(_list(mod.get(verb), f"{where}.{verb}")):
            at = f"{where}.{verb}[{i}]"
            header = _item(header, at)
            _string(header, "name", at, required=True, max_len=256)
            _header_name(header["name"], f"{at}.name")
            _string(header, "value", at, required=True, max_len=4096)
    for i, name in enumerate(_list(mod.get("remove"), f"{where}.remove")):
        _header_name(name, f"{where}.remove[{i}]")


def _path_modifier(value: Any, where: str) -> None:
    mod = _mapping(value, where)
    kind = _string(
        mod, "type", where, required=True, enum=("ReplaceFullPath", "ReplacePrefixMatch")
    )
    field = "replaceFullPath" if kind == "ReplaceFullPath" else "replacePrefixMatch"
    _string(mod, field, where, max_len=1024)


def _cors_list(
    cors: dict, key: str, where: str, check: Callable[[Any, str], None], alone: bool = True
) -> None:
    """One of a CORS filter's lists: each item checked, no repeats (a set), and with
    ``alone``, ``*`` only as the sole item."""
    values = _list(cors.get(key), f"{where}.{key}")
    for i, value in enumerate(values):
        check(value, f"{where}.{key}[{i}]")
    if len(set(values)) != len(values):
        _fail(f"{where}.{key}", "must not repeat an item")
    if alone and "*" in values and len(values) > 1:
        _fail(f"{where}.{key}", "cannot contain '*' alongside other items")


def _cors_origin(value: Any, where: str) -> None:
    if not isinstance(value, str) or len(value) > 253 or not CORS_ORIGIN_RE.fullmatch(value):
        _fail(where, f"{value!r} is not a valid origin ('*' or http(s)://host[:port])")


def _cors_method(value: Any, where: str) -> None:
    if value not in (*METHODS, "*"):
        _fail(where, f"must be one of {', '.join(METHODS)} or '*'; got {value!r}")


def _cors(value: Any, where: str) -> None:
    """A CORS filter (GEP-1767): the CRD's patterns keep every value a token or an
    ASCII origin, so none needs a wire check; maxAge defaults to 5."""
    cors = _mapping(value, where)
    cors.setdefault("maxAge", 5)
    _cors_list(cors, "allowOrigins", where, _cors_origin)
    _cors_list(cors, "allowMethods", where, _cors_method)
    _cors_list(cors, "allowHeaders", where, _header_name)
    _cors_list(cors, "exposeHeaders", where, _header_name, alone=False)
    if not isinstance(cors.get("allowCredentials", False), bool):
        _fail(f"{where}.allowCredentials", "must be a boolean")
    _int(cors, "maxAge", where, 1, MAX_CORS_MAX_AGE)


def _filters(filters: Any, where: str) -> None:
    seen_cors = False
    for i, flt in enumerate(_list(filters, where)):
        at = f"{where}[{i}]"
        flt = _item(flt, at)
        kind = _string(flt, "type", at, required=True)
        if kind != "CORS" and flt.get("cors") is not None:
            _fail(f"{at}.cors", f"must not be set for type {kind}")
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            field = kind[0].lower() + kind[1:]
            if field not in flt:
                _fail(f"{at}.{field}", f"is required for type {kind}")
            _header_modifier(flt[field], f"{at}.{field}")
        elif kind == "RequestRedirect":
            red = _mapping(flt.get("requestRedirect"), f"{at}.requestRedirect")
            red.setdefault("statusCode", 302)
            _string(red, "scheme", f"{at}.requestRedirect", enum=("http", "https"))
            _string(red, "hostname", f"{at}.requestRedirect", pattern=PRECISE_HOSTNAME_RE)
            _int(red, "port", f"{at}.requestRedirect", 1, 65535)
            code = red.get("statusCode")
            if code not in REDIRECT_CODES:
                _fail(f"{at}.requestRedirect.statusCode", f"must be one of {REDIRECT_CODES}")
            if red.get("path") is not None:
                _path_modifier(red["path"], f"{at}.requestRedirect.path")
        elif kind == "URLRewrite":
            rew = _mapping(flt.get("urlRewrite"), f"{at}.urlRewrite")
            _string(rew, "hostname", f"{at}.urlRewrite", pattern=PRECISE_HOSTNAME_RE)
            if rew.get("path") is not None:
                _path_modifier(rew["path"], f"{at}.urlRewrite.path")
        elif kind == "RequestMirror":
            if flt.get("requestMirror") is None:
                _fail(f"{at}.requestMirror", "is required for type RequestMirror")
            _mirror(flt["requestMirror"], f"{at}.requestMirror")
        elif kind == "ExtensionRef":
            ref = _mapping(flt.get("extensionRef"), f"{at}.extensionRef")
            if not ref:
                _fail(f"{at}.extensionRef", "is required for type ExtensionRef")
            for key in ("group", "kind", "name"):
                _string(ref, key, f"{at}.extensionRef", required=True)
        elif kind == "CORS":
            if flt.get("cors") is None:
                _fail(f"{at}.cors", "is required for type CORS")
            if seen_cors:
                _fail(at, "a CORS filter cannot be repeated")
            seen_cors = True
            _cors(flt["cors"], f"{at}.cors")


def _http_match(match: Any, where: str) -> None:
    match = _item(match, where)
    path = match.setdefault("path", {"type": "PathPrefix", "value": "/"})
    path = _mapping(path, f"{where}.path")
    path.setdefault("type", "PathPrefix")
    path.setdefault("value", "/")
    kind = _string(path, "type", f"{where}.path", enum=("Exact", "PathPrefix", "RegularExpression"))
    value = _string(path, "value", f"{where}.path", max_len=1024)
    if kind != "RegularExpression" and not value.startswith("/"):
        _fail(f"{where}.path.value", "must be an absolute path")
    for group, name_re, max_value in (
        ("headers", HEADER_NAME_RE, 4096),
        ("queryParams", None, 1024),
    ):
        for i, item in enumerate(_list(match.get(group), f"{where}.{group}")):
            at = f"{where}.{group}[{i}]"
            item = _item(item, at)
            item.setdefault("type", "Exact")
            _string(item, "name", at, required=True, pattern=name_re, max_len=256)
            _string(item, "value", at, required=True, max_len=max_value)
            _string(item, "type", at, enum=("Exact", "RegularExpression"))
    _string(match, "method", where, enum=METHODS)


def _filter_field(kind: str) -> str:
    """The field holding a filter's settings: ``RequestMirror`` -> ``requestMirror``."""
    return kind[0].lower() + kind[1:]


def _mirror(value: Any, where: str) -> None:
    mirror = _mapping(value, where)
    if mirror.get("backendRef") is None:
        _fail(f"{where}.backendRef", "is required")
    _backend_ref(mirror["backendRef"], f"{where}.backendRef", weighted=False)
    _int(mirror, "percent", where, 0, 100)
    if mirror.get("fraction") is not None:
        if mirror.get("percent") is not None:
            _fail(where, "must not have both percent and fraction")
        fraction = _mapping(mirror["fraction"], f"{where}.fraction")
        fraction.setdefault("denominator", 100)
        numerator = _int(fraction, "numerator", f"{where}.fraction", 0, 2**31 - 1, required=True)
        denominator = _int(fraction, "denominator", f"{where}.fraction", 1, 2**31 - 1)
        if numerator > denominator:
            _fail(f"{where}.fraction", "numerator must be less than or equal to denominator")


def _grpc_filters(filters: Any, where: str) -> None:
    """GRPCRoute filters: a known type with its own settings and no other's, each
    header modifier at most once."""
    seen: set[str] = set()
    for i, flt in enumerate(_list(filters, where)):
        at = f"{where}[{i}]"
        flt = _item(flt, at)
        kind = _string(flt, "type", at, required=True, enum=GRPC_FILTER_TYPES)
        for other in GRPC_FILTER_TYPES:
            if other != kind and flt.get(_filter_field(other)) is not None:
                _fail(f"{at}.{_filter_field(other)}", f"must not be set for type {kind}")
        field = _filter_field(kind)
        if flt.get(field) is None:
            _fail(f"{at}.{field}", f"is required for type {kind}")
        if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            if kind in seen:
                _fail(at, f"a {kind} filter cannot be repeated")
            seen.add(kind)
            _header_modifier(flt[field], f"{at}.{field}")
        elif kind == "RequestMirror":
            _mirror(flt[field], f"{at}.{field}")
        else:
            ref = _mapping(flt[field], f"{at}.{field}")
            _string(ref, "group", f"{at}.{field}", required=True)
            _string(ref, "kind", f"{at}.{field}", required=True, max_len=63)
            _string(ref, "name", f"{at}.{field}", required=True)


def _grpc_method(value: Any, where: str) -> None:
    """A GRPCMethodMatch: a service, a method or both; Exact names must be names."""
    method = _mapping(value, where)
    method.setdefault("type", "Exact")
    kind = _string(method, "type", where, enum=("Exact", "RegularExpression"))
    service = _string(method, "service", where, max_len=1024)
    name = _string(method, "method", where, max_len=1024)
    if service is None and name is None:
        _fail(where, "must have a service or a method, or both")
    if kind == "Exact":
        if service is not None and not GRPC_SERVICE_RE.fullmatch(service):
            _fail(f"{where}.service", f"{service!r} is not a gRPC service name")
        if name is not None and not GRPC_METHOD_RE.fullmatch(name):
            _fail(f"{where}.method", f"{name!r} is not a gRPC method name")


def _grpc_match(match: Any, where: str) -> None:
    match = _item(match, where)
    if match.get("method") is not None:
        _grpc_method(match["method"], f"{where}.method")
    for i, item in enumerate(_list(match.get("headers"), f"{where}.headers")):
        at = f"{where}.headers[{i}]"
        item = _item(item, at)
        item.setdefault("type", "Exact")
        _string(item, "name", at, required=True, pattern=HEADER_NAME_RE, max_len=256)
        if not _string(item, "value", at, required=True, max_len=4096):
            _fail(f"{at}.value", "must not be empty")
        _string(item, "type", at, enum=("Exact", "RegularExpression"))


# --- what the schema accepts but the wire cannot carry ----------------------------------


def field_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an HTTP field value, or None: RFC 9110 allows
    visible ASCII, obs-text (the data plane writes values as Latin-1, so characters
    up to U+00FF), and SP and HTAB between them."""
    for char in value:
        code = ord(char)
        if char == "\t":
            continue
        if code < 0x20 or code == 0x7F:
            return _control_problem(char)
        if code > 0xFF:
            return f"contains {char!r} (U+{code:04X}), which is not Latin-1"
    if value[:1] in (" ", "\t") or value[-1:] in (" ", "\t"):
        return "begins or ends with whitespace"
    return None


def _control_problem(char: str) -> str:
    """What is wrong with a control character in a value."""
    if char in "\r\n":
        return "contains a CR or LF"
    if char == "\0":
        return "contains a NUL"
    return f"contains the control character U+{ord(char):04X}"


def path_problem(value: str) -> str | None:
    """Why ``value`` cannot be put in a request target or a Location, or None: no
    controls, no whitespace, and ASCII only (other characters must be percent-encoded)."""
    for char in value:
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            return _control_problem(char)
        if char.isspace():
            return f"contains whitespace (U+{code:04X})"
        if code > 0x7E:
            return f"contains {char!r} (U+{code:04X}), which is not ASCII: percent-encode it"
    return None


def _filter_wire_problems(flt: Mapping[str, Any], at: str) -> Iterator[str]:
    kind = flt.get("type")
    if kind in ("RequestHeaderModifier", "ResponseHeaderModifier"):
        field = kind[0].lower() + kind[1:]
        mod = flt.get(field) or {}
        for verb in ("set", "add"):
            for i, header in enumerate(mod.get(verb) or []):
                problem = field_value_problem(header["value"])
                if problem is not None:
                    yield f"{at}.{field}.{verb}[{i}].value: {problem}"
    elif kind in ("RequestRedirect", "URLRewrite"):
        field = "requestRedirect" if kind == "RequestRedirect" else "urlRewrite"
        path = (flt.get(field) or {}).get("path") or {}
        key = "replaceFullPath" if path.get("type") == "ReplaceFullPath" else "replacePrefixMatch"
        problem = path_problem(path.get(key) or "")
        if problem is not None:
            yield f"{at}.{field}.path.{key}: {problem}"


def regex_problems(rule: Mapping[str, Any], where: str) -> list[str]:
    """``field: problem`` for each RegularExpression match of a validated HTTPRoute
    rule (at ``where``) that RE2 cannot compile, with RE2's reason."""
    problems = []
    for j, match in enumerate(rule.get("matches") or []):
        at = f"{where}.matches[{j}]"
        fields = [(f"{at}.path", match.get("path") or {})]
        for group in ("headers", "queryParams"):
            fields += [
                (f"{at}.{group}[{i}]", item) for i, item in enumerate(match.get(group) or [])
            ]
        for field, item in fields:
            if item.get("type") != "RegularExpression":
                continue
            try:
                compile_regex(item["value"])
            except RegexError as exc:
                problems.append(f"{field}.value: RE2 cannot compile {item['value']!r}: {exc}")
    return problems


def grpc_regex_problems(rule: Mapping[str, Any], where: str) -> list[str]:
    """``field: problem`` for each RegularExpression of a validated GRPCRoute rule
    that RE2 cannot compile: method matches' service and method (each compiled on
    its own, so neither can reach outside its part of the path) and headers."""
    problems = []
    for j, match in enumerate(rule.get("matches") or []):
        at = f"{where}.matches[{j}]"
        fields = []
        method = match.get("method") or {}
        if method.get("type") == "RegularExpression":
            fields += [(f"{at}.method.{key}", method.get(key)) for key in ("service", "method")]
        fields += [
            (f"{at}.headers[{i}].value", item["value"])
            for i, item in enumerate(match.get("headers") or [])
            if item.get("type") == "RegularExpression"
        ]
        for field, pattern in fields:
            if not pattern:
                continue
            try:
                compile_regex(pattern)
            except RegexError as exc:
                problems.append(f"{field}: RE2 cannot compile {pattern!r}: {exc}")
    return problems


def wire_problems(rule: Mapping[str, Any], where: str) -> list[str]:
    """``field: problem`` for each value of a validated HTTPRoute rule (at ``where``,
    e.g. ``spec.rules[0]``) that its filters would put on the wire but cannot be sent:
    header values and redirect or rewrite paths, in the rule's filters and in its
    backendRefs' filters."""
    problems = []
    for i, flt in enumerate(rule.get("filters") or []):
        problems += _filter_wire_problems(flt, f"{where}.filters[{i}]")
    for j, ref in enumerate(rule.get("backendRefs") or []):
        for i, flt in enumerate(ref.get("filters") or []):
            problems += _filter_wire_problems(flt, f"{where}.backendRefs[{j}].filters[{i}]")
    return problems


# --- bounds checked before anything else ------------------------------------------------


def _filter_lists(at: str) -> dict[str, int]:
    """The list bounds of the filters at ``at`` and of their header modifiers."""
    bounds = {at: 16}
    for field in ("requestHeaderModifier", "responseHeaderModifier"):
        for verb in ("set", "add", "remove"):
            bounds[f"{at}[].{field}.{verb}"] = 16
    return bounds


def _cors_lists(at: str) -> dict[str, int]:
    """The list bounds of the CORS filters at ``at`` (HTTPRoute only)."""
    bounds = {f"{at}[].cors.{f}": 64 for f in ("allowOrigins", "allowHeaders", "exposeHeaders")}
    bounds[f"{at}[].cors.allowMethods"] = 9
    return bounds


_STREAM_ROUTE_LISTS = {"spec.parentRefs": 32, "spec.rules": 1, "spec.rules[].backendRefs": 16}

#: The schemas' maxItems by field (``[]``: each item of a list), a list before the
#: lists inside its items. TLSRoute keeps v1alpha2's 16 rules; TCPRoute and UDPRoute
#: have one (v1). EndpointSlice: the Kubernetes API's own limits.
LIST_BOUNDS: dict[str, dict[str, int]] = {
    "Gateway": {
        "spec.listeners": 64,
        "spec.listeners[].allowedRoutes.kinds": 8,
        "spec.listeners[].tls.certificateRefs": 64,
        "spec.addresses": 16,
        "spec.tls.frontend.default.validation.caCertificateRefs": 8,
        "spec.tls.frontend.perPort": 64,
        "spec.tls.frontend.perPort[].tls.validation.caCertificateRefs": 8,
    },
    "ListenerSet": {
        "spec.listeners": 64,
        "spec.listeners[].allowedRoutes.kinds": 8,
        "spec.listeners[].tls.certificateRefs": 64,
    },
    "HTTPRoute": {
        "spec.parentRefs": 32,
        "spec.hostnames": 16,
        "spec.rules": 16,
        "spec.rules[].matches": 64,
        "spec.rules[].matches[].headers": 16,
        "spec.rules[].matches[].queryParams": 16,
        **_filter_lists("spec.rules[].filters"),
        **_cors_lists("spec.rules[].filters"),
        "spec.rules[].backendRefs": 16,
        **_filter_lists("spec.rules[].backendRefs[].filters"),
        **_cors_lists("spec.rules[].backendRefs[].filters"),
        # (no maxItems in the CRD, but a set of codes 400-599 has at most 200)
        "spec.rules[].retry.codes": 200,
    },
    "GRPCRoute": {
        "spec.parentRefs": 32,
        "spec.hostnames": 16,
        "spec.rules": 16,
        "spec.rules[].matches": 64,
        "spec.rules[].matches[].headers": 16,
        **_filter_lists("spec.rules[].filters"),
        "spec.rules[].backendRefs": 16,
        **_filter_lists("spec.rules[].backendRefs[].filters"),
    },
    "TLSRoute": {**_STREAM_ROUTE_LISTS, "spec.hostnames": 1024, "spec.rules": 16},
    "TCPRoute": _STREAM_ROUTE_LISTS,
    "UDPRoute": _STREAM_ROUTE_LISTS,
    "ReferenceGrant": {"spec.from": 16, "spec.to": 16},
    "BackendTLSPolicy": {
        "spec.targetRefs": 16,
        "spec.validation.caCertificateRefs": 8,
        "spec.validation.subjectAltNames": 5,
    },
    "EndpointSlice": {"endpoints": 1000, "endpoints[].addresses": 100, "ports": 100},
    **POLICY_LISTS,
}
#: What the API server allows for all of an object's annotations (keys and values).
MAX_ANNOTATIONS_BYTES = 256 * 1024


def _values_at(body: dict, field: str) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for ``field`` in ``body``, through every item of each ``[]``
    list on the way; parts that are not objects or lists are skipped (the typed
    checks report them)."""
    found: list[tuple[str, Any]] = [("", body)]
    *parents, last = field.split(".")
    for part in parents:
        key = part.removesuffix("[]")
        deeper = []
        for where, node in found:
            value = node.get(key) if isinstance(node, dict) else None
            at = f"{where}.{key}".lstrip(".")
            if part.endswith("[]") and isinstance(value, list):
                deeper += [(f"{at}[{i}]", item) for i, item in enumerate(value)]
            elif isinstance(value, dict):
                deeper.append((at, value))
        found = deeper
    for where, node in found:
        if isinstance(node, dict):
            yield f"{where}.{last}".lstrip("."), node.get(last)


def _check_list_bounds(body: dict, bounds: Mapping[str, int]) -> None:
    for field, limit in bounds.items():
        for where, value in _values_at(body, field):
            if isinstance(value, list) and len(value) > limit:
                _fail(where, f"must have at most {limit} items, has {len(value)}")


def _shown(key: Any) -> str:
    """``key`` for a message: its repr, cut short."""
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_metadata(metadata: dict) -> None:
    """Labels and annotations as the API server bounds them: string values, label
    names and values of Kubernetes' lengths, annotations at most 256 KiB in all."""
    labels = _mapping(metadata.get("labels"), "metadata.labels")
    for key, value in labels.items():
        where = f"metadata.labels[{_shown(key)}]"
        if not isinstance(key, str) or not isinstance(value, str):
            _fail(where, "keys and values must be strings")
        prefix, _, name = key.rpartition("/")
        if len(prefix) > 253 or not 0 < len(name) <= 63:
            _fail(where, "key must be a name of 1 to 63 characters, prefixed by at most 253 and /")
        if len(value) > 63:
            _fail(where, "value must be at most 63 characters")
    annotations = _mapping(metadata.get("annotations"), "metadata.annotations")
    size = 0
    for key, value in annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            _fail(f"metadata.annotations[{_shown(key)}]", "keys and values must be strings")
        size += len(f"{key}{value}".encode("utf-8", "surrogatepass"))
    if size > MAX_ANNOTATIONS_BYTES:
        _fail(
            "metadata.annotations",
            f"must total at most {MAX_ANNOTATIONS_BYTES} bytes (256 KiB), has {size}",
        )


# --- per kind --------------------------------------------------------------------------


def _selector(value: Any, where: str) -> None:
    """A LabelSelector: matchLabels of strings, matchExpressions with a key, an
    operator and string values."""
    selector = _mapping(value, where)
    _string_map(selector.get("matchLabels"), f"{where}.matchLabels")
    for i, expression in enumerate(
        _list(selector.get("matchExpressions"), f"{where}.matchExpressions")
    ):
        at = f"{where}.matchExpressions[{i}]"
        expression = _item(expression, at)
        _string(expression, "key", at, required=True)
        _string(expression, "operator", at, required=True, enum=SELECTOR_OPERATORS)
        for j, item in enumerate(_list(expression.get("values"), f"{at}.values")):
            if not isinstance(item, str):
                _fail(f"{at}.values[{j}]", f"must be a string, not {type(item).__name__}")


def _string_map(value: Any, where: str) -> None:
    """A mapping of strings to strings (labels, ConfigMap and Secret data)."""
    for key, item in _mapping(value, where).items():
        if not isinstance(item, str):
            _fail(f"{where}.{key}", f"must be a string, not {type(item).__name__}")


def _local_ref(value: Any, where: str) -> None:
    """A reference by group, kind and name (parametersRef)."""
    ref = _mapping(value, where)
    for key in ("group", "kind", "name", "namespace"):
        _string(ref, key, where)


def _gateway_class(body: dict) -> None:
    spec = _mapping(body.get("spec"), "spec")
    _string(spec, "controllerName", "spec", required=True)
    _local_ref(spec.get("parametersRef"), "spec.parametersRef")


def _listener_tls(value: Any, where: str) -> None:
    """A listener's ``tls``: its mode, certificate references and options."""
    tls = _mapping(value, where)
    _string(tls, "mode", where, enum=("Terminate", "Passthrough"))
    for i, ref in enumerate(_list(tls.get("certificateRefs"), f"{where}.certificateRefs")):
        at = f"{where}.certificateRefs[{i}]"
        ref = _item(ref, at)
        _string(ref, "group", at)
        _string(ref, "kind", at)
        _string(ref, "name", at, required=True)
        _string(ref, "namespace", at, max_len=63)
    for key, option in _mapping(tls.get("options"), f"{where}.options").items():
        if not isinstance(option, str):
            _fail(f"{where}.options.{key}", f"must be a string, not {type(option).__name__}")


def _listener(listener: Any, where: str) -> None:
    listener = _item(listener, where)
    _listener_tls(listener.get("tls"), f"{where}.tls")
    _string(listener, "name", where, required=True, pattern=SECTION_NAME_RE)
    _string(listener, "hostname", where, pattern=HOSTNAME_RE)
    _int(listener, "port", where, 1, 65535, required=True)
    _string(listener, "protocol", where, required=True, pattern=PROTOCOL_RE)
    allowed = listener.setdefault("allowedRoutes", {})
    allowed = _mapping(allowed, f"{where}.allowedRoutes")
    namespaces = _mapping(
        allowed.setdefault("namespaces", {"from": "Same"}), f"{where}.allowedRoutes.namespaces"
    )
    namespaces.setdefault("from", "Same")
    _string(
        namespaces,
        "from",
        f"{where}.allowedRoutes.namespaces",
        enum=("All", "Same", "Selector", "None"),
    )
    _selector(namespaces.get("selector"), f"{where}.allowedRoutes.namespaces.selector")
    for i, kind in enumerate(_list(allowed.get("kinds"), f"{where}.allowedRoutes.kinds")):
        kind = _item(kind, f"{where}.allowedRoutes.kinds[{i}]")
        kind.setdefault("group", "gateway.networking.k8s.io")
        _string(kind, "kind", f"{where}.allowedRoutes.kinds[{i}]", required=True)


def _frontend_tls(value: Any, where: str) -> None:
    """A Gateway's frontend TLS (its default or a port's): the client validation's
    mode and caCertificateRefs, objects with string group, kind, name and namespace."""
    at = f"{where}.validation"
    validation = _mapping(_mapping(value, where).get("validation"), at)
    _string(validation, "mode", at, enum=("AllowValidOnly", "AllowInsecureFallback"))
    for i, ref in enumerate(_list(validation.get("caCertificateRefs"), f"{at}.caCertificateRefs")):
        item = f"{at}.caCertificateRefs[{i}]"
        ref = _item(ref, item)
        _string(ref, "name", item, required=True)
        for key in ("group", "kind", "namespace"):
            _string(ref, key, item)


def _gateway(body: dict) -> None:
    spec = _mapping(body.get("spec"), "spec")
    _string(spec, "gatewayClassName", "spec", required=True)
    _listeners(spec)
    for i, address in enumerate(_list(spec.get("addresses"), "spec.addresses")):
        address = _item(address, f"spec.addresses[{i}]")
        address.setdefault("type", "IPAddress")
        _string(address, "type", f"spec.addresses[{i}]")
        _string(address, "value", f"spec.addresses[{i}]")
    infrastructure = _mapping(spec.get("infrastructure"), "spec.infrastructure")
    _string_map(infrastructure.get("labels"), "spec.infrastructure.labels")
    _string_map(infrastructure.get("annotations"), "spec.infrastructure.annotations")
    _local_ref(infrastructure.get("parametersRef"), "spec.infrastructure.parametersRef")
    tls = _mapping(spec.get("tls"), "spec.tls")
    backend = _mapping(tls.get("backend"), "spec.tls.backend")
    _local_ref(backend.get("clientCertificateRef"), "spec.tls.backend.clientCertificateRef")
    frontend = _mapping(tls.get("frontend"), "spec.tls.frontend")
    _frontend_tls(frontend.get("default"), "spec.tls.frontend.default")
    for i, entry in enumerate(_list(frontend.get("perPort"), "spec.tls.frontend.perPort")):
        where = f"spec.tls.frontend.perPort[{i}]"
        entry = _item(entry, where)
        _int(entry, "port", where, 1, 65535, required=True)
        _frontend_tls(entry.get("tls"), f"{where}.tls")
    allowed = _mapping(spec.get("allowedListeners"), "spec.allowedListeners")
    namespaces = _mapping(allowed.get("namespaces"), "spec.allowedListeners.namespaces")
    _selector(namespaces.get("selector"), "spec.allowedListeners.namespaces.selector")
    _string(
        namespaces,
        "from",
        "spec.allowedListeners.namespaces",
        enum=("All", "Same", "Selector", "None"),
    )


def _listener_set(body: dict) -> None:
    """A ListenerSet: its parentRef (a Gateway) and listeners, as a Gateway's."""
    spec = _mapping(body.get("spec"), "spec")
    ref = _mapping(spec.get("parentRef"), "spec.parentRef")
    ref.setdefault("group", "gateway.networking.k8s.io")
    ref.setdefault("kind", "Gateway")
    _string(ref, "name", "spec.parentRef", required=True, max_len=253)
    _string(ref, "namespace", "spec.parentRef", max_len=63)
    _listeners(spec)


def _listeners(spec: dict) -> None:
    """``spec.listeners``: at least one, each valid, names unique."""
    listeners = _list(spec.get("listeners"), "spec.listeners")
    if not listeners:
        _fail("spec.listeners", "must have at least one listener")
    names = set()
    for i, listener in enumerate(listeners):
        _listener(listener, f"spec.listeners[{i}]")
        if listener["name"] in names:
            _fail(f"spec.listeners[{i}].name", f"duplicate listener name {listener['name']!r}")
        names.add(listener["name"])


def _unique_rule_name(rule: dict, at: str, names: set[str]) -> None:
    """A rule's name, if any: a section name not used by an earlier rule."""
    name = _string(rule, "name", at, pattern=SECTION_NAME_RE)
    if name is not None:
        if name in names:
            _fail(f"{at}.name", f"rule name {name!r} is not unique within the route")
        names.add(name)


def _check_match_total(total: int) -> None:
    if total > ROUTE_MAX_MATCHES:
        _fail("spec.rules", f"must have at most {ROUTE_MAX_MATCHES} matches in all, has {total}")


def _http_route(body: dict) -> None:
    """An HTTPRoute: absent rules and matches defaulted (one PathPrefix / match); rule
    names unique; at most 128 matches in all (an explicit empty list counts none, as
    in the CRD's rule)."""
    spec = _mapping(body.setdefault("spec", {}), "spec")
    _parent_refs(spec, "spec")
    _hostnames(spec, "spec")
    rules = _list(spec.setdefault("rules", [{}]), "spec.rules")
    names: set[str] = set()
    total = 0
    for i, rule in enumerate(rules):
        at = f"spec.rules[{i}]"
        rule = _item(rule, at)
        _unique_rule_name(rule, at, names)
        matches = _list(rule.setdefault("matches", [{}]), f"{at}.matches")
        total += len(matches)
        if not matches:
            rule["matches"] = [{}]
        for j, match in enumerate(rule["matches"]):
            _http_match(match, f"{at}.matches[{j}]")
        _filters(rule.get("filters"), f"{at}.filters")
        for j, ref in enumerate(_list(rule.get("backendRefs"), f"{at}.backendRefs")):
            _backend_ref(ref, f"{at}.backendRefs[{j}]")
            _filters(ref.get("filters"), f"{at}.backendRefs[{j}].filters")
        _timeouts(rule.get("timeouts"), f"{at}.timeouts")
        _retry(rule.get("retry"), f"{at}.retry")
        _session_persistence(rule.get("sessionPersistence"), f"{at}.sessionPersistence")
    _check_match_total(total)


def _grpc_route(body: dict) -> None:
    """A GRPCRoute: rules may be absent (no traffic) and a rule's matches too (any
    gRPC request); rule names unique; at most 128 matches in all."""
    spec = _mapping(body.setdefault("spec", {}), "spec")
    _parent_refs(spec, "spec")
    _hostnames(spec, "spec")
    names: set[str] = set()
    total = 0
    for i, rule in enumerate(_list(spec.get("rules"), "spec.rules")):
        at = f"spec.rules[{i}]"
        rule = _item(rule, at)
        _unique_rule_name(rule, at, names)
        matches = _list(rule.get("matches"), f"{at}.matches")
        total += len(matches)
        for j, match in enumerate(matches):
            _grpc_match(match, f"{at}.matches[{j}]")
        _grpc_filters(rule.get("filters"), f"{at}.filters")
        for j, ref in enumerate(_list(rule.get("backendRefs"), f"{at}.backendRefs")):
            _backend_ref(ref, f"{at}.backendRefs[{j}]")
            _grpc_filters(ref.get("filters"), f"{at}.backendRefs[{j}].filters")
        _session_persistence(rule.get("sessionPersistence"), f"{at}.sessionPersistence")
    _check_match_total(total)


def _stream_route(body: dict) -> None:
    """TLSRoute, TCPRoute and UDPRoute (the last two have one rule and no hostnames)."""
    spec = _mapping(body.setdefault("spec", {}), "spec")
    _parent_refs(spec, "spec")
    _hostnames(spec, "spec")
    rules = _list(spec.get("rules"), "spec.rules")
    if not rules:
        _fail("spec.rules", "must have at least one rule")
    for i, rule in enumerate(rules):
        at = f"spec.rules[{i}]"
        rule = _item(rule, at)
        refs = _list(rule.get("backendRefs"), f"{at}.backendRefs")
        if not refs:
            _fail(f"{at}.backendRefs", "must have at least one backendRef")
        for j, ref in enumerate(refs):
            _backend_ref(ref, f"{at}.backendRefs[{j}]")


def _reference_grant(body: dict) -> None:
    spec = _mapping(body.get("spec"), "spec")
    for side in ("from", "to"):
        items = _list(spec.get(side), f"spec.{side}")
        if not items:
            _fail(f"spec.{side}", "must have at least one item")
        for i, item in enumerate(items):
            item = _item(item, f"spec.{side}[{i}]")
            _string(item, "group", f"spec.{side}[{i}]", required=True)
            _string(item, "kind", f"spec.{side}[{i}]", required=True)
            if side == "from":
                _string(item, "namespace", f"spec.{side}[{i}]", required=True)
            else:
                _string(item, "name", f"spec.{side}[{i}]", max_len=253)


def _service_target(ref: dict, where: str) -> None:
    _string(ref, "group", where, required=True)
    _string(ref, "kind", where, required=True)
    _string(ref, "name", where, required=True)
    _string(ref, "sectionName", where, pattern=SECTION_NAME_RE)


def _backend_tls_policy(body: dict) -> None:
    spec = _mapping(body.get("spec"), "spec")
    target_refs(spec, _service_target)
    validation = _mapping(spec.get("validation"), "spec.validation")
    _string(validation, "hostname", "spec.validation", required=True, pattern=HOSTNAME_RE)
    refs = _list(validation.get("caCertificateRefs"), "spec.validation.caCertificateRefs")
    for i, ref in enumerate(refs):
        where = f"spec.validation.caCertificateRefs[{i}]"
        ref = _item(ref, where)
        for key in ("group", "kind", "name"):
            _string(ref, key, where, required=True)
    well_known = _string(validation, "wellKnownCACertificates", "spec.validation")
    if bool(refs) == bool(well_known):
        _fail(
            "spec.validation",
            "must have exactly one of caCertificateRefs and wellKnownCACertificates",
        )
    sans = _list(validation.get("subjectAltNames"), "spec.validation.subjectAltNames")
    for i, san in enumerate(sans):
        where = f"spec.validation.subjectAltNames[{i}]"
        san = _item(san, where)
        kind = _string(san, "type", where, required=True, enum=("Hostname", "URI"))
        field = "hostname" if kind == "Hostname" else "uri"
        _string(san, field, where, required=True, max_len=4096)
        if san.get("uri" if kind == "Hostname" else "hostname"):
            _fail(where, f"must not set {'uri' if kind == 'Hostname' else 'hostname'}")


def _service(body: dict) -> None:
    spec = _mapping(body.get("spec"), "spec")
    for i, port in enumerate(_list(spec.get("ports"), "spec.ports")):
        port = _item(port, f"spec.ports[{i}]")
        _int(port, "port", f"spec.ports[{i}]", 1, 65535, required=True)
        _string(port, "name", f"spec.ports[{i}]", max_len=63)
        _string(port, "appProtocol", f"spec.ports[{i}]")


def _endpoint_slice(body: dict) -> None:
    for i, endpoint in enumerate(_list(body.get("endpoints"), "endpoints")):
        endpoint = _item(endpoint, f"endpoints[{i}]")
        for j, address in enumerate(_list(endpoint.get("addresses"), f"endpoints[{i}].addresses")):
            if not isinstance(address, str):
                _fail(f"endpoints[{i}].addresses[{j}]", "must be a string")
        conditions = _mapping(endpoint.get("conditions"), f"endpoints[{i}].conditions")
        ready = conditions.get("ready")
        if ready is not None and not isinstance(ready, bool):
            _fail(f"endpoints[{i}].conditions.ready", "must be true or false")
    for i, port in enumerate(_list(body.get("ports"), "ports")):
        port = _item(port, f"ports[{i}]")
        _int(port, "port", f"ports[{i}]", 1, 65535)
        _string(port, "name", f"ports[{i}]", max_len=63)


def _data(body: dict) -> None:
    """A ConfigMap's or Secret's ``data`` (and ``stringData``): strings by key."""
    _string_map(body.get("data"), "data")
    _string_map(body.get("stringData"), "stringData")


VALIDATORS: dict[str, Callable[[dict], None]] = {
    "GatewayClass": _gateway_class,
    "Gateway": _gateway,
    "ListenerSet": _listener_set,
    "HTTPRoute": _http_route,
    "GRPCRoute": _grpc_route,
    "TLSRoute": _stream_route,
    "TCPRoute": _stream_route,
    "UDPRoute": _stream_route,
    "ReferenceGrant": _reference_grant,
    "BackendTLSPolicy": _backend_tls_policy,
    "Service": _service,
    "EndpointSlice": _endpoint_slice,
    "ConfigMap": _data,
    "Secret": _data,
    **POLICY_VALIDATORS,
}


def _without_nulls(value: Any) -> Any:
    """A copy of manifest data in which a field set to null is absent, as the API server
    prunes it (defaults then apply; a null list item stays, to be refused)."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def validated_body(manifest: dict) -> dict:
    """A defaulted deep copy of ``manifest``; raises InvalidObject naming the bad field.

    Metadata and list lengths are checked on ``manifest`` first, so an object far over
    its bounds is refused before any work proportional to its size."""
    metadata = _mapping(manifest.get("metadata"), "metadata")
    _string(metadata, "name", "metadata", required=True, pattern=NAME_RE)
    _string(metadata, "namespace", "metadata", pattern=NAMESPACE_RE, max_len=63)
    _check_metadata(metadata)
    kind = manifest.get("kind")
    _check_list_bounds(manifest, LIST_BOUNDS.get(kind, {}))
    body = _without_nulls(manifest)
    validator = VALIDATORS.get(kind)
    if validator is not None:
        validator(body)
    return body

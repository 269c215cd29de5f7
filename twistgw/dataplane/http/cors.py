"""The CORS filter (GEP-1767) at request time: which origins a route allows, and the
response fields of a preflight and of an actual cross-origin request.

No regular expressions: exact origins are looked up in a set, and ``*.`` wildcards by
probing each label suffix of the request's host in a set, so the work per request is
bounded by the (bounded) length of its Origin."""

from __future__ import annotations

from twistgw.routing import ir

Headers = list[tuple[bytes, bytes]]

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Longer Origins match only ``*`` (a DNS name has at most 253 characters).
MAX_ORIGIN = 300
#: RFC 9110 tchar: what a method or a field name is made of.
TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

ALLOW_ORIGIN = b"access-control-allow-origin"
ALLOW_CREDENTIALS = b"access-control-allow-credentials"
EXPOSE_HEADERS = b"access-control-expose-headers"
#: The fields of an actual request's response that the filter owns (a backend's are replaced).
OWNED = frozenset({ALLOW_ORIGIN, ALLOW_CREDENTIALS, EXPOSE_HEADERS})

Origin = tuple[str, str, int]  # (scheme, host, port), lower-case, the port defaulted
#: What an origin's host may hold: a DNS name, or an IPv6 address in brackets;
#: anything else (userinfo, a path, a query) is no origin. Patterns may hold ``*``.
HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
PATTERN_CHARS = HOST_CHARS | {"*"}
IPV6_CHARS = frozenset("[]0123456789abcdef:.")


def parse_origin(origin: str, pattern: bool = False) -> Origin | None:
    """A serialized ``http(s)://host[:port]`` origin (an ``allowOrigins`` entry when
    ``pattern``); None for anything else."""
    scheme, sep, host = origin.lower().partition("://")
    port = DEFAULT_PORTS.get(scheme)
    if not sep or port is None:
        return None
    colon = host.rfind(":")
    if colon != -1 and not host.endswith("]"):
        digits = host[colon + 1 :]
        if not (0 < len(digits) <= 5 and digits.isascii() and digits.isdigit()):
            return None
        host, port = host[:colon], int(digits)
    allowed = IPV6_CHARS if host.startswith("[") else PATTERN_CHARS if pattern else HOST_CHARS
    if not host or not allowed.issuperset(host):
        return None
    return scheme, host, port


def is_token(value: bytes) -> bool:
    """Whether ``value`` is an RFC 9110 token (fit to echo on the wire)."""
    return bool(value) and not value.translate(None, TCHARS)


class OriginMatcher:
    """``allowOrigins``: ``*`` (any), exact origins, ``scheme://*`` (any host) and
    ``scheme://*.domain`` (any number of labels left of the domain)."""

    __slots__ = ("any", "exact", "any_host", "suffixes")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.any = "*" in patterns
        self.exact: set[Origin] = set()
        self.any_host: set[tuple[str, int]] = set()
        self.suffixes: set[Origin] = set()  # (scheme, ".domain", port)
        for pattern in patterns:
            parsed = parse_origin(pattern, pattern=True) if pattern != "*" else None
            if parsed is None:
                continue
            scheme, host, port = parsed
            if host == "*":
                self.any_host.add((scheme, port))
            elif host.startswith("*."):
                self.suffixes.add((scheme, host[1:], port))
            else:
                self.exact.add(parsed)

    def __call__(self, origin: str) -> bool:
        if self.any:
            return True
        parsed = parse_origin(origin) if len(origin) <= MAX_ORIGIN else None
        if parsed is None:
            return False
        if parsed in self.exact:
            return True
        scheme, host, port = parsed
        if (scheme, port) in self.any_host:
            return True
        if self.suffixes:
            dot = host.find(".", 1)
            while dot != -1:
                if (scheme, host[dot:], port) in self.suffixes:
                    return True
                dot = host.find(".", dot + 1)
        return False


def _joined(names: tuple[str, ...]) -> bytes | None:
    return ", ".join(names).encode("ascii") if names else None


class CompiledCORS:
    """A route's CORS filter, its constant fields pre-encoded. With credentials
    allowed, no ``*`` is ever sent: the origin, method and header names requested are
    echoed instead, as the spec requires."""

    __slots__ = (
        "allows",
        "star_origin",
        "credentials",
        "any_method",
        "methods",
        "any_header",
        "headers",
        "expose",
        "max_age",
    )

    def __init__(self, spec: ir.CORS) -> None:
        self.allows = OriginMatcher(spec.allow_origins)
        credentials = self.credentials = spec.allow_credentials
        self.star_origin = spec.allow_origins == ("*",) and not credentials
        self.any_method = spec.allow_methods == ("*",)
        self.methods = _joined(spec.allow_methods)
        self.any_header = spec.allow_headers == ("*",)
        self.headers = _joined(spec.allow_headers)
        exposed = spec.expose_headers
        self.expose = _joined(tuple(n for n in exposed if n != "*") if credentials else exposed)
        self.max_age = b"%d" % spec.max_age

    def evaluate(self, method: bytes, fields: Headers) -> tuple[bool, Headers | None]:
        """Whether the request is a preflight (OPTIONS with Origin and
        Access-Control-Request-Method), and the CORS fields of its response: None for
        a request without Origin, none for an origin not allowed."""
        origin = requested = None
        requested_headers: list[bytes] = []
        for name, value in fields:
            if name == b"origin":
                if origin is not None:  # (a request has one Origin): no CORS fields at all
                    return False, []
                origin = value
            elif name == b"access-control-request-method":
                requested = value
            elif name == b"access-control-request-headers":
                requested_headers.append(value)
        if origin is None:
            return False, None
        preflight = method == b"OPTIONS" and requested is not None
        found = self.actual(origin)
        if not found or not preflight:
            return preflight, found
        return True, found + self.preflight(requested, b",".join(requested_headers))

    def actual(self, origin: bytes) -> Headers:
        """The fields of any response to a request from ``origin``; none when the
        origin is not allowed."""
        if not self.allows(origin.decode("latin-1")):
            return []
        if self.star_origin:
            found = [(ALLOW_ORIGIN, b"*")]
        else:
            found = [(ALLOW_ORIGIN, origin), (b"vary", b"origin")]
        if self.credentials:
            found.append((ALLOW_CREDENTIALS, b"true"))
        if self.expose is not None:
            found.append((EXPOSE_HEADERS, self.expose))
        return found

    def preflight(self, method: bytes, requested_headers: bytes) -> Headers:
        """What a preflight's answer adds for the ``method`` and header names asked for."""
        found = []
        if not self.any_method:
            if self.methods is not None:
                found.append((b"access-control-allow-methods", self.methods))
        elif not self.credentials:
            found.append((b"access-control-allow-methods", b"*"))
        elif is_token(method):
            found.append((b"access-control-allow-methods", method))
        if not self.any_header:
            if self.headers is not None:
                found.append((b"access-control-allow-headers", self.headers))
        elif not self.credentials:
            found.append((b"access-control-allow-headers", b"*"))
        else:
            names = [
                n for n in (n.strip(b" \t") for n in requested_headers.split(b",")) if is_token(n)
            ]
            if names:
                found.append((b"access-control-allow-headers", b", ".join(names)))
        found.append((b"access-control-max-age", self.max_age))
        return found


def with_fields(headers: Headers, fields: Headers) -> Headers:
    """A response's ``headers`` with the CORS ``fields`` in place of its own: the
    filter owns them, so a backend cannot allow an origin the route does not."""
    return [h for h in headers if h[0].lower() not in OWNED] + fields

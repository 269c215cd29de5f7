"""Value pools for the translator fuzzing: names that make references resolve, values
valid but unusual (the first of each pool is the plain one, so examples shrink to it),
and junk of any type."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

CONTROLLER = "gateway.twistgw.dev/controller"
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_API_ALPHA = "gateway.networking.k8s.io/v1alpha2"
GATEWAY_GROUP = "gateway.networking.k8s.io"
NAMESPACES = ("default", "other")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")

#: Hostnames that intersect each other in every way: exact, under a wildcard, a wildcard
#: under a wildcard, disjoint, punycode, one label, very long.
HOSTNAMES = (
    "a.example.com",
    "example.com",
    "*.example.com",
    "b.a.example.com",
    "*.a.example.com",
    "secure.example.com",
    "x.tls.example.com",
    "*.tls.example.com",
    "other.org",
    "*.org",
    "xn--bcher-kva.example",
    "localhost",
    ".".join(["a" * 63] * 3) + ".com",
)
#: Request paths valid in a match (an absolute path), some odd for a router; the
#: unsendable ones cannot be put in a rewrite or a redirect as they are.
PATHS = ("/", "/a", "/a/", "/a/b", "/api", "/api/v1/", "//", "/a/../b", "/%2F")
UNSENDABLE_PATHS = ("/€", "/a b", "/a\r\n")
#: Patterns RE2 accepts, and ones it refuses (bad syntax, backreference, lookaround).
REGEXES = (
    "/api/[0-9]+",
    ".*",
    "/(a+)+$",
    "(?i)/CaSe",
    "/a{1000}",
    "/\\p{Greek}+",
    "[[:alpha:]]+",
    "/é",
    "",
)
REFUSED_REGEXES = ("(", "/(x)\\1", "/(?=x)", "a{1001}")
HEADER_NAMES = ("X-A", "x-a", "X-Tenant", "Host", "Content-Length", "Transfer-Encoding", "~")
#: Header values, and ones the wire cannot carry: CR, LF, NUL, non-Latin-1, edge spaces.
HEADER_VALUES = ("v", "", "é", "a, b", "x" * 4096)
UNSENDABLE_HEADER_VALUES = (
    "a\r\nX-Injected: 1",
    "line\n",
    "nul\x00",
    "10 €",
    " x ",
    "\t",
    "\x7f",
)
QUERY_VALUES = ("1", "", "a=b&c", "%00", "€")


def manifest_object(api_version: str, kind: str, name: str, namespace: str | None, **body) -> dict:
    """A manifest of ``kind`` named ``name`` (in ``namespace``, unless None)."""
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy`` or absent (None is dropped by ``fields``)."""
    return st.none() | strategy


@st.composite
def fields(draw: st.DrawFn, **strategies: st.SearchStrategy) -> dict[str, Any]:
    """A mapping of the drawn fields, leaving out those drawn as None."""
    drawn = {key: draw(strategy) for key, strategy in strategies.items()}
    return {key: value for key, value in drawn.items() if value is not None}


def pick(values: tuple) -> st.SearchStrategy:
    return st.sampled_from(values)


def mostly(usual: tuple, unusual: tuple) -> st.SearchStrategy:
    """One of ``usual`` two times in three, else one of ``unusual``."""
    return st.one_of(pick(usual), pick(usual), pick(unusual))


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
#: Values of the right type for most fields, valid somewhere: the perturbations.
plausible_strings = pick(
    ("web", "api", "gw", "edge", "http", "https", "tls", "tcp", "udp", "good", "other")
    + NAMESPACES
    + HOSTNAMES
    + PATHS
    + HEADER_VALUES[:4]
    + UNSENDABLE_HEADER_VALUES[:2]
    + ("Exact", "PathPrefix", "RegularExpression", "All", "Same", "Selector", "None")
    + ("Terminate", "Passthrough", "HTTP", "HTTPS", "TLS", "TCP", "UDP", "Service", "Gateway")
)
plausible_ints = pick((80, 443, 8080, 53, 5432, 0, 1, 65535, 65536, -1, 1000000))


def field_paths(doc: dict) -> list[tuple]:
    """Every path (key and index tuple) to a value in ``doc``, but apiVersion and kind."""
    return [path for path in _paths(doc) if path[0] not in ("apiVersion", "kind")]


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    found = [at] if at else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*at, index))
    return found


def value_at(doc: dict, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def replace_at(doc: dict, path: tuple, value: Any) -> None:
    """Put ``value`` at ``path`` in ``doc`` (in place): a path from ``field_paths``, or
    one naming a new key of an object in ``doc``."""
    *parents, last = path
    value_at(doc, tuple(parents))[last] = value

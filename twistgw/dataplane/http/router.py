"""The routing table compiled for one bound port: listener, virtual host and rule lookup.

Compiled once per table update; per request it costs a dict lookup for the host and a
walk over the host's rules in precedence order."""

from __future__ import annotations

import itertools
import operator
import random
from bisect import bisect_right
from collections.abc import Callable
from urllib.parse import parse_qsl

from twistgw.dataplane.http.cors import CompiledCORS
from twistgw.dataplane.http.policies import CompiledPolicies
from twistgw.dataplane.http.pyfilters import CompiledPythonFilters
from twistgw.dataplane.http.resilience import compile_policy
from twistgw.dataplane.http.sessions import CompiledSession, SessionKeys
from twistgw.hostnames import WildcardIndex, specificity
from twistgw.regex import compile_regex
from twistgw.routing import ir

Headers = list[tuple[bytes, bytes]]
#: Hosts remembered per router (the cache is dropped with the router on each update).
HOST_CACHE_SIZE = 10000
NO_POLICIES = ir.Policies()


class CompiledHeaderModifier:
    """A HeaderModifier with names lower-cased (as the codecs give every other field
    name, and as HTTP/2 requires on the wire) and names and values pre-encoded."""

    __slots__ = ("set", "add", "drop")

    def __init__(self, spec: ir.HeaderModifier) -> None:
        self.set = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in spec.set]
        self.add = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in spec.add]
        self.drop = {n.lower().encode("latin-1") for n in spec.remove}
        self.drop.update(n for n, _ in self.set)

    def apply(self, headers: Headers) -> Headers:
        drop = self.drop
        out = [h for h in headers if h[0].lower() not in drop]
        out.extend(self.set)
        out.extend(self.add)
        return out


def _modifier(spec: ir.HeaderModifier | None) -> CompiledHeaderModifier | None:
    return CompiledHeaderModifier(spec) if spec is not None else None


class CompiledBackend:
    """A backend ready to pick endpoints from, with its backendRef's filters;
    ``http2``: reached over HTTP/2; ``checks``: its ExtensionRef filters' request
    checks, run on each attempt sent to it (None: it has none); ``response_filters``:
    the filters that see its responses (the rule's, then its own; None: none)."""

    __slots__ = (
        "spec",
        "name",
        "endpoints",
        "invalid",
        "http2",
        "request_headers",
        "response_headers",
        "rewrite",
        "redirect",
        "checks",
        "response_filters",
        "_next",
    )

    def __init__(self, spec: ir.Backend, rule_python: tuple[ir.PythonFilter, ...] = ()) -> None:
        self.spec = spec
        self.name = spec.name
        self.endpoints = spec.endpoints
        self.invalid = spec.invalid
        self.http2 = spec.http2
        self.request_headers = _modifier(spec.filters.request_headers)
        self.response_headers = _modifier(spec.filters.response_headers)
        self.rewrite = spec.filters.rewrite
        self.redirect = spec.filters.redirect
        python = spec.filters.python
        self.checks = CompiledPythonFilters(python).request_checks(True) if python else None
        both = (*rule_python, *python)
        self.response_filters = CompiledPythonFilters(both) if both else None
        self._next = itertools.cycle(range(len(spec.endpoints))) if spec.endpoints else None

    def endpoint(self) -> ir.Endpoint | None:
        """The next endpoint, round robin; None when there is none."""
        if self._next is None:
            return None
        return self.endpoints[next(self._next)]


class WeightedBackends:
    """A rule's backends, chosen by weight (weight 0: never); ``all`` of them, weight
    0 included (a session may still name one)."""

    __slots__ = ("all", "backends", "_weights", "_total")

    def __init__(self, backends, rule_python: tuple[ir.PythonFilter, ...] = ()) -> None:
        self.all = [CompiledBackend(b, rule_python) for b in backends]
        self.backends = [b for b in self.all if b.spec.weight > 0]
        self._weights = list(itertools.accumulate(b.spec.weight for b in self.backends))
        self._total = self._weights[-1] if self._weights else 0

    def pick(self) -> CompiledBackend | None:
        if len(self.backends) == 1:
            return self.backends[0]
        if not self._total:
            return None
        return self.backends[bisect_right(self._weights, random.randrange(self._total))]


class CompiledRoute:
    """One rule match, ready to test against a request. ``grpc``: a GRPCRoute's rule
    (its own answers are gRPC-shaped; its PathPrefix is a plain string prefix);
    ``policy``: its timeouts and retries, None when it has neither; ``cors``: its
    CORS filter, if any; ``guards``: its TrafficPolicy and SecurityPolicy sections, if
    any reach it; ``session``: its session persistence, if any (with ``keys``)."""

    __slots__ = (
        "spec",
        "name",
        "rule",
        "grpc",
        "test_path",
        "headers",
        "query",
        "method",
        "redirect",
        "rewrite",
        "request_headers",
        "response_headers",
        "backends",
        "prefix",
        "policy",
        "mirrors",
        "cors",
        "guards",
        "session",
    )

    def __init__(
        self, spec: ir.Route, keys: SessionKeys | None = None, shared: dict | None = None
    ) -> None:
        self.spec = spec
        self.name = spec.route
        self.rule = spec.rule_name or str(spec.rule)  # (for metrics and the access log)
        self.grpc = spec.grpc
        match = spec.match
        self.test_path = _path_test(match.path_type, match.path, segments=not spec.grpc)
        self.prefix = match.path if match.path_type == "PathPrefix" else None
        self.headers = [(name, _value_test(kind, value)) for kind, name, value in match.headers]
        self.query = [(name, _value_test(kind, value)) for kind, name, value in match.query]
        self.method = match.method.encode() if match.method else None
        filters = spec.filters
        self.redirect = filters.redirect
        self.rewrite = filters.rewrite
        self.request_headers = _modifier(filters.request_headers)
        self.response_headers = _modifier(filters.response_headers)
        self.cors = CompiledCORS(filters.cors) if filters.cors is not None else None
        self.backends = WeightedBackends(spec.backends, filters.python)
        self.session = None
        if spec.session is not None:
            keys = keys if keys is not None else SessionKeys.for_process()
            self.session = CompiledSession(spec.session, self.backends.all, keys)
        self.policy = compile_policy(spec)
        self.guards = _guards(spec, shared if shared is not None else {})
        self.mirrors = [
            (CompiledBackend(m.backend), m.numerator / m.denominator) for m in filters.mirrors
        ]

    def matches(
        self,
        method: bytes,
        path: str,
        query: str,
        headers: dict[str, str] | None,
        headers_of: Callable[[], dict[str, str]],
    ) -> bool:
        if self.method is not None and method != self.method:
            return False
        if not self.test_path(path):
            return False
        if self.headers:
            found = headers if headers is not None else headers_of()
            for name, test in self.headers:
                value = found.get(name)
                if value is None or not test(value):
                    return False
        if self.query:
            params: dict[str, str] = {}
            for key, value in parse_qsl(query, keep_blank_values=True):
                params.setdefault(key, value)
            for name, test in self.query:
                value = params.get(name)
                if value is None or not test(value):
                    return False
        return True

    def pick_backend(self) -> CompiledBackend | None:
        """A backend chosen by weight; None when the rule has none with weight > 0."""
        return self.backends.pick()


def _path_test(kind: str, value: str, segments: bool = True) -> Callable[[str], bool]:
    """The test of a path match. PathPrefix matches whole segments (``/a`` and
    ``/a/`` both match ``/a`` and ``/a/b``, never ``/ab``); without ``segments`` (gRPC
    routes) it is a plain string prefix (``/svc/`` matches ``/svc/Method`` only)."""
    if kind == "Exact":
        return value.__eq__
    if kind == "RegularExpression":
        pattern = compile_regex(value)
        return lambda path: pattern.fullmatch(path) is not None
    if not segments:
        return operator.methodcaller("startswith", value)
    prefix = value.rstrip("/")
    if not prefix:
        return lambda path: True
    with_slash = prefix + "/"
    return lambda path: path == prefix or path.startswith(with_slash)


def _value_test(kind: str, value: str) -> Callable[[str], bool]:
    if kind == "RegularExpression":
        pattern = compile_regex(value)
        return lambda found: pattern.fullmatch(found) is not None
    return value.__eq__


class RouteIndex:
    """One virtual host's routes, in precedence order, indexed by path.

    Exact paths are looked up in a dict; path prefixes in a dict keyed by the prefix
    without its trailing slash, probed with each segment prefix of the request path;
    regular expressions are always candidates. The candidates are then tried in
    precedence order, so the result is the same as trying every route in turn, at
    the cost of a few dict lookups instead of one test per route."""

    LINEAR = 8  # up to this many routes, trying each in turn is cheaper

    def __init__(self, routes: list[CompiledRoute]) -> None:
        self.routes = routes
        self.exact: dict[str, list[tuple[int, CompiledRoute]]] = {}
        self.prefix: dict[str, list[tuple[int, CompiledRoute]]] = {}
        self.other: list[tuple[int, CompiledRoute]] = []
        for order, route in enumerate(routes):
            match = route.spec.match
            if match.path_type == "Exact":
                self.exact.setdefault(match.path, []).append((order, route))
            elif match.path_type == "PathPrefix":
                self.prefix.setdefault(match.path.rstrip("/"), []).append((order, route))
            else:
                self.other.append((order, route))
        self.indexed = len(routes) > self.LINEAR

    def first_match(self, method: bytes, path: str, query: str, headers_of) -> CompiledRoute | None:
        if not self.indexed:
            headers = None
            for route in self.routes:
                if route.headers and headers is None:
                    headers = headers_of()
                if route.matches(method, path, query, headers, headers_of):
                    return route
            return None
        found = list(self.other)
        exact = self.exact.get(path)
        if exact:
            found += exact
        prefix = self.prefix
        position = path.find("/")
        while position != -1:
            hit = prefix.get(path[:position])
            if hit:
                found += hit
            position = path.find("/", position + 1)
        hit = prefix.get(path)
        if hit:
            found += hit
        if len(found) > 1:
            found.sort(key=_order)
        headers = None
        for _, route in found:
            if route.headers and headers is None:
                headers = headers_of()
            if route.matches(method, path, query, headers, headers_of):
                return route
        return None


def _order(entry: tuple[int, CompiledRoute]) -> int:
    return entry[0]


def _guards(spec: ir.Route, shared: dict) -> CompiledPolicies | None:
    """The route's compiled policies and filters, one per distinct set in ``shared``
    (a Gateway-wide policy reaches every rule: its key set, htpasswd, token cache and
    address lists are made once per table, not once per rule)."""
    python = spec.filters.python
    if spec.policies is None and not python:
        return None
    key = (spec.policies, python)
    found = shared.get(key)
    if found is None:
        found = shared[key] = CompiledPolicies(spec.policies or NO_POLICIES, python)
    return found


def _compiled(
    spec: ir.Route, compiled: dict[int, CompiledRoute], keys: SessionKeys | None, shared: dict
) -> CompiledRoute:
    route = compiled.get(id(spec))
    if route is None:
        route = compiled[id(spec)] = CompiledRoute(spec, keys, shared)
    return route


class CompiledListener:
    """A listener's virtual hosts; ``compiled`` holds the routes compiled so far for the
    bind, so a rule the translator repeated per hostname and listener (equal entries)
    is compiled once and shared; ``keys``: the gateway's session keys."""

    def __init__(
        self,
        spec: ir.HTTPListener,
        compiled: dict[ir.Route, CompiledRoute] | None = None,
        keys: SessionKeys | None = None,
        shared: dict | None = None,
    ) -> None:
        if compiled is None:
            compiled = {}
        if shared is None:
            shared = {}
        self.spec = spec
        self.name = spec.name
        self.gateway = spec.gateway
        self.hostname = spec.hostname
        self.exact: dict[str, RouteIndex] = {}
        self.wildcards: WildcardIndex[RouteIndex] = WildcardIndex()
        self.any: RouteIndex | None = None
        self._candidates: dict[str, list[RouteIndex]] = {}
        for vhost in spec.virtual_hosts:
            routes = RouteIndex([_compiled(r, compiled, keys, shared) for r in vhost.routes])
            if vhost.hostname == "*":
                self.any = routes
            elif vhost.hostname.startswith("*."):
                self.wildcards.add(vhost.hostname, routes)
            else:
                self.exact[vhost.hostname] = routes

    def candidates(self, host: str) -> list[RouteIndex]:
        """Route lists whose hostname serves ``host``, most specific first."""
        found = self._candidates.get(host)
        if found is not None:
            return found
        found = self._lookup(host)
        if len(self._candidates) < HOST_CACHE_SIZE:
            self._candidates[host] = found
        return found

    def _lookup(self, host: str) -> list[RouteIndex]:
        found = []
        exact = self.exact.get(host)
        if exact is not None:
            found.append(exact)
        if self.wildcards:
            found += self.wildcards.matching(host)
        if self.any is not None:
            found.append(self.any)
        return found


class Router:
    """Everything one bound port serves. Listeners are indexed by hostname and by
    wildcard suffix, so finding a host's costs its labels, not the listeners' number.
    ``keys``: the gateway's session keys (None: this process's own random ones)."""

    def __init__(self, bind: ir.Bind, keys: SessionKeys | None = None) -> None:
        self.bind = bind
        compiled: dict[ir.Route, CompiledRoute] = {}
        shared: dict = {}  # (policies, filters) -> their compiled form, for every rule
        self.listeners = sorted(
            (CompiledListener(li, compiled, keys, shared) for li in bind.listeners),
            key=lambda li: specificity(li.hostname),
        )
        self._exact: dict[str, CompiledListener] = {}
        self._wildcards: WildcardIndex[CompiledListener] = WildcardIndex()
        self._any: CompiledListener | None = None
        for listener in self.listeners:  # (the first of equals wins, as in a scan)
            hostname = listener.hostname
            if not hostname or hostname == "*":
                self._any = self._any or listener
            elif hostname.startswith("*."):
                self._wildcards.add(hostname, listener)
            else:
                self._exact.setdefault(hostname, listener)
        self._by_host: dict[str, CompiledListener | None] = {}

    def listener_for(self, host: str) -> CompiledListener | None:
        """The most specific listener whose hostname covers ``host``."""
        try:
            return self._by_host[host]
        except KeyError:
            pass
        chosen = self._exact.get(host)
        if chosen is None and self._wildcards:
            chosen = next(self._wildcards.matching(host), None)
        if chosen is None:
            chosen = self._any
        if len(self._by_host) < HOST_CACHE_SIZE:
            self._by_host[host] = chosen
        return chosen

    def route(
        self,
        host: str,
        method: bytes,
        path: str,
        query: str,
        headers_of: Callable[[], dict[str, str]],
    ) -> tuple[CompiledListener | None, CompiledRoute | None]:
        listener = self.listener_for(host)
        if listener is None:
            return None, None
        for routes in listener.candidates(host):
            route = routes.first_match(method, path, query, headers_of)
            if route is not None:
                return listener, route
        return listener, None

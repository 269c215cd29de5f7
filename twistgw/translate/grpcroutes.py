"""GRPCRoutes: each rule's matches turned into HTTP routes over ``/service/method``
paths, which the HTTP router matches like any other, and their precedence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import re2

from twistgw.api.resource import Resource
from twistgw.api.validation import grpc_regex_problems, wire_problems
from twistgw.regex import RegexError, compile_regex
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.filters import UnsupportedRule
from twistgw.translate.rules import RuleKind, analyse_rules

#: Filters twistgw implements on GRPCRoute rules and backendRefs.
SUPPORTED_FILTERS = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier", "ExtensionRef"})
#: What a service or method left out matches: one path segment.
ANY_NAME = "[^/]+"


def method_path(method: Mapping[str, Any] | None) -> tuple[str, str]:
    """(path type, path) of a GRPCMethodMatch, for the router:

    - none: any path (PathPrefix ``/``);
    - Exact service and method: Exact ``/service/method``;
    - Exact service only: PathPrefix ``/service/`` (a string prefix on gRPC routes);
    - Exact method only: RegularExpression ``/[^/]+/method``;
    - RegularExpression: ``/(?:service)/(?:method)``, either defaulting to ``[^/]+``.
    """
    if not method:
        return "PathPrefix", "/"
    service, name = method.get("service") or "", method.get("method") or ""
    if method.get("type", "Exact") == "RegularExpression":
        return "RegularExpression", f"/(?:{service or ANY_NAME})/(?:{name or ANY_NAME})"
    if service and name:
        return "Exact", f"/{service}/{name}"
    if service:
        return "PathPrefix", f"/{service}/"
    if name:
        return "RegularExpression", f"/{ANY_NAME}/{re2.escape(name)}"
    return "PathPrefix", "/"


def _headers(specs: list[Mapping[str, Any]] | None) -> tuple[tuple[str, str, str], ...]:
    """Header matches, names lower-cased; of equivalent names only the first counts."""
    found: dict[str, tuple[str, str, str]] = {}
    for spec in specs or []:
        name = spec["name"].lower()
        if name not in found:
            found[name] = (spec.get("type", "Exact"), name, spec["value"])
    return tuple(found.values())


def grpc_match(spec: Mapping[str, Any]) -> ir.Match:
    """A GRPCRouteMatch as an HTTP match (any HTTP method: gRPC uses POST, but a
    request that is not gRPC is the backend's to refuse). Raises UnsupportedRule
    when RE2 cannot compile the path pattern made of its parts."""
    path_type, path = method_path(spec.get("method"))
    if path_type == "RegularExpression":
        try:
            compile_regex(path)
        except RegexError as exc:
            raise UnsupportedRule(f"RE2 cannot compile the method match {path!r}: {exc}") from None
    return ir.Match(path_type=path_type, path=path, headers=_headers(spec.get("headers")))


def grpc_precedence(route: Resource, match_index: int, compiled: ir.Route) -> tuple:
    """The GRPCRoute spec's order among rules sharing a hostname: most characters in
    the matching service, then in the method, most header matches, then the oldest
    route, its namespace/name, rule order and match order."""
    rule = (route.spec.get("rules") or [])[compiled.rule]
    method = ((rule.get("matches") or [{}])[match_index]).get("method") or {}
    return (
        -len(method.get("service") or ""),
        -len(method.get("method") or ""),
        -len(compiled.match.headers),
        route.creation_timestamp,
        route.namespace,
        route.name,
        compiled.rule,
        match_index,
    )


#: GRPCRoute rules as the shared rule loop compiles them.
GRPC_RULES = RuleKind(
    problems=lambda rule, where: grpc_regex_problems(rule, where) + wire_problems(rule, where),
    match=grpc_match,
    filters=SUPPORTED_FILTERS,
    backend_filters=SUPPORTED_FILTERS,
    fields=lambda rule: {"grpc": True},
)


def analyse_grpc_route(
    snapshot: Snapshot,
    route: Resource,
    policies: BackendTLSPolicies,
    plugins: Mapping[str, Mapping[str, Any]],
) -> RouteAnalysis:
    """Compile every rule of a GRPCRoute; note backend and support problems."""
    return analyse_rules(snapshot, route, policies, GRPC_RULES, plugins)

"""HTTPRoutes: attachment to listeners, reference checks, and rules turned into IR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twistgw.api.resource import Resource
from twistgw.api.validation import parse_duration, regex_problems, wire_problems
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.rules import RuleKind, analyse_rules

SUPPORTED_FILTERS = frozenset(
    {
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "RequestMirror",
        "CORS",
        "ExtensionRef",
    }
)
SUPPORTED_BACKEND_FILTERS = frozenset(
    {
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "ExtensionRef",
    }
)


def _match(spec: dict[str, Any]) -> ir.Match:
    path = spec.get("path") or {}
    return ir.Match(
        path_type=path.get("type", "PathPrefix"),
        path=path.get("value", "/"),
        headers=tuple(
            (h.get("type", "Exact"), h["name"].lower(), h["value"])
            for h in spec.get("headers") or []
        ),
        query=tuple(
            (q.get("type", "Exact"), q["name"], q["value"]) for q in spec.get("queryParams") or []
        ),
        method=spec.get("method"),
    )


#: Retries when a rule's retry sets no ``attempts`` (the spec leaves it to us).
DEFAULT_RETRY_ATTEMPTS = 2
#: The wait before a retry when a rule's retry sets no ``backoff``.
DEFAULT_RETRY_BACKOFF = 0.025
#: Retries a rule gets at most, whatever its ``attempts`` (the CRD sets no maximum):
#: each is another request to a backend, so one client request costs at most this
#: many more, even with a backoff of 0s against a backend that fails fast.
MAX_RETRY_ATTEMPTS = 10


def _seconds(spec: dict[str, Any], key: str) -> float | None:
    value = spec.get(key)
    return parse_duration(value) if value is not None else None


def timeouts_of(rule: dict[str, Any]) -> ir.Timeouts | None:
    """A validated rule's ``timeouts`` as IR; None when it has none."""
    spec = rule.get("timeouts")
    if not spec:
        return None
    return ir.Timeouts(_seconds(spec, "request"), _seconds(spec, "backendRequest"))


def retry_of(rule: dict[str, Any]) -> ir.Retry | None:
    """A validated rule's ``retry`` as IR, defaults filled in; None when it has none."""
    spec = rule.get("retry")
    if spec is None:
        return None
    backoff = _seconds(spec, "backoff")
    return ir.Retry(
        attempts=min(spec.get("attempts") or DEFAULT_RETRY_ATTEMPTS, MAX_RETRY_ATTEMPTS),
        codes=tuple(sorted(spec.get("codes") or ())),
        backoff=DEFAULT_RETRY_BACKOFF if backoff is None else backoff,
    )


PATH_RANK = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


def http_precedence(route: Resource, match_index: int, compiled: ir.Route) -> tuple:
    """The spec's order among rules sharing a hostname: exact path, longest prefix,
    method, most headers, most query params, then the oldest route, its name, rule
    order and match order."""
    match = compiled.match
    return (
        PATH_RANK.get(match.path_type, 3),
        -len(match.path),
        match.method is None,
        -len(match.headers),
        -len(match.query),
        route.creation_timestamp,
        route.namespace,
        route.name,
        compiled.rule,
        match_index,
    )


#: HTTPRoute rules as the shared rule loop compiles them.
HTTP_RULES = RuleKind(
    problems=lambda rule, where: regex_problems(rule, where) + wire_problems(rule, where),
    match=_match,
    filters=SUPPORTED_FILTERS,
    backend_filters=SUPPORTED_BACKEND_FILTERS,
    fields=lambda rule: {"timeouts": timeouts_of(rule), "retry": retry_of(rule)},
)


def analyse_route(
    snapshot: Snapshot,
    route: Resource,
    policies: BackendTLSPolicies,
    plugins: Mapping[str, Mapping[str, Any]],
) -> RouteAnalysis:
    """Compile every rule of an HTTPRoute; note backend and support problems."""
    return analyse_rules(snapshot, route, policies, HTTP_RULES, plugins)

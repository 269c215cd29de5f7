"""HTTPRoutes: attachment to listeners, reference checks, and rules turned into IR."""

from __future__ import annotations

from typing import Any

import attrs

from twistgw.api.resource import Resource
from twistgw.api.validation import parse_duration, regex_problems, wire_problems
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.filters import UnsupportedRule, compile_filters
from twistgw.translate.references import compile_backends

SUPPORTED_FILTERS = frozenset(
    {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"}
)
SUPPORTED_BACKEND_FILTERS = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier"})


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
        attempts=spec.get("attempts") or DEFAULT_RETRY_ATTEMPTS,
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


def analyse_route(
    snapshot: Snapshot, route: Resource, policies: BackendTLSPolicies
) -> RouteAnalysis:
    """Compile every rule of an HTTPRoute; note backend and support problems."""
    result = RouteAnalysis()
    name = f"{route.namespace}/{route.name}"
    rules = route.spec.get("rules") or []
    result.rule_count = len(rules)
    for rule_index, rule in enumerate(rules):
        refs = rule.get("backendRefs") or []
        resolved = compile_backends(snapshot, route, refs, result, policies)
        try:
            where = f"spec.rules[{rule_index}]"
            problems = regex_problems(rule, where) + wire_problems(rule, where)
            if problems:
                raise UnsupportedRule("; ".join(problems))
            timeouts, retry = timeouts_of(rule), retry_of(rule)
            for match_index, match_spec in enumerate(rule.get("matches") or [{}]):
                match = _match(match_spec)
                filters = compile_filters(rule.get("filters"), match, SUPPORTED_FILTERS)
                compiled = tuple(
                    attrs.evolve(
                        backend,
                        filters=compile_filters(
                            ref.get("filters"), match, SUPPORTED_BACKEND_FILTERS
                        ),
                    )
                    for ref, backend in zip(refs, resolved, strict=True)
                )
                result.routes.append(
                    (
                        match_index,
                        ir.Route(
                            name,
                            rule_index,
                            match,
                            filters,
                            compiled,
                            timeouts=timeouts,
                            retry=retry,
                        ),
                    )
                )
        except UnsupportedRule as exc:
            result.routes = [r for r in result.routes if r[1].rule != rule_index]
            result.unsupported.append(f"rule {rule_index}: {exc}")
    return result

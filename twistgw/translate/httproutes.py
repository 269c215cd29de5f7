"""HTTPRoutes: attachment to listeners, reference checks, and rules turned into IR."""

from __future__ import annotations

from typing import Any

import attrs

from twistgw.api.resource import Resource
from twistgw.api.validation import regex_problems, wire_problems
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.references import compile_backends

SUPPORTED_FILTERS = frozenset(
    {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"}
)
SUPPORTED_BACKEND_FILTERS = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier"})


class UnsupportedRule(Exception):
    """A rule using something twistgw does not implement (reason UnsupportedValue)."""


def _header_modifier(spec: dict[str, Any] | None) -> ir.HeaderModifier | None:
    if not spec:
        return None
    return ir.HeaderModifier(
        set=tuple((h["name"], h["value"]) for h in spec.get("set") or []),
        add=tuple((h["name"], h["value"]) for h in spec.get("add") or []),
        remove=tuple(spec.get("remove") or []),
    )


def _path_modifier(spec: dict[str, Any] | None, match: ir.Match) -> ir.PathModifier | None:
    if not spec:
        return None
    if spec["type"] == "ReplaceFullPath":
        return ir.PathModifier("ReplaceFullPath", spec.get("replaceFullPath") or "/")
    if match.path_type != "PathPrefix":
        raise UnsupportedRule("ReplacePrefixMatch needs a PathPrefix match")
    return ir.PathModifier("ReplacePrefixMatch", spec.get("replacePrefixMatch") or "/")


def _filters(specs: list[dict[str, Any]], match: ir.Match, allowed: frozenset[str]) -> ir.Filters:
    fields: dict[str, Any] = {}
    for spec in specs or []:
        kind = spec["type"]
        if kind not in allowed:
            raise UnsupportedRule(f"filter type {kind} is not supported")
        if kind == "RequestHeaderModifier":
            fields["request_headers"] = _header_modifier(spec.get("requestHeaderModifier"))
        elif kind == "ResponseHeaderModifier":
            fields["response_headers"] = _header_modifier(spec.get("responseHeaderModifier"))
        elif kind == "RequestRedirect":
            red = spec.get("requestRedirect") or {}
            fields["redirect"] = ir.RequestRedirect(
                scheme=red.get("scheme"),
                hostname=red.get("hostname"),
                port=red.get("port"),
                path=_path_modifier(red.get("path"), match),
                status_code=red.get("statusCode", 302),
            )
        elif kind == "URLRewrite":
            rew = spec.get("urlRewrite") or {}
            fields["rewrite"] = ir.URLRewrite(
                hostname=rew.get("hostname"), path=_path_modifier(rew.get("path"), match)
            )
    if "redirect" in fields and "rewrite" in fields:
        raise UnsupportedRule("RequestRedirect and URLRewrite cannot be combined")
    return ir.Filters(**fields)


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
            for match_index, match_spec in enumerate(rule.get("matches") or [{}]):
                match = _match(match_spec)
                filters = _filters(rule.get("filters"), match, SUPPORTED_FILTERS)
                compiled = tuple(
                    attrs.evolve(
                        backend,
                        filters=_filters(ref.get("filters"), match, SUPPORTED_BACKEND_FILTERS),
                    )
                    for ref, backend in zip(refs, resolved, strict=True)
                )
                result.routes.append(
                    (match_index, ir.Route(name, rule_index, match, filters, compiled))
                )
        except UnsupportedRule as exc:
            result.routes = [r for r in result.routes if r[1].rule != rule_index]
            result.unsupported.append(f"rule {rule_index}: {exc}")
    return result

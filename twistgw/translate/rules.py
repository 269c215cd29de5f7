"""The rule loop HTTPRoutes and GRPCRoutes share: each rule's backends resolved, its
unsendable values refused, each match turned into an IR route with the rule's and the
backendRefs' filters and the rule's session persistence; a rule that cannot be served
is dropped with its reason."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from twistgw.api.resource import Resource
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.extensions import compile_extensions
from twistgw.translate.filters import UnsupportedRule, compile_filters
from twistgw.translate.mirrors import compile_mirrors
from twistgw.translate.references import compile_backends
from twistgw.translate.sessions import session_of, session_problems


@attrs.frozen
class RuleKind:
    """What differs between route kinds: the problems refusing a rule (its values the
    wire or RE2 cannot take), a match as IR, the filters supported on rules and on
    backendRefs, and the IR route's fields taken from the rule itself."""

    problems: Callable[[dict[str, Any], str], list[str]]
    match: Callable[[dict[str, Any]], ir.Match]
    filters: frozenset[str]
    backend_filters: frozenset[str]
    fields: Callable[[dict[str, Any]], dict[str, Any]]


def analyse_rules(
    snapshot: Snapshot,
    route: Resource,
    policies: BackendTLSPolicies,
    kind: RuleKind,
    plugins: Mapping[str, Mapping[str, Any]],
) -> RouteAnalysis:
    """Compile every rule of ``route``; note backend and support problems."""
    result = RouteAnalysis()
    name = f"{route.namespace}/{route.name}"
    rules = route.spec.get("rules") or []
    result.rule_count = len(rules)
    for rule_index, rule in enumerate(rules):
        rule_name = rule.get("name")
        refs = rule.get("backendRefs") or []
        resolved = compile_backends(snapshot, route, refs, result, policies)
        try:
            where = f"spec.rules[{rule_index}]"
            problems = kind.problems(rule, where) + session_problems(rule, where)
            if problems:
                raise UnsupportedRule("; ".join(problems))
            fields = kind.fields(rule)
            session = session_of(route, rule_index, rule)
            mirrors = ()
            if "RequestMirror" in kind.filters:
                mirrors = compile_mirrors(snapshot, route, rule.get("filters"), result, policies)
            python = ()
            if "ExtensionRef" in kind.filters:
                python = compile_extensions(snapshot, route, rule.get("filters"), result, plugins)
            backend_python = [
                compile_extensions(snapshot, route, ref.get("filters"), result, plugins)
                if "ExtensionRef" in kind.backend_filters
                else ()
                for ref in refs
            ]
            entries = []
            for match_index, match_spec in enumerate(rule.get("matches") or [{}]):
                match = kind.match(match_spec)
                filters = compile_filters(rule.get("filters"), match, kind.filters, mirrors, python)
                backends = tuple(
                    attrs.evolve(
                        backend,
                        filters=compile_filters(
                            ref.get("filters"), match, kind.backend_filters, python=own
                        ),
                    )
                    for ref, backend, own in zip(refs, resolved, backend_python, strict=True)
                )
                route_entry = ir.Route(
                    name,
                    rule_index,
                    match,
                    filters,
                    backends,
                    rule_name=rule_name,
                    session=session,
                    **fields,
                )
                entries.append((match_index, route_entry))
            result.routes.extend(entries)
        except UnsupportedRule as exc:
            label = f"rule {rule_index}" + (f" ({rule_name})" if rule_name else "")
            result.unsupported.append(f"{label}: {exc}")
    return result

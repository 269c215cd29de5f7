"""TLSRoutes: each rule's backends compiled for TLS listeners."""

from __future__ import annotations

from twistgw.api.resource import Resource
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.references import compile_backends


def analyse_stream_route(
    snapshot: Snapshot, route: Resource, policies: BackendTLSPolicies, plugins: object = None
) -> RouteAnalysis:
    """Compile a TLSRoute's, TCPRoute's or UDPRoute's rules (one StreamRoute each;
    listeners serve the first)."""
    analysis = RouteAnalysis(stream=True)
    rules = route.spec.get("rules") or []
    analysis.rule_count = len(rules)
    name = f"{route.namespace}/{route.name}"
    for index, rule in enumerate(rules):
        backends = compile_backends(
            snapshot, route, rule.get("backendRefs") or [], analysis, policies
        )
        analysis.routes.append((0, ir.StreamRoute(name, index, backends)))
    return analysis

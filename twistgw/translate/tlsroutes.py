"""TLSRoutes: each rule's backends compiled for TLS passthrough listeners."""

from __future__ import annotations

from twistgw.api.resource import Resource
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.references import BackendError, resolve_service


def compile_backends(
    snapshot: Snapshot, route: Resource, refs: list[dict], analysis: RouteAnalysis
) -> tuple[ir.Backend, ...]:
    """Backends of a rule; unresolvable ones are kept as invalid (their share of
    connections is refused) and the first problem is noted for ResolvedRefs."""
    backends = []
    for ref in refs:
        try:
            endpoints, app_protocol = resolve_service(snapshot, route, ref)
            invalid = False
        except BackendError as exc:
            analysis.ref_error = analysis.ref_error or exc
            endpoints, app_protocol, invalid = (), None, True
        backends.append(
            ir.Backend(
                name=f"{ref.get('namespace') or route.namespace}/{ref['name']}:{ref.get('port')}",
                weight=ref.get("weight", 1),
                endpoints=endpoints,
                invalid=invalid,
                app_protocol=app_protocol,
            )
        )
    return tuple(backends)


def analyse_stream_route(snapshot: Snapshot, route: Resource) -> RouteAnalysis:
    """Compile a TLSRoute's rules (one StreamRoute each)."""
    analysis = RouteAnalysis()
    rules = route.spec.get("rules") or []
    analysis.rule_count = len(rules)
    name = f"{route.namespace}/{route.name}"
    for index, rule in enumerate(rules):
        backends = compile_backends(snapshot, route, rule.get("backendRefs") or [], analysis)
        analysis.routes.append((0, ir.StreamRoute(name, index, backends)))
    return analysis

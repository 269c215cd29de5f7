"""RequestMirror filters: each mirror's backendRef resolved like a rule's backendRefs
(ReferenceGrants, BackendTLSPolicy, HTTP/2), and its share of requests."""

from __future__ import annotations

from typing import Any

from twistgw.api.resource import Resource
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import RouteAnalysis
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.references import compile_backends


def _share(mirror: dict[str, Any]) -> tuple[int, int]:
    """(numerator, denominator) of the requests mirrored: ``percent``, ``fraction``
    or, with neither, all."""
    if mirror.get("fraction") is not None:
        fraction = mirror["fraction"]
        return fraction["numerator"], fraction.get("denominator", 100)
    if mirror.get("percent") is not None:
        return mirror["percent"], 100
    return 1, 1


def compile_mirrors(
    snapshot: Snapshot,
    route: Resource,
    filters: list[dict[str, Any]] | None,
    analysis: RouteAnalysis,
    policies: BackendTLSPolicies,
) -> tuple[ir.Mirror, ...]:
    """The mirrors of a rule's RequestMirror filters. A mirror whose backend cannot be
    used is left out (the spec: "dropped from the Gateway") and its problem noted on
    ``analysis`` for the route's ResolvedRefs condition; one that mirrors nothing
    (numerator 0) is left out too."""
    mirrors = []
    for spec in filters or ():
        if spec.get("type") != "RequestMirror":
            continue
        mirror = spec["requestMirror"]
        ref = dict(mirror["backendRef"], weight=1)
        (backend,) = compile_backends(snapshot, route, [ref], analysis, policies)
        numerator, denominator = _share(mirror)
        if not backend.invalid and numerator > 0:
            mirrors.append(ir.Mirror(backend, numerator, denominator))
    return tuple(mirrors)

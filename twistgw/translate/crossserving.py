"""HTTPRoutes and GRPCRoutes on one listener (the GRPCRoute spec's "cross serving"
rule): where their hostnames intersect, only the route attached first (the oldest,
then the first by namespace/name) is accepted; the other is refused there."""

from __future__ import annotations

from collections.abc import Sequence

from twistgw.api.resource import Resource
from twistgw.hostnames import wildcard_matches

#: Each route kind and the kind it may not share a hostname with on a listener.
RIVAL_KINDS = {"HTTPRoute": "GRPCRoute", "GRPCRoute": "HTTPRoute"}
#: The Accepted reason of a route refused for that (the spec names none).
REASON = "HostnameConflict"


def _meet(a: str, b: str) -> bool:
    """Whether two hostnames ("*": any) have a host in common."""
    return "*" in (a, b) or a == b or wildcard_matches(a, b) or wildcard_matches(b, a)


def hostnames_intersect(first: Sequence[str], second: Sequence[str]) -> bool:
    return any(_meet(a, b) for a in first for b in second)


class HostnameClaims:
    """The hostnames each accepted HTTPRoute and GRPCRoute serves on each listener.
    Routes must be offered oldest first, so the first claim wins."""

    def __init__(self) -> None:
        self._held: dict[int, list[tuple[str, Sequence[str], Resource]]] = {}

    def rival(self, listener: object, route: Resource, hostnames: Sequence[str]) -> Resource | None:
        """The route of the rival kind already holding one of ``hostnames`` on
        ``listener``, or None."""
        rival_kind = RIVAL_KINDS.get(route.kind)
        if rival_kind is None:
            return None
        for kind, held, holder in self._held.get(id(listener), ()):
            if kind == rival_kind and hostnames_intersect(hostnames, held):
                return holder
        return None

    def claim(self, listener: object, route: Resource, hostnames: Sequence[str]) -> None:
        if route.kind in RIVAL_KINDS:
            self._held.setdefault(id(listener), []).append((route.kind, hostnames, route))

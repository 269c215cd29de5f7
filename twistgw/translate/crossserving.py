"""HTTPRoutes and GRPCRoutes on one listener (the GRPCRoute spec's "cross serving"
rule): where their hostnames intersect, only the route attached first (the oldest,
then the first by namespace/name) is accepted; the other is refused there.

The claims are indexed by hostname and by domain suffix, so checking a route costs
its hostnames times their labels, not the number of routes already attached (a
scan of every claim made thousands of routes on one listener quadratic)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from twistgw.api.resource import Resource

#: Each route kind and the kind it may not share a hostname with on a listener.
RIVAL_KINDS = {"HTTPRoute": "GRPCRoute", "GRPCRoute": "HTTPRoute"}
#: The Accepted reason of a route refused for that (the spec names none).
REASON = "HostnameConflict"

_Claim = tuple[int, Resource]


def _suffixes(name: str) -> Iterator[str]:
    """The domain suffixes of ``name`` below its first label, each with its leading
    dot: "a.b.c" gives ".b.c" and ".c"."""
    dot = name.find(".")
    while dot >= 0:
        yield name[dot:]
        dot = name.find(".", dot + 1)


class _KindClaims:
    """The hostnames the accepted routes of one kind serve on one listener; each
    index keeps the first claim (the lowest order) of its key."""

    def __init__(self) -> None:
        self.first: _Claim | None = None  # any hostname
        self.any: _Claim | None = None  # "*"
        self.names: dict[str, _Claim] = {}  # exact names
        self.names_under: dict[str, _Claim] = {}  # each suffix of an exact name
        self.wildcards: dict[str, _Claim] = {}  # "*.x.y" by ".x.y"
        self.wildcards_under: dict[str, _Claim] = {}  # each suffix of a wildcard's

    def add(self, claim: _Claim, hostnames: Sequence[str]) -> None:
        for host in hostnames:
            if self.first is None:
                self.first = claim
            if host == "*":
                if self.any is None:
                    self.any = claim
            elif host.startswith("*."):
                self.wildcards.setdefault(host[1:], claim)
                for suffix in _suffixes(host[2:]):
                    self.wildcards_under.setdefault(suffix, claim)
            else:
                self.names.setdefault(host, claim)
                for suffix in _suffixes(host):
                    self.names_under.setdefault(suffix, claim)

    def meeting(self, host: str) -> Iterator[_Claim | None]:
        """The first claims of each kind of hostname that has a host in common with
        ``host`` (None where there is none)."""
        if host == "*":
            yield self.first
            return
        yield self.any
        if host.startswith("*."):
            suffix = host[1:]
            # wildcards as wide or wider, wildcards narrower, names under it
            yield self.wildcards.get(suffix)
            for wider in _suffixes(suffix[1:]):
                yield self.wildcards.get(wider)
            yield self.wildcards_under.get(suffix)
            yield self.names_under.get(suffix)
        else:
            yield self.names.get(host)
            for wider in _suffixes(host):
                yield self.wildcards.get(wider)


class HostnameClaims:
    """The hostnames each accepted HTTPRoute and GRPCRoute serves on each listener.
    Routes must be offered oldest first, so the first claim wins."""

    def __init__(self) -> None:
        self._held: dict[tuple[int, str], _KindClaims] = {}
        self._order = 0

    def rival(self, listener: object, route: Resource, hostnames: Sequence[str]) -> Resource | None:
        """The route of the rival kind that first claimed a hostname intersecting
        ``hostnames`` on ``listener``, or None."""
        rival_kind = RIVAL_KINDS.get(route.kind)
        held = self._held.get((id(listener), rival_kind)) if rival_kind else None
        if held is None:
            return None
        found = [claim for host in hostnames for claim in held.meeting(host) if claim]
        return min(found, key=lambda claim: claim[0])[1] if found else None

    def claim(self, listener: object, route: Resource, hostnames: Sequence[str]) -> None:
        if route.kind in RIVAL_KINDS:
            self._order += 1
            key = (id(listener), route.kind)
            self._held.setdefault(key, _KindClaims()).add((self._order, route), hostnames)

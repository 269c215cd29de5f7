"""Bounds on what routes expand into. A route becomes one routing entry per listener,
hostname and match (listeners x hostnames x rules x matches), so a route inside every
CRD bound can still expand into 131,072 entries (64 listeners, 16 hostnames, 128
matches). The expansion is counted before any entry is built, and a route's parent is
refused when it would take the route, or the whole table, past its bound."""

from __future__ import annotations

from twistgw.api.resource import Resource

#: Routing entries one route may expand into, all its parents together: the CRDs'
#: largest route (16 hostnames x 128 matches) on two listeners per hostname.
DEFAULT_MAX_ROUTE_ENTRIES = 4096
#: Routing entries the whole table may hold: 10,000 routes of 20 each; about 0.5 s of
#: translation, and about 3 s of compiling in each worker (docs/performance.md).
DEFAULT_MAX_TABLE_ENTRIES = 200_000
#: The Accepted reason of a parent refused for its expansion (the spec allows it for
#: values the implementation does not support).
REASON = "UnsupportedValue"


class EntryBudget:
    """Routing entries granted so far, to the current route and in all. Routes must be
    offered oldest first, so an older route keeps what it has when a newer one would
    not fit, and each route's parents one after another."""

    def __init__(self, per_route: int, per_table: int) -> None:
        self.per_route = per_route
        self.per_table = per_table
        self.used = 0
        self._route: Resource | None = None
        self._route_used = 0

    def take(self, route: Resource, entries: int) -> str | None:
        """Grant ``route`` ``entries`` more on one parent; or, when that would pass a
        bound, grant nothing and say why (the parent's Accepted message)."""
        if route is not self._route:
            self._route, self._route_used = route, 0
        earlier = self._route_used
        total = earlier + entries
        if total > self.per_route:
            where = f"{entries:,} on this parent"
            if earlier:
                where += f" and {earlier:,} on its earlier parents"
            return (
                f"The route would expand into {total:,} routing entries (listeners x "
                f"hostnames x matches: {where}), more than the {self.per_route:,} a route "
                "may have (--route-max-entries)"
            )
        if self.used + entries > self.per_table:
            return (
                f"The routing table would have {self.used + entries:,} entries with this "
                f"route's {entries:,} on this parent, more than the {self.per_table:,} it "
                "may have (--routing-table-max-entries); older routes are served first"
            )
        self._route_used = total
        self.used += entries
        return None

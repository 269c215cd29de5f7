"""Route attachment, for every route kind: parentRefs resolved to listeners
(sectionName, port, allowed kinds and namespaces, hostnames) and per-parent status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from twistgw.api.resource import GATEWAY_GROUP, ObjectStatus, Resource
from twistgw.hostnames import intersect
from twistgw.snapshot import Snapshot
from twistgw.translate import budget as expansion
from twistgw.translate import crossserving
from twistgw.translate.budget import EntryBudget
from twistgw.translate.conditions import Conditions
from twistgw.translate.crossserving import HostnameClaims
from twistgw.translate.gateways import GatewayState, ListenerState
from twistgw.translate.references import BackendError
from twistgw.translate.selectors import namespace_allowed


@attrs.frozen
class Attachment:
    """A route rule-set bound to one listener with the hostnames it serves there."""

    listener: ListenerState
    hostnames: tuple[str, ...]
    route: Resource
    rules: tuple[tuple[int, Any], ...]  # (match index, compiled rule) in rule order


@attrs.define
class RouteAnalysis:
    """What a route's rules compile to, independent of its parents."""

    routes: list[tuple[int, Any]] = attrs.field(factory=list)
    unsupported: list[str] = attrs.field(factory=list)
    ref_error: BackendError | None = None
    rule_count: int = 0
    #: a stream route (TLS, TCP, UDP): only its first rule is served
    stream: bool = False

    def entries_per_hostname(self) -> int:
        """Routing entries the route adds for each hostname it serves on a listener."""
        return min(len(self.routes), 1) if self.stream else len(self.routes)


#: A route's parent: a Gateway or a ListenerSet (both have ``key`` and ``listeners``).
Parent = Any


def _parent_listeners(parent: Parent, ref: dict[str, Any]) -> list[ListenerState]:
    """The parent's own listeners the ref selects (a Gateway's never include those of
    its ListenerSets)."""
    section, port = ref.get("sectionName"), ref.get("port")
    return [
        listener
        for listener in parent.listeners
        if (section is None or listener.name == section) and (port is None or listener.port == port)
    ]


def attach_routes(
    snapshot: Snapshot,
    gateways: dict[tuple[str, str], GatewayState],
    routes: list[Resource],
    controller_name: str,
    analyse: Callable[[Snapshot, Resource], RouteAnalysis],
    claims: HostnameClaims | None = None,
    budget: EntryBudget | None = None,
    listener_sets: dict[tuple[str, str], Parent] | None = None,
) -> tuple[list[Attachment], list[ObjectStatus]]:
    """Attach each route to the listeners its parentRefs select; return the
    attachments and each route's status (only for parents this controller owns).
    ``analyse`` compiles a route's rules (it depends on the route kind); ``claims``,
    when given, refuses a route on a listener where a route of its rival kind
    (HTTPRoute, GRPCRoute) attached before it holds one of its hostnames; ``budget``,
    when given, refuses a parent on which the route would expand past its bounds;
    ``listener_sets`` are the ListenerSets routes may name as parents."""
    parents_by_kind = {"Gateway": gateways, "ListenerSet": listener_sets or {}}
    attachments: list[Attachment] = []
    statuses: list[ObjectStatus] = []
    for route in sorted(routes, key=Resource.age_key):
        analysis = analyse(snapshot, route)
        parents = []
        for ref in route.spec.get("parentRefs") or []:
            if ref.get("group") != GATEWAY_GROUP or ref.get("kind") not in parents_by_kind:
                continue
            key = (ref.get("namespace") or route.namespace, ref["name"])
            gateway = parents_by_kind[ref["kind"]].get(key)
            if gateway is None:
                continue
            conditions = Conditions(route.generation)
            _attach_to_parent(
                snapshot, route, ref, gateway, analysis, conditions, attachments, claims, budget
            )
            parents.append(
                {
                    "parentRef": dict(ref),
                    "controllerName": controller_name,
                    "conditions": conditions.as_list(),
                }
            )
        if parents:
            statuses.append(
                ObjectStatus(route.key, route.api_version, route.generation, {"parents": parents})
            )
    return attachments, statuses


def _attach_to_parent(
    snapshot: Snapshot,
    route: Resource,
    ref: dict[str, Any],
    gateway: Parent,
    analysis: RouteAnalysis,
    conditions: Conditions,
    attachments: list[Attachment],
    claims: HostnameClaims | None,
    budget: EntryBudget | None,
) -> None:
    candidates = _parent_listeners(gateway, ref)
    if not candidates:
        what = []
        if ref.get("sectionName") is not None:
            what.append(f"sectionName {ref['sectionName']}")
        if ref.get("port") is not None:
            what.append(f"port {ref['port']}")
        conditions.set(
            "Accepted",
            False,
            "NoMatchingParent",
            f"{gateway.key} has no listener" + (f" with {' and '.join(what)}" if what else "s"),
        )
    else:
        allowed = [
            listener
            for listener in candidates
            if listener.accepted
            and listener.allows_kind(GATEWAY_GROUP, route.kind)
            and namespace_allowed(snapshot, listener, route.namespace)
        ]
        matched = []
        for listener in allowed:
            hostnames = intersect(route.spec.get("hostnames") or [], listener.hostname)
            if hostnames:
                matched.append((listener, hostnames))
        if not allowed:
            conditions.set(
                "Accepted",
                False,
                "NotAllowedByListeners",
                "No listener of the parent allows this route",
            )
        elif not matched:
            conditions.set(
                "Accepted",
                False,
                "NoMatchingListenerHostname",
                "No listener hostname matches the route's hostnames",
            )
        elif analysis.rule_count and not analysis.routes:
            conditions.set("Accepted", False, "UnsupportedValue", "; ".join(analysis.unsupported))
        else:
            _accept(route, matched, analysis, conditions, attachments, claims, budget)
    if analysis.ref_error is not None:
        conditions.set("ResolvedRefs", False, analysis.ref_error.reason, analysis.ref_error.message)
    else:
        conditions.set("ResolvedRefs", True, "ResolvedRefs", "All references are resolved")
    if analysis.unsupported and analysis.routes:
        conditions.set(
            "PartiallyInvalid", True, "UnsupportedValue", "; ".join(analysis.unsupported)
        )


def _accept(
    route: Resource,
    matched: list[tuple[ListenerState, list[str]]],
    analysis: RouteAnalysis,
    conditions: Conditions,
    attachments: list[Attachment],
    claims: HostnameClaims | None,
    budget: EntryBudget | None,
) -> None:
    """Attach the route to each matched listener where no route of its rival kind
    holds its hostnames; Accepted is False when that leaves none, or when the entries
    it would expand into there (counted first) do not fit the budget."""
    rivals = [claims.rival(li, route, hosts) if claims else None for li, hosts in matched]
    if all(rivals):
        holder = rivals[0]
        conditions.set(
            "Accepted",
            False,
            crossserving.REASON,
            f"{holder.kind} {holder.namespace}/{holder.name} already serves these hostnames "
            "on the listener (it is older, or first by namespace/name)",
        )
        return
    served = [match for match, rival in zip(matched, rivals, strict=True) if rival is None]
    if budget is not None:
        entries = sum(len(hostnames) for _, hostnames in served)
        refusal = budget.take(route, entries * analysis.entries_per_hostname())
        if refusal is not None:
            conditions.set("Accepted", False, expansion.REASON, refusal)
            return
    conditions.set("Accepted", True, "Accepted", "Route is accepted")
    for listener, hostnames in served:
        listener.attached_routes += 1
        if claims is not None:
            claims.claim(listener, route, hostnames)
        attachments.append(Attachment(listener, tuple(hostnames), route, tuple(analysis.routes)))

"""HTTPRoutes: attachment to listeners, reference checks, and rules turned into IR."""

from __future__ import annotations

from typing import Any

import attrs

from twistgw.api.resource import GATEWAY_GROUP, Resource
from twistgw.hostnames import intersect
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.conditions import Conditions
from twistgw.translate.gateways import GatewayState, ListenerState
from twistgw.translate.model import ObjectStatus
from twistgw.translate.references import BackendError, resolve_service
from twistgw.translate.selectors import namespace_allowed

SUPPORTED_FILTERS = frozenset(
    {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"}
)
SUPPORTED_BACKEND_FILTERS = frozenset({"RequestHeaderModifier", "ResponseHeaderModifier"})


class UnsupportedRule(Exception):
    """A rule using something twistgw does not implement (reason UnsupportedValue)."""


@attrs.frozen
class Attachment:
    """A route rule-set bound to one listener with the hostnames it serves there."""

    listener: ListenerState
    hostnames: tuple[str, ...]
    route: Resource
    rules: tuple[tuple[int, ir.Route], ...]


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


@attrs.define
class RouteAnalysis:
    """What a route's rules compile to, independent of its parents."""

    routes: list[tuple[int, ir.Route]] = attrs.field(factory=list)
    unsupported: list[str] = attrs.field(factory=list)
    ref_error: BackendError | None = None
    rule_count: int = 0


def analyse_route(snapshot: Snapshot, route: Resource) -> RouteAnalysis:
    """Compile every rule of an HTTPRoute; note backend and support problems."""
    result = RouteAnalysis()
    name = f"{route.namespace}/{route.name}"
    rules = route.spec.get("rules") or []
    result.rule_count = len(rules)
    for rule_index, rule in enumerate(rules):
        backends = []
        for ref in rule.get("backendRefs") or []:
            try:
                endpoints, app_protocol = resolve_service(snapshot, route, ref)
                invalid = False
            except BackendError as exc:
                result.ref_error = result.ref_error or exc
                endpoints, app_protocol, invalid = (), None, True
            backends.append((ref, endpoints, app_protocol, invalid))
        try:
            for match_index, match_spec in enumerate(rule.get("matches") or [{}]):
                match = _match(match_spec)
                filters = _filters(rule.get("filters"), match, SUPPORTED_FILTERS)
                compiled = tuple(
                    ir.Backend(
                        name=f"{ref.get('namespace') or route.namespace}/{ref['name']}:"
                        f"{ref.get('port')}",
                        weight=ref.get("weight", 1),
                        endpoints=endpoints,
                        invalid=invalid,
                        app_protocol=app_protocol,
                        filters=_filters(ref.get("filters"), match, SUPPORTED_BACKEND_FILTERS),
                    )
                    for ref, endpoints, app_protocol, invalid in backends
                )
                result.routes.append(
                    (match_index, ir.Route(name, rule_index, match, filters, compiled))
                )
        except UnsupportedRule as exc:
            result.routes = [r for r in result.routes if r[1].rule != rule_index]
            result.unsupported.append(f"rule {rule_index}: {exc}")
    return result


def _parent_listeners(gateway: GatewayState, ref: dict[str, Any]) -> list[ListenerState]:
    section, port = ref.get("sectionName"), ref.get("port")
    return [
        listener
        for listener in gateway.listeners
        if (section is None or listener.name == section) and (port is None or listener.port == port)
    ]


def attach_routes(
    snapshot: Snapshot,
    gateways: dict[tuple[str, str], GatewayState],
    routes: list[Resource],
    controller_name: str,
) -> tuple[list[Attachment], list[ObjectStatus]]:
    """Attach each HTTPRoute to the listeners its parentRefs select; return the
    attachments and each route's status (only for parents this controller owns)."""
    attachments: list[Attachment] = []
    statuses: list[ObjectStatus] = []
    for route in sorted(routes, key=Resource.age_key):
        analysis = analyse_route(snapshot, route)
        parents = []
        for ref in route.spec.get("parentRefs") or []:
            if (ref.get("group"), ref.get("kind")) != (GATEWAY_GROUP, "Gateway"):
                continue
            gateway = gateways.get((ref.get("namespace") or route.namespace, ref["name"]))
            if gateway is None:
                continue
            conditions = Conditions(route.generation)
            _attach_to_parent(snapshot, route, ref, gateway, analysis, conditions, attachments)
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
    gateway: GatewayState,
    analysis: RouteAnalysis,
    conditions: Conditions,
    attachments: list[Attachment],
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
            f"Gateway {gateway.key.namespace}/{gateway.key.name} has no listener "
            f"with {' and '.join(what)}",
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
            conditions.set("Accepted", True, "Accepted", "Route is accepted")
            for listener, hostnames in matched:
                listener.attached_routes += 1
                attachments.append(
                    Attachment(listener, tuple(hostnames), route, tuple(analysis.routes))
                )
    if analysis.ref_error is not None:
        conditions.set("ResolvedRefs", False, analysis.ref_error.reason, analysis.ref_error.message)
    else:
        conditions.set("ResolvedRefs", True, "ResolvedRefs", "All references are resolved")
    if analysis.unsupported and analysis.routes:
        conditions.set(
            "PartiallyInvalid", True, "UnsupportedValue", "; ".join(analysis.unsupported)
        )

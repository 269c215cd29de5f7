"""The translator: a pure function from a Snapshot to a routing table and statuses."""

from __future__ import annotations

from functools import partial

from twistgw.api.resource import ObjectKey, Resource
from twistgw.hostnames import specificity
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.translate.attachment import Attachment, RouteAnalysis, attach_routes
from twistgw.translate.backendtls import BackendTLSPolicies
from twistgw.translate.budget import EntryBudget
from twistgw.translate.crossserving import HostnameClaims
from twistgw.translate.gateways import accepted_classes, build_gateways
from twistgw.translate.grpcroutes import analyse_grpc_route, grpc_precedence
from twistgw.translate.httproutes import analyse_route, http_precedence
from twistgw.translate.listenersets import ListenerSets
from twistgw.translate.model import TranslateOptions, Translation
from twistgw.translate.policies import PolicyAttachment
from twistgw.translate.tlsroutes import analyse_stream_route

__all__ = ["TranslateOptions", "Translation", "translate"]

#: How each route kind's rules are compiled (in the order kinds are offered).
ROUTE_ANALYSERS = {
    "HTTPRoute": analyse_route,
    "GRPCRoute": analyse_grpc_route,
    "TLSRoute": analyse_stream_route,
    "TCPRoute": analyse_stream_route,
    "UDPRoute": analyse_stream_route,
}
#: How each HTTP route kind's rules are ordered.
PRECEDENCE = {"HTTPRoute": http_precedence, "GRPCRoute": grpc_precedence}
#: HTTP route kinds in the order their rules sort if they ever shared a hostname
#: (cross serving keeps them apart: see crossserving.py).
KIND_RANK = {"HTTPRoute": 0, "GRPCRoute": 1}


def _analyse(
    snapshot: Snapshot, route: Resource, policies: BackendTLSPolicies, plugins
) -> RouteAnalysis:
    return ROUTE_ANALYSERS[route.kind](snapshot, route, policies, plugins)


def _precedence(route: Resource, match_index: int, compiled: ir.Route) -> tuple:
    return (KIND_RANK[route.kind], *PRECEDENCE[route.kind](route, match_index, compiled))


def _listener_ir(listener, attachments: list[Attachment]) -> ir.HTTPListener:
    by_host: dict[str, list[tuple[tuple, ir.Route]]] = {}
    for attachment in attachments:
        for hostname in attachment.hostnames:
            entries = by_host.setdefault(hostname, [])
            for match_index, compiled in attachment.rules:
                entries.append((_precedence(attachment.route, match_index, compiled), compiled))
    hosts = sorted(by_host, key=lambda h: (specificity(h), h))
    return ir.HTTPListener(
        name=listener.qualified_name,
        gateway=listener.gateway.qualified_name,
        hostname=listener.hostname,
        tls=listener.tls,
        client_certificate=listener.gateway.client_certificate,
        virtual_hosts=tuple(
            ir.VirtualHost(
                host, tuple(route for _, route in sorted(by_host[host], key=lambda e: e[0]))
            )
            for host in hosts
        ),
    )


def _tls_listener_ir(listener, attachments: list[Attachment]) -> ir.TLSListener:
    """SNI hostnames to TLSRoute rules, most specific hostname first, then the oldest
    route (a TLSRoute's first rule carries its backends)."""
    entries = []
    for attachment in attachments:
        route = attachment.route
        for hostname in attachment.hostnames:
            for _, compiled in attachment.rules[:1]:
                entries.append(((specificity(hostname), route.age_key()), hostname, compiled))
    entries.sort(key=lambda entry: entry[0])
    return ir.TLSListener(
        name=listener.qualified_name,
        gateway=listener.gateway.qualified_name,
        hostname=listener.hostname,
        routes=tuple((hostname, compiled) for _, hostname, compiled in entries),
        tls=listener.tls,
        client_certificate=listener.gateway.client_certificate,
    )


def _stream_listener_ir(listener, attachments: list[Attachment]) -> ir.StreamListener:
    """A TCP or UDP listener serves its oldest attached route (a route has one rule)."""
    oldest = min(attachments, key=lambda a: a.route.age_key(), default=None)
    route = oldest.rules[0][1] if oldest is not None and oldest.rules else None
    return ir.StreamListener(
        name=listener.qualified_name,
        gateway=listener.gateway.qualified_name,
        route=route,
        client_certificate=listener.gateway.client_certificate,
    )


#: How each listener protocol's IR is built.
LISTENER_BUILDERS = {
    "HTTP": _listener_ir,
    "HTTPS": _listener_ir,
    "TLS": _tls_listener_ir,
    "TCP": _stream_listener_ir,
    "UDP": _stream_listener_ir,
}


def _service_users(attachments: list[Attachment]) -> dict[tuple[str, str], set[ObjectKey]]:
    """(namespace, Service) -> the Gateways whose attached routes send traffic to it."""
    users: dict[tuple[str, str], set[ObjectKey]] = {}
    for attachment in attachments:
        route = attachment.route
        for rule in route.spec.get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if (ref.get("group", ""), ref.get("kind", "Service")) == ("", "Service"):
                    service = (ref.get("namespace") or route.namespace, ref["name"])
                    users.setdefault(service, set()).add(attachment.listener.gateway.key)
    return users


def translate(snapshot: Snapshot, options: TranslateOptions) -> Translation:
    """Objects in, routing table and every owned object's status out. No I/O."""
    classes, statuses = accepted_classes(snapshot, options)
    listener_sets = ListenerSets()
    gateways = build_gateways(snapshot, options, classes, merge=listener_sets)
    policies = BackendTLSPolicies(snapshot)
    by_name = {(g.key.namespace, g.key.name): g for g in gateways}
    # every kind in one pass, oldest first: the oldest routes keep their entries
    attachments, route_statuses = attach_routes(
        snapshot,
        by_name,
        [route for kind in ROUTE_ANALYSERS for route in snapshot.of_kind(kind)],
        options.controller_name,
        partial(_analyse, policies=policies, plugins=options.filter_plugins),
        HostnameClaims(),
        EntryBudget(options.max_route_entries, options.max_table_entries),
        listener_sets.by_name(),
    )
    policy_attachment = PolicyAttachment(snapshot, by_name, attachments)
    attachments = policy_attachment.apply(attachments)
    per_listener: dict[int, list[Attachment]] = {}
    for attachment in attachments:
        per_listener.setdefault(id(attachment.listener), []).append(attachment)
    binds: dict[ir.BindKey, list] = {}
    protocols: dict[ir.BindKey, str] = {}
    for gateway in gateways:
        if not gateway.conditions.is_true("Accepted"):
            continue
        for listener in gateway.all_listeners:
            if not listener.servable:
                continue
            compiled = LISTENER_BUILDERS[listener.protocol](
                listener, per_listener.get(id(listener), [])
            )
            for address in gateway.addresses:
                key = (address, listener.port, ir.transport_of(listener.protocol))
                binds.setdefault(key, []).append(compiled)
                # a port with any TLS listener is dispatched by SNI before termination
                if protocols.get(key) != "TLS":
                    protocols[key] = listener.protocol
    table = ir.RoutingTable(
        tuple(
            ir.Bind(
                address,
                port,
                protocols[(address, port, transport)],
                tuple(sorted(listeners, key=lambda li: specificity(li.hostname))),
            )
            for (address, port, transport), listeners in sorted(binds.items())
        )
    )
    statuses.extend(listener_sets.finish())  # counts attachedListenerSets: first
    statuses.extend(gateway.status() for gateway in gateways)
    statuses.extend(route_statuses)
    statuses.extend(policies.statuses(_service_users(attachments), options.controller_name))
    statuses.extend(policy_attachment.statuses(options.controller_name))
    assigned = {g.key: g.addresses[0] for g in gateways if g.addresses}
    return Translation(table, tuple(statuses), assigned)

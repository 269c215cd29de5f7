"""ReferenceGrant checks and Service backend resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twistgw.api.resource import GATEWAY_GROUP, Resource
from twistgw.routing import ir
from twistgw.routing.ir import Endpoint
from twistgw.snapshot import Snapshot

if TYPE_CHECKING:
    from twistgw.translate.backendtls import BackendTLSPolicies

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
H2C = "kubernetes.io/h2c"
#: Backend protocols (Service port appProtocol) the data plane cannot speak to
#: backends of a route kind (``kubernetes.io/ws`` it can for HTTPRoutes: HTTP/1.1
#: with upgrades passed on; ``kubernetes.io/h2c``: HTTP/2 with prior knowledge).
UNSUPPORTED_APP_PROTOCOLS: dict[str, frozenset[str]] = {
    "GRPCRoute": frozenset({"kubernetes.io/ws", "kubernetes.io/wss"}),
}
DEFAULT_UNSUPPORTED_APP_PROTOCOLS = frozenset({"kubernetes.io/wss"})


def speaks_http2(route_kind: str, app_protocol: str | None) -> bool:
    """Whether a route's backend is reached over HTTP/2: every GRPCRoute backend,
    and an HTTPRoute backend whose Service port says ``kubernetes.io/h2c``."""
    return route_kind == "GRPCRoute" or (route_kind == "HTTPRoute" and app_protocol == H2C)


class BackendError(Exception):
    """A backendRef that cannot be used; ``reason`` is the ResolvedRefs reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


#: What ReferenceGrants permit, by (the grant's namespace, from group, kind, namespace)
#: and then by (to group, to kind): None when any name is, else the names.
GrantIndex = dict[tuple[str, str, str, str], dict[tuple[str, str], set[str] | None]]


def _grants(snapshot: Snapshot) -> GrantIndex:
    index: GrantIndex = {}
    for grant in snapshot.of_kind("ReferenceGrant"):
        spec = grant.spec
        for source in spec.get("from") or []:
            key = (grant.namespace, source["group"], source["kind"], source["namespace"])
            permitted = index.setdefault(key, {})
            for target in spec.get("to") or []:  # (validation made these strings)
                to = (target.get("group"), target.get("kind"))
                names = permitted.setdefault(to, set())
                if names is not None:
                    if target.get("name"):
                        names.add(target["name"])
                    else:
                        permitted[to] = None  # any name
    return index


def reference_permitted(
    snapshot: Snapshot,
    from_kind: str,
    from_namespace: str,
    to_group: str,
    to_kind: str,
    to_namespace: str,
    to_name: str,
    from_group: str = GATEWAY_GROUP,
) -> bool:
    """Whether an object may refer to one in another namespace (same namespace: always);
    the grants are indexed once per snapshot, so a check is two lookups."""
    if from_namespace == to_namespace:
        return True
    permitted = snapshot.index("reference-grants", _grants).get(
        (to_namespace, from_group, from_kind, from_namespace)
    )
    if permitted is None or (to_group, to_kind) not in permitted:
        return False
    names = permitted[(to_group, to_kind)]
    return names is None or to_name in names


def referenced(
    snapshot: Snapshot,
    referrer: Resource,
    ref: dict[str, Any],
    kind: str,
    field: str,
    kind_reason: str,
    missing_reason: str,
    cross_namespace: bool = True,
) -> Resource:
    """The core-group object of ``kind`` that ``ref`` (the referrer's ``field``) names.
    Raises BackendError: ``kind_reason`` for another group or kind, RefNotPermitted for
    another namespace without a ReferenceGrant (or at all, unless ``cross_namespace``),
    ``missing_reason`` when it does not exist."""
    group, ref_kind, name = ref.get("group", ""), ref.get("kind", kind), ref.get("name")
    namespace = ref.get("namespace") or referrer.namespace
    if (group, ref_kind) != ("", kind):
        raise BackendError(
            kind_reason, f"{field} kind {group or 'core'}/{ref_kind} is not supported"
        )
    if namespace != referrer.namespace and not (
        cross_namespace
        and reference_permitted(
            snapshot, referrer.kind, referrer.namespace, "", kind, namespace, name
        )
    ):
        raise BackendError(
            "RefNotPermitted",
            f"{field} to {kind} {namespace}/{name} is not permitted by any ReferenceGrant",
        )
    found = snapshot.get(kind, namespace, name)
    if found is None:
        raise BackendError(missing_reason, f"{kind} {namespace}/{name} not found")
    return found


def resolve_service(
    snapshot: Snapshot, route: Resource, ref: dict[str, Any]
) -> tuple[tuple[Endpoint, ...], dict[str, Any]]:
    """(endpoints, Service port) of a backendRef; raises BackendError."""
    service = referenced(
        snapshot, route, ref, "Service", "backendRef", "InvalidKind", "BackendNotFound"
    )
    namespace, name = service.namespace, service.name
    port = ref.get("port")
    service_port = next((p for p in service.spec.get("ports") or [] if p.get("port") == port), None)
    if service_port is None:
        raise BackendError("BackendNotFound", f"Service {namespace}/{name} has no port {port}")
    unsupported = UNSUPPORTED_APP_PROTOCOLS.get(route.kind, DEFAULT_UNSUPPORTED_APP_PROTOCOLS)
    if service_port.get("appProtocol") in unsupported:
        raise BackendError(
            "UnsupportedProtocol",
            f"Service {namespace}/{name} port {port} speaks {service_port['appProtocol']}, "
            f"which twistgw does not support for {route.kind}s",
        )
    return _endpoints(snapshot, service, service_port), service_port


def _endpoints(
    snapshot: Snapshot, service: Resource, service_port: dict[str, Any]
) -> tuple[Endpoint, ...]:
    port_name = service_port.get("name") or ""
    found: list[Endpoint] = []
    slices = snapshot.labelled("EndpointSlice", service.namespace, SERVICE_NAME_LABEL, service.name)
    for eps in slices:
        ports = eps.body.get("ports") or []
        number = next((p.get("port") for p in ports if (p.get("name") or "") == port_name), None)
        if number is None and len(ports) == 1 and not port_name:
            number = ports[0].get("port")
        if number is None:
            continue
        for endpoint in eps.body.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                found.append(Endpoint(str(address), int(number)))
    return tuple(dict.fromkeys(found))  # each endpoint once, in order


def compile_backends(
    snapshot: Snapshot,
    route: Resource,
    refs: list[dict],
    analysis: Any,
    policies: BackendTLSPolicies,
) -> tuple[ir.Backend, ...]:
    """Backends of a rule; unresolvable ones are kept as invalid (their share of
    traffic is refused) and the first problem is noted on ``analysis`` (the route's
    RouteAnalysis) for its ResolvedRefs condition. A Service port targeted by a
    BackendTLSPolicy is reached over TLS; if that policy is unusable, its share of
    traffic is refused too. GRPCRoute backends and ``kubernetes.io/h2c`` Service
    ports are reached over HTTP/2."""
    backends = []
    for ref in refs:
        tls, app_protocol = None, None
        try:
            endpoints, port = resolve_service(snapshot, route, ref)
            app_protocol = port.get("appProtocol")
            policy = policies.lookup(
                ref.get("namespace") or route.namespace, ref["name"], port.get("name") or ""
            )
            tls = policy.tls if policy is not None else None
            invalid = policy is not None and tls is None
        except BackendError as exc:
            analysis.ref_error = analysis.ref_error or exc
            endpoints, invalid = (), True
        backends.append(
            ir.Backend(
                name=f"{ref.get('namespace') or route.namespace}/{ref['name']}:{ref.get('port')}",
                weight=ref.get("weight", 1),
                endpoints=endpoints,
                invalid=invalid,
                app_protocol=app_protocol,
                tls=tls,
                http2=speaks_http2(route.kind, app_protocol),
            )
        )
    return tuple(backends)

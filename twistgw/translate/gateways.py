"""GatewayClasses, Gateways and their listeners: acceptance, conflicts and addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from twistgw.api.resource import GATEWAY_GROUP, ObjectKey, ObjectStatus, Resource
from twistgw.routing.ir import CertificateKey, ClientValidation, ListenerTLS, transport_of
from twistgw.snapshot import Snapshot
from twistgw.translate.certificates import ca_bundles, client_certificate, listener_certificate
from twistgw.translate.conditions import Conditions
from twistgw.translate.features import SUPPORTED_FEATURES
from twistgw.translate.model import WILDCARD_ADDRESS, TranslateOptions
from twistgw.translate.references import BackendError

#: Route kinds each implemented listener protocol accepts.
PROTOCOL_ROUTE_KINDS: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
    "TCP": ("TCPRoute",),
    "UDP": ("UDPRoute",),
}

SUPPORTED_VERSION_MESSAGE = "Gateway API version is supported"


@attrs.define
class ListenerState:
    gateway: GatewayState
    index: int
    spec: dict[str, Any]
    conditions: Conditions
    supported_kinds: list[dict[str, str]] = attrs.field(factory=list)
    attached_routes: int = 0
    servable: bool = False  # valid enough to listen for, whatever binding then says
    tls: ListenerTLS | None = None
    #: the ListenerSet that defines the listener (None: the Gateway's own)
    owner: Resource | None = None

    @property
    def resource(self) -> Resource:
        """The object that defines the listener: its Gateway or ListenerSet."""
        return self.owner if self.owner is not None else self.gateway.resource

    @property
    def namespace(self) -> str:
        """The namespace allowedRoutes ``Same`` means."""
        return self.resource.namespace

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def port(self) -> int:
        return self.spec["port"]

    @property
    def protocol(self) -> str:
        return self.spec["protocol"]

    @property
    def hostname(self) -> str | None:
        return self.spec.get("hostname") or None

    @property
    def accepted(self) -> bool:
        return self.conditions.is_true("Accepted")

    @property
    def qualified_name(self) -> str:
        """``namespace/gateway/listener`` (``namespace/gateway/set-namespace/set/listener``
        for a ListenerSet's), as the routing table names it."""
        if self.owner is not None:
            owner = f"{self.owner.namespace}/{self.owner.name}"
            return f"{self.gateway.qualified_name}/{owner}/{self.name}"
        return f"{self.gateway.qualified_name}/{self.name}"

    def allows_kind(self, group: str, kind: str) -> bool:
        return any(k["group"] == group and k["kind"] == kind for k in self.supported_kinds)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "supportedKinds": self.supported_kinds,
            "attachedRoutes": self.attached_routes,
            "conditions": self.conditions.as_list(),
        }


@attrs.define
class GatewayState:
    resource: Resource
    conditions: Conditions
    listeners: list[ListenerState] = attrs.field(factory=list)
    addresses: list[str] = attrs.field(factory=list)
    client_certificate: CertificateKey | None = None
    published: list[dict[str, str]] | None = None  # the addresses to report, if not ours
    #: listeners of the ListenerSets attached to it, in precedence order
    set_listeners: list[ListenerState] = attrs.field(factory=list)
    attached_listener_sets: int = 0

    @property
    def all_listeners(self) -> list[ListenerState]:
        """Its own listeners, then those of its ListenerSets (merge precedence)."""
        return self.listeners + self.set_listeners

    @property
    def key(self) -> ObjectKey:
        return self.resource.key

    @property
    def qualified_name(self) -> str:
        """``namespace/gateway``, as the routing table names it."""
        return f"{self.key.namespace}/{self.key.name}"

    def listener_status(self) -> list[dict[str, Any]]:
        return [listener.status() for listener in self.listeners]

    def status(self) -> ObjectStatus:
        return ObjectStatus(
            self.key,
            self.resource.api_version,
            self.resource.generation,
            {
                "addresses": self.published
                if self.published is not None
                else [
                    {"type": "IPAddress", "value": a}
                    for a in self.addresses
                    if a != WILDCARD_ADDRESS
                ],
                "conditions": self.conditions.as_list(),
                "listeners": self.listener_status(),
                "attachedListenerSets": self.attached_listener_sets,
            },
        )


def accepted_classes(
    snapshot: Snapshot, options: TranslateOptions
) -> tuple[dict[str, Resource], list[ObjectStatus]]:
    """The GatewayClasses this controller owns (all accepted) and their statuses."""
    classes: dict[str, Resource] = {}
    statuses = []
    features = [{"name": name} for name in sorted(SUPPORTED_FEATURES)]
    for gwc in snapshot.of_kind("GatewayClass"):
        if gwc.spec.get("controllerName") != options.controller_name:
            continue
        conditions = Conditions(gwc.generation)
        params = gwc.spec.get("parametersRef")
        if params:
            conditions.set(
                "Accepted",
                False,
                "InvalidParameters",
                "twistgw takes no GatewayClass parameters; "
                f"parametersRef {params.get('kind')}/{params.get('name')} is unsupported",
            )
        else:
            conditions.set("Accepted", True, "Accepted", "GatewayClass is accepted")
            classes[gwc.name] = gwc
        conditions.set("SupportedVersion", True, "SupportedVersion", SUPPORTED_VERSION_MESSAGE)
        statuses.append(
            ObjectStatus(
                gwc.key,
                gwc.api_version,
                gwc.generation,
                {
                    "conditions": conditions.as_list(),
                    "supportedFeatures": features,
                },
            )
        )
    return classes, statuses


def _supported_kinds(listener: ListenerState) -> bool:
    """Fill supportedKinds from allowedRoutes.kinds; False when a kind is invalid."""
    allowed = PROTOCOL_ROUTE_KINDS.get(listener.protocol, ())
    requested = (listener.spec.get("allowedRoutes") or {}).get("kinds")
    if not requested:
        listener.supported_kinds = [{"group": GATEWAY_GROUP, "kind": k} for k in allowed]
        return True
    valid = True
    for item in requested:
        group = item.get("group", GATEWAY_GROUP)
        if group == GATEWAY_GROUP and item["kind"] in allowed:
            entry = {"group": group, "kind": item["kind"]}
            if entry not in listener.supported_kinds:
                listener.supported_kinds.append(entry)
        else:
            valid = False
    return valid


#: Protocols whose listeners may share a port: the ClientHello's SNI tells them apart.
SNI_PROTOCOLS = frozenset({"HTTPS", "TLS"})


#: Protocols told apart by port alone: a second listener on the port conflicts.
PORT_ONLY_PROTOCOLS = frozenset({"TCP", "UDP"})


def _compatible(one: str, other: str) -> bool:
    return one == other or (one in SNI_PROTOCOLS and other in SNI_PROTOCOLS)


def _conflict_between(listener: ListenerState, other: ListenerState) -> tuple[str, str] | None:
    """Why ``listener`` cannot share its port and transport with ``other``, if so."""
    if not _compatible(other.protocol, listener.protocol):
        return (
            "ProtocolConflict",
            f"listener {other.name} uses port {listener.port} with protocol {other.protocol}",
        )
    if listener.protocol in PORT_ONLY_PROTOCOLS:
        return (
            "ProtocolConflict",
            f"listener {other.name} is also {listener.protocol} on port {listener.port}; "
            f"{listener.protocol} listeners are told apart by port alone",
        )
    if other.hostname == listener.hostname:
        return (
            "HostnameConflict",
            f"listener {other.name} has the same port, protocol family and hostname",
        )
    return None


#: A listener and its place in a ListenerIndex's order of insertion.
_Entry = tuple[int, ListenerState]


@attrs.define
class _PortListeners:
    """The listeners on one port and transport: the first two of each protocol and of
    each protocol and hostname (two, so that one of them is not the listener checked)."""

    by_protocol: dict[str, list[_Entry]] = attrs.field(factory=dict)
    by_hostname: dict[tuple[str, str | None], list[_Entry]] = attrs.field(factory=dict)


class ListenerIndex:
    """Listeners by port and transport (UDP and the TCP-based protocols use different
    sockets, so they never meet), so that a listener's conflict, the first listener in
    order of insertion it cannot share its port with, is found in time that does not
    grow with the listeners on its port."""

    def __init__(self, listeners: Iterable[ListenerState] = ()) -> None:
        self._ports: dict[tuple[int, str], _PortListeners] = {}
        self._added = 0
        for listener in listeners:
            self.add(listener)

    def add(self, listener: ListenerState) -> None:
        key = (listener.port, transport_of(listener.protocol))
        port = self._ports.setdefault(key, _PortListeners())
        entry = (self._added, listener)
        self._added += 1
        for firsts in (
            port.by_protocol.setdefault(listener.protocol, []),
            port.by_hostname.setdefault((listener.protocol, listener.hostname), []),
        ):
            if len(firsts) < 2:
                firsts.append(entry)

    def conflict(self, listener: ListenerState) -> tuple[str, str] | None:
        """Why the listener cannot share its port with the first other listener that it
        conflicts with: of a protocol it is incompatible with, of its own protocol when
        that is told apart by port alone, else of a compatible one with its hostname."""
        port = self._ports.get((listener.port, transport_of(listener.protocol)))
        if port is None:
            return None
        first: _Entry | None = None
        for protocol, firsts in port.by_protocol.items():
            if _compatible(protocol, listener.protocol) and protocol not in PORT_ONLY_PROTOCOLS:
                firsts = port.by_hostname.get((protocol, listener.hostname), [])
            other = next((entry for entry in firsts if entry[1] is not listener), None)
            if other is not None and (first is None or other[0] < first[0]):
                first = other
        return None if first is None else _conflict_between(listener, first[1])


#: A frontend client-certificate validation and the first bad caCertificateRef.
_FrontendValidation = tuple[ClientValidation | None, BackendError | None]


def _frontend_validation(snapshot: Snapshot, gateway: Resource, port: int) -> _FrontendValidation:
    """The client-certificate validation for HTTPS listeners on ``port`` (the
    Gateway's perPort entry, else its default) and the first bad caCertificateRef,
    made once per Gateway and port: its listeners share one."""
    made: dict[tuple[ObjectKey, int], _FrontendValidation]
    made = snapshot.index("frontend-validation", lambda _: {})
    key = (gateway.key, port)
    if key not in made:
        made[key] = _resolve_frontend_validation(snapshot, gateway, port)
    return made[key]


def _resolve_frontend_validation(
    snapshot: Snapshot, gateway: Resource, port: int
) -> _FrontendValidation:
    frontend = (gateway.spec.get("tls") or {}).get("frontend") or {}
    config = frontend.get("default") or {}
    for entry in frontend.get("perPort") or []:
        if entry.get("port") == port:
            config = entry.get("tls") or {}
    validation = config.get("validation")
    if not validation:
        return None, None
    bundle, error = ca_bundles(
        snapshot, gateway, validation.get("caCertificateRefs") or [], "InvalidCACertificateKind"
    )
    if not bundle:
        return None, error
    return ClientValidation(bundle, validation.get("mode", "AllowValidOnly")), error


def _listener_tls(snapshot: Snapshot, listener: ListenerState) -> bool:
    """Resolve a terminating listener's certificate and client validation; set its
    ResolvedRefs (and, with no usable CA at all, Accepted) conditions. False when
    the listener cannot serve."""
    c = listener.conditions
    gateway = listener.gateway.resource
    try:
        certificate = listener_certificate(
            snapshot, listener.resource, listener.spec.get("tls") or {}
        )
    except BackendError as exc:
        c.set("ResolvedRefs", False, exc.reason, exc.message)
        return False
    validation, error = None, None
    if listener.protocol == "HTTPS":
        validation, error = _frontend_validation(snapshot, gateway, listener.port)
    listener.tls = ListenerTLS(certificate, validation)
    if error is not None:
        c.set("ResolvedRefs", False, error.reason, error.message)
        if validation is None:
            c.set(
                "Accepted",
                False,
                "NoValidCACertificate",
                f"no usable CA certificate for client validation: {error.message}",
            )
            return False
    return True


def _tls_mode(listener: ListenerState) -> str:
    return (listener.spec.get("tls") or {}).get("mode", "Terminate")


def check_listeners(
    snapshot: Snapshot, listeners: list[ListenerState], prior: ListenerIndex | None = None
) -> None:
    """Set each listener's conditions. With ``prior`` (the accepted listeners of higher
    precedence: a ListenerSet's), a listener conflicts with those and with the earlier
    listeners of ``listeners`` that are accepted, which are added to ``prior``; without,
    the listeners conflict with one another (a Gateway's own)."""
    index = ListenerIndex(listeners) if prior is None else prior
    for listener in listeners:
        c = listener.conditions
        kinds_ok = _supported_kinds(listener)
        refs_ok = kinds_ok
        if not kinds_ok:
            c.set(
                "ResolvedRefs",
                False,
                "InvalidRouteKinds",
                f"allowedRoutes.kinds names a kind protocol {listener.protocol} cannot carry",
            )
        elif listener.protocol == "HTTPS" or (
            listener.protocol == "TLS" and _tls_mode(listener) == "Terminate"
        ):
            refs_ok = _listener_tls(snapshot, listener)
        if c.get("ResolvedRefs") is None:
            c.set("ResolvedRefs", True, "ResolvedRefs", "All references are resolved")
        conflict = index.conflict(listener)
        if conflict:
            c.set("Conflicted", True, conflict[0], conflict[1])
        else:
            c.set("Conflicted", False, "NoConflicts", "No conflicts")
        if listener.protocol not in PROTOCOL_ROUTE_KINDS:
            c.set(
                "Accepted",
                False,
                "UnsupportedProtocol",
                f"protocol {listener.protocol} is not supported",
            )
            listener.supported_kinds = []
        elif conflict:
            c.set("Accepted", False, conflict[0], conflict[1])
        elif c.get("Accepted") is None:
            c.set("Accepted", True, "Accepted", "Listener is accepted")
        if c.is_true("Accepted") and refs_ok:
            c.set("Programmed", True, "Programmed", "Listener is programmed")
        elif conflict and prior is not None:  # ListenerSet conformance names the conflict
            c.set("Programmed", False, conflict[0], conflict[1])
        else:
            c.set("Programmed", False, "Invalid", "Listener is not valid")
        if prior is not None and c.is_true("Accepted"):
            prior.add(listener)


def _backend_client_certificate(snapshot: Snapshot, gateway: GatewayState) -> None:
    """The certificate the Gateway presents to backends that ask (ResolvedRefs)."""
    try:
        gateway.client_certificate = client_certificate(snapshot, gateway.resource)
    except BackendError as exc:
        gateway.conditions.set("ResolvedRefs", False, exc.reason, exc.message)
        return
    if gateway.client_certificate is not None:
        gateway.conditions.set("ResolvedRefs", True, "ResolvedRefs", "All references are resolved")


def _pool_address(gateway: GatewayState, options: TranslateOptions, taken: set[str]) -> str | None:
    sticky = options.assigned_addresses.get(gateway.key)
    if sticky in options.address_pool and sticky not in taken:
        return sticky
    for address in options.address_pool:
        if address not in taken:
            return address
    return None


def _assign_addresses(gateways: list[GatewayState], options: TranslateOptions) -> None:
    """Static addresses first, then sticky pool addresses, then new ones, oldest first."""
    taken: set[str] = set()
    pending = []
    for gateway in gateways:
        requested = gateway.resource.spec.get("addresses") or []
        if not requested:
            pending.append(gateway)
            continue
        for entry in requested:
            kind, value = entry.get("type", "IPAddress"), entry.get("value")
            if kind != "IPAddress":
                gateway.conditions.set(
                    "Accepted", False, "UnsupportedAddress", f"address type {kind} is not supported"
                )
                break
            if not value:
                continue
            try:
                ipaddress.ip_address(value)
            except ValueError:
                gateway.conditions.set(
                    "Accepted", False, "UnsupportedAddress", f"{value!r} is not an IP address"
                )
                break
            gateway.addresses.append(value)
            taken.add(value)
        if gateway.conditions.get("Accepted") is None and not gateway.addresses:
            pending.append(gateway)
    for gateway in sorted(pending, key=lambda g: g.key not in options.assigned_addresses):
        if not options.address_pool:
            gateway.addresses.append(WILDCARD_ADDRESS)
            continue
        address = _pool_address(gateway, options, taken)
        if address is not None:
            gateway.addresses.append(address)
            taken.add(address)


def _port_clashes(gateways: list[GatewayState]) -> None:
    """A listener whose address, port and transport an older Gateway already uses is
    not accepted."""
    owners: dict[tuple[str, int, str], ObjectKey] = {}
    #: the first owner of each port and transport, on whichever address (what a
    #: listener on the wildcard address clashes with)
    first_owners: dict[tuple[int, str], ObjectKey] = {}
    for gateway in gateways:
        claimed = set()
        for listener in gateway.all_listeners:
            if not listener.accepted:
                continue
            transport = transport_of(listener.protocol)
            for address in gateway.addresses:
                owner = owners.get((address, listener.port, transport))
                wildcard_owner = owners.get((WILDCARD_ADDRESS, listener.port, transport))
                clash = owner or (wildcard_owner if address != WILDCARD_ADDRESS else None)
                if clash is None and address == WILDCARD_ADDRESS:
                    clash = first_owners.get((listener.port, transport))
                if clash is not None and clash != gateway.key:
                    message = (
                        f"port {listener.port} on {address} is already used by Gateway "
                        f"{clash.namespace}/{clash.name}"
                    )
                    listener.conditions.set("Accepted", False, "PortUnavailable", message)
                    listener.conditions.set("Programmed", False, "Invalid", message)
                    break
                claimed.add((address, listener.port, transport))
        for item in claimed:
            owners[item] = gateway.key
            first_owners.setdefault(item[1:], gateway.key)


def _bind_failures(gateway: GatewayState, options: TranslateOptions) -> None:
    """Listeners the data plane could not listen for are not programmed."""
    for listener in gateway.all_listeners:
        if not listener.conditions.is_true("Programmed"):
            continue
        for address in gateway.addresses:
            why = options.bind_failures.get(
                (address, listener.port, transport_of(listener.protocol))
            )
            if why is not None:
                listener.conditions.set(
                    "Programmed",
                    False,
                    "Invalid",
                    f"cannot listen on {address}:{listener.port}: {why}",
                )
                break


def _insecure_frontend_ports(gateway: Resource) -> list[str]:
    """Where the Gateway's frontend validation is AllowInsecureFallback: "default"
    and the ports of its perPort entries."""
    frontend = (gateway.spec.get("tls") or {}).get("frontend") or {}
    configs = [("default", frontend.get("default") or {})]
    configs += [
        (f"port {e.get('port')}", e.get("tls") or {}) for e in frontend.get("perPort") or []
    ]
    return [
        where
        for where, config in configs
        if (config.get("validation") or {}).get("mode") == "AllowInsecureFallback"
    ]


def _gateway_conditions(gateway: GatewayState, options: TranslateOptions) -> None:
    c = gateway.conditions
    insecure = _insecure_frontend_ports(gateway.resource)
    if insecure:
        c.set(
            "InsecureFrontendValidationMode",
            True,
            "ConfigurationChanged",
            "client certificates are requested but not required "
            f"(AllowInsecureFallback: {', '.join(insecure)})",
        )
    unusable = [a for a in gateway.addresses if a in options.unusable_addresses]
    valid = [listener for listener in gateway.listeners if listener.accepted]
    if c.get("Accepted") is None:
        if len(valid) == len(gateway.listeners):
            c.set("Accepted", True, "Accepted", "Gateway is accepted")
        elif valid:
            c.set("Accepted", True, "ListenersNotValid", "Some listeners are not valid")
        else:
            c.set("Accepted", False, "ListenersNotValid", "No listener is valid")
    if not c.is_true("Accepted"):
        c.set("Programmed", False, "Invalid", "Gateway is not accepted")
    elif not gateway.addresses:
        c.set("Programmed", False, "AddressNotAssigned", "The address pool is exhausted")
    elif unusable:
        c.set(
            "Programmed",
            False,
            "AddressNotUsable",
            f"this host cannot listen on {', '.join(unusable)}",
        )
    elif not any(listener.conditions.is_true("Programmed") for listener in valid):
        c.set("Programmed", False, "Invalid", "No listener is programmed")
    else:
        c.set("Programmed", True, "Programmed", "Gateway is programmed")


def published_addresses(snapshot: Snapshot, service: tuple[str, str]) -> list[dict[str, str]]:
    """A Service's load balancer ingress addresses (IPs and hostnames), else its cluster
    IP; none while it does not exist."""
    found = snapshot.get("Service", *service)
    if found is None:
        return []
    addresses = []
    for ingress in ((found.body.get("status") or {}).get("loadBalancer") or {}).get(
        "ingress"
    ) or []:
        if ingress.get("ip"):
            addresses.append({"type": "IPAddress", "value": ingress["ip"]})
        elif ingress.get("hostname"):
            addresses.append({"type": "Hostname", "value": ingress["hostname"]})
    cluster_ip = found.spec.get("clusterIP")
    if not addresses and cluster_ip and cluster_ip != "None":
        addresses.append({"type": "IPAddress", "value": cluster_ip})
    return addresses


def build_gateways(
    snapshot: Snapshot,
    options: TranslateOptions,
    classes: dict[str, Resource],
    merge: Callable[[Snapshot, list[GatewayState]], None] | None = None,
) -> list[GatewayState]:
    """Every Gateway of an accepted class, oldest first, with listeners checked,
    addresses assigned and conditions set. ``merge``, when given, adds the listeners
    of ListenerSets once the Gateways' own are checked."""
    gateways = []
    resources = [
        gw for gw in snapshot.of_kind("Gateway") if gw.spec.get("gatewayClassName") in classes
    ]
    for resource in sorted(resources, key=Resource.age_key):
        gateway = GatewayState(resource, Conditions(resource.generation))
        for index, spec in enumerate(resource.spec.get("listeners") or []):
            gateway.listeners.append(
                ListenerState(gateway, index, spec, Conditions(resource.generation))
            )
        infra = resource.spec.get("infrastructure") or {}
        if infra.get("parametersRef"):
            ref = infra["parametersRef"]
            gateway.conditions.set(
                "Accepted",
                False,
                "InvalidParameters",
                f"infrastructure.parametersRef {ref.get('kind')}/"
                f"{ref.get('name')} is not supported",
            )
        check_listeners(snapshot, gateway.listeners)
        _backend_client_certificate(snapshot, gateway)
        gateways.append(gateway)
    if merge is not None:
        merge(snapshot, gateways)
    _assign_addresses(gateways, options)
    if options.publish_service is not None:
        published = published_addresses(snapshot, options.publish_service)
        for gateway in gateways:
            gateway.published = published
    _port_clashes(gateways)
    for gateway in gateways:
        for listener in gateway.all_listeners:
            listener.servable = listener.conditions.is_true("Programmed")
        _bind_failures(gateway, options)
        _gateway_conditions(gateway, options)
    return gateways

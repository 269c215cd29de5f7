"""A valid core of manifests for the translator fuzzing, then mutations drawn on it.

The core holds every kind the translator reads, wired so that routes of each kind
attach to a Gateway listener of their protocol (HTTP, HTTPS, TLS passthrough and
terminate, TCP, UDP), across namespaces through ReferenceGrants. Its variable fields
are drawn from valid but unusual values (regular expressions, header values with CR
or LF or outside Latin-1, many matches, weight 0, hostnames that intersect or not);
the plain value comes first, so a failure shrinks towards the plain core.
``fuzz_mutations`` then mutates it.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.translate.fuzz_pool import CA_CONFIG_MAP, TLS_SECRET
from tests.translate.fuzz_rules import backend_ref, http_rule, route_hostnames
from tests.translate.fuzz_values import (
    CONTROLLER,
    GATEWAY_API,
    GATEWAY_API_ALPHA,
    GATEWAY_GROUP,
    HOSTNAMES,
    fields,
    manifest_object,
    optional,
    pick,
)

ROUTE_KINDS = ("HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute")
#: The labels of Namespace "other", which a listener's Selector may ask for.
TEAM = {"team": "blue"}


def http_route(name: str, namespace: str, parent_refs: list[dict]) -> st.SearchStrategy:
    """An HTTPRoute with drawn hostnames and one or two rules."""
    return st.builds(
        lambda hostnames, rules: manifest_object(
            GATEWAY_API,
            "HTTPRoute",
            name,
            namespace,
            spec={
                "parentRefs": parent_refs,
                **({"hostnames": hostnames} if hostnames is not None else {}),
                "rules": rules,
            },
        ),
        route_hostnames,
        st.lists(http_rule, min_size=1, max_size=2),
    )


def stream_route(
    kind: str, name: str, namespace: str, parent_refs: list[dict], hostnames: bool = False
) -> st.SearchStrategy:
    """A TLSRoute (with ``hostnames``), TCPRoute or UDPRoute with one rule."""
    return st.builds(
        lambda names, refs: manifest_object(
            GATEWAY_API_ALPHA,
            kind,
            name,
            namespace,
            spec={
                "parentRefs": parent_refs,
                **({"hostnames": names} if names is not None else {}),
                "rules": [{"backendRefs": refs}],
            },
        ),
        route_hostnames if hostnames else st.none(),
        st.lists(backend_ref(with_filters=False), min_size=1, max_size=2),
    )


# --- Gateways ---------------------------------------------------------------------------

#: Protocol -> the route kind its listeners take.
PROTOCOL_KINDS = {
    "HTTP": "HTTPRoute",
    "HTTPS": "HTTPRoute",
    "TLS": "TLSRoute",
    "TCP": "TCPRoute",
    "UDP": "UDPRoute",
}


def allowed_routes(protocol: str) -> st.SearchStrategy:
    """Mostly every namespace and the protocol's own kind; sometimes "Same", a label
    selector, or kinds the protocol cannot carry."""
    own = PROTOCOL_KINDS[protocol]
    return st.builds(
        lambda source, kinds: {
            "namespaces": {"from": source}
            if source != "Selector"
            else {"from": source, "selector": {"matchLabels": TEAM}},
            **({"kinds": [{"kind": kind} for kind in kinds]} if kinds else {}),
        },
        pick(("All", "All", "Same", "Selector")),
        pick(((), (), (), (own,), (own, "TCPRoute"), ("UDPRoute",))),
    )


def listener(
    name: str, port: int, protocol: str, hostname: str | None, **extra: Any
) -> st.SearchStrategy:
    """A listener whose hostname is mostly ``hostname`` (None: none), else one from the
    pool or none."""
    hostnames = (hostname, *HOSTNAMES) if hostname else (None, *HOSTNAMES)
    return st.builds(
        lambda host, allowed: {
            "name": name,
            "port": port,
            "protocol": protocol,
            **({"hostname": host} if host else {}),
            "allowedRoutes": allowed,
            **extra,
        },
        st.one_of(st.just(hostnames[0]), pick(hostnames)),
        allowed_routes(protocol),
    )


CERTIFICATE = {"certificateRefs": [{"name": "good"}]}
#: A Gateway's ``spec.tls``: client certificates asked of HTTPS clients, one presented
#: to backends.
gateway_tls = fields(
    frontend=optional(
        st.just(
            {
                "default": {
                    "validation": {"caCertificateRefs": [{"kind": "ConfigMap", "name": "ca"}]}
                }
            }
        )
    ),
    backend=optional(st.just({"clientCertificateRef": {"name": "good"}})),
)
gw = st.builds(
    lambda listeners, addresses, tls: manifest_object(
        GATEWAY_API,
        "Gateway",
        "gw",
        "default",
        spec={
            "gatewayClassName": "twistgw",
            "listeners": listeners,
            **({"addresses": addresses} if addresses else {}),
            **({"tls": tls} if tls else {}),
        },
    ),
    st.tuples(
        listener("http", 80, "HTTP", None),
        listener("http-alt", 8080, "HTTP", "a.example.com"),
        listener("https", 443, "HTTPS", "secure.example.com", tls=CERTIFICATE),
        listener("tls", 443, "TLS", "*.tls.example.com", tls={"mode": "Passthrough"}),
        listener("tls-term", 8443, "TLS", None, tls={"mode": "Terminate", **CERTIFICATE}),
        listener("tcp", 5432, "TCP", None),
        listener("udp", 53, "UDP", None),
    ).map(list),
    optional(st.lists(fields(value=pick(("127.0.0.1", "::1"))), min_size=1, max_size=1)),
    optional(gateway_tls),
)
edge = st.builds(
    lambda listeners: manifest_object(
        GATEWAY_API,
        "Gateway",
        "edge",
        "other",
        spec={"gatewayClassName": "twistgw", "listeners": listeners},
    ),
    st.tuples(
        listener("http", 9080, "HTTP", None),
        listener(
            "https",
            9443,
            "HTTPS",
            "secure.example.com",
            tls={"certificateRefs": [{"name": "good", "namespace": "default"}]},
        ),
    ).map(list),
)

# --- what the routes point at ----------------------------------------------------------

web = st.builds(
    lambda app_protocol: manifest_object(
        "v1",
        "Service",
        "web",
        "default",
        spec={
            "ports": [
                {"name": "http", "port": 80},
                {"name": "alt", "port": 8080, **app_protocol},
            ]
        },
    ),
    pick(({}, {"appProtocol": "kubernetes.io/ws"}, {"appProtocol": "kubernetes.io/h2c"})),
)


def endpoint_slice(name: str, namespace: str, service: str, **body: Any) -> dict:
    """An EndpointSlice of ``service``."""
    found = manifest_object("discovery.k8s.io/v1", "EndpointSlice", name, namespace, **body)
    found["metadata"]["labels"] = {"kubernetes.io/service-name": service}
    return found


web_slice = st.builds(
    lambda ready: endpoint_slice(
        "web-a",
        "default",
        "web",
        addressType="IPv4",
        ports=[{"name": "http", "port": 3000}, {"name": "alt", "port": 3001}],
        endpoints=[
            {"addresses": ["10.0.0.1", "10.0.0.2"]},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": ready}},
        ],
    ),
    st.booleans(),
)
FIXED = (
    manifest_object(
        GATEWAY_API, "GatewayClass", "twistgw", None, spec={"controllerName": CONTROLLER}
    ),
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other", "labels": TEAM}},
    manifest_object("v1", "Service", "api", "other", spec={"ports": [{"port": 80}]}),
    endpoint_slice(
        "api-a",
        "other",
        "api",
        addressType="IPv6",
        ports=[{"port": 4000}],
        endpoints=[{"addresses": ["fd00::1"]}],
    ),
    manifest_object(
        GATEWAY_API,
        "ReferenceGrant",
        "routes",
        "other",
        spec={
            "from": [
                {"group": GATEWAY_GROUP, "kind": kind, "namespace": "default"}
                for kind in ROUTE_KINDS
            ],
            "to": [{"group": "", "kind": "Service"}],
        },
    ),
    manifest_object(
        GATEWAY_API,
        "ReferenceGrant",
        "certificates",
        "default",
        spec={
            "from": [{"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": "other"}],
            "to": [{"group": "", "kind": "Secret", "name": "good"}],
        },
    ),
    TLS_SECRET,
    {**CA_CONFIG_MAP, "metadata": {"name": "ca", "namespace": "default"}},
    {**CA_CONFIG_MAP, "metadata": {"name": "ca", "namespace": "other"}},
    manifest_object(
        GATEWAY_API,
        "BackendTLSPolicy",
        "api-tls",
        "other",
        spec={
            "targetRefs": [{"group": "", "kind": "Service", "name": "api"}],
            "validation": {
                "hostname": "api.example.com",
                "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}],
            },
        },
    ),
)

routes = st.tuples(
    http_route("r1", "default", [{"name": "gw", "sectionName": "http"}]),
    http_route("r2", "default", [{"name": "gw"}]),
    http_route(
        "r3", "other", [{"name": "edge"}, {"name": "gw", "namespace": "default", "port": 443}]
    ),
    stream_route("TLSRoute", "t1", "default", [{"name": "gw", "sectionName": "tls"}], True),
    stream_route("TLSRoute", "t2", "default", [{"name": "gw", "sectionName": "tls-term"}], True),
    stream_route("TCPRoute", "c1", "default", [{"name": "gw", "sectionName": "tcp"}]),
    stream_route("UDPRoute", "u1", "default", [{"name": "gw", "port": 53}]),
    stream_route(
        "UDPRoute", "u2", "other", [{"name": "gw", "namespace": "default", "sectionName": "udp"}]
    ),
)
#: The valid core: every route attached somewhere. Mutations pick objects by index
#: and hypothesis favours the first and last, so the GatewayClass and the Gateways
#: are in the middle.
core = st.builds(
    lambda gateways, targets, found: [
        *copy.deepcopy(FIXED[1:]),
        *targets,
        *found[:5],
        copy.deepcopy(FIXED[0]),
        *gateways,
        *found[5:],
    ],
    st.tuples(gw, edge),
    st.tuples(web, web_slice),
    routes,
)

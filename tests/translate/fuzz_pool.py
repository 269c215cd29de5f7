"""Manifests drawn from small pools of names and values, valid and not, each often
with a field or two replaced by junk: the documents the fuzzing adds to a valid core
(``fuzz_core``) or makes invalid."""

from __future__ import annotations

import copy
import pathlib

import yaml
from hypothesis import strategies as st

from tests.translate.fuzz_values import (
    CONTROLLER,
    GATEWAY_API,
    NAMESPACES,
    field_paths,
    fields,
    junk,
    optional,
    replace_at,
)

GATEWAYS = ("gw", "edge")
ROUTE_KINDS = ("HTTPRoute", "TLSRoute", "TCPRoute", "UDPRoute")
SERVICES = ("web", "api", "missing")
LISTENER_NAMES = ("http", "https", "tls", "tcp", "udp") * 3 + ("Bad_Name",)
PORTS = (80, 443, 8080, 9000) * 6 + (0, 65536, -1)
HOSTNAMES = (
    *("example.com", "a.example.com", "*.example.com") * 6,
    "*",
    "bad host",
    "EXAMPLE.com",
    "*.*.example.com",
    "",
)
#: Header values the wire cannot carry are among them: CR, LF, NUL, non-Latin-1.
HEADER_VALUES = ("v", "", "a\r\nX-Injected: 1", "line\n", "nul\x00", "10 €", "é", " x ")
HEADER_NAMES = ("X-A", "x-a", "bad name", "X-\u00e9", "Host", "")
PATHS = ("/", "/a", "/a/", "", "no-slash", "/x y", "/(a+)+$", "(", "/a\r\n", "/€")
_TLS_CASE = yaml.safe_load(
    (pathlib.Path(__file__).parent / "cases" / "tls-termination.in.yaml").read_text()
)["objects"]
#: A TLS Secret that parses, from the TLS termination case.
TLS_SECRET = next(doc for doc in _TLS_CASE if doc["kind"] == "Secret")
#: A ConfigMap with a CA certificate in ``ca.crt``, from the same case.
CA_CONFIG_MAP = next(doc for doc in _TLS_CASE if doc["kind"] == "ConfigMap")


def metadata(names: tuple[str, ...]) -> st.SearchStrategy:
    return fields(name=st.sampled_from(names), namespace=optional(st.sampled_from(NAMESPACES)))


def manifest(api_version: str, kind: str, names: tuple[str, ...], **body) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {
            "apiVersion": st.just(api_version),
            "kind": st.just(kind),
            "metadata": metadata(names),
            **body,
        }
    )


gateway_class = manifest(
    GATEWAY_API,
    "GatewayClass",
    ("twistgw",) * 3 + ("other",),
    spec=fields(controllerName=st.sampled_from((CONTROLLER,) * 3 + ("example.com/another",))),
)

certificate_refs = st.lists(
    fields(
        name=st.sampled_from(("good", "missing")),
        namespace=optional(st.sampled_from(NAMESPACES)),
        kind=optional(st.sampled_from(("Secret", "ConfigMap"))),
    ),
    max_size=2,
)
listener = fields(
    name=st.sampled_from(LISTENER_NAMES),
    port=st.sampled_from(PORTS),
    protocol=st.sampled_from(("HTTP", "HTTPS", "TLS", "TCP", "UDP", "FOO", "example.com/x")),
    hostname=optional(st.sampled_from(HOSTNAMES)),
    tls=optional(
        fields(
            mode=optional(st.sampled_from(("Terminate", "Passthrough", "Bogus"))),
            certificateRefs=certificate_refs,
        )
    ),
    allowedRoutes=optional(
        fields(
            namespaces=optional(
                fields(
                    **{"from": st.sampled_from(("All", "Same", "Selector", "None", "Bogus"))},
                    selector=optional(
                        fields(matchLabels=st.just({"kubernetes.io/metadata.name": "other"}))
                    ),
                )
            ),
            kinds=optional(
                st.lists(
                    fields(kind=st.sampled_from((*ROUTE_KINDS, "Foo"))),
                    max_size=2,
                )
            ),
        )
    ),
)
gateway = manifest(
    GATEWAY_API,
    "Gateway",
    GATEWAYS,
    spec=fields(
        gatewayClassName=st.sampled_from(("twistgw",) * 4 + ("other", "missing")),
        listeners=st.lists(listener, min_size=1, max_size=3),
        addresses=st.none()
        | st.none()
        | st.none()
        | (
            st.lists(
                fields(
                    type=optional(st.sampled_from(("IPAddress", "Hostname", "Bogus"))),
                    value=st.sampled_from(("127.0.0.1", "::1", "192.0.2.1", "junk")),
                ),
                max_size=2,
            )
        ),
    ),
)

parent_refs = st.lists(
    fields(
        name=st.sampled_from(GATEWAYS),
        namespace=optional(st.sampled_from(NAMESPACES)),
        sectionName=optional(st.sampled_from(LISTENER_NAMES)),
        port=optional(st.sampled_from(PORTS)),
        kind=optional(st.sampled_from(("Gateway", "Service", "Foo"))),
    ),
    max_size=3,
)
route_hostnames = optional(st.lists(st.sampled_from(HOSTNAMES), max_size=3))
header = fields(name=st.sampled_from(HEADER_NAMES), value=st.sampled_from(HEADER_VALUES))
header_modifier = fields(
    set=optional(st.lists(header, max_size=2)),
    add=optional(st.lists(header, max_size=2)),
    remove=optional(st.lists(st.sampled_from(HEADER_NAMES), max_size=2)),
)
path_modifier = fields(
    type=st.sampled_from(("ReplaceFullPath", "ReplacePrefixMatch", "Bogus")),
    replaceFullPath=optional(st.sampled_from(PATHS)),
    replacePrefixMatch=optional(st.sampled_from(PATHS)),
)
http_filter = st.one_of(
    fields(type=st.just("RequestHeaderModifier"), requestHeaderModifier=header_modifier),
    fields(type=st.just("ResponseHeaderModifier"), responseHeaderModifier=header_modifier),
    fields(
        type=st.just("RequestRedirect"),
        requestRedirect=fields(
            scheme=optional(st.sampled_from(("http", "https", "ftp"))),
            hostname=optional(st.sampled_from(HOSTNAMES)),
            port=optional(st.sampled_from(PORTS)),
            statusCode=optional(st.sampled_from((301, 302, 200, 999))),
            path=optional(path_modifier),
        ),
    ),
    fields(
        type=st.just("URLRewrite"),
        urlRewrite=fields(
            hostname=optional(st.sampled_from(HOSTNAMES)), path=optional(path_modifier)
        ),
    ),
    fields(type=st.sampled_from(("RequestMirror", "ExtensionRef", "Bogus"))),
)
backend_ref = fields(
    name=st.sampled_from(SERVICES),
    namespace=optional(st.sampled_from(NAMESPACES)),
    port=st.sampled_from((80, 80, 8080, 8080, None, 0, 70000)),
    weight=optional(st.sampled_from((0, 1, 5, 5, -1, 1000001))),
    kind=optional(st.sampled_from(("Service", "Foo"))),
    group=optional(st.sampled_from(("", "example.com"))),
    filters=optional(st.lists(http_filter, max_size=1)),
)
string_match = fields(
    type=optional(st.sampled_from(("Exact", "RegularExpression", "Bogus"))),
    name=st.sampled_from(HEADER_NAMES),
    value=st.sampled_from(HEADER_VALUES + PATHS),
)
http_match = fields(
    path=optional(
        fields(
            type=optional(st.sampled_from(("Exact", "PathPrefix", "RegularExpression", "Bogus"))),
            value=optional(st.sampled_from(PATHS)),
        )
    ),
    headers=optional(st.lists(string_match, max_size=2)),
    queryParams=optional(st.lists(string_match, max_size=2)),
    method=optional(st.sampled_from(("GET", "POST", "get", "BREW"))),
)
http_route = manifest(
    GATEWAY_API,
    "HTTPRoute",
    ("r1", "r2", "r3"),
    spec=fields(
        parentRefs=parent_refs,
        hostnames=route_hostnames,
        rules=optional(
            st.lists(
                fields(
                    matches=optional(st.lists(http_match, max_size=2)),
                    filters=optional(st.lists(http_filter, max_size=3)),
                    backendRefs=optional(st.lists(backend_ref, max_size=3)),
                ),
                max_size=3,
            )
        ),
    ),
)
stream_rules = st.lists(
    fields(backendRefs=st.lists(backend_ref, min_size=1, max_size=2)), min_size=1, max_size=1
)
tls_route = manifest(
    "gateway.networking.k8s.io/v1alpha2",
    "TLSRoute",
    ("t1", "t2"),
    spec=fields(parentRefs=parent_refs, hostnames=route_hostnames, rules=stream_rules),
)
tcp_route = manifest(
    "gateway.networking.k8s.io/v1alpha2",
    "TCPRoute",
    ("c1", "c2"),
    spec=fields(parentRefs=parent_refs, rules=stream_rules),
)
udp_route = manifest(
    "gateway.networking.k8s.io/v1alpha2",
    "UDPRoute",
    ("u1",),
    spec=fields(parentRefs=parent_refs, rules=stream_rules),
)
reference_grant = manifest(
    "gateway.networking.k8s.io/v1beta1",
    "ReferenceGrant",
    ("allow",),
    spec=fields(
        **{
            "from": st.lists(
                fields(
                    group=st.just("gateway.networking.k8s.io"),
                    kind=st.sampled_from((*ROUTE_KINDS, "Gateway")),
                    namespace=st.sampled_from(NAMESPACES),
                ),
                min_size=1,
                max_size=2,
            ),
            "to": st.lists(
                fields(
                    group=st.just(""),
                    kind=st.sampled_from(("Service", "Secret")),
                    name=optional(st.sampled_from(SERVICES + ("good",))),
                ),
                min_size=1,
                max_size=2,
            ),
        }
    ),
)
service = manifest(
    "v1",
    "Service",
    SERVICES[:2],
    spec=fields(
        ports=st.lists(
            fields(
                port=st.sampled_from((80, 8080, 0)),
                name=optional(st.just("http")),
                appProtocol=optional(st.sampled_from(("kubernetes.io/h2c", "bogus"))),
            ),
            max_size=2,
        )
    ),
)
endpoint_slice = st.builds(
    lambda meta, service_name, body: {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {**meta, "labels": {"kubernetes.io/service-name": service_name}},
        **body,
    },
    metadata(("s1", "s2")),
    st.sampled_from(SERVICES),
    fields(
        addressType=optional(st.sampled_from(("IPv4", "IPv6", "FQDN"))),
        ports=optional(
            st.lists(
                fields(name=optional(st.just("http")), port=st.sampled_from((80, 3000, 0))),
                max_size=2,
            )
        ),
        endpoints=optional(
            st.lists(
                fields(
                    addresses=st.lists(
                        st.sampled_from(("127.0.0.5", "::1", "not-an-ip")), max_size=2
                    ),
                    conditions=optional(fields(ready=optional(st.booleans()))),
                ),
                max_size=2,
            )
        ),
    ),
)
document = st.one_of(
    gateway_class,
    gateway,
    gateway,
    http_route,
    http_route,
    tls_route,
    tcp_route,
    udp_route,
    reference_grant,
    service,
    endpoint_slice,
    st.just(TLS_SECRET),
)


@st.composite
def corrupted(draw: st.DrawFn, doc: dict) -> dict:
    """``doc``, often with up to two of its fields (not apiVersion or kind) replaced by junk."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):
        paths = field_paths(doc)
        if not paths:
            break
        replace_at(doc, draw(st.sampled_from(paths)), draw(junk))
    return doc

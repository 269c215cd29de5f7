"""Property-based tests of the translator over generated manifests.

Manifests are drawn from small pools of names (so references often resolve) and of
values both valid and not, then a few of their fields are replaced with junk of any
type. Whatever comes in, the translator must not raise, every status must be well
formed, every HTTP bind must compile into a data-plane Router, and an invalid object
must leave the last good translation in force.
"""

from __future__ import annotations

import copy
import json
import pathlib
import pickle
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from twistgw.dataplane.http.router import Router
from twistgw.routing.ir import Bind, HTTPListener
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler, object_key
from twistgw.sources.generations import GenerationTracker
from twistgw.status.store import StatusStore, condition_lists
from twistgw.translate import TranslateOptions, Translation, translate

CONTROLLER = "gateway.twistgw.dev/controller"
GATEWAY_API = "gateway.networking.k8s.io/v1"
NAMESPACES = ("default", "other")
GATEWAYS = ("gw", "edge")
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
#: A TLS Secret that parses, from the TLS termination case.
TLS_SECRET = next(
    doc
    for doc in yaml.safe_load(
        (pathlib.Path(__file__).parent / "cases" / "tls-termination.yaml").read_text()
    )["objects"]
    if doc["kind"] == "Secret"
)

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy`` or absent (None is dropped by ``fields``)."""
    return st.none() | strategy


@st.composite
def fields(draw: st.DrawFn, **strategies: st.SearchStrategy) -> dict[str, Any]:
    """A mapping of the drawn fields, leaving out those drawn as None."""
    drawn = {key: draw(strategy) for key, strategy in strategies.items()}
    return {key: value for key, value in drawn.items() if value is not None}


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
                    fields(kind=st.sampled_from(("HTTPRoute", "TLSRoute", "TCPRoute", "Foo"))),
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
reference_grant = manifest(
    "gateway.networking.k8s.io/v1beta1",
    "ReferenceGrant",
    ("allow",),
    spec=fields(
        **{
            "from": st.lists(
                fields(
                    group=st.just("gateway.networking.k8s.io"),
                    kind=st.sampled_from(("HTTPRoute", "TLSRoute", "TCPRoute", "Gateway")),
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
    reference_grant,
    service,
    endpoint_slice,
    st.just(TLS_SECRET),
)


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    """Every path to a value inside ``value``, as key and index tuples."""
    found = [at] if at else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*at, index))
    return found


@st.composite
def corrupted(draw: st.DrawFn, doc: dict) -> dict:
    """``doc``, often with up to two of its fields (not apiVersion or kind) replaced by junk."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.sampled_from((0, 0, 0, 1, 2)))):
        paths = [p for p in _paths(doc) if p[0] not in ("apiVersion", "kind")]
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        target = doc
        for step in parents:
            target = target[step]
        target[last] = draw(junk)
    return doc


#: A GatewayClass first, so that Gateways often have one.
documents = st.builds(
    lambda head, rest: [head, *rest],
    gateway_class.flatmap(corrupted),
    st.lists(document.flatmap(corrupted), max_size=12, unique_by=object_key),
)
#: Valid manifests only (junk would mostly make them invalid).
clean_documents = st.lists(
    st.one_of(gateway_class, gateway, http_route, tls_route, service, endpoint_slice),
    min_size=1,
    max_size=8,
    unique_by=object_key,
)


def _assembler() -> ObjectAssembler:
    return ObjectAssembler(GenerationTracker(lambda: 0.0))


def _translate(snapshot: Snapshot) -> Translation:
    return translate(snapshot, TranslateOptions(controller_name=CONTROLLER))


def _check_conditions(conditions: Any, where: str) -> None:
    assert isinstance(conditions, list) and conditions, f"{where}: no conditions"
    for condition in conditions:
        assert set(condition) == {
            "type",
            "status",
            "reason",
            "message",
            "observedGeneration",
            "lastTransitionTime",
        }, f"{where}: {condition}"
        assert condition["status"] in ("True", "False", "Unknown"), f"{where}: {condition}"
        for key in ("type", "reason", "message", "lastTransitionTime"):
            assert isinstance(condition[key], str) and condition[key], f"{where}: {condition}"
        assert isinstance(condition["observedGeneration"], int), f"{where}: {condition}"


def _check_statuses(translation: Translation) -> None:
    """Every status, with times as the status store adds them, in the Kubernetes shape."""
    store = StatusStore(lambda: 0.0)
    store.update(translation.statuses, ())
    for item in store.document()["items"]:
        where = f"{item['kind']} {item['metadata']}"
        status = item["status"]
        for listener in status.get("listeners") or []:
            assert {"name", "attachedRoutes", "supportedKinds", "conditions"} <= set(listener)
            assert isinstance(listener["attachedRoutes"], int) and listener["attachedRoutes"] >= 0
            assert all("kind" in kind for kind in listener["supportedKinds"]), where
        for parent in status.get("parents") or []:
            assert {"parentRef", "controllerName", "conditions"} <= set(parent), where
            assert parent["controllerName"] == CONTROLLER, where
        for ancestor in status.get("ancestors") or []:
            assert {"ancestorRef", "controllerName", "conditions"} <= set(ancestor), where
        for location, conditions in condition_lists(status):
            if location or "conditions" in status:
                _check_conditions(conditions, f"{where} {location}")


def _check_table(translation: Translation) -> None:
    """The table crosses the control channel and the config dump, and every port
    serving HTTP compiles into a Router as a worker builds it."""
    table = translation.table
    assert pickle.loads(pickle.dumps(table)) == table
    json.dumps(table.as_dict())
    for bind in table.binds:
        if bind.protocol in ("HTTP", "HTTPS"):
            Router(bind)
        elif bind.protocol == "TLS":
            https = tuple(li for li in bind.listeners if isinstance(li, HTTPListener))
            Router(Bind(bind.address, bind.port, "HTTPS", https))


@given(documents)
def test_translation_never_raises_and_is_well_formed(docs: list[dict]) -> None:
    snapshot = _assembler().assemble({"fuzz.yaml": docs})
    translation = _translate(snapshot)
    _check_statuses(translation)
    _check_table(translation)


@given(clean_documents, document.flatmap(corrupted), st.data())
def test_invalid_object_keeps_last_good_translation(
    docs: list[dict], extra: dict, data: st.DataObject
) -> None:
    """A set, then the same set with one object made invalid, or with one invalid
    object added: the translation does not change (objects invalid from the start
    stay rejected in both)."""
    assembler = _assembler()
    good = _translate(assembler.assemble({"fuzz.yaml": docs}))
    index = data.draw(st.integers(0, len(docs)), label="index (len(docs): added)")
    invalid = copy.deepcopy(docs[index] if index < len(docs) else extra)
    if index == len(docs):
        invalid["metadata"] = {"name": "fuzz-extra", "namespace": "default"}
    invalid["metadata"]["labels"] = {"broken": 1}  # a label value must be a string
    changed = [*docs[:index], invalid, *docs[index + 1 :]]
    after = assembler.assemble({"fuzz.yaml": changed})
    assert any(f"{object_key(invalid)} is invalid" in error.message for error in after.errors), (
        after.errors
    )
    assert _translate(after) == good

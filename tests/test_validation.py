"""The CRD schemas' bounds and the API server's metadata limits, as validation applies
them: refused with the field and the bound, before any work on the items."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from twistgw.api.policy_validation import MAX_FILTER_CONFIG
from twistgw.api.validation import (
    MAX_ANNOTATIONS_BYTES,
    InvalidObject,
    grpc_regex_problems,
    validated_body,
)

GW_API = "gateway.networking.k8s.io/v1"


def _manifest(kind: str, spec: dict[str, Any], **metadata: Any) -> dict:
    return {
        "apiVersion": GW_API,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default", **metadata},
        "spec": spec,
    }


def _rule(**fields: Any) -> dict:
    return {"backendRefs": [{"name": "web", "port": 8080}], **fields}


def _refused(manifest: dict) -> str:
    with pytest.raises(InvalidObject) as caught:
        validated_body(manifest)
    return str(caught.value)


def test_ten_thousand_rules_are_refused_naming_the_bound():
    rules = [_rule(matches=[{"path": {"value": f"/r{i}"}}]) for i in range(10000)]
    message = _refused(_manifest("HTTPRoute", {"rules": rules}))
    assert message == "spec.rules: must have at most 16 items, has 10000"


def test_bounds_count_before_the_items_are_looked_at():
    rules = [_rule(), "not a rule"] * 10  # the bad items are never reached
    assert _refused(_manifest("HTTPRoute", {"rules": rules})) == (
        "spec.rules: must have at most 16 items, has 20"
    )


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (
            "HTTPRoute",
            {"rules": [_rule(), _rule(matches=[{}] * 65)]},
            "spec.rules[1].matches: must have at most 64 items, has 65",
        ),
        (
            "HTTPRoute",
            {
                "rules": [
                    _rule(
                        backendRefs=[
                            {
                                "name": "web",
                                "port": 8080,
                                "filters": [
                                    {
                                        "type": "ResponseHeaderModifier",
                                        "responseHeaderModifier": {"remove": ["X-A"] * 17},
                                    }
                                ],
                            }
                        ]
                    )
                ]
            },
            "spec.rules[0].backendRefs[0].filters[0].responseHeaderModifier.remove:"
            " must have at most 16 items, has 17",
        ),
        (
            "HTTPRoute",
            {"hostnames": [f"h{i}.example.com" for i in range(17)]},
            "spec.hostnames: must have at most 16 items, has 17",
        ),
        (
            "Gateway",
            {
                "gatewayClassName": "twistgw",
                "listeners": [
                    {"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(65)
                ],
            },
            "spec.listeners: must have at most 64 items, has 65",
        ),
        (
            "TCPRoute",
            {"rules": [_rule(), _rule()]},
            "spec.rules: must have at most 1 items, has 2",
        ),
    ],
)
def test_list_bounds(kind, spec, message):
    assert _refused(_manifest(kind, spec)) == message


def test_tlsroute_may_have_more_hostnames_than_an_httproute():
    hostnames = [f"h{i}.example.com" for i in range(100)]
    body = validated_body(_manifest("TLSRoute", {"hostnames": hostnames, "rules": [_rule()]}))
    assert len(body["spec"]["hostnames"]) == 100


def test_string_lengths():
    header = {"name": "X-A", "value": "v" * 4096}
    query = {"name": "q", "value": "v" * 1025}
    validated_body(_manifest("HTTPRoute", {"rules": [_rule(matches=[{"headers": [header]}])]}))
    message = _refused(
        _manifest("HTTPRoute", {"rules": [_rule(matches=[{"queryParams": [query]}])]})
    )
    assert (
        message == "spec.rules[0].matches[0].queryParams[0].value: must be at most 1024 characters"
    )


def test_annotations_are_bounded_in_total():
    key = "example.com/note"
    fits = {key: "x" * (MAX_ANNOTATIONS_BYTES - len(key))}
    validated_body(_manifest("HTTPRoute", {}, annotations=fits))
    over = {key: "x" * (10 * 1024 * 1024)}
    size = len(key) + 10 * 1024 * 1024
    assert _refused(_manifest("HTTPRoute", {}, annotations=over)) == (
        f"metadata.annotations: must total at most 262144 bytes (256 KiB), has {size}"
    )


def test_labels_are_bounded_strings():
    assert _refused(_manifest("Service", {}, labels={"app": "x" * 64})) == (
        "metadata.labels['app']: value must be at most 63 characters"
    )
    assert _refused(_manifest("Service", {}, labels={"version": 2})) == (
        "metadata.labels['version']: keys and values must be strings"
    )
    validated_body(_manifest("Service", {}, labels={"kubernetes.io/service-name": "web"}))


@pytest.mark.parametrize(
    ("tls", "field"),
    [
        (True, "spec.listeners[0].tls: must be an object"),
        ({"certificateRefs": True}, "spec.listeners[0].tls.certificateRefs: must be a list"),
        ({"certificateRefs": {"": None}}, "spec.listeners[0].tls.certificateRefs: must be a list"),
        (
            {"certificateRefs": [None]},
            "spec.listeners[0].tls.certificateRefs[0]: must be an object",
        ),
        ({"certificateRefs": [{"name": []}]}, "spec.listeners[0].tls.certificateRefs[0].name"),
        ({"mode": "Reencrypt"}, "spec.listeners[0].tls.mode: must be one of"),
        ({"options": {"a": 1}}, "spec.listeners[0].tls.options.a: must be a string"),
    ],
)
def test_a_listeners_tls_has_its_shape_checked(tls: Any, field: str) -> None:
    """Found by fuzzing the translator: junk here crashed translation."""
    listener = {"name": "https", "port": 443, "protocol": "HTTPS", "tls": tls}
    message = _refused(_manifest("Gateway", {"gatewayClassName": "c", "listeners": [listener]}))
    assert message.startswith(field)


def _grpc(*rules: dict) -> dict:
    return _manifest("GRPCRoute", {"parentRefs": [{"name": "gw"}], "rules": list(rules)})


def test_a_grpcroute_is_defaulted_as_the_api_server_would():
    body = validated_body(
        _grpc(
            _rule(
                matches=[
                    {"method": {"service": "pkg.Svc"}, "headers": [{"name": "v", "value": "1"}]}
                ]
            )
        )
    )
    match = body["spec"]["rules"][0]["matches"][0]
    assert match["method"]["type"] == "Exact"
    assert match["headers"][0]["type"] == "Exact"
    assert body["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert body["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1
    assert validated_body(_manifest("GRPCRoute", {}))["spec"] == {}  # no rules: no default


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ({}, "spec.rules[0].matches[0].method: must have a service or a method, or both"),
        ({"type": "Exact", "service": "a/b"}, "spec.rules[0].matches[0].method.service: 'a/b'"),
        ({"service": "pkg.Svc", "method": "Do.It"}, "spec.rules[0].matches[0].method.method:"),
        ({"service": ""}, "spec.rules[0].matches[0].method.service: '' is not a gRPC"),
        ({"service": "p\u212ag.Svc"}, "spec.rules[0].matches[0].method.service:"),  # Kelvin
        ({"type": "Prefix", "service": "a"}, "spec.rules[0].matches[0].method.type: must be"),
        ({"method": "x" * 1025}, "spec.rules[0].matches[0].method.method: must be at most"),
    ],
)
def test_grpc_method_matches_are_checked(method: dict, message: str) -> None:
    assert _refused(_grpc(_rule(matches=[{"method": method}]))).startswith(message)


def test_regular_expression_method_matches_are_not_names():
    rule = _rule(matches=[{"method": {"type": "RegularExpression", "service": "a/(b"}}])
    validated_body(_grpc(rule))  # RE2 judges it later: the rule's status says why


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (
            [{"type": "URLRewrite", "urlRewrite": {}}],
            "spec.rules[0].filters[0].type: must be one of",
        ),
        (
            [{"type": "RequestHeaderModifier"}],
            "spec.rules[0].filters[0].requestHeaderModifier: is required",
        ),
        (
            [
                {
                    "type": "RequestMirror",
                    "requestMirror": {"backendRef": {"name": "m", "port": 1}},
                    "requestHeaderModifier": {},
                }
            ],
            "spec.rules[0].filters[0].requestHeaderModifier: must not be set for type",
        ),
        (
            [{"type": "RequestHeaderModifier", "requestHeaderModifier": {}}] * 2,
            "spec.rules[0].filters[1]: a RequestHeaderModifier filter cannot be repeated",
        ),
        (
            [{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m"}}}],
            "spec.rules[0].filters[0].requestMirror.backendRef.port: is required",
        ),
        (
            [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {"name": "m", "port": 1},
                        "fraction": {"numerator": 3, "denominator": 2},
                    },
                }
            ],
            "spec.rules[0].filters[0].requestMirror.fraction: numerator must be",
        ),
        (
            [{"type": "ExtensionRef", "extensionRef": {"kind": "K", "name": "n"}}],
            "spec.rules[0].filters[0].extensionRef.group: is required",
        ),
    ],
)
def test_grpc_filters_are_checked(filters: list, message: str) -> None:
    assert _refused(_grpc(_rule(filters=filters))).startswith(message)


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_rule_names_are_unique_within_a_route(kind: str) -> None:
    assert _refused(_manifest(kind, {"rules": [_rule(name="a"), _rule(name="a")]})) == (
        "spec.rules[1].name: rule name 'a' is not unique within the route"
    )
    validated_body(_manifest(kind, {"rules": [_rule(name="a"), _rule(name="b"), _rule()]}))
    validated_body(_manifest(kind, {"rules": [_rule(), _rule()]}))  # unnamed rules


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_routes_have_at_most_128_matches_in_all(kind: str) -> None:
    """The CRDs' rule allows 128 (its message says "less than 128")."""
    rules = [_rule(matches=[{}] * 64), _rule(matches=[{}] * 64), _rule(matches=[{}])]
    assert _refused(_manifest(kind, {"rules": rules})) == (
        "spec.rules: must have at most 128 matches in all, has 129"
    )
    validated_body(_manifest(kind, {"rules": rules[:2]}))


def test_httproute_rules_without_matches_count_one_default_match():
    rules = [_rule(matches=[{}] * 64), _rule(matches=[{}] * 63), _rule(), _rule()]
    assert _refused(_manifest("HTTPRoute", {"rules": rules})) == (
        "spec.rules: must have at most 128 matches in all, has 129"
    )
    body = validated_body(_manifest("HTTPRoute", {"rules": rules[:3]}))
    assert len(body["spec"]["rules"][2]["matches"]) == 1
    # an explicit empty list counts none, as in the CRD's rule, and serves "/" anyway
    body = validated_body(_manifest("HTTPRoute", {"rules": [*rules[:3], _rule(matches=[])]}))
    assert len(body["spec"]["rules"][3]["matches"]) == 1


def test_the_match_total_is_checked_after_each_rule_is():
    """A rule that is itself invalid is named first, as for any other field."""
    rules = [_rule(matches=[{}] * 64), _rule(matches=[{}] * 64), _rule(name="-bad-")]
    assert _refused(_manifest("HTTPRoute", {"rules": rules})).startswith("spec.rules[2].name")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rules": [_rule()] * 17}, "spec.rules: must have at most 16 items, has 17"),
        (
            {"hostnames": [f"h{i}.example.com" for i in range(17)]},
            "spec.hostnames: must have at most 16",
        ),
        (
            {"rules": [_rule(matches=[{"headers": [{"name": "a", "value": "b"}] * 17}])]},
            "spec.rules[0].matches[0].headers: must have at most 16 items, has 17",
        ),
        (
            {"rules": [_rule(matches=[{"headers": [{"name": "a", "value": ""}]}])]},
            "spec.rules[0].matches[0].headers[0].value: must not be empty",
        ),
    ],
)
def test_grpcroute_bounds(spec: dict, message: str) -> None:
    assert _refused(_manifest("GRPCRoute", spec)).startswith(message)


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (
            "HTTPRoute",
            {"rules": [{"matches": [None]}]},
            "spec.rules[0].matches[0]: must be an object",
        ),
        ("GRPCRoute", {"rules": [None]}, "spec.rules[0]: must be an object"),
        (
            "Gateway",
            {
                "gatewayClassName": "c",
                "listeners": [{"name": "a", "port": 1, "protocol": "HTTP"}],
                "addresses": [None],
            },
            "spec.addresses[0]: must be an object, not NoneType",
        ),
        ("EndpointSlice", None, "endpoints[0]: must be an object"),
    ],
)
def test_null_list_items_are_refused(kind: str, spec: Any, message: str) -> None:
    """A null item once went through as an empty object and crashed translation."""
    manifest = _manifest(kind, spec)
    if kind == "EndpointSlice":
        manifest = {"kind": kind, "metadata": {"name": "x"}, "endpoints": [None]}
    assert _refused(manifest).startswith(message)


@pytest.mark.parametrize(
    ("frontend", "message"),
    [
        (
            {"default": {"validation": {"caCertificateRefs": [None]}}},
            "spec.tls.frontend.default.validation.caCertificateRefs[0]: must be an object, "
            "not NoneType",
        ),
        ({"perPort": [None]}, "spec.tls.frontend.perPort[0]: must be an object, not NoneType"),
        (
            {"perPort": [{"port": 443, "tls": {"validation": {"caCertificateRefs": [{}]}}}]},
            "spec.tls.frontend.perPort[0].tls.validation.caCertificateRefs[0].name: is required",
        ),
        (
            {"default": {"validation": {"caCertificateRefs": [{"name": "ca", "kind": 1}]}}},
            "spec.tls.frontend.default.validation.caCertificateRefs[0].kind: must be a string",
        ),
        (
            {"default": {"validation": {"caCertificateRefs": [{"name": "ca"}] * 9}}},
            "spec.tls.frontend.default.validation.caCertificateRefs: must have at most 8 items",
        ),
    ],
)
def test_gateway_frontend_validation_refs(frontend: dict, message: str) -> None:
    """A null caCertificateRef crashed translation (tests/translate/test_fuzz.py)."""
    spec = {
        "gatewayClassName": "c",
        "listeners": [{"name": "a", "port": 1, "protocol": "HTTP"}],
        "tls": {"frontend": frontend},
    }
    assert _refused(_manifest("Gateway", spec)).startswith(message)


def test_grpc_regular_expressions_re2_refuses_are_named():
    rule = {
        "matches": [
            {
                "method": {"type": "RegularExpression", "service": "(a", "method": "b"},
                "headers": [{"type": "RegularExpression", "name": "x", "value": "(?=y)"}],
            }
        ]
    }
    problems = grpc_regex_problems(rule, "spec.rules[0]")
    assert [p.split(":")[0] for p in problems] == [
        "spec.rules[0].matches[0].method.service",
        "spec.rules[0].matches[0].headers[0].value",
    ]


def _listener_set(**spec: Any) -> dict:
    listeners = [{"name": "web", "port": 80, "protocol": "HTTP"}]
    return _manifest("ListenerSet", {"parentRef": {"name": "gw"}, "listeners": listeners, **spec})


def test_a_listener_set_is_checked_and_defaulted_as_its_crd_says():
    body = validated_body(_listener_set())
    assert body["spec"]["parentRef"] == {
        "name": "gw",
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
    }
    assert body["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}
    many = [{"name": f"l{i}", "port": 80, "protocol": "HTTP"} for i in range(65)]
    assert "spec.listeners: must have at most 64 items" in _refused(_listener_set(listeners=many))
    assert "spec.listeners" in _refused(_listener_set(listeners=[]))
    assert "spec.parentRef.name" in _refused(_listener_set(parentRef={}))
    twice = [{"name": "a", "port": 80, "protocol": "HTTP"}] * 2
    assert "duplicate listener name" in _refused(_listener_set(listeners=twice))


def test_allowed_listeners_namespaces_from_is_an_enum():
    gateway = _manifest(
        "Gateway",
        {
            "gatewayClassName": "twistgw",
            "listeners": [{"name": "web", "port": 80, "protocol": "HTTP"}],
            "allowedListeners": {"namespaces": {"from": "Everyone"}},
        },
    )
    assert "spec.allowedListeners.namespaces.from" in _refused(gateway)


def _core(kind: str, **body: Any) -> dict:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "default"},
        **body,
    }


LISTENER = {"name": "http", "port": 80, "protocol": "HTTP"}


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        (_core("Secret", data="x"), "data: must be an object"),
        (_core("ConfigMap", data={"ca.crt": 1.0}), "data.ca.crt: must be a string"),
        (
            _core("EndpointSlice", endpoints=[{"addresses": ["10.0.0.1"], "conditions": "x"}]),
            "endpoints[0].conditions: must be an object",
        ),
        (_core("EndpointSlice", endpoints=[{"addresses": [5]}]), "endpoints[0].addresses[0]"),
        (
            _core("Service", spec={"ports": [{"port": 80, "appProtocol": ["h2"]}]}),
            "spec.ports[0].appProtocol: must be a string",
        ),
        (
            _core("Service", spec={"ports": [{"port": 80, "name": ["http"]}]}),
            "spec.ports[0].name: must be a string",
        ),
        (
            _manifest(
                "Gateway", {"gatewayClassName": "c", "listeners": [LISTENER], "infrastructure": "x"}
            ),
            "spec.infrastructure: must be an object",
        ),
        (
            _manifest("Gateway", {"gatewayClassName": "c", "listeners": [LISTENER], "tls": "x"}),
            "spec.tls: must be an object",
        ),
        (
            _manifest(
                "Gateway",
                {"gatewayClassName": "c", "listeners": [LISTENER], "addresses": [{"value": 5}]},
            ),
            "spec.addresses[0].value: must be a string",
        ),
        (
            _manifest(
                "Gateway",
                {
                    "gatewayClassName": "c",
                    "listeners": [
                        {
                            **LISTENER,
                            "allowedRoutes": {
                                "namespaces": {"from": "Selector", "selector": {"matchLabels": "x"}}
                            },
                        }
                    ],
                },
            ),
            "selector.matchLabels: must be an object",
        ),
        (
            _manifest(
                "Gateway",
                {
                    "gatewayClassName": "c",
                    "listeners": [LISTENER],
                    "allowedListeners": {
                        "namespaces": {
                            "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}
                        }
                    },
                },
            ),
            "matchExpressions[0].operator",
        ),
        (
            _manifest("GatewayClass", {"controllerName": "c", "parametersRef": "x"}),
            "spec.parametersRef: must be an object",
        ),
        (
            _manifest("HTTPRoute", {"parentRefs": [{"name": "gw", "kind": []}]}),
            "spec.parentRefs[0].kind: must be a string",
        ),
    ],
)
def test_fields_the_translator_reads_have_their_types(manifest, field):
    """Found by the translator fuzzing: each of these crashed translation."""
    assert field in _refused(manifest)


def test_a_field_set_to_null_is_absent_and_takes_its_default():
    """As the API server prunes nulls: a null weight or path value crashed the workers
    or validation itself."""
    route = _manifest(
        "HTTPRoute",
        {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": None}}],
                    "backendRefs": [{"name": "web", "port": 80, "weight": None}],
                }
            ],
        },
    )
    rule = validated_body(route)["spec"]["rules"][0]
    assert rule["backendRefs"][0]["weight"] == 1
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}
    assert route["spec"]["rules"][0]["backendRefs"][0]["weight"] is None  # (a copy)


def _cors_route(*filters: dict) -> dict:
    return _manifest("HTTPRoute", {"rules": [_rule(filters=list(filters))]})


def test_a_cors_filter_is_defaulted_as_the_api_server_would():
    body = validated_body(_cors_route({"type": "CORS", "cors": {"allowOrigins": ["*"]}}))
    assert body["spec"]["rules"][0]["filters"][0]["cors"]["maxAge"] == 5


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ([{"type": "CORS"}], "spec.rules[0].filters[0].cors: is required for type CORS"),
        (
            [{"type": "URLRewrite", "cors": {}}],
            "spec.rules[0].filters[0].cors: must not be set for type URLRewrite",
        ),
        (
            [{"type": "CORS", "cors": {}}] * 2,
            "spec.rules[0].filters[1]: a CORS filter cannot be repeated",
        ),
        (
            [{"type": "CORS", "cors": {"allowOrigins": ["https://a.com\r\nx: y"]}}],
            "spec.rules[0].filters[0].cors.allowOrigins[0]: 'https://a.com\\r\\nx: y' is not",
        ),
        (
            [{"type": "CORS", "cors": {"allowOrigins": ["https://a.*.com"]}}],
            "spec.rules[0].filters[0].cors.allowOrigins[0]: 'https://a.*.com' is not",
        ),
        (
            [{"type": "CORS", "cors": {"allowOrigins": ["*", "https://a.com"]}}],
            "spec.rules[0].filters[0].cors.allowOrigins: cannot contain '*' alongside",
        ),
        (
            [{"type": "CORS", "cors": {"allowMethods": ["GET", "GET"]}}],
            "spec.rules[0].filters[0].cors.allowMethods: must not repeat an item",
        ),
        (
            [{"type": "CORS", "cors": {"allowMethods": ["get"]}}],
            "spec.rules[0].filters[0].cors.allowMethods[0]: must be one of",
        ),
        (
            [{"type": "CORS", "cors": {"allowHeaders": ["x-a\u00e9"]}}],
            "spec.rules[0].filters[0].cors.allowHeaders[0]: 'x-aé' is not a valid header name",
        ),
        (
            [{"type": "CORS", "cors": {"exposeHeaders": ["x a"]}}],
            "spec.rules[0].filters[0].cors.exposeHeaders[0]: 'x a' is not a valid header name",
        ),
        (
            [{"type": "CORS", "cors": {"allowCredentials": "yes"}}],
            "spec.rules[0].filters[0].cors.allowCredentials: must be a boolean",
        ),
        (
            [{"type": "CORS", "cors": {"maxAge": 0}}],
            "spec.rules[0].filters[0].cors.maxAge: must be between 1 and 2147483647",
        ),
        (
            [{"type": "CORS", "cors": {"allowOrigins": [f"https://a{i}.com" for i in range(65)]}}],
            "spec.rules[0].filters[0].cors.allowOrigins: must have at most 64 items, has 65",
        ),
    ],
)
def test_cors_filters_are_checked(filters: list, message: str) -> None:
    assert _refused(_cors_route(*filters)).startswith(message)


@pytest.mark.parametrize("namespace", [{"": "/"}, "a/b", "Upper", 7, "x" * 64])
def test_a_namespace_must_be_a_namespace_name(namespace) -> None:
    """(Found by the translator fuzzing: a namespace holding "/" made listener names
    the data plane and statuses split wrongly.)"""
    message = _refused(_manifest("HTTPRoute", {}, namespace=namespace))
    assert message.startswith("metadata.namespace")


def test_a_reference_grant_target_name_is_a_string() -> None:
    """(Found by the translator fuzzing: a list there broke the grant index.)"""
    grant = {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": "other"}],
        "to": [{"group": "", "kind": "Secret", "name": [None]}],
    }
    assert _refused(_manifest("ReferenceGrant", grant)).startswith("spec.to[0].name")


def _session_route(kind: str, session: Any) -> dict:
    return _manifest(kind, {"rules": [_rule(sessionPersistence=session)]})


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_session_persistence_is_defaulted_as_the_api_server_would(kind: str) -> None:
    body = validated_body(_session_route(kind, {"cookie": {}}))
    assert body["spec"]["rules"][0]["sessionPersistence"] == {
        "type": "Cookie",
        "cookie": {"lifetimeType": "Session", "path": "/"},
    }
    header = {"type": "Header", "header": {"name": "X-Session"}, "absoluteTimeout": "10m"}
    body = validated_body(_session_route(kind, dict(header)))
    assert body["spec"]["rules"][0]["sessionPersistence"] == header
    permanent = {"absoluteTimeout": "1h", "cookie": {"lifetimeType": "Permanent", "name": "s"}}
    body = validated_body(_session_route(kind, permanent))
    cookie = body["spec"]["rules"][0]["sessionPersistence"]["cookie"]
    assert cookie == {"lifetimeType": "Permanent", "name": "s", "path": "/"}


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
@pytest.mark.parametrize(
    ("session", "message"),
    [
        ({}, "sessionPersistence: cookie must be specified for Cookie type"),
        ({"type": "Header"}, "sessionPersistence: header must be specified for Header type"),
        (
            {"type": "Header", "header": {"name": "x"}, "cookie": {}},
            "sessionPersistence: cookie must be nil if type is not Cookie",
        ),
        (
            {"cookie": {}, "header": {"name": "x"}},
            "sessionPersistence: header must be nil if type is not Header",
        ),
        (
            {"cookie": {"lifetimeType": "Permanent"}},
            "sessionPersistence: AbsoluteTimeout must be specified when cookie lifetimeType "
            "is Permanent",
        ),
        (
            {"type": "Sticky", "cookie": {}},
            "sessionPersistence.type: must be one of Cookie, Header; got 'Sticky'",
        ),
        (
            {"cookie": {"lifetimeType": "Forever"}},
            "sessionPersistence.cookie.lifetimeType: must be one of Permanent, Session",
        ),
        ({"cookie": {"name": ""}}, "sessionPersistence.cookie.name: '' is not a valid name"),
        ({"cookie": {"name": "a;b"}}, "sessionPersistence.cookie.name: 'a;b' is not a valid"),
        ({"cookie": {"name": "a" * 257}}, "sessionPersistence.cookie.name: must be at most 256"),
        ({"cookie": {"path": "/" * 1025}}, "sessionPersistence.cookie.path: must be at most 1024"),
        ({"type": "Header", "header": {}}, "sessionPersistence.header.name: is required"),
        (
            {"type": "Header", "header": {"name": "x s"}},
            "sessionPersistence.header.name: 'x s' is not a valid name",
        ),
        (
            {"cookie": {}, "absoluteTimeout": "1d"},
            "sessionPersistence.absoluteTimeout: '1d' is not a duration",
        ),
        ({"cookie": []}, "sessionPersistence.cookie: must be an object, not list"),
        ("cookie", "sessionPersistence: must be an object, not str"),
        (
            {"sessionName": "s", "idleTimeout": "1m"},
            "sessionPersistence: cookie must be specified for Cookie type (sessionName, "
            "idleTimeout: not fields of this API version, which has cookie and header)",
        ),
    ],
)
def test_session_persistence_is_checked_as_the_crd_says(
    kind: str, session: Any, message: str
) -> None:
    assert _refused(_session_route(kind, session)).startswith(f"spec.rules[0].{message}")


def _python_filter(config: Any) -> dict:
    manifest = _manifest("PythonFilter", {"plugin": "p", "config": config})
    manifest["apiVersion"] = "gateway.twistgw.dev/v1alpha1"
    return manifest


def test_a_python_filters_config_is_bounded():
    fits = {"a": "x" * (MAX_FILTER_CONFIG - 20)}
    assert validated_body(_python_filter(fits))["spec"]["config"] == fits
    too_large = {"a": "x" * MAX_FILTER_CONFIG}
    assert "spec.config: must be JSON of at most 65536 bytes" in _refused(_python_filter(too_large))
    dated = {"when": datetime.date(2024, 1, 1)}  # (what YAML makes of 2024-01-01)
    assert "spec.config: must be JSON data" in _refused(_python_filter(dated))


@pytest.mark.parametrize("timeout, refused", [("500ms", False), ("15s", False), ("16s", True)])
def test_an_auth_services_timeout_is_within_a_requests_checks(timeout, refused):
    manifest = _manifest(
        "SecurityPolicy",
        {
            "targetRefs": [{"kind": "HTTPRoute", "name": "api"}],
            "extAuth": {"http": {"backendRef": {"name": "auth", "port": 9000}}, "timeout": timeout},
        },
    )
    manifest["apiVersion"] = "gateway.twistgw.dev/v1alpha1"
    if refused:
        assert "spec.extAuth.timeout: must be from 0.001s to 15s" in _refused(manifest)
    else:
        assert validated_body(manifest)["spec"]["extAuth"]["timeout"] == timeout

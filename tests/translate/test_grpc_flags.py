"""What the golden cases' routing summary does not show: GRPCRoute rules are flagged
``grpc`` and their backends ``http2``, as are HTTPRoute backends on h2c ports."""

from __future__ import annotations

from twistgw.routing import ir
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate

GW = "gateway.networking.k8s.io/v1"


def _objects() -> list[dict]:
    def service(name: str, **port: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": 8080, **port}]},
        }

    def route(kind: str, hostname: str, backend: str) -> dict:
        return {
            "apiVersion": GW,
            "kind": kind,
            "metadata": {"name": f"{kind.lower()}-{backend}", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": [hostname],
                "rules": [{"backendRefs": [{"name": backend, "port": 8080}]}],
            },
        }

    return [
        {
            "apiVersion": GW,
            "kind": "GatewayClass",
            "metadata": {"name": "c"},
            "spec": {"controllerName": "gateway.twistgw.dev/controller"},
        },
        {
            "apiVersion": GW,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "gatewayClassName": "c",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
        service("plain"),
        service("h2c", appProtocol="kubernetes.io/h2c"),
        route("GRPCRoute", "grpc.example.com", "plain"),
        route("HTTPRoute", "h2c.example.com", "h2c"),
        route("HTTPRoute", "web.example.com", "plain"),
    ]


def test_grpc_and_http2_flags():
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble({"x": _objects()})
    table = translate(snapshot, TranslateOptions()).table
    (listener,) = table.binds[0].listeners
    assert isinstance(listener, ir.HTTPListener)
    flags = {
        vhost.hostname: [(r.grpc, [b.http2 for b in r.backends]) for r in vhost.routes]
        for vhost in listener.virtual_hosts
    }
    assert flags == {
        "grpc.example.com": [(True, [True])],
        "h2c.example.com": [(False, [True])],
        "web.example.com": [(False, [False])],
    }

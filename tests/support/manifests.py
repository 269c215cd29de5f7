"""Builders for the manifests tests write."""

from __future__ import annotations

from typing import Any

from tests.support.gateway import CONTROLLER

GW_API = "gateway.networking.k8s.io/v1"


def gateway_class(name: str = "twistgw", controller: str = CONTROLLER) -> dict:
    return {
        "apiVersion": GW_API,
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    }


def gateway_manifest(
    name: str = "gw",
    listeners: list[dict] | None = None,
    namespace: str = "default",
    class_name: str = "twistgw",
    **spec: Any,
) -> dict:
    listeners = listeners or [{"name": "http", "port": 8080, "protocol": "HTTP"}]
    return {
        "apiVersion": GW_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"gatewayClassName": class_name, "listeners": listeners, **spec},
    }


def http_route(
    name: str,
    rules: list[dict],
    parents: list[dict] | None = None,
    hostnames: list[str] | None = None,
    namespace: str = "default",
) -> dict:
    spec: dict[str, Any] = {"parentRefs": parents or [{"name": "gw"}], "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": GW_API,
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def backend(name: str, port: int = 8080, weight: int | None = None, **extra: Any) -> dict:
    ref = {"name": name, "port": port, **extra}
    if weight is not None:
        ref["weight"] = weight
    return ref


def service(
    name: str,
    endpoints: list[tuple[str, int]],
    port: int = 8080,
    namespace: str = "default",
    app_protocol: str | None = None,
) -> list[dict]:
    """A Service and the EndpointSlices Kubernetes would write for it (one per endpoint,
    since each test backend listens on its own port)."""
    service_port: dict[str, Any] = {"name": "http", "port": port, "protocol": "TCP"}
    if app_protocol:
        service_port["appProtocol"] = app_protocol
    documents = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [service_port]},
        },
    ]
    for index, (address, target) in enumerate(endpoints):
        documents.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-{index}",
                    "namespace": namespace,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": target}],
                "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            }
        )
    return documents


def backend_tls_policy(name: str, service_name: str, **validation: Any) -> dict:
    """A BackendTLSPolicy for every port of a Service in ``default``."""
    return {
        "apiVersion": GW_API,
        "kind": "BackendTLSPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": service_name}],
            "validation": validation,
        },
    }

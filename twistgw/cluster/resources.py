"""The Kubernetes resources twistgw reads and writes, and their REST paths."""

from __future__ import annotations

import attrs

GATEWAY = "gateway.networking.k8s.io"
POLICIES = "gateway.twistgw.dev"


@attrs.frozen
class APIResource:
    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection(self) -> str:
        """The path listing every object, in all namespaces."""
        return f"{self.prefix}/{self.plural}"

    def path(self, name: str, namespace: str = "") -> str:
        if self.namespaced:
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}/{name}"
        return f"{self.prefix}/{self.plural}/{name}"


#: What cluster mode lists and watches.
WATCHED: tuple[APIResource, ...] = (
    APIResource("GatewayClass", GATEWAY, "v1", "gatewayclasses", namespaced=False),
    APIResource("Gateway", GATEWAY, "v1", "gateways"),
    APIResource("ListenerSet", GATEWAY, "v1", "listenersets"),
    APIResource("HTTPRoute", GATEWAY, "v1", "httproutes"),
    APIResource("GRPCRoute", GATEWAY, "v1", "grpcroutes"),
    APIResource("TLSRoute", GATEWAY, "v1", "tlsroutes"),
    APIResource("TCPRoute", GATEWAY, "v1alpha2", "tcproutes"),
    APIResource("UDPRoute", GATEWAY, "v1alpha2", "udproutes"),
    APIResource("ReferenceGrant", GATEWAY, "v1beta1", "referencegrants"),
    APIResource("BackendTLSPolicy", GATEWAY, "v1", "backendtlspolicies"),
    APIResource("TrafficPolicy", POLICIES, "v1alpha1", "trafficpolicies"),
    APIResource("SecurityPolicy", POLICIES, "v1alpha1", "securitypolicies"),
    APIResource("PythonFilter", POLICIES, "v1alpha1", "pythonfilters"),
    APIResource("Service", "", "v1", "services"),
    APIResource("EndpointSlice", "discovery.k8s.io", "v1", "endpointslices"),
    APIResource("Namespace", "", "v1", "namespaces", namespaced=False),
    APIResource("Secret", "", "v1", "secrets"),
    APIResource("ConfigMap", "", "v1", "configmaps"),
)
BY_KIND = {resource.kind: resource for resource in WATCHED}
LEASE = APIResource("Lease", "coordination.k8s.io", "v1", "leases")

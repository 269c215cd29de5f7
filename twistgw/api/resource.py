"""The objects twistgw reads (one frozen record per Kubernetes object) and the statuses
it writes for them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

GATEWAY_GROUP = "gateway.networking.k8s.io"
#: twistgw's own kinds (TrafficPolicy, SecurityPolicy).
POLICY_GROUP = "gateway.twistgw.dev"
CORE_GROUP = ""

#: Kinds the translator reads, with the API group each belongs to.
KNOWN_KINDS: Mapping[str, str] = {
    "GatewayClass": GATEWAY_GROUP,
    "Gateway": GATEWAY_GROUP,
    "HTTPRoute": GATEWAY_GROUP,
    "GRPCRoute": GATEWAY_GROUP,
    "TLSRoute": GATEWAY_GROUP,
    "TCPRoute": GATEWAY_GROUP,
    "UDPRoute": GATEWAY_GROUP,
    "ListenerSet": GATEWAY_GROUP,
    "ReferenceGrant": GATEWAY_GROUP,
    "BackendTLSPolicy": GATEWAY_GROUP,
    "TrafficPolicy": POLICY_GROUP,
    "SecurityPolicy": POLICY_GROUP,
    "PythonFilter": POLICY_GROUP,
    "Namespace": CORE_GROUP,
    "Service": CORE_GROUP,
    "EndpointSlice": "discovery.k8s.io",
    "Secret": CORE_GROUP,
    "ConfigMap": CORE_GROUP,
}

#: Kinds without a namespace.
CLUSTER_SCOPED = frozenset({"GatewayClass", "Namespace"})


@attrs.frozen(order=True)
class ObjectKey:
    """Identity of an object: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@attrs.frozen
class Resource:
    """One validated object, its spec defaulted as the API server would.

    ``body`` is the whole manifest (after defaulting); ``spec`` is a shortcut to
    ``body["spec"]`` (empty when the kind has none). Treat both as read-only.
    """

    key: ObjectKey
    api_version: str
    generation: int
    creation_timestamp: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    body: Mapping[str, Any] = attrs.field(eq=False, repr=False)

    @property
    def kind(self) -> str:
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.body.get("spec") or {}

    def age_key(self) -> tuple[str, str, str]:
        """Sort key for the spec's oldest-wins rules: creation time, then namespace/name."""
        return (self.creation_timestamp, self.namespace, self.name)


@attrs.frozen
class ObjectStatus:
    """One object's status in Kubernetes shape (conditions without times yet)."""

    key: ObjectKey
    api_version: str
    generation: int
    status: Mapping[str, Any]


def rfc3339(seconds: float) -> str:
    """Second-precision RFC 3339 in UTC, as the API server writes timestamps."""
    return datetime.fromtimestamp(int(seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

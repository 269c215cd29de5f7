"""BackendTLSPolicies: which Service ports the gateway reaches over TLS, how it
verifies them, and each policy's status per Gateway that uses its Service."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice

import attrs

from twistgw.api.resource import GATEWAY_GROUP, ObjectKey, ObjectStatus, Resource
from twistgw.routing.ir import BackendTLS
from twistgw.snapshot import Snapshot
from twistgw.translate.certificates import ca_bundles
from twistgw.translate.conditions import Conditions

#: (namespace, Service name, port name or None for every port)
Target = tuple[str, str, str | None]
WELL_KNOWN_SYSTEM = "System"
#: Ancestor entries in a policy's status (the CRD's maxItems).
MAX_ANCESTORS = 16


@attrs.define
class PolicyState:
    resource: Resource
    conditions: Conditions
    tls: BackendTLS | None = None  # None: the policy cannot be used (connections fail)
    targets: list[Target] = attrs.field(factory=list)


def _trust(snapshot: Snapshot, state: PolicyState) -> None:
    """Resolve the policy's trust anchors and set Accepted and ResolvedRefs."""
    policy, c = state.resource, state.conditions
    validation = policy.spec.get("validation") or {}
    refs = validation.get("caCertificateRefs") or []
    well_known = validation.get("wellKnownCACertificates")
    sans = tuple(
        (san["type"], san.get("hostname") if san["type"] == "Hostname" else san.get("uri"))
        for san in validation.get("subjectAltNames") or []
    )
    hostname = validation.get("hostname", "")
    if well_known and not refs:
        if well_known != WELL_KNOWN_SYSTEM:
            c.set(
                "Accepted",
                False,
                "Invalid",
                f"wellKnownCACertificates {well_known!r} is not supported (only System)",
            )
            return
        state.tls = BackendTLS(hostname, system_trust=True, subject_alt_names=sans)
        c.set("ResolvedRefs", True, "ResolvedRefs", "All references are resolved")
        c.set("Accepted", True, "Accepted", "Policy is accepted")
        return
    bundle, error = ca_bundles(snapshot, policy, refs, "InvalidKind", cross_namespace=False)
    if error is not None:
        c.set("ResolvedRefs", False, error.reason, error.message)
    else:
        c.set("ResolvedRefs", True, "ResolvedRefs", "All references are resolved")
    if not bundle:
        c.set("Accepted", False, "NoValidCACertificate", "no usable CA certificate")
        return
    state.tls = BackendTLS(hostname, ca_certificates=bundle, subject_alt_names=sans)
    c.set("Accepted", True, "Accepted", "Policy is accepted")


class BackendTLSPolicies:
    """Every BackendTLSPolicy, checked; the oldest policy wins a contested target."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.states: list[PolicyState] = []
        self.by_target: dict[Target, PolicyState] = {}
        for policy in sorted(snapshot.of_kind("BackendTLSPolicy"), key=Resource.age_key):
            state = PolicyState(policy, Conditions(policy.generation))
            self.states.append(state)
            for ref in policy.spec.get("targetRefs") or []:
                if (ref.get("group", ""), ref.get("kind")) == ("", "Service"):
                    state.targets.append((policy.namespace, ref["name"], ref.get("sectionName")))
            if not state.targets:
                state.conditions.set(
                    "Accepted", False, "Invalid", "the policy targets no Service (core/Service)"
                )
                continue
            taken = [t for t in state.targets if t in self.by_target]
            if taken:
                winner = self.by_target[taken[0]].resource
                state.conditions.set(
                    "Accepted",
                    False,
                    "Conflicted",
                    f"BackendTLSPolicy {winner.namespace}/{winner.name} already targets "
                    f"Service {taken[0][1]}" + (f" port {taken[0][2]}" if taken[0][2] else ""),
                )
                continue
            _trust(snapshot, state)
            for target in state.targets:
                self.by_target[target] = state

    def lookup(self, namespace: str, service: str, port_name: str) -> PolicyState | None:
        """The policy for a Service port: one naming the port beats one for the Service."""
        return self.by_target.get((namespace, service, port_name or None)) or self.by_target.get(
            (namespace, service, None)
        )

    def statuses(
        self, users: Mapping[tuple[str, str], Iterable[ObjectKey]], controller_name: str
    ) -> list[ObjectStatus]:
        """Each policy's status, with an ancestor entry per Gateway whose routes use a
        Service it targets (``users``: (namespace, Service) -> Gateway keys), the first
        ``MAX_ANCESTORS`` of them by namespace and name (the CRD's bound)."""
        ordered: dict[tuple[str, str], list[ObjectKey]] = {}  # each Service's, sorted once
        statuses = []
        for state in self.states:
            lists = []
            for ns, name, _ in state.targets:
                if (ns, name) not in ordered:
                    ordered[(ns, name)] = sorted(users.get((ns, name), ()), key=_by_name)
                lists.append(ordered[(ns, name)])
            gateways = list(islice(unique(heapq.merge(*lists, key=_by_name)), MAX_ANCESTORS))
            ancestors = [
                {
                    "ancestorRef": {
                        "group": GATEWAY_GROUP,
                        "kind": "Gateway",
                        "namespace": gateway.namespace,
                        "name": gateway.name,
                    },
                    "controllerName": controller_name,
                    "conditions": state.conditions.as_list(),
                }
                for gateway in gateways
            ]
            policy = state.resource
            statuses.append(
                ObjectStatus(
                    policy.key, policy.api_version, policy.generation, {"ancestors": ancestors}
                )
            )
        return statuses


def _by_name(key: ObjectKey) -> tuple[str, str]:
    return (key.namespace, key.name)


def unique(keys: Iterable[ObjectKey]) -> Iterator[ObjectKey]:
    """``keys`` (sorted) without repeats."""
    last = None
    for key in keys:
        if key != last:
            yield key
            last = key

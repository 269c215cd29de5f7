"""ListenerSets: attachment to Gateways (``allowedListeners``), their listeners merged
after the Gateway's own in the spec's precedence, and their status."""

from __future__ import annotations

from typing import Any

import attrs

from twistgw.api.resource import GATEWAY_GROUP, ObjectKey, ObjectStatus, Resource
from twistgw.snapshot import Snapshot
from twistgw.translate.conditions import Conditions
from twistgw.translate.gateways import (
    GatewayState,
    ListenerIndex,
    ListenerState,
    check_listeners,
)
from twistgw.translate.selectors import namespace_selected


@attrs.define
class ListenerSetState:
    resource: Resource
    gateway: GatewayState
    conditions: Conditions
    allowed: bool = False
    listeners: list[ListenerState] = attrs.field(factory=list)

    @property
    def key(self) -> ObjectKey:
        return self.resource.key

    def status(self) -> ObjectStatus:
        return ObjectStatus(
            self.key,
            self.resource.api_version,
            self.resource.generation,
            {
                "conditions": self.conditions.as_list(),
                "listeners": [listener.status() for listener in self.listeners],
            },
        )


def _parent_key(resource: Resource) -> tuple[str, str] | None:
    ref: dict[str, Any] = resource.spec.get("parentRef") or {}
    if (ref.get("group", GATEWAY_GROUP), ref.get("kind", "Gateway")) != (GATEWAY_GROUP, "Gateway"):
        return None
    return (ref.get("namespace") or resource.namespace, ref.get("name", ""))


def _allowed(snapshot: Snapshot, gateway: GatewayState, namespace: str) -> bool:
    spec = (gateway.resource.spec.get("allowedListeners") or {}).get("namespaces") or {}
    return namespace_selected(snapshot, spec, namespace, gateway.key.namespace, default="None")


class ListenerSets:
    """Merges ListenerSets into Gateways (a ``build_gateways`` merge step), then
    sets their conditions once the Gateways' are known."""

    def __init__(self) -> None:
        self.states: list[ListenerSetState] = []

    def __call__(self, snapshot: Snapshot, gateways: list[GatewayState]) -> None:
        """Attach each ListenerSet naming one of ``gateways``, oldest first; check the
        listeners of those allowed against the listeners of higher precedence."""
        by_name = {(g.key.namespace, g.key.name): g for g in gateways}
        #: each Gateway's accepted listeners, its own then its sets' in precedence order
        accepted: dict[ObjectKey, ListenerIndex] = {}
        for resource in sorted(snapshot.of_kind("ListenerSet"), key=Resource.age_key):
            gateway = by_name.get(_parent_key(resource) or ("", ""))
            if gateway is None:
                continue
            state = ListenerSetState(resource, gateway, Conditions(resource.generation))
            state.allowed = _allowed(snapshot, gateway, resource.namespace)
            self.states.append(state)
            if not state.allowed:
                continue
            for index, spec in enumerate(resource.spec.get("listeners") or []):
                state.listeners.append(
                    ListenerState(
                        gateway, index, spec, Conditions(resource.generation), owner=resource
                    )
                )
            prior = accepted.get(gateway.key)
            if prior is None:
                own = [listener for listener in gateway.listeners if listener.accepted]
                prior = accepted[gateway.key] = ListenerIndex(own)
            check_listeners(snapshot, state.listeners, prior)
            gateway.set_listeners.extend(state.listeners)

    def by_name(self) -> dict[tuple[str, str], ListenerSetState]:
        return {(s.key.namespace, s.key.name): s for s in self.states}

    def finish(self) -> list[ObjectStatus]:
        """Set every ListenerSet's Accepted and Programmed conditions and count the
        attached ones on their Gateways; their statuses."""
        for state in self.states:
            _conditions(state)
            if state.conditions.is_true("Accepted"):
                state.gateway.attached_listener_sets += 1
        return [state.status() for state in self.states]


def _conditions(state: ListenerSetState) -> None:
    c, gateway = state.conditions, state.gateway
    valid = [listener for listener in state.listeners if listener.accepted]
    if not state.allowed:
        why = (
            f"Gateway {gateway.key.namespace}/{gateway.key.name} does not allow "
            f"ListenerSets from namespace {state.key.namespace}"
        )
        reason = "NotAllowed"
    elif not gateway.conditions.is_true("Accepted"):
        why = f"Gateway {gateway.key.namespace}/{gateway.key.name} is not accepted"
        reason = "ParentNotAccepted"
    elif not valid:
        why, reason = "No listener is valid", "ListenersNotValid"
    else:
        if len(valid) == len(state.listeners):
            c.set("Accepted", True, "Accepted", "ListenerSet is accepted")
        else:
            c.set("Accepted", True, "ListenersNotValid", "Some listeners are not valid")
        if any(listener.conditions.is_true("Programmed") for listener in valid):
            c.set("Programmed", True, "Programmed", "ListenerSet is programmed")
        else:
            c.set("Programmed", False, "Invalid", "No listener is programmed")
        return
    c.set("Accepted", False, reason, why)
    c.set("Programmed", False, reason, why)

"""Statuses with times: keeps ``lastTransitionTime`` while a condition's status holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from twistgw.api.resource import ObjectStatus, rfc3339
from twistgw.snapshot import ConfigError


class StatusStore:
    """The latest status of every owned object, in the Kubernetes shape.

    A condition's ``lastTransitionTime`` is the time its ``status`` last changed, as
    Kubernetes' ``meta.SetStatusCondition`` keeps it.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._times: dict[tuple, tuple[str, str]] = {}
        self._items: list[dict[str, Any]] = []
        self._errors: list[dict[str, str]] = []

    def update(self, statuses: Iterable[ObjectStatus], errors: Iterable[ConfigError]) -> None:
        now = rfc3339(self._clock())
        times: dict[tuple, tuple[str, str]] = {}
        items = []
        for status in statuses:
            body = json.loads(json.dumps(status.status))  # a private deep copy
            for where, conditions in condition_lists(body):
                for condition in conditions:
                    key = (status.key, where, condition["type"])
                    previous = self._times.get(key)
                    if previous is not None and previous[0] == condition["status"]:
                        stamp = previous[1]
                    else:
                        stamp = now
                    condition["lastTransitionTime"] = stamp
                    times[key] = (condition["status"], stamp)
            metadata = {"name": status.key.name, "generation": status.generation}
            if status.key.namespace:
                metadata["namespace"] = status.key.namespace
            items.append(
                {
                    "apiVersion": status.api_version,
                    "kind": status.key.kind,
                    "metadata": metadata,
                    "status": body,
                }
            )
        self._times = times
        self._items = items
        self._errors = [error.as_dict() for error in errors]

    def document(self) -> dict[str, Any]:
        """The admin endpoint's ``/status`` body."""
        return {"items": self._items, "errors": self._errors}


def condition_lists(body: dict[str, Any]):
    """(location, conditions) for every condition list of a status body."""
    yield "", body.get("conditions") or []
    for listener in body.get("listeners") or []:
        yield f"listener/{listener.get('name')}", listener.get("conditions") or []
    for parent in body.get("parents") or []:
        ref = json.dumps(parent.get("parentRef"), sort_keys=True)
        yield f"parent/{parent.get('controllerName')}/{ref}", parent.get("conditions") or []
    for ancestor in body.get("ancestors") or []:
        ref = json.dumps(ancestor.get("ancestorRef"), sort_keys=True)
        yield f"ancestor/{ancestor.get('controllerName')}/{ref}", ancestor.get("conditions") or []

"""Statuses with times: keeps ``lastTransitionTime`` while a condition's status holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
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
            for where, _, conditions in condition_lists(body):
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


def condition_lists(body: Mapping[str, Any]) -> Iterator[tuple[str, str, list[dict]]]:
    """(location, label, conditions) for every condition list of a status body: the
    location a key that tells lists apart, the label how a reader names it ("",
    " listener NAME", " parent NAME[/SECTION]", " ancestor NAME")."""
    yield "", "", body.get("conditions") or []
    for listener in body.get("listeners") or []:
        name = listener.get("name")
        yield f"listener/{name}", f" listener {name}", listener.get("conditions") or []
    for parent in body.get("parents") or []:
        ref = parent.get("parentRef") or {}
        where = f"parent/{parent.get('controllerName')}/{json.dumps(ref, sort_keys=True)}"
        section = f"/{ref['sectionName']}" if ref.get("sectionName") else ""
        yield where, f" parent {ref.get('name')}{section}", parent.get("conditions") or []
    for ancestor in body.get("ancestors") or []:
        ref = ancestor.get("ancestorRef") or {}
        where = f"ancestor/{ancestor.get('controllerName')}/{json.dumps(ref, sort_keys=True)}"
        yield where, f" ancestor {ref.get('name')}", ancestor.get("conditions") or []


#: Conditions whose status "True" says something is wrong; for every other type,
#: any status but "True" does (Unknown included).
TRUE_IS_WRONG = frozenset({"Conflicted", "PartiallyInvalid"})


def is_wrong(condition: Mapping[str, Any]) -> bool:
    """Whether a condition says something is wrong with its object."""
    holds = condition.get("status") == "True"
    return holds if condition.get("type") in TRUE_IS_WRONG else not holds

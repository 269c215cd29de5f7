"""Kubernetes conditions as the translator writes them (times are added by status/)."""

from __future__ import annotations

from typing import Any

TRUE = "True"
FALSE = "False"


def condition(
    type_: str, status: bool | str, reason: str, message: str, generation: int
) -> dict[str, Any]:
    if isinstance(status, bool):
        status = TRUE if status else FALSE
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


class Conditions:
    """An ordered set of conditions keyed by type; setting a type replaces it."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self._by_type: dict[str, dict[str, Any]] = {}

    def set(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        self._by_type[type_] = condition(type_, status, reason, message or reason, self.generation)

    def get(self, type_: str) -> dict[str, Any] | None:
        return self._by_type.get(type_)

    def is_true(self, type_: str) -> bool:
        found = self._by_type.get(type_)
        return found is not None and found["status"] == TRUE

    def as_list(self) -> list[dict[str, Any]]:
        return list(self._by_type.values())

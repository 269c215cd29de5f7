"""Generations and creation times for objects whose manifests do not carry them."""

from __future__ import annotations

import json
from collections.abc import Callable

from twistgw.api.resource import ObjectKey, rfc3339


class GenerationTracker:
    """Assigns generations as the API server does: 1, then +1 each time ``spec`` changes.

    A manifest's own ``metadata.generation`` wins. Objects no longer present are
    forgotten by ``retain`` so that a recreated object starts again at 1.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: dict[ObjectKey, tuple[str, int, str]] = {}

    def stamp(self, key: ObjectKey, body: dict) -> tuple[int, str]:
        """(generation, creationTimestamp) for this version of the object."""
        metadata = body.get("metadata") or {}
        fingerprint = json.dumps(body.get("spec"), sort_keys=True, default=str)
        previous = self._seen.get(key)
        if previous is None:
            generation, created = 1, rfc3339(self._clock())
        else:
            old_print, generation, created = previous
            if old_print != fingerprint:
                generation += 1
        explicit = metadata.get("generation")
        if isinstance(explicit, int) and not isinstance(explicit, bool) and explicit > 0:
            generation = explicit
        stamp = metadata.get("creationTimestamp")
        if isinstance(stamp, str) and stamp:
            created = stamp
        self._seen[key] = (fingerprint, generation, created)
        return generation, created

    def retain(self, keys: set[ObjectKey]) -> None:
        for key in list(self._seen):
            if key not in keys:
                del self._seen[key]

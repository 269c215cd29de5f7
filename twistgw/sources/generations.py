"""Generations and creation times for objects whose manifests do not carry them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection

from twistgw.api.resource import ObjectKey, rfc3339


class GenerationTracker:
    """Assigns generations as the API server does: 1, then +1 each time ``spec`` changes.

    A manifest's own ``metadata.generation`` wins. Objects no longer present are
    forgotten by ``retain`` so that a recreated object starts again at 1. Each spec is
    remembered by a digest of its canonical JSON, not by the JSON itself.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: dict[ObjectKey, tuple[bytes, int, str]] = {}

    def stamp(self, key: ObjectKey, body: dict) -> tuple[int, str]:
        """(generation, creationTimestamp) for this version of the object."""
        metadata = body.get("metadata") or {}
        canonical = json.dumps(body.get("spec"), sort_keys=True, default=str)
        fingerprint = hashlib.blake2b(canonical.encode(), digest_size=32).digest()
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

    def retain(self, keys: Collection[ObjectKey]) -> None:
        """Forget every object not in ``keys``."""
        if len(keys) == len(self._seen) and all(key in self._seen for key in keys):
            return
        self._seen = {key: self._seen[key] for key in keys if key in self._seen}

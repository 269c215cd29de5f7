"""The immutable set of objects a source hands to the translator."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs

from twistgw.api.resource import ObjectKey, Resource


@attrs.frozen
class ConfigError:
    """A problem with the configuration input: where it is and what is wrong."""

    source: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "message": self.message}


@attrs.frozen
class Snapshot:
    """Every object the source currently holds, and the input errors it met."""

    objects: Mapping[ObjectKey, Resource] = attrs.field(factory=dict)
    errors: tuple[ConfigError, ...] = ()
    _by_kind: dict[str, list[Resource]] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_kind: dict[str, list[Resource]] = {}
        for key in sorted(self.objects):
            by_kind.setdefault(key.kind, []).append(self.objects[key])
        object.__setattr__(self, "_by_kind", by_kind)

    def of_kind(self, kind: str) -> list[Resource]:
        """Objects of one kind, sorted by namespace and name."""
        return self._by_kind.get(kind, [])

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self.objects.get(ObjectKey(kind, namespace, name))

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.objects.values())

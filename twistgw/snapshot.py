"""The immutable set of objects a source hands to the translator."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs

from twistgw.api.resource import ObjectKey, Resource

T = TypeVar("T")


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
    _by_label: dict[tuple[str, str], dict[tuple[str, str], list[Resource]]] = attrs.field(
        init=False, repr=False, eq=False
    )
    _indexes: dict[str, Any] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        # sorted by plain tuples: ObjectKey's own ordering is several times slower
        named: dict[str, list[tuple[str, str, Resource]]] = {}
        for key, resource in self.objects.items():
            named.setdefault(key.kind, []).append((key.namespace, key.name, resource))
        by_kind = {kind: [item[2] for item in sorted(items)] for kind, items in named.items()}
        object.__setattr__(self, "_by_kind", by_kind)
        object.__setattr__(self, "_by_label", {})
        object.__setattr__(self, "_indexes", {})

    def labelled(self, kind: str, namespace: str, label: str, value: str) -> list[Resource]:
        """Objects of one kind in ``namespace`` whose ``label`` is ``value``, in the order
        of ``of_kind`` (indexed once per kind and label, so a lookup per backendRef
        stays cheap however many objects there are)."""
        index = self._by_label.get((kind, label))
        if index is None:
            index = {}
            for found in self.of_kind(kind):
                index.setdefault((found.namespace, found.labels.get(label)), []).append(found)
            self._by_label[(kind, label)] = index
        return index.get((namespace, value), [])

    def index(self, name: str, build: Callable[[Snapshot], T]) -> T:
        """``build(self)``, made once per snapshot and kept under ``name`` (lookups the
        translator makes per reference, indexed once)."""
        found = self._indexes.get(name)
        if found is None:
            found = self._indexes[name] = build(self)
        return found

    def of_kind(self, kind: str) -> list[Resource]:
        """Objects of one kind, sorted by namespace and name."""
        return self._by_kind.get(kind, [])

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        return self.objects.get(ObjectKey(kind, namespace, name))

    def __iter__(self) -> Iterator[Resource]:
        return iter(self.objects.values())

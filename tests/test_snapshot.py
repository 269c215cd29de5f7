"""Snapshot's indexes: objects of a kind in namespace and name order."""

from __future__ import annotations

from twistgw.api.resource import ObjectKey, Resource
from twistgw.snapshot import Snapshot


def resource(kind: str, namespace: str, name: str) -> Resource:
    return Resource(ObjectKey(kind, namespace, name), "v1", 1, "", "", {}, {}, {})


def test_objects_of_a_kind_are_sorted_by_namespace_then_name() -> None:
    keys = [("Service", "b", "a"), ("Service", "a", "z"), ("Namespace", "", "x")]
    keys += [("Service", "a", "b"), ("Service", "a", "B"), ("Service", "", "q")]
    objects = {ObjectKey(*key): resource(*key) for key in keys}
    snapshot = Snapshot(objects)
    assert [(r.namespace, r.name) for r in snapshot.of_kind("Service")] == [
        ("", "q"),
        ("a", "B"),
        ("a", "b"),
        ("a", "z"),
        ("b", "a"),
    ]
    assert [r.key for r in snapshot.of_kind("Namespace")] == [ObjectKey("Namespace", "", "x")]
    assert snapshot.of_kind("Gateway") == []
    ordered = sorted(objects)  # ObjectKey's own order, per kind
    assert [r.key for r in snapshot.of_kind("Service")] == [
        k for k in ordered if k.kind == "Service"
    ]


def test_an_index_is_built_once_per_snapshot() -> None:
    snapshot = Snapshot({ObjectKey("Service", "a", "x"): resource("Service", "a", "x")})
    builds: list[Snapshot] = []

    def build(found: Snapshot) -> int:
        builds.append(found)
        return len(found.of_kind("Service"))

    assert snapshot.index("count", build) == 1 and snapshot.index("count", build) == 1
    assert builds == [snapshot]
    assert Snapshot().index("count", build) == 0 and len(builds) == 2

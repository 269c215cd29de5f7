"""Incremental assembly: only documents whose content changed are validated again;
changes, removals and rejections come out as a full assembly gives them."""

from __future__ import annotations

import copy

import pytest

from twistgw.api.resource import ObjectKey
from twistgw.api.validation import InvalidObject, validated_body
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler, fingerprint
from twistgw.sources.generations import GenerationTracker

ROUTE = ObjectKey("HTTPRoute", "default", "route")
SERVICE = ObjectKey("Service", "default", "svc")
KEPT = "; the previous version stays in force"


def service(port: object = 80) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {"ports": [{"name": "http", "port": port}]},
    }


def route(path: str = "/", labels: dict | None = None) -> dict:
    metadata: dict = {"name": "route", "namespace": "default"}
    if labels is not None:
        metadata["labels"] = labels
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata,
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [{"name": "svc", "port": 80}],
                }
            ],
        },
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def assembler(clock: Clock) -> ObjectAssembler:
    return ObjectAssembler(GenerationTracker(clock))


def assemble(assembler: ObjectAssembler, *documents: dict) -> Snapshot:
    """Assemble new, equal copies, as a source reading its files again hands them."""
    return assembler.assemble({"config.yaml": copy.deepcopy(list(documents))})


def invalid(key: ObjectKey, document: dict, suffix: str = "") -> str:
    with pytest.raises(InvalidObject) as caught:
        validated_body(document)
    return f"{key} is invalid: {caught.value}{suffix}"


def test_unchanged_documents_are_not_validated_again(assembler: ObjectAssembler) -> None:
    first = assemble(assembler, service(), route())
    assert assembler.validations == 2
    again = assemble(assembler, service(), route())
    assert assembler.validations == 2
    assert again.objects == first.objects
    assert again.objects[ROUTE] is first.objects[ROUTE]
    assert not again.errors


def test_only_the_changed_object_is_validated(assembler: ObjectAssembler) -> None:
    first = assemble(assembler, service(), route("/a"))
    after = assemble(assembler, service(), route("/b"))
    assert assembler.validations == 3
    assert after.objects[SERVICE] is first.objects[SERVICE]
    changed = after.objects[ROUTE]
    assert changed.generation == 2
    assert changed.creation_timestamp == first.objects[ROUTE].creation_timestamp
    assert changed.spec["rules"][0]["matches"][0]["path"]["value"] == "/b"
    assert changed.body["metadata"]["generation"] == 2


def test_a_metadata_change_is_applied_without_a_new_generation(
    assembler: ObjectAssembler,
) -> None:
    assemble(assembler, route())
    after = assemble(assembler, route(labels={"team": "a"}))
    assert assembler.validations == 2
    assert after.objects[ROUTE].labels == {"team": "a"}
    assert after.objects[ROUTE].generation == 1


def test_a_removed_object_is_gone_and_starts_afresh_when_recreated(
    assembler: ObjectAssembler, clock: Clock
) -> None:
    first = assemble(assembler, service(), route("/a"))
    assemble(assembler, service(), route("/b"))  # generation 2
    removed = assemble(assembler, service())
    assert ROUTE not in removed.objects
    assert removed.objects[SERVICE] is first.objects[SERVICE]
    clock.now += 60
    back = assemble(assembler, service(), route("/a"))
    assert assembler.validations == 4  # the recreated route, as new
    assert back.objects[ROUTE].generation == 1
    assert back.objects[ROUTE].creation_timestamp > first.objects[ROUTE].creation_timestamp


def test_an_invalid_change_keeps_the_last_good_version(assembler: ObjectAssembler) -> None:
    good = assemble(assembler, route("/a")).objects[ROUTE]
    broken = route("/b", labels={"team": 1})
    message = invalid(ROUTE, broken, KEPT)
    for _ in range(2):  # reported again, not validated again
        after = assemble(assembler, broken)
        assert [error.message for error in after.errors] == [message]
        assert after.errors[0].source == "config.yaml"
        assert after.objects[ROUTE] is good
    assert assembler.validations == 2
    fixed = assemble(assembler, route("/b")).objects[ROUTE]
    assert fixed.generation == 2
    assert fixed.spec["rules"][0]["matches"][0]["path"]["value"] == "/b"


def test_an_object_invalid_from_the_start_stays_out(assembler: ObjectAssembler) -> None:
    broken = service(port=0)
    message = invalid(SERVICE, broken)
    for _ in range(2):
        snapshot = assemble(assembler, broken, route())
        assert [error.message for error in snapshot.errors] == [message]
        assert SERVICE not in snapshot.objects
    assert assembler.validations == 2


def test_removing_an_invalid_change_removes_the_object(assembler: ObjectAssembler) -> None:
    assemble(assembler, route())
    assemble(assembler, route(labels={"team": 1}))
    gone = assemble(assembler, service())
    assert ROUTE not in gone.objects
    assert not gone.errors
    back = assemble(assembler, route(labels={"team": 1}))
    assert [e.message for e in back.errors] == [invalid(ROUTE, route(labels={"team": 1}))]
    assert ROUTE not in back.objects


@pytest.mark.parametrize("port", [True, 80.0])
def test_a_change_of_type_alone_is_a_change(assembler: ObjectAssembler, port: object) -> None:
    """``1 == True`` and ``80 == 80.0`` in Python, not in a manifest."""
    good = assemble(assembler, service(port=int(port))).objects[SERVICE]
    after = assemble(assembler, service(port=port))
    assert [error.message for error in after.errors] == [invalid(SERVICE, service(port=port), KEPT)]
    assert after.objects[SERVICE] is good


def test_fingerprints_tell_values_and_types_apart() -> None:
    prints = {fingerprint({"a": value}) for value in (1, True, 1.0, "1", [1], None)}
    assert len(prints) == 6
    assert fingerprint({"a": [1, {"b": "c"}]}) == fingerprint({"a": [1, {"b": "c"}]})
    assert fingerprint({"a": lambda: None}) is None  # pickle refuses it


def test_a_document_that_cannot_be_fingerprinted_is_validated_each_time(
    assembler: ObjectAssembler,
) -> None:
    odd = service()
    odd["metadata"]["annotations"] = {"note": lambda: None}  # what no loader makes
    message = invalid(SERVICE, odd)
    for count in (1, 2):
        snapshot = assembler.assemble({"config.yaml": [odd]})
        assert [error.message for error in snapshot.errors] == [message]
        assert assembler.validations == count


def test_documents_moved_between_sources_are_not_validated_again(
    assembler: ObjectAssembler,
) -> None:
    assembler.assemble({"a.yaml": [service()], "b.yaml": [route()]})
    moved = assembler.assemble({"c.yaml": [route(), service()]})
    assert assembler.validations == 2
    assert set(moved.objects) == {ROUTE, SERVICE}


def test_a_duplicate_is_reported_every_time_and_the_later_one_used(
    assembler: ObjectAssembler,
) -> None:
    for path in ("/x", "/y"):
        snapshot = assembler.assemble({"a.yaml": [route("/a")], "b.yaml": [route(path)]})
        assert [error.message for error in snapshot.errors] == [
            f"{ROUTE} is also defined in a.yaml; this one is used"
        ]
        assert snapshot.objects[ROUTE].spec["rules"][0]["matches"][0]["path"]["value"] == path


def test_a_duplicate_added_beside_an_unchanged_object_moves_its_generation(
    assembler: ObjectAssembler,
) -> None:
    """Each version of a duplicated object is stamped in turn, as before assembly was
    incremental: the unchanged one too, after the new one."""
    assembler.assemble({"b.yaml": [route("/b")]})
    both = assembler.assemble({"a.yaml": [route("/a")], "b.yaml": [route("/b")]})
    assert both.objects[ROUTE].generation == 3
    assert both.objects[ROUTE].spec["rules"][0]["matches"][0]["path"]["value"] == "/b"


@pytest.mark.parametrize(
    "api_version, kind, reported",
    [
        ("networking.istio.io/v1", "Gateway", False),  # another project's kind: silence
        ("gateway.envoyproxy.io/v1alpha1", "SecurityPolicy", False),
        ("serving.knative.dev/v1", "Service", False),
        ("gateway.twistgw.io/v1alpha1", "SecurityPolicy", True),  # a typo: said
        ("gateway.networking.k8s.i0/v1", "HTTPRoute", True),
    ],
)
def test_a_known_kind_in_a_mistyped_group_is_an_input_error(
    assembler: ObjectAssembler, api_version: str, kind: str, reported: bool
) -> None:
    document = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    snapshot = assemble(assembler, document)
    assert not snapshot.objects
    assert bool(snapshot.errors) == reported
    if reported:
        assert f"{kind} of API group" in snapshot.errors[0].message

"""Property: incremental assembly gives, step after step, exactly what validating every
document every time gives (objects, generations, creation times, bodies, errors)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from hypothesis import given
from hypothesis import strategies as st

from twistgw.snapshot import ConfigError, Snapshot
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker


class Forgetful(ObjectAssembler):
    """Validates every document every time, as assembly did before it was incremental."""

    def assemble(
        self, documents: Mapping[str, Iterable[dict]], errors: Iterable[ConfigError] = ()
    ) -> Snapshot:
        self._checked = {}
        return super().assemble(documents, errors)


def metadata() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {"name": st.sampled_from(["a", "a", "a", "b"])},  # versions of one object, mostly
        optional={
            "namespace": st.sampled_from(["default", "default", "other"]),
            "labels": st.dictionaries(st.just("team"), st.sampled_from(["x", "y", 1])),
            "generation": st.sampled_from([3, 0, True]),
            "creationTimestamp": st.just("2020-01-01T00:00:00Z"),
        },
    )


services = st.builds(
    lambda meta, port: {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"ports": [{"port": port}]},
    },
    metadata(),
    st.sampled_from([80, 81, 80.0, True, 0]),
)
routes = st.builds(
    lambda meta, path: {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}]}],
        },
    },
    metadata(),
    st.sampled_from(["/", "/a", "no-slash"]),
)
others = st.sampled_from(
    [
        {"kind": "Service", "metadata": {"name": "a"}},  # no apiVersion
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}},
    ]
)
pools = st.lists(st.one_of(services, routes, others), min_size=1, max_size=8)


def check_steps(steps: Iterable[Mapping[str, list[dict]]]) -> None:
    """Assemble each step's documents (new, equal copies) with both assemblers."""
    now = [0.0]
    incremental = ObjectAssembler(GenerationTracker(lambda: now[0]))
    reference = Forgetful(GenerationTracker(lambda: now[0]))
    for documents in steps:
        got = incremental.assemble(copy.deepcopy(documents))
        want = reference.assemble(copy.deepcopy(documents))
        assert got.errors == want.errors
        assert got.objects == want.objects  # keys, generations, times, labels, ...
        for key, resource in got.objects.items():
            assert resource.body == want.objects[key].body, key
        now[0] += 1.0
    assert incremental.validations <= reference.validations


@given(pools, st.data())
def test_incremental_assembly_matches_assembling_afresh(
    pool: list[dict], data: st.DataObject
) -> None:
    picks = st.lists(st.tuples(st.sampled_from(["a.yaml", "b.yaml"]), st.sampled_from(pool)))
    steps = []
    for step in data.draw(st.lists(picks, min_size=1, max_size=5), label="steps"):
        documents: dict[str, list[dict]] = {"a.yaml": [], "b.yaml": []}
        for source, document in step:
            documents[source].append(document)
        steps.append(documents)
    check_steps(steps)


def _service(port: int) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a"},
        "spec": {"ports": [{"port": port}]},
    }


def test_duplicates_match_assembling_afresh() -> None:
    """An object defined twice: each version is stamped in turn on every assembly."""
    one, other = _service(80), _service(81)
    check_steps([{"a.yaml": [one, other]}] * 3)
    check_steps([{"b.yaml": [other]}, {"a.yaml": [one], "b.yaml": [other]}, {"b.yaml": [other]}])
    check_steps([{"a.yaml": [one, one]}, {"a.yaml": [one]}, {"a.yaml": [other, one]}])

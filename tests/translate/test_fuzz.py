"""Property-based tests of the translator over generated manifests.

Each example starts from a valid core in which routes of every kind attach to
listeners of every protocol (``fuzz_core``), then objects are dropped, fields
perturbed with plausible values or junk, and pool documents added. Whatever
comes in, the translator must not raise, every status must be well formed, the table
must pickle and serialise, every HTTP bind must compile into a data-plane Router,
routes Accepted on a parent must be served by its listeners (and only those), the
same input must give the same output, and an invalid object must leave the last good
translation in force. ``test_examples_reach_attached_routes`` measures that most
examples do get routes into the table.
"""

from __future__ import annotations

import copy
from collections import Counter
from random import Random

from hypothesis import Phase, event, given, settings, target
from hypothesis import strategies as st

from tests.translate.fuzz_checks import (
    check_accepted_routes_served,
    check_served_routes_accepted,
    check_statuses,
    check_table,
    reached,
)
from tests.translate.fuzz_mutations import clean_documents, documents
from tests.translate.fuzz_pool import corrupted, document
from tests.translate.fuzz_values import CONTROLLER
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler, object_key
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, Translation, translate

#: The share of generated examples that must reach each part of the table.
MIN_SHARES = {
    "attached": 0.75,
    "accepted routes checked": 0.75,
    "virtual hosts": 0.6,
    "tls virtual hosts": 0.25,
    "TLS routes": 0.2,
    "TCP routes": 0.2,
    "UDP routes": 0.2,
}


def _snapshot(docs: list[dict]) -> Snapshot:
    return ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble({"fuzz.yaml": docs})


def _translate(snapshot: Snapshot) -> Translation:
    return translate(snapshot, TranslateOptions(controller_name=CONTROLLER))


@given(documents, st.randoms(use_true_random=False))
def test_translation_properties(docs: list[dict], random: Random) -> None:
    """Never raises; statuses well formed; the table pickles, serialises and compiles;
    accepted routes are served, served routes accepted; the same documents again (in
    another order, unless the shuffle keeps it) translate alike."""
    snapshot = _snapshot(docs)
    translation = _translate(snapshot)
    check_statuses(translation)
    check_table(translation)
    places = check_accepted_routes_served(snapshot, translation)
    check_served_routes_accepted(translation)
    for label in sorted(reached(translation)) or ["nothing served"]:
        event(label)
    target(float(places), label="listeners serving an accepted route")
    random.shuffle(docs)
    again = _translate(_snapshot(docs))
    assert again == translation, "the same documents again, shuffled, translate otherwise"


@given(clean_documents, document.flatmap(corrupted), st.data())
def test_invalid_object_keeps_last_good_translation(
    docs: list[dict], extra: dict, data: st.DataObject
) -> None:
    """A set, then the same set with one object made invalid, or with one invalid
    object added: the translation does not change (objects invalid from the start
    stay rejected in both)."""
    assembler = ObjectAssembler(GenerationTracker(lambda: 0.0))
    good = _translate(assembler.assemble({"fuzz.yaml": docs}))
    index = data.draw(st.integers(0, len(docs)), label="index (len(docs): added)")
    invalid = copy.deepcopy(docs[index] if index < len(docs) else extra)
    if index == len(docs):
        invalid["metadata"] = {"name": "fuzz-extra", "namespace": "default"}
    invalid["metadata"]["labels"] = {"broken": 1}  # a label value must be a string
    changed = [*docs[:index], invalid, *docs[index + 1 :]]
    after = assembler.assemble({"fuzz.yaml": changed})
    assert any(f"{object_key(invalid)} is invalid" in error.message for error in after.errors), (
        after.errors
    )
    assert _translate(after) == good


def test_examples_reach_attached_routes() -> None:
    """Measured on a fixed sequence of examples: most serve routes, and the accepted
    ones are checked against the table; many serve HTTP virtual hosts with routes, and
    each protocol is reached. (A translation that raises counts as reaching nothing:
    ``test_translation_properties`` reports it.)"""
    seen: Counter[str] = Counter()

    @settings(max_examples=100, derandomize=True, database=None, phases=[Phase.generate])
    @given(documents)
    def run(docs: list[dict]) -> None:
        seen["examples"] += 1
        snapshot = _snapshot(docs)
        try:
            translation = _translate(snapshot)
        except Exception:
            return
        seen.update(reached(translation))
        if check_accepted_routes_served(snapshot, translation):
            seen["accepted routes checked"] += 1

    run()
    share = {label: count / seen["examples"] for label, count in seen.items()}
    for label, least in MIN_SHARES.items():
        assert share.get(label, 0) >= least, (label, share)

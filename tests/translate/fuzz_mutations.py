"""Mutations of the translator fuzzing's core: documents dropped, fields perturbed
with plausible values or junk (new fields too), documents from the pools added."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.translate.fuzz_core import core
from tests.translate.fuzz_pool import corrupted, document
from tests.translate.fuzz_values import (
    field_paths,
    junk,
    pick,
    plausible_ints,
    plausible_strings,
    replace_at,
    value_at,
)
from twistgw.sources.assembly import object_key


def _perturbation(current: Any) -> st.SearchStrategy:
    """A value of the same type as ``current``, valid somewhere."""
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return plausible_ints
    if isinstance(current, str):
        return plausible_strings
    if isinstance(current, list):
        return st.sampled_from(([], current[::-1], copy.deepcopy(current * 2)))
    return st.just({})


@st.composite
def _mutate(draw: st.DrawFn, docs: list[dict], step: str) -> None:
    """Apply one mutation ``step`` to ``docs`` in place."""
    if step == "add":
        docs.append(draw(document.flatmap(corrupted)))
        return
    if not docs:
        return
    doc = docs[draw(st.integers(0, len(docs) - 1))]
    paths = field_paths(doc)
    if step == "junk" and draw(st.booleans()):
        # a field the document may lack, in one of its objects
        objects = [p for p in [(), *paths] if isinstance(value_at(doc, p), dict)]
        replace_at(doc, (*draw(pick(objects)), draw(pick(FIELD_NAMES))), draw(junk))
    elif paths:
        path = draw(pick(paths))
        replaced = junk if step == "junk" else _perturbation(value_at(doc, path))
        replace_at(doc, path, draw(replaced))


#: Whether documents are dropped at all (one time in eight), then whether each is kept:
#: mostly. A failing example shrinks to dropping every document it does not need, but
#: the core's GatewayClass and Gateways (``ANCHORS``): hypothesis often draws runs of
#: the simplest choice, which without these would leave nothing to attach to.
DROPPING = st.integers(0, 7).map(lambda drawn: drawn == 0)
KEEP = pick((False,) + (True,) * 15)
ANCHORS = ("GatewayClass", "Gateway")


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy, steps: tuple[str, ...]) -> list[dict]:
    """A list drawn from ``base`` with a few of ``steps`` applied and maybe a few
    documents dropped (after mutating, so that a failing example shrinks by dropping
    documents without moving its mutations); one document per object (the last of a
    key stays, where its key first came)."""
    dropping = draw(DROPPING)
    docs = copy.deepcopy(draw(base))
    anchors = [doc for doc in docs if doc["kind"] in ANCHORS]
    for step in draw(st.lists(pick(steps), max_size=4)):
        draw(_mutate(docs, step))
    keep = [draw(KEEP) for _ in docs]  # drawn either way, so shrinking keeps its place
    kept = [
        doc
        for doc, kept in zip(docs, keep, strict=True)
        if kept or not dropping or any(doc is anchor for anchor in anchors)
    ]
    return list({object_key(doc): doc for doc in kept}.values())


#: Fields the mutations may add with junk in them: optional ones of the kinds read.
FIELD_NAMES = (
    "addresses",
    "allowedRoutes",
    "appProtocol",
    "backend",
    "conditions",
    "data",
    "frontend",
    "group",
    "hostname",
    "infrastructure",
    "kinds",
    "labels",
    "matchExpressions",
    "matchLabels",
    "name",
    "namespace",
    "options",
    "parametersRef",
    "perPort",
    "port",
    "ports",
    "sectionName",
    "selector",
    "stringData",
    "subjectAltNames",
    "tls",
    "type",
    "validation",
    "weight",
)
MUTATIONS = ("perturb", "junk", "add")
#: The documents of the property tests: the core, mutated.
documents = mutated(core, MUTATIONS)
#: Mutated without junk: objects dropped or fields perturbed, mostly still valid.
clean_documents = mutated(core, ("perturb",))

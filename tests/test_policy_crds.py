"""The policy CRDs in deploy/crds/ say what the host-mode schema checks enforce: the
same sections, list bounds and enumerations (a cluster's API server and a bare host
refuse the same objects)."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from twistgw.api.policy_validation import (
    COMPRESSION_TYPES,
    POLICY_LISTS,
    RATE_KEYS,
    RATE_UNITS,
    TARGET_KINDS,
)
from twistgw.translate.policies import SECTIONS

CRDS = pathlib.Path(__file__).parents[1] / "deploy" / "crds"
FILES = {"TrafficPolicy": "trafficpolicies.yaml", "SecurityPolicy": "securitypolicies.yaml"}


def _schema(kind: str) -> dict:
    crd = yaml.safe_load((CRDS / FILES[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    return version["schema"]["openAPIV3Schema"]


def _at(schema: dict, field: str) -> dict:
    """The schema of ``field`` (``spec.a[].b``)."""
    for part in field.split("."):
        schema = schema["properties"][part.removesuffix("[]")]
        if part.endswith("[]"):
            schema = schema["items"]
    return schema


@pytest.mark.parametrize("kind", sorted(FILES))
def test_every_list_bound_is_the_crds(kind) -> None:
    schema = _schema(kind)
    for field, bound in POLICY_LISTS[kind].items():
        assert _at(schema, field)["maxItems"] == bound, field


@pytest.mark.parametrize("kind", sorted(FILES))
def test_the_crd_has_every_section_and_targets_what_the_checks_allow(kind) -> None:
    spec = _at(_schema(kind), "spec")
    assert set(SECTIONS[kind]) <= set(spec["properties"])
    target = spec["properties"]["targetRefs"]["items"]["properties"]
    assert target["kind"]["enum"] == [kind for _, kind in TARGET_KINDS]
    assert target["group"]["enum"] == sorted({group for group, _ in TARGET_KINDS})


def test_the_enumerations_are_the_checks() -> None:
    spec = _at(_schema("TrafficPolicy"), "spec")
    limit = spec["properties"]["rateLimit"]["properties"]
    assert limit["unit"]["enum"] == list(RATE_UNITS)
    assert limit["key"]["properties"]["type"]["enum"] == list(RATE_KEYS)
    types = spec["properties"]["compression"]["properties"]["types"]
    assert types["items"]["enum"] == list(COMPRESSION_TYPES)

"""Golden translator cases, as Envoy Gateway keeps them: each ``cases/NAME.in.yaml``
holds a translation's input, and ``cases/NAME.out.yaml`` everything the translator
gives back for it.

``NAME.in.yaml`` (written by hand; a comment at its top says what it shows) has:

- ``objects``: the manifests;
- ``options``: optional ``controllerName``, ``addressPool`` (a CIDR), and the data
  plane's feedback: ``bindFailures`` (``"ADDRESS:PORT": why``, ``ADDRESS:PORT/udp`` for
  UDP) and ``unusableAddresses``; ``publishService`` (``NAMESPACE/NAME``, cluster mode);
  ``maxRouteEntries`` and ``maxTableEntries`` (the expansion bounds).

``NAME.out.yaml`` (generated, never edited) has the messages of the objects rejected
as invalid (``errors``), every object's status with all its conditions (``statuses``,
sorted by kind, namespace and name), the Gateways' ``assignedAddresses`` and the whole
routing table (``routing``, ``RoutingTable.as_dict()``: filters, timeouts, retry,
backends, endpoints, TLS; PEM material as a short digest). Mapping keys are sorted;
lists keep the translator's order, which is meaningful (precedence, parentRefs).

The test compares the whole output and fails with a diff. After changing the
translator or a case, regenerate every output and review the change::

    .venv/bin/python -m pytest tests/translate/test_cases.py --update-golden
    git diff tests/translate/cases

A new case is a new ``NAME.in.yaml``; the same command writes its output. Outputs
depend on nothing but the input: no clock (generations come from a fixed clock, the
translator reads none), no paths. ``test_coverage.py`` fails when a condition reason
the translator can set, a routing table field or a route kind shows up in no case.
"""

from __future__ import annotations

import difflib
import pathlib

import pytest

from tests.translate.golden import CASES_DIR, in_paths, out_path, run_case

CASES = in_paths()


@pytest.mark.parametrize("path", CASES, ids=[p.name.removesuffix(".in.yaml") for p in CASES])
def test_case(path: pathlib.Path, request: pytest.FixtureRequest) -> None:
    actual = run_case(path)
    expected_path = out_path(path)
    if request.config.getoption("--update-golden"):
        expected_path.write_text(actual)
        return
    assert expected_path.exists(), f"no {expected_path.name}: run with --update-golden"
    expected = expected_path.read_text()
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"{expected_path.name} (expected)",
            f"{expected_path.name} (translated)",
        )
        pytest.fail(
            "output differs (review, then regenerate with --update-golden):\n" + "".join(diff),
            pytrace=False,
        )


def test_every_output_has_its_input() -> None:
    """No stale ``.out.yaml`` outlives its case."""
    outputs = {p.name for p in CASES_DIR.glob("*.out.yaml")}
    assert outputs == {out_path(p).name for p in CASES}

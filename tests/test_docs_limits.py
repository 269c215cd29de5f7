"""docs/operations.md keeps up with the code: every limit option is in the table of
limits, and every metric is in the table of metrics."""

from __future__ import annotations

import pathlib

import pytest
from prometheus_client import CollectorRegistry

from twistgw.metrics import Metrics
from twistgw.options import POSITIVE

OPERATIONS = pathlib.Path(__file__).parent.parent / "docs" / "operations.md"


def _section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of its level or above."""
    text = OPERATIONS.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    ends = [
        text.find(f"\n{'#' * depth} ", start + len(heading) + 2)
        for depth in range(1, len(level) + 1)
    ]
    return text[start : min([end for end in ends if end != -1] or [len(text)])]


@pytest.mark.parametrize(
    "option", [*POSITIVE, "worker-memory-limit", "drain-timeout", "admin-token-file"]
)
def test_every_limit_option_is_in_the_limits_table(option):
    assert f"| `--{option}` |" in _section("## Limits and overload protection")


def test_every_metric_is_in_the_metrics_table():
    table = _section("### Metrics")
    for collector in Metrics(CollectorRegistry()).registry.collect():
        name = collector.name + ("_total" if collector.type == "counter" else "")
        assert f"`{name}`" in table, name

"""The golden cases keep up with the translator: every condition reason it can set,
every routing table field and every route kind shows up in some case's output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import yaml

from tests.translate.golden import in_paths, out_path, translate_case
from tests.translate.reasons import translator_reasons
from twistgw.routing import ir
from twistgw.translate import ROUTE_ANALYSERS


def _outputs() -> list[dict[str, Any]]:
    return [yaml.safe_load(out_path(path).read_text()) for path in in_paths()]


def _reasons(value: Any) -> Iterator[str]:
    """The reasons of every condition in a status."""
    if isinstance(value, dict):
        if {"type", "status", "reason"} <= value.keys():
            yield value["reason"]
        for item in value.values():
            yield from _reasons(item)
    elif isinstance(value, list):
        for item in value:
            yield from _reasons(item)


def test_every_reason_has_a_case() -> None:
    shown = {reason for output in _outputs() for reason in _reasons(output["statuses"])}
    possible = translator_reasons()
    assert possible - shown == set(), "reasons no case shows: add a case"
    assert shown - possible == set(), "reasons tests/translate/reasons.py does not find"


def _unset(value: Any) -> bool:
    return value is None or value is False or value in ((), b"", "")


def _set_fields(value: Any, found: set[tuple[str, str]]) -> None:
    """(IR class, field) of every field holding a value somewhere in ``value``."""
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            if not _unset(item) and item != field.default:
                found.add((type(value).__name__, field.name))
            _set_fields(item, found)
    elif isinstance(value, tuple):
        for item in value:
            _set_fields(item, found)


def test_every_routing_field_has_a_case() -> None:
    found: set[tuple[str, str]] = set()
    for path in in_paths():
        _set_fields(translate_case(path)[1].table, found)
    fields = {
        (cls.__name__, field.name)
        for cls in vars(ir).values()
        if isinstance(cls, type) and attrs.has(cls)
        for field in attrs.fields(cls)
    }
    assert fields - found == set(), "routing table fields no case sets: add a case"


def test_every_route_kind_has_a_case() -> None:
    kinds = {status["kind"] for output in _outputs() for status in output["statuses"]}
    assert set(ROUTE_ANALYSERS) - kinds == set()

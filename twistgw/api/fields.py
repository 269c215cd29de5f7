"""The building blocks of schema checks: typed field readers that fail with the field's
path, and the name patterns the Kubernetes and Gateway API schemas share."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECTION_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: An RFC 9110 field name: a token (tchar+).
HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")


#: A Gateway API Duration (GEP-2257), as the CRDs' pattern has it.
DURATION_RE = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class InvalidObject(ValueError):
    """An object that its CRD's schema would reject; the message names the field."""


def fail(path: str, problem: str) -> None:
    raise InvalidObject(f"{path}: {problem}")


def mapping(value: Any, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        fail(path, f"must be an object, not {type(value).__name__}")
    return value


def item(value: Any, path: str) -> dict:
    """A list item that must be an object (a null item is not one)."""
    if not isinstance(value, dict):
        fail(path, f"must be an object, not {type(value).__name__}")
    return value


def list_of(value: Any, path: str) -> list:
    """``value`` as a list; its CRD bound is checked before (``LIST_BOUNDS``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        fail(path, f"must be a list, not {type(value).__name__}")
    return value


def _given(obj: dict, key: str, path: str, required: bool) -> tuple[Any, str]:
    """``obj[key]`` (None if absent: refused if ``required``) and its path."""
    where = f"{path}.{key}"
    value = obj.get(key)
    if value is None and required:
        fail(where, "is required")
    return value, where


def string(
    obj: dict,
    key: str,
    path: str,
    required: bool = False,
    pattern=None,
    max_len: int = 253,
    enum: tuple[str, ...] | None = None,
) -> str | None:
    value, where = _given(obj, key, path, required)
    if value is None:
        return None
    if not isinstance(value, str):
        fail(where, f"must be a string, not {type(value).__name__}")
    if len(value) > max_len:
        fail(where, f"must be at most {max_len} characters")
    if enum is not None and value not in enum:
        fail(where, f"must be one of {', '.join(enum)}; got {value!r}")
    if pattern is not None and not pattern.fullmatch(value):
        fail(where, f"{value!r} is not valid")
    return value


def integer(obj: dict, key: str, path: str, lo: int, hi: int, required: bool = False) -> int | None:
    value, where = _given(obj, key, path, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        fail(where, f"must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        fail(where, f"must be between {lo} and {hi}; got {value}")
    return value


def parse_duration(value: str) -> float:
    """A Gateway API Duration (``1h30m``, ``500ms``, ``0s``) in seconds."""
    if not DURATION_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a Gateway API duration")
    return sum(int(n) * _DURATION_UNIT[unit] for n, unit in _DURATION_PART.findall(value))


def target_refs(spec: dict, read: Callable[[dict, str], None]) -> None:
    """A policy's ``spec.targetRefs``: at least one, each an object that ``read``
    checks (and defaults), none naming the same object and section as another."""
    targets = list_of(spec.get("targetRefs"), "spec.targetRefs")
    if not targets:
        fail("spec.targetRefs", "must have at least one item")
    seen = set()
    for i, ref in enumerate(targets):
        where = f"spec.targetRefs[{i}]"
        ref = item(ref, where)
        read(ref, where)
        key = (ref.get("group"), ref["kind"], ref["name"], ref.get("sectionName") or "")
        if key in seen:
            fail(where, "targets the same object and section as an earlier targetRef")
        seen.add(key)

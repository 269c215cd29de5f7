"""A twistgw filter plugin that guards request bodies: at most ``maxBytes`` (the
gateway itself answers 413 past that), JSON, and valid under the route author's
``schema`` when there is one. Refusals are RFC 9457 problem details, kept small.

Neither the body (a client's) nor the schema (a route author's) gets more than bounded
work: patterns are matched by RE2, as twistgw matches route regexes; uniqueItems
hashes items instead of comparing every pair; checking a body has a deadline, looked at
in every step (a schema whose branches each descend takes time exponential in the
nesting; thousands of patterns against thousands of keys), which the request's end
cuts short; bodies are checked in threads, a few at once, so the reactor goes on;
JSON too deep for the stack is a 400; $refs resolve within the schema only (nothing
is fetched).
Duplicate keys, numbers past a double, NaN and half surrogate pairs are refused:
parsers differ on them, so the backend could read another document than the one
checked."""

from __future__ import annotations

import functools
import json
import math
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from itertools import islice
from typing import Any

import referencing
import referencing.exceptions
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError
from referencing.jsonschema import DRAFT202012
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from zope.interface import implementer

from twistgw.extensions.filters import MAX_REQUEST_BODY, Answer, IFilterPlugin
from twistgw.regex import compile_regex

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: At most this many schema errors are told, each cut to DETAIL_CHARS characters; no
#: detail is longer than MAX_DETAIL characters.
MAX_ERRORS = 3
DETAIL_CHARS = 200
MAX_DETAIL = 1000
#: The time checking a body may take, in seconds, and more per byte: about 5 times what
#: a schema that looks at each value once or twice takes (1 us a byte, 1 s a MiB).
CHECK_SECONDS = 0.25
CHECK_SECONDS_PER_BYTE = 5e-6
#: Bodies are parsed and checked in a thread (Twisted's pool) when a schema checks them
#: or they are longer than this: the work is Python, so it shares the interpreter with
#: the reactor, but the reactor gets its turns (every 5 ms) instead of waiting for it.
PARSE_IN_THREAD = 4096
#: The bodies a worker parses and checks in threads at once (each holds its document:
#: 20 MB for a MiB of small objects); past it, requests are answered 503.
MAX_CHECKS = 4


class BodyGuard:
    def __init__(self, limit: int, methods: frozenset[str], checker: Checker | None) -> None:
        # (the gateway reads the body, of any method, before on_request; 413 past this)
        self.request_body_limit = limit
        self.methods = methods
        self.checker = checker

    def on_request(self, request) -> Answer | None | Deferred:
        global _checking
        if request.method not in self.methods:
            return None
        body = request.body
        if not body:  # (an empty body is a missing one)
            return _problem(400, "a JSON body is required") if self.checker else None
        types = request.headers.get_all("content-type")
        if len(types) != 1 or not _is_json(types[0]):
            return _problem(415, "the body must be application/json (or application/*+json)")
        if self.checker is None and len(body) <= PARSE_IN_THREAD:
            return _verdict(body, None, _Budget(len(body)))
        if _checking >= MAX_CHECKS:
            return _problem(503, "too many bodies are being checked: retry", retry=True)
        _checking += 1
        budget = _Budget(len(body))
        answer = Deferred(lambda _: budget.cancel())  # (its request has ended)
        done = deferToThread(_verdict, body, self.checker, budget)
        done.addBoth(_told, answer)
        return answer


#: The checks running in threads (one reactor thread counts them).
_checking = 0


def _told(verdict, answer: Deferred) -> None:
    global _checking
    _checking -= 1
    if not answer.called:  # (else cancelled: nobody waits for the verdict)
        answer.callback(verdict)


class _TooSlow(Exception):
    """Checking a body took longer than it may, or its request has ended."""


class _Budget:
    """The time a body's parse and check may take (seconds past now: CHECK_SECONDS and
    CHECK_SECONDS_PER_BYTE), ended early by ``cancel``."""

    def __init__(self, size: int) -> None:
        self.deadline = time.monotonic() + CHECK_SECONDS + CHECK_SECONDS_PER_BYTE * size

    def cancel(self) -> None:
        self.deadline = 0.0


#: The budget of the check running in this thread.
_current = threading.local()


def _in_time() -> None:
    """Raise _TooSlow if the current check is past its budget."""
    if time.monotonic() > _current.budget.deadline:
        raise _TooSlow


def _verdict(body: bytes, checker: Checker | None, budget: _Budget) -> Answer | None:
    """The answer to ``body`` (None: it may go on): parsed, then checked if there is
    a ``checker``, within ``budget``."""
    _current.budget = budget
    try:
        document = _document(body)
    except RecursionError:
        return _problem(400, "the body is nested too deeply")
    except ValueError as exc:
        return _problem(400, f"the body is not JSON: {exc}")
    return None if checker is None else checker.check(document)


class Checker:
    """A schema's validator for bodies: RE2 for its patterns, uniqueItems by hashing,
    and the check's budget looked at before each keyword and in the keywords that loop
    (each thread's own: checks run in the pool's threads)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        keywords = {
            **Draft202012Validator.VALIDATORS,
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
            "uniqueItems": _unique_items,
        }
        timed = {name: self._timed(keyword) for name, keyword in keywords.items()}
        # (an empty registry: a $ref is resolved within the schema, never fetched)
        self.validator = validators.extend(Draft202012Validator, timed)(
            schema, registry=referencing.Registry()
        )

    @staticmethod
    def _timed(keyword: Callable) -> Callable:
        def timed(validator, value, instance, schema):
            _in_time()
            return keyword(validator, value, instance, schema)

        return timed

    def check(self, document: Any) -> Answer | None:
        """None if ``document`` is valid, else the answer: 422 (400 if it is too deep
        for jsonschema's recursion), within the current thread's budget (a deadline,
        not a count: a keyword's cost grows with its instance, as jsonschema's messages
        hold its repr)."""
        try:
            errors = list(islice(self.validator.iter_errors(document), MAX_ERRORS + 1))
        except RecursionError:
            return _problem(400, "the body is nested too deeply")
        except _TooSlow:
            return _problem(422, "the body takes too long to check against the schema")
        if not errors:
            return None
        told = [_cut(f"{error.json_path}: {error.message}") for error in errors[:MAX_ERRORS]]
        if len(errors) > MAX_ERRORS:
            told.append("...")  # (and more: they are not looked for)
        return _problem(422, "; ".join(told))


# The keywords that jsonschema evaluates with Python's backtracking re, with RE2.


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    return compile_regex(pattern)  # (a RegexError, a ValueError, if RE2 cannot)


def _matches(pattern: str, text: str) -> bool:
    _in_time()  # (a schema may have thousands of patterns, a body thousands of keys)
    return _regex(pattern).search(text) is not None


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator, patterns, instance, schema):
    if validator.is_type(instance, "object"):
        for pattern, subschema in patterns.items():
            for key, value in instance.items():
                if _matches(pattern, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator, additional, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    named, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    extras = [k for k in instance if k not in named and not any(_matches(p, k) for p in patterns)]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif additional is False and extras:
        more = ", ..." if len(extras) > 3 else ""
        yield ValidationError(f"{', '.join(map(repr, extras[:3]))}{more}: not allowed here")


def _unique_items(validator, unique, instance, schema):
    # (jsonschema compares every pair of unsortable items: 4,000 objects took 30 s)
    if not unique or not validator.is_type(instance, "array"):
        return
    if len({json.dumps(_integral(item), sort_keys=True) for item in instance}) < len(instance):
        yield ValidationError(f"{instance!r} has non-unique elements")


def _integral(value: Any) -> Any:
    """``value`` with its integral floats as ints (in JSON, 1.0 equals 1)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


# The body as JSON.


def _is_json(content_type: str) -> bool:
    """application/json or application/<x>+json, parameters ignored."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json") and len(media) > 17
    )


def _document(body: bytes) -> Any:
    """The body's JSON document; ValueError or RecursionError if it is not one."""
    text = body.decode("utf-8")
    document = json.loads(
        text, object_pairs_hook=_object, parse_int=_int, parse_float=_float, parse_constant=_nan
    )
    if "\\u" in text:  # (an escape may be half a surrogate pair, which is not text)
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string holds half a surrogate pair") from None
    return document


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        raise ValueError("an object has a key twice")
    return found


def _int(text: str) -> int:
    if len(text) > 300:  # (jsonschema's multipleOf may divide it as a double)
        raise ValueError("a number is too large")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is too large")
    return value


def _nan(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _problem(status: int, detail: str, retry: bool = False) -> Answer:
    """An RFC 9457 problem details answer (``retry``: with Retry-After)."""
    problem = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": _cut(detail, MAX_DETAIL),
    }
    body = json.dumps(problem, ensure_ascii=False).encode("utf-8")
    fields = [("Content-Type", "application/problem+json")]
    return Answer(status, body, [*fields, ("Retry-After", "1")] if retry else fields)


def _cut(text: str, limit: int = DETAIL_CHARS) -> str:
    """``text`` cut in the middle (a message says what is wrong last) to ``limit``."""
    if len(text) <= limit:
        return text
    return text[: limit // 2 - 2] + "..." + text[len(text) - (limit - limit // 2 - 1) :]


# The schema a route author gave.


def _checked(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` as bodies are checked against it; ValueError if it is not a draft
    2020-12 JSON Schema, has a pattern RE2 cannot compile, a $ref to outside it, a
    $schema below its top, or unevaluatedProperties with patternProperties (which
    jsonschema evaluates with Python's re)."""
    if schema.get("$schema", DIALECT) != DIALECT:
        raise ValueError(f"schema: only draft 2020-12 ({DIALECT}) is supported")
    # (jsonschema would check a subschema with a $schema, such as the top one a "#"
    # refers to, with its own validator: one with Python's re)
    schema = {key: value for key, value in schema.items() if key != "$schema"}
    keywords: set[str] = set()
    try:
        Draft202012Validator.check_schema(schema)
        root = referencing.Registry().resolver_with_root(DRAFT202012.create_resource(schema))
        _walk(root, schema, keywords, set())
    except SchemaError as exc:
        raise ValueError(f"schema{exc.json_path[1:]}: {exc.message}") from None
    except RecursionError:
        raise ValueError("schema: nested too deeply") from None
    if {"unevaluatedProperties", "patternProperties"} <= keywords:
        raise ValueError("schema: unevaluatedProperties with patternProperties is not supported")
    return schema


def _walk(resolver: referencing.Resolver, schema: Any, keywords: set[str], seen: set[int]) -> None:
    """Check ``schema``, every schema in it and every one it refers to (see _checked),
    collecting their keywords."""
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    keywords.update(schema)
    if "$schema" in schema:
        raise ValueError("schema: $schema is allowed only at its top")
    patterns = list(schema.get("patternProperties", {}))
    if "pattern" in schema:
        patterns.append(schema["pattern"])
    for pattern in patterns:
        try:
            _regex(pattern)
        except ValueError as exc:
            raise ValueError(f"schema: pattern {pattern!r}: {exc}") from None
    for key in ("$ref", "$dynamicRef"):
        if key in schema:
            try:
                found = resolver.lookup(schema[key])
            except referencing.exceptions.Unresolvable:
                raise ValueError(f"schema: {key} {schema[key]!r} is not in it") from None
            _walk(found.resolver, found.contents, keywords, seen)
    for sub in DRAFT202012.create_resource(schema).subresources():
        _walk(resolver.in_subresource(sub), sub.contents, keywords, seen)


@implementer(IFilterPlugin)
class BodyGuardPlugin:
    name = "body-guard"
    description = "refuses request bodies that are not JSON or not valid under a JSON Schema"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "maxBytes": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_REQUEST_BODY,
                "default": 65536,
            },
            "methods": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$"},
                "uniqueItems": True,
                "default": ["POST", "PUT", "PATCH"],
            },
            "schema": {"type": "object"},
        },
    }

    def make(self, config: dict[str, Any]) -> BodyGuard:
        schema = config.get("schema")
        return BodyGuard(
            config.get("maxBytes", 65536),
            frozenset(config.get("methods", ["POST", "PUT", "PATCH"])),
            None if schema is None else Checker(_checked(schema)),
        )


plugin = BodyGuardPlugin()

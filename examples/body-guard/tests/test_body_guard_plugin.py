"""The body-guard plugin without a gateway: what each body is answered, byte for byte,
and that neither a hostile body nor a hostile schema gets more than bounded work."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
import twistgw_body_guard
from jsonschema import Draft202012Validator
from twisted.internet.defer import Deferred, succeed
from twistgw_body_guard import DIALECT, plugin

from twistgw.extensions.filters import (
    MAX_REQUEST_BODY,
    Answer,
    Fields,
    FilterRequest,
    IFilterPlugin,
)

JSON = ("application/json",)
ITEM = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "name": {"type": "string", "maxLength": 8}},
    "required": ["id"],
}


def _request(body: bytes, types: tuple[str, ...] = JSON, method: str = "POST") -> FilterRequest:
    fields = Fields([(b"content-type", value.encode()) for value in types])
    return FilterRequest(method, "/", "example.com", "127.0.0.1", fields, body=body)


@pytest.fixture(autouse=True)
def in_thread(monkeypatch) -> list[int]:
    """Checks that would go to a thread run at once (no reactor runs here); the sizes
    of the bodies sent there."""
    sent: list[int] = []

    def at_once(function, body, *args):
        sent.append(len(body))
        return succeed(function(body, *args))

    monkeypatch.setattr(twistgw_body_guard, "deferToThread", at_once)
    return sent


def _answer(config: dict, body: bytes, types: tuple[str, ...] = JSON, method: str = "POST"):
    answer = plugin.make(config).on_request(_request(body, types, method))
    if isinstance(answer, Deferred):
        return answer.result
    return answer


def _status(config: dict, body: bytes, types: tuple[str, ...] = JSON, method: str = "POST"):
    answer = _answer(config, body, types, method)
    return None if answer is None else answer.status


def _problem(answer: Answer) -> dict:
    """The answer's problem details, checked against RFC 9457's shape."""
    assert answer.headers == [("Content-Type", "application/problem+json")]
    problem = json.loads(answer.body)
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["type"] == "about:blank" and problem["status"] == answer.status
    assert problem["title"] == HTTPStatus(answer.status).phrase
    return problem


def test_it_is_a_filter_plugin_with_a_valid_schema() -> None:
    assert IFilterPlugin.providedBy(plugin)
    Draft202012Validator.check_schema(plugin.config_schema)
    assert plugin.config_schema["properties"]["maxBytes"]["maximum"] == MAX_REQUEST_BODY == 1048576


@pytest.mark.parametrize(
    "config, valid",
    [
        ({}, True),
        ({"maxBytes": 1, "methods": ["DELETE", "PURGE"], "schema": ITEM}, True),
        ({"maxBytes": 0}, False),
        ({"maxBytes": 1048577}, False),
        ({"methods": ["GET /"]}, False),
        ({"schema": True}, False),
        ({"maxbytes": 10}, False),
    ],
)
def test_the_config_schema(config, valid) -> None:
    assert Draft202012Validator(plugin.config_schema).is_valid(config) is valid


@pytest.mark.parametrize(
    "config, limit", [({}, 65536), ({"maxBytes": 10}, 10), ({"maxBytes": 1048576}, 1048576)]
)
def test_the_body_limit_follows_max_bytes(config, limit) -> None:
    assert plugin.make(config).request_body_limit == limit


@pytest.mark.parametrize(
    "config, method, types, body, status",
    [
        # JSON, by its media type (parameters ignored, any case), else 415
        ({}, "POST", JSON, b'{"id": 1}', None),
        ({}, "PUT", ("Application/JSON; charset=utf-8",), b"[1, 2]", None),
        ({}, "PATCH", ("application/merge-patch+json",), b"null", None),
        ({}, "POST", ("text/plain",), b'{"id": 1}', 415),
        ({}, "POST", (), b'{"id": 1}', 415),
        ({}, "POST", ("application/json", "text/plain"), b'{"id": 1}', 415),
        ({}, "POST", ("application/json, text/plain",), b'{"id": 1}', 415),
        ({}, "POST", ("application/+json",), b"{}", 415),
        ({}, "POST", ("application/jsonp",), b"{}", 415),
        # not UTF-8 JSON: 400
        ({}, "POST", JSON, b'{"id": ', 400),
        ({}, "POST", JSON, b'"\xff"', 400),
        ({}, "POST", JSON, '{"id": 1}'.encode("utf-16"), 400),
        ({}, "POST", JSON, b'\xef\xbb\xbf{"id": 1}', 400),  # (a byte order mark)
        ({}, "POST", JSON, b"[NaN]", 400),
        ({}, "POST", JSON, b"[-Infinity]", 400),
        ({}, "POST", JSON, b"[1e999]", 400),
        ({}, "POST", JSON, b"1" * 400, 400),
        ({}, "POST", JSON, b'{"id": 1, "id": 2}', 400),
        ({}, "POST", JSON, b'["\\ud800"]', 400),  # (half a surrogate pair)
        ({}, "POST", JSON, b'{"\\udfff": 1}', 400),
        ({}, "POST", JSON, b'["\\ud83d\\ude00", "\\\\ud800"]', None),  # (a whole pair; text)
        # an empty body is a missing one
        ({}, "POST", JSON, b"", None),
        ({}, "POST", ("text/plain",), b"", None),
        ({"schema": ITEM}, "POST", JSON, b"", 400),
        # valid under the schema, else 422
        ({"schema": ITEM}, "POST", JSON, b'{"id": 1, "name": "ann"}', None),
        ({"schema": ITEM}, "POST", JSON, b'{"name": "ann"}', 422),
        ({"schema": ITEM}, "POST", JSON, b'{"id": "1"}', 422),
        ({"schema": ITEM}, "POST", JSON, b'{"id": 1, "name": "too long a name"}', 422),
        ({"schema": ITEM}, "POST", ("text/plain",), b"id=1", 415),
        ({"schema": ITEM}, "POST", JSON, b"{id: 1}", 400),
        # other methods pass untouched
        ({"schema": ITEM}, "GET", ("text/plain",), b"\xff\xfe", None),
        ({"schema": ITEM}, "DELETE", JSON, b"", None),
        ({"schema": ITEM, "methods": ["DELETE"]}, "DELETE", JSON, b"", 400),
        ({"schema": ITEM, "methods": ["DELETE"]}, "POST", JSON, b"{", None),
        ({"schema": ITEM}, "post", JSON, b"{", None),  # (methods are case-sensitive)
    ],
)
def test_each_body_is_answered(config, method, types, body, status) -> None:
    answer = _answer(config, body, types, method)
    if status is None:
        assert answer is None
    else:
        assert answer.status == status
        _problem(answer)


@pytest.mark.parametrize(
    "config, body",
    [
        ({}, b"[" * 100_000),
        ({}, b'{"a":' * 100_000),
        ({}, b"[" * 10_000 + b"]" * 10_000),  # (valid JSON, too deep to parse)
        ({"schema": {"items": {"$ref": "#"}}}, b"[" * 500 + b"]" * 500),  # (to check)
    ],
)
def test_json_too_deep_for_the_stack_is_a_400(config, body) -> None:
    answer = _answer(config, body)
    assert answer.status == 400
    assert _problem(answer)["detail"] == "the body is nested too deeply"


@pytest.mark.parametrize(
    "schema, body, status",
    [
        # (Python's re would take ages over each of these: that they end proves RE2)
        ({"pattern": "^(a+)+$"}, '"' + "a" * 50 + '!"', 422),
        ({"items": {"pattern": "^(a+)+$"}}, '["' + "a" * 5000 + '"]', None),
        ({"propertyNames": {"pattern": "^(a+)+$"}}, '{"' + "a" * 50 + '!": 1}', 422),
        (  # (jsonschema checks a schema with a $schema by that draft's own validator)
            {"$schema": DIALECT, "properties": {"a": {"$ref": "#"}}, "pattern": "^(a+)+$"},
            '{"a": "' + "a" * 50 + '!"}',
            422,
        ),
        ({"patternProperties": {"^(a+)+$": {"type": "string"}}}, '{"' + "a" * 50 + '!": 1}', None),
        ({"patternProperties": {"^(a+)+$": {"type": "string"}}}, '{"' + "a" * 50 + '": 1}', 422),
        (
            {"patternProperties": {"^(a+)+$": True}, "additionalProperties": False},
            '{"' + "a" * 50 + '!": 1}',
            422,
        ),
        ({"patternProperties": {"^x-": True}, "additionalProperties": False}, '{"x-a": 1}', None),
        ({"patternProperties": {"^x-": True}, "additionalProperties": False}, '{"y": 1}', 422),
        ({"properties": {"y": {}}, "patternProperties": {"^x-": {}}}, '{"y": 1, "x-": 2}', None),
        ({"additionalProperties": {"type": "integer"}}, '{"a": 1, "b": "2"}', 422),
        # (an unanchored search, as in JSON Schema; RE2's \d is ASCII, as ECMA-262's is)
        ({"pattern": "b"}, '"abc"', None),
        ({"pattern": "^\\d+$"}, '"\u0663"', 422),
        ({"pattern": "^.$"}, '"\u00e9"', None),
    ],
)
def test_patterns_are_matched_by_re2(schema, body, status) -> None:
    assert _status({"schema": schema}, body.encode()) == status


@pytest.mark.parametrize(
    "body, status",
    [
        (b"[1, 1.0]", 422),
        (b'[{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]', 422),
        (b"[1, true, 0, false, null, {}, []]", None),
        (b'["1", 1, [1], {"1": 1}]', None),
        (json.dumps([{"a": i} for i in range(10_000)]).encode(), None),  # (not 10^8 pairs)
    ],
)
def test_unique_items_by_hashing(body, status) -> None:
    assert _status({"schema": {"uniqueItems": True}, "maxBytes": 1048576}, body) == status


def test_a_schema_that_branches_at_every_level_has_a_deadline(monkeypatch) -> None:
    monkeypatch.setattr(twistgw_body_guard, "CHECK_SECONDS", 0.01)
    monkeypatch.setattr(twistgw_body_guard, "CHECK_SECONDS_PER_BYTE", 0)
    node = {"properties": {"args": {"items": {"$ref": "#"}}}}
    schema = {"oneOf": [node, {**node, "required": ["op"]}]}  # (2^depth checks)
    body = b'{"args": [' * 40 + b"1" + b"]}" * 40
    answer = _answer({"schema": schema}, body)
    assert answer.status == 422
    assert _problem(answer)["detail"] == "the body takes too long to check against the schema"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "text"},
        {"properties": {"a": {"minimum": "1"}}},
        {"pattern": "(a)\\1"},  # (RE2 has no backreferences, nor lookaround)
        {"patternProperties": {"(?=a)": {}}},
        {"$defs": {"a": {"items": {"pattern": "(?<!a)b"}}}},
        {"x-not-a-keyword": {"pattern": "(a)\\1"}, "$ref": "#/x-not-a-keyword"},
        {"$ref": "https://example.com/schema.json"},  # (nothing is fetched)
        {"$ref": "#/$defs/missing"},
        {"$schema": "http://json-schema.org/draft-07/schema#"},
        {"items": {"$schema": "https://json-schema.org/draft/2020-12/schema"}},
        {"patternProperties": {"^a": {}}, "unevaluatedProperties": False},
    ],
)
def test_make_refuses_a_schema_it_cannot_check_with(schema) -> None:
    with pytest.raises(ValueError, match="^schema"):
        plugin.make({"schema": schema})


def test_make_takes_refs_within_the_schema() -> None:
    schema = {
        "$schema": DIALECT,
        "$defs": {"id": {"type": "integer"}, "tag": {"$id": "urn:tag", "pattern": "^[a-z]+$"}},
        "properties": {"id": {"$ref": "#/$defs/id"}, "tag": {"$ref": "urn:tag"}},
        "unevaluatedProperties": False,
    }
    assert _status({"schema": schema}, b'{"id": 1, "tag": "abc"}') is None
    assert _status({"schema": schema}, b'{"id": 1, "tag": "ABC"}') == 422
    assert _status({"schema": schema}, b'{"id": 1, "other": 2}') == 422


def test_a_problem_stays_small_whatever_the_client_sent() -> None:
    long = "\u00e9" * 100_000
    schema = {"items": {"type": "string", "maxLength": 1}, "additionalProperties": False}
    body = json.dumps([long] * 10 + [{long: 1}]).encode()
    answer = _answer({"schema": {"anyOf": [schema, {"type": "object"}]}, "maxBytes": 1048576}, body)
    assert answer.status == 422 and len(answer.body) < 4096
    answer = _answer({"schema": schema, "maxBytes": 1048576}, body)
    detail = _problem(answer)["detail"]
    assert answer.status == 422 and len(answer.body) < 4096
    assert detail.count("is too long") == 3 and detail.endswith("; ...")


@pytest.mark.parametrize(
    "body",
    [
        b"1" * 300,
        b"1e308",
        b"-0.0",
        b'"' + b"\\u0000" * 1000 + b'"',
        b"[" * 50 + b"1" * 300 + b"]" * 50,
        json.dumps({"a" * 1000: [1.5, 2, True, None, {"b": "\u2028"}]}).encode(),
    ],
)
def test_no_body_makes_it_raise(body) -> None:
    schema = {
        "type": ["object", "array", "string", "number"],
        "multipleOf": 0.1,
        "maximum": 1e300,
        "minLength": 2,
        "items": {"$ref": "#"},
        "uniqueItems": True,
        "additionalProperties": {"$ref": "#"},
        "propertyNames": {"pattern": "^a"},
        "enum": [1, [1], {"a": 1}],
    }
    answer = _answer({"schema": schema}, body)
    assert answer is None or answer.status in (400, 422)


def test_a_schema_check_or_a_long_body_goes_to_a_thread(in_thread) -> None:
    short = json.dumps({"id": 1, "pad": "x" * 100}).encode()
    long = json.dumps({"id": 1, "pad": "x" * 5000}).encode()
    assert _status({}, short) is None and in_thread == []  # (parsed on the reactor)
    assert _status({}, long) is None and in_thread == [len(long)]
    assert _status({"schema": ITEM}, short) is None and in_thread[-1] == len(short)


def test_past_max_checks_in_threads_a_request_is_answered_503(monkeypatch) -> None:
    running: list[Deferred] = []
    monkeypatch.setattr(
        twistgw_body_guard, "deferToThread", lambda *args: running.append(Deferred()) or running[-1]
    )
    guard = plugin.make({"schema": ITEM})
    waiting = [
        guard.on_request(_request(b'{"id": 1}')) for _ in range(twistgw_body_guard.MAX_CHECKS)
    ]
    refused = guard.on_request(_request(b'{"id": 1}'))
    assert refused.status == 503 and ("Retry-After", "1") in refused.headers
    running[0].callback(None)  # one ends: room for another
    assert waiting[0].result is None
    assert isinstance(guard.on_request(_request(b'{"id": 1}')), Deferred)
    for left in running[1:]:
        left.callback(None)


def test_a_check_whose_request_ended_stops_at_its_next_step(monkeypatch) -> None:
    budgets = []
    monkeypatch.setattr(
        twistgw_body_guard,
        "deferToThread",
        lambda function, body, checker, budget: budgets.append(budget) or Deferred(),
    )
    answer = plugin.make({"schema": ITEM}).on_request(_request(b'{"id": 1}'))
    answer.cancel()  # (the gateway: the client left, or a deadline answered)
    assert budgets[0].deadline == 0.0  # (past: the thread's next step raises _TooSlow)
    answer.addErrback(lambda failure: None)

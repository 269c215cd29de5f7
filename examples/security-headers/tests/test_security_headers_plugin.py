"""The security-headers plugin without a gateway: what each config sets, and that a
backend's own fields are kept unless ``replace`` says otherwise."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from twistgw_security_headers import plugin

from twistgw.extensions.filters import Fields, IFilterPlugin


class Response:
    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.status = 200
        self.headers = Fields(fields)


def _answered(config: dict, fields: list[tuple[bytes, bytes]] | None = None) -> Fields:
    response = Response(list(fields or []))
    plugin.make(config).on_response(None, response)
    return response.headers


def test_it_is_a_filter_plugin_with_a_valid_schema() -> None:
    assert IFilterPlugin.providedBy(plugin)
    Draft202012Validator.check_schema(plugin.config_schema)


def test_the_defaults_set_every_field() -> None:
    fields = _answered({})
    assert fields.get("strict-transport-security").startswith("max-age=")
    assert fields.get("x-content-type-options") == "nosniff"
    assert fields.get("x-frame-options") == "DENY"
    assert fields.get("referrer-policy") == "strict-origin-when-cross-origin"


@pytest.mark.parametrize(
    "config, absent",
    [({"hsts": False}, "strict-transport-security"), ({"frameOptions": None}, "x-frame-options")],
)
def test_a_switch_leaves_its_field_out(config, absent) -> None:
    assert absent not in _answered(config)


def test_a_backends_own_field_is_kept_unless_replaced() -> None:
    own = [(b"x-frame-options", b"SAMEORIGIN")]
    assert _answered({}, own).get("x-frame-options") == "SAMEORIGIN"
    assert _answered({"replace": True}, own).get("x-frame-options") == "DENY"

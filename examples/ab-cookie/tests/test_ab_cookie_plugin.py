"""The ab-cookie plugin without a gateway: a new client gets a group by weight and a
cookie; a returning one keeps its group; a forged group is not believed."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator
from twistgw_ab_cookie import plugin

from twistgw.extensions.filters import Fields, FilterRequest, IFilterPlugin


class Response:
    def __init__(self) -> None:
        self.status = 200
        self.headers = Fields([])


def _request(*cookies: str) -> FilterRequest:
    fields = Fields([(b"cookie", cookie.encode()) for cookie in cookies])
    return FilterRequest("GET", "/", "example.com", "127.0.0.1", fields)


def test_it_is_a_filter_plugin_with_a_valid_schema() -> None:
    assert IFilterPlugin.providedBy(plugin)
    Draft202012Validator.check_schema(plugin.config_schema)


def test_a_new_client_gets_a_group_by_weight_and_a_cookie() -> None:
    made = plugin.make({"groups": {"a": 0, "b": 1}})
    request, response = _request(), Response()
    made.on_request(request)
    assert request.headers.get("x-ab-group") == "b"  # (a has weight 0)
    made.on_response(request, response)
    assert response.headers.get("set-cookie").startswith("ab=b; Path=/; Max-Age=")


@pytest.mark.parametrize("cookie, group", [("ab=a", "a"), ("x=1; ab=a", "a"), ("ab=zz", "b")])
def test_a_returning_client_keeps_a_group_of_ours(cookie, group) -> None:
    made = plugin.make({"groups": {"a": 1, "b": 1000}})
    request = _request(cookie)
    made.on_request(request)
    if group == "a":
        assert request.headers.get("x-ab-group") == "a"
        response = Response()
        made.on_response(request, response)
        assert "set-cookie" not in response.headers  # (it has its cookie)
    else:  # a group not ours: placed anew, with a new cookie
        assert request.notes["ab-new"] == "b" and request.headers.get("x-ab-group") == "b"


def test_weights_all_zero_are_refused() -> None:
    with pytest.raises(ValueError):
        plugin.make({"groups": {"a": 0}})

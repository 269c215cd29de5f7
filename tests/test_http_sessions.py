"""Session persistence through a real gateway process with two workers (one key for
both) and echo backends that say who they are: a rule with two endpoints spreads
requests without a session and keeps those with one on their endpoint; a session
header does the same; a forged or expired value is routed anew and replaced; an
endpoint taken out of the EndpointSlices ends its sessions, which move with a new
cookie."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service

REQUESTS = 24


def _rule(prefix: str, service_name: str, session: dict) -> dict:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
        "backendRefs": [backend(service_name)],
        "sessionPersistence": session,
    }


@pytest.fixture(scope="module")
def sessions(backends) -> Iterator[tuple[GatewayProcess, dict]]:
    gateway = GatewayProcess(("--workers", "2")).start()
    endpoints = {name: backends.start(name) for name in ("a1", "a2", "m1", "m2")}
    rules = [
        _rule("/cookie", "app", {"cookie": {"name": "sid"}}),
        _rule(
            "/expiring",
            "app",
            {
                "absoluteTimeout": "2s",
                "cookie": {"name": "short", "lifetimeType": "Permanent", "path": "/expiring"},
            },
        ),
        _rule("/header", "app", {"type": "Header", "header": {"name": "X-Session"}}),
        _rule("/moving", "moving", {"cookie": {}}),
    ]
    gateway.write(
        "app.yaml",
        [
            gateway_class(),
            gateway_manifest(),
            *service("app", [endpoints["a1"], endpoints["a2"]]),
            http_route("sessions", rules),
        ],
    )
    gateway.write("moving.yaml", service("moving", [endpoints["m1"], endpoints["m2"]]))
    wait_until(lambda: gateway.request("/cookie")[0] == 200, what="routes to be served")
    yield gateway, endpoints
    gateway.stop()


def _get(gateway: GatewayProcess, path: str, **headers: str) -> tuple[str, dict[str, str]]:
    """(the backend that answered, the response's fields) of one request on a new
    connection (so requests land on either worker)."""
    code, fields, body = gateway.request(path, headers=headers)
    assert code == 200, (code, body)
    return json.loads(body)["backend"], fields


def _cookie(fields: dict[str, str]) -> tuple[str, str, list[str]]:
    """(name, value, attributes) of the response's Set-Cookie."""
    pair, *attributes = fields["set-cookie"].split("; ")
    name, _, value = pair.partition("=")
    return name, value, attributes


def test_without_a_session_requests_spread_and_each_gets_a_cookie(sessions) -> None:
    gateway, _ = sessions
    seen = set()
    for _ in range(REQUESTS):
        answered, fields = _get(gateway, "/cookie")
        seen.add(answered)
        name, value, attributes = _cookie(fields)
        assert name == "sid" and len(value) == 44
        assert attributes == ["Path=/", "HttpOnly", "SameSite=Lax"]  # a session cookie
    assert seen == {"a1", "a2"}


def test_requests_with_the_cookie_keep_hitting_one_endpoint(sessions) -> None:
    gateway, _ = sessions
    first, fields = _get(gateway, "/cookie")
    name, value, _ = _cookie(fields)
    for _ in range(REQUESTS):
        answered, fields = _get(gateway, "/cookie/more", Cookie=f"theme=dark; {name}={value}")
        assert answered == first
        assert "set-cookie" not in fields  # the session goes on: nothing new to keep


def test_the_session_header_pins_like_the_cookie(sessions) -> None:
    gateway, _ = sessions
    first, fields = _get(gateway, "/header")
    value = fields["x-session"]
    assert "set-cookie" not in fields and len(value) == 44
    for _ in range(REQUESTS):
        answered, fields = _get(gateway, "/header", **{"X-Session": value})
        assert answered == first and "x-session" not in fields
    # the header's value is not a cookie's
    seen = {_get(gateway, "/header", Cookie=f"X-Session={value}")[0] for _ in range(REQUESTS)}
    assert seen == {"a1", "a2"}


@pytest.mark.parametrize("damage", ["flip", "garbage", "other rule"])
def test_a_forged_value_is_routed_anew_and_replaced(sessions, damage: str) -> None:
    gateway, _ = sessions
    _, fields = _get(gateway, "/cookie")
    _, value, _ = _cookie(fields)
    if damage == "flip":
        forged = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    elif damage == "garbage":
        forged = "127.0.0.1:1"
    else:  # a valid value of another rule (the header rule's)
        forged = _get(gateway, "/header")[1]["x-session"]
    seen = set()
    for _ in range(REQUESTS):
        answered, fields = _get(gateway, "/cookie", Cookie=f"sid={forged}")
        seen.add(answered)
        name, new, _ = _cookie(fields)
        assert name == "sid" and new != forged
    assert seen == {"a1", "a2"}


def test_a_permanent_cookie_lasts_its_absolute_timeout_and_no_longer(sessions) -> None:
    gateway, _ = sessions
    first, fields = _get(gateway, "/expiring")
    name, value, attributes = _cookie(fields)
    assert name == "short"
    assert attributes == ["Path=/expiring", "Max-Age=2", "HttpOnly", "SameSite=Lax"]
    started = time.monotonic()
    answered, fields = _get(gateway, "/expiring", Cookie=f"short={value}")
    assert answered == first and "set-cookie" not in fields
    time.sleep(max(0.0, 2.1 - (time.monotonic() - started)))
    seen = set()
    for _ in range(REQUESTS):
        answered, fields = _get(gateway, "/expiring", Cookie=f"short={value}")
        seen.add(answered)
        assert _cookie(fields)[1] != value  # expired: a new session each time
    assert seen == {"a1", "a2"}


def test_an_endpoint_taken_out_moves_its_sessions_with_a_new_cookie(sessions) -> None:
    gateway, endpoints = sessions
    first, fields = _get(gateway, "/moving")
    name, value, _ = _cookie(fields)
    assert name.startswith("twistgw-session-")  # (no name given: one made for the rule)
    assert _get(gateway, "/moving", Cookie=f"{name}={value}")[0] == first
    other = ({"m1", "m2"} - {first}).pop()
    gateway.write("moving.yaml", service("moving", [endpoints[other]]))
    wait_until(  # (in both workers: requests land on either)
        lambda: all(
            _get(gateway, "/moving", Cookie=f"{name}={value}")[0] == other for _ in range(8)
        ),
        what="the session to move off the endpoint taken out",
    )
    for _ in range(4):
        answered, fields = _get(gateway, "/moving", Cookie=f"{name}={value}")
        assert answered == other
        moved_name, moved, _ = _cookie(fields)
        assert moved_name == name and moved != value
    for _ in range(REQUESTS):
        answered, fields = _get(gateway, "/moving", Cookie=f"{name}={moved}")
        assert answered == other and "set-cookie" not in fields
    # the endpoint back: the moved session stays where it is
    gateway.write("moving.yaml", service("moving", [endpoints["m1"], endpoints["m2"]]))
    wait_until(
        lambda: {_get(gateway, "/moving")[0] for _ in range(8)} == {"m1", "m2"},
        what="both endpoints to be served again",
    )
    for _ in range(REQUESTS):
        assert _get(gateway, "/moving", Cookie=f"{name}={moved}")[0] == other

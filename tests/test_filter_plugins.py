"""Filter plugins through real gateway processes with two workers: each example
(security headers, A/B cookie, JSON body guard) on a route; a plugin that raises
answers 500 and the worker lives; a plugin that waits does not hold other requests;
one that answers itself; one on a backendRef that rewrites the response body after a
wait; a PythonFilter naming a missing plugin, or one --filter-plugins does not allow,
leaves its route ResolvedRefs=False, answering 500."""

from __future__ import annotations

import json
import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import RawBackend

ROOT = pathlib.Path(__file__).parents[1]
PLUGIN_PATHS = [
    ROOT / "examples" / "security-headers",
    ROOT / "examples" / "ab-cookie",
    ROOT / "examples" / "body-guard",
    ROOT / "tests" / "support" / "filterplugins",
]


@pytest.fixture(scope="module")
def plugin_path() -> Iterator[None]:
    """The example and test plugins on the gateway processes' path (as if installed)."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [*map(str, PLUGIN_PATHS), *([before] if before else [])]
    )
    yield
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before


GUARD_SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}


def _python_filter(name: str, plugin: str, **config) -> dict:
    return {
        "apiVersion": "gateway.twistgw.dev/v1alpha1",
        "kind": "PythonFilter",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"plugin": plugin, "config": config},
    }


def _refs(names: tuple[str, ...]) -> list[dict]:
    """ExtensionRef filters naming these PythonFilters."""
    ref = {"group": "gateway.twistgw.dev", "kind": "PythonFilter"}
    return [{"type": "ExtensionRef", "extensionRef": {**ref, "name": name}} for name in names]


def _rule(path: str, *filters: str, backend_filters: tuple[str, ...] = ()) -> dict:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "filters": _refs(filters),
        "backendRefs": [backend("web", filters=_refs(backend_filters))],
    }


def _seen(server: RawBackend, path: bytes) -> bytes:
    return [r for r in server.requests if r.startswith(b"GET " + path)][-1].lower()


def _documents(server: RawBackend) -> list[dict]:
    rules = [
        _rule("/secure", "secure"),
        _rule("/raises", "raises"),
        _rule("/waits", "waits"),
        _rule("/answers", "answers"),
        _rule("/ghost", "ghost"),
        _rule("/odd", "odd"),
        _rule("/ab", "ab"),
        _rule("/guard", "guard"),
        _rule("/rewritten", backend_filters=("rewrites",)),
        _rule(
            "/",
        ),
    ]
    return [
        gateway_class(),
        gateway_manifest(),
        *service("web", [server.address]),
        http_route("web", rules),
        _python_filter("secure", "security-headers", frameOptions="SAMEORIGIN"),
        _python_filter("raises", "test-raises"),
        _python_filter("waits", "test-waits", seconds=3),
        _python_filter("answers", "test-answers"),
        _python_filter("ghost", "no-such-plugin"),
        _python_filter("odd", "test-odd"),
        _python_filter("ab", "ab-cookie", groups={"a": 0, "b": 1}),
        _python_filter("guard", "body-guard", maxBytes=8192, schema=GUARD_SCHEMA),
        _python_filter("rewrites", "test-rewrites"),
    ]


@pytest.fixture(scope="module")
def server() -> Iterator[RawBackend]:
    server = RawBackend()
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(plugin_path, server) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(("--workers", "2")).start()
    gateway.write("filters.yaml", _documents(server))
    wait_until(lambda: gateway.request("/answers")[0] == 418, what="the filters in force")
    yield gateway
    gateway.stop()


def test_the_security_headers_example_sets_its_fields(gateway) -> None:
    code, headers, _ = gateway.request("/secure")
    assert code == 200
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["strict-transport-security"].startswith("max-age=")
    assert "x-frame-options" not in gateway.request("/")[1]  # other rules: untouched


def _pids(gateway: GatewayProcess) -> list[int]:
    return [w["pid"] for w in json.loads(gateway.admin("/config_dump")[1])["workers"]]


def test_a_plugin_that_raises_answers_500_and_the_workers_live(gateway) -> None:
    before = _pids(gateway)
    for _ in range(4):
        assert gateway.request("/raises")[0] == 500
    assert gateway.request("/")[0] == 200
    assert _pids(gateway) == before  # (no worker died and was replaced)
    metrics = gateway.admin("/metrics")[1].decode()
    assert 'twistgw_filter_failures_total{plugin="test-raises"}' in metrics
    assert "this plugin always fails" in gateway.log()


def test_a_plugin_that_waits_holds_only_its_own_request(gateway) -> None:
    done: list[int] = []
    slow = threading.Thread(target=lambda: done.append(gateway.request("/waits")[0]))
    slow.start()
    answers = [gateway.request("/")[0] for _ in range(10)]  # while the slow one waits
    assert answers == [200] * 10
    assert not done  # (the slow request still waits: the others were not held by it)
    slow.join(30)
    assert done == [200]


def test_a_plugin_that_returns_something_odd_or_sets_framing_answers_500(gateway) -> None:
    assert gateway.request("/odd")[0] == 500  # False is not "go on"
    assert gateway.request("/odd", headers={"X-Frame-It": "1"})[0] == 500  # no smuggling
    assert gateway.request("/")[0] == 200


def test_a_plugin_may_answer_itself(gateway) -> None:
    code, headers, body = gateway.request("/answers")
    assert (code, body, headers["x-answered-by"]) == (418, b"no tea here\n", "plugin")
    assert gateway.request("/answers", headers={"X-Let-Me": "in"})[0] == 200


def test_a_missing_plugin_leaves_its_route_unresolved(gateway) -> None:
    assert gateway.request("/ghost")[0] == 500
    condition = gateway.route_condition("web", "ResolvedRefs")
    assert (condition["status"], condition["reason"]) == ("False", "BackendNotFound")
    assert "no-such-plugin" in condition["message"]


def test_a_plugin_not_allowed_is_not_run(plugin_path) -> None:
    server = RawBackend()
    gateway = GatewayProcess(("--workers", "1", "--filter-plugins", "test-answers")).start()
    try:
        gateway.write("filters.yaml", _documents(server))
        wait_until(lambda: gateway.request("/answers")[0] == 418, what="the allowed one runs")
        assert gateway.request("/secure")[0] == 500  # installed, but not allowed
        condition = gateway.route_condition("web", "ResolvedRefs")
        assert "not installed or not allowed" in condition["message"]
    finally:
        gateway.stop()
        server.close()


def test_the_ab_cookie_example_keeps_a_client_in_its_group(gateway, server) -> None:
    code, headers, _ = gateway.request("/ab/new", headers={"X-AB-Group": "a"})  # (a claim)
    assert code == 200 and headers["set-cookie"].startswith("ab=b; Path=/;")
    seen = _seen(server, b"/ab/new")
    assert b"\r\nx-ab-group: b\r\n" in seen and seen.count(b"x-ab-group") == 1
    code, headers, _ = gateway.request("/ab/back", headers={"Cookie": "ab=a"})
    assert code == 200 and "set-cookie" not in headers
    assert b"\r\nx-ab-group: a\r\n" in _seen(server, b"/ab/back")


@pytest.mark.parametrize(
    "body, content_type, code",
    [
        (b'{"name": "ada"}', "application/json", 200),
        (b'{"name": "' + b"a" * 6000 + b'"}', "application/json", 200),  # (in a thread)
        (b'{"name": 1}', "application/json", 422),
        (b'{"name": ', "application/json", 400),
        (b"name=ada", "application/x-www-form-urlencoded", 415),
        (b'{"name": "' + b"a" * 8192 + b'"}', "application/json", 413),
    ],
)
def test_the_body_guard_example_checks_json_bodies(gateway, server, body, content_type, code):
    status, headers, answer = gateway.request(
        "/guard", method="POST", body=body, headers={"Content-Type": content_type}
    )
    assert status == code, answer
    if code == 200:  # the backend got the body as the client sent it
        assert [r for r in server.requests if r.startswith(b"POST /guard")][-1].endswith(body)
    elif code != 413:  # (the gateway's own 413: the guard's limit, before it is called)
        assert headers["content-type"] == "application/problem+json"


def test_the_body_guard_reads_a_chunked_body_whole(gateway, server) -> None:
    body = [b'{"name":', b' "chunked"}']
    status, _, _ = gateway.request(
        "/guard",
        method="POST",
        body=iter(body),
        chunked=True,
        headers={"Content-Type": "application/json"},
    )
    assert status == 200  # (the guard had it whole: either piece alone is no JSON)
    sent = [r for r in server.requests if r.startswith(b"POST /guard")][-1]
    assert sent.index(b'{"name":') < sent.index(b' "chunked"}')  # (chunked on, as it came)


def test_a_backendrefs_filter_rewrites_the_response_after_waiting(gateway, server) -> None:
    code, headers, body = gateway.request("/rewritten/PATH")
    assert code == 200 and headers["x-rewritten"] == "yes"
    assert body == b"get /rewritten/path http/1.1\n-- rewritten\n"
    assert b"\r\nx-attempt-filter: 1\r\n" in _seen(server, b"/rewritten/PATH")

"""TrafficPolicy health checks through a real gateway: an endpoint failing its active
checks leaves the rotation and comes back when it passes again; an endpoint refusing
connections is ejected by the passive check after errors in a row; both show in the
metrics. And the worker's endpoint health without sockets, on a test clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from tests.support.gateway import GatewayProcess, free_port, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import Conn, RawBackend
from twistgw.dataplane.http.health import EndpointHealth
from twistgw.dataplane.http.router import CompiledBackend
from twistgw.metrics import Metrics
from twistgw.routing import ir

#: whether each named backend's /healthz answers 200 (else 503)
HEALTHY = {"a": True, "b": True}


def named(name: str):
    def handler(conn: Conn) -> None:
        while (request := conn.read_request()) is not None:
            if request.startswith(b"GET /healthz "):
                status = b"200 OK" if HEALTHY[name] else b"503 Unavailable"
                conn.send(b"HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n" % status)
            else:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + name.encode())

    return handler


def _policy(name: str, route: str, health: dict) -> dict:
    return {
        "apiVersion": "gateway.twistgw.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": route}], "healthCheck": health},
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    a, b = RawBackend(named("a")), RawBackend(named("b"))
    gateway = GatewayProcess(("--workers", "1")).start()
    refusing = ("127.0.0.1", free_port())  # nothing listens there
    active = {"path": "/healthz", "interval": "1s", "timeout": "500ms"}
    active |= {"healthyThreshold": 1, "unhealthyThreshold": 1}
    documents = [
        gateway_class(),
        gateway_manifest(),
        *service("ab", [a.address, b.address]),
        *service("flaky", [refusing, b.address]),
        http_route("checked", [{"backendRefs": [backend("ab")]}], hostnames=["checked.example"]),
        http_route("ejecting", [{"backendRefs": [backend("flaky")]}], hostnames=["flaky.example"]),
        _policy("active", "checked", {"active": active}),
        _policy("passive", "ejecting", {"passive": {"consecutiveErrors": 2, "ejectionTime": "1h"}}),
    ]
    gateway.write("health.yaml", documents)
    wait_until(lambda: gateway.request(host="checked.example")[0] == 200, what="routes")
    yield gateway
    gateway.stop()
    a.close()
    b.close()


def _served(gateway: GatewayProcess, host: str, count: int = 6) -> list[bytes]:
    return [gateway.request(host=host)[2] for _ in range(count)]


def test_an_endpoint_failing_its_checks_leaves_the_rotation_and_comes_back(gateway) -> None:
    wait_until(lambda: set(_served(gateway, "checked.example")) == {b"a", b"b"}, what="both")
    HEALTHY["a"] = False
    try:
        wait_until(lambda: set(_served(gateway, "checked.example")) == {b"b"}, what="a out")
        metrics = gateway.admin("/metrics")[1].decode()
        assert 'twistgw_endpoint_ejections_total{endpoint="127.0.0.1:' in metrics
        assert 'source="active"' in metrics
    finally:
        HEALTHY["a"] = True
    wait_until(lambda: set(_served(gateway, "checked.example")) == {b"a", b"b"}, what="a back")


def test_an_endpoint_with_errors_in_a_row_is_ejected(gateway) -> None:
    codes = [gateway.request(host="flaky.example")[0] for _ in range(8)]
    assert codes[-4:] == [200] * 4  # the refusing endpoint is out: only b answers
    assert codes.count(503) <= 2  # (at most its two errors in a row before it went)
    metrics = gateway.admin("/metrics")[1].decode()
    assert 'source="passive"' in metrics


# -- without sockets


def _backend(*ports: int) -> CompiledBackend:
    endpoints = tuple(ir.Endpoint("10.0.0.1", port) for port in ports)
    return CompiledBackend(ir.Backend("ns/b:80", 1, endpoints))


def _table(check: ir.ActiveCheck) -> ir.RoutingTable:
    """A table whose one route's endpoint 10.0.0.9:80 ``check`` reaches."""
    policies = ir.Policies(health_check=ir.HealthCheck("ns/p", active=check))
    backends = (ir.Backend("b", 1, (ir.Endpoint("10.0.0.9", 80),)),)
    route = ir.Route("ns/r", 0, ir.Match(), backends=backends, policies=policies)
    listener = ir.HTTPListener("l", "g", None, (ir.VirtualHost("*", (route,)),))
    return ir.RoutingTable((ir.Bind("0.0.0.0", 80, "HTTP", (listener,)),))


def test_choosing_skips_endpoints_out_of_rotation_and_panics_when_all_are() -> None:
    health = EndpointHealth(Clock(), Metrics())
    backend = _backend(1, 2, 3)
    health.failing.add(("10.0.0.1", 2))
    assert {health.choose(backend).port for _ in range(6)} == {1, 3}
    health.failing.update({("10.0.0.1", 1), ("10.0.0.1", 3)})
    assert {health.choose(backend).port for _ in range(6)} == {1, 2, 3}  # panic: all


def test_passive_ejection_expires_and_respects_the_maximum_share() -> None:
    clock = Clock()
    health = EndpointHealth(clock, Metrics())
    backend = _backend(1, 2, 3, 4)
    check = ir.PassiveCheck(consecutive_errors=2, ejection_time=30.0, max_ejection_percent=50)
    one, two, three = (ir.Endpoint("10.0.0.1", p) for p in (1, 2, 3))
    health.outcome(backend, one, check, False)
    health.outcome(backend, one, check, True)  # a success resets the run
    health.outcome(backend, one, check, False)
    assert not health.is_down(("10.0.0.1", 1))
    health.outcome(backend, one, check, False)
    assert health.is_down(("10.0.0.1", 1))
    for _ in range(2):
        health.outcome(backend, two, check, False)
        health.outcome(backend, three, check, False)
    assert health.is_down(("10.0.0.1", 2))
    assert not health.is_down(("10.0.0.1", 3))  # a third out would be 75% > 50%
    clock.advance(30)
    assert not health.is_down(("10.0.0.1", 1))


def test_active_checks_follow_their_thresholds_and_stop_with_the_table() -> None:
    clock = Clock()
    answers = itertools.chain([503, 503, 200, 200], itertools.repeat(200))
    health = EndpointHealth(clock, Metrics(), lambda key, check: succeed(next(answers)))
    check = ir.ActiveCheck(
        "/h", interval=1.0, timeout=0.5, healthy_threshold=2, unhealthy_threshold=2
    )
    health.update(_table(check))
    key = ("10.0.0.9", 80)
    clock.advance(1.0)  # (the first probe starts within one interval)
    clock.advance(1.0)
    assert health.is_down(key)  # two failures
    clock.advance(1.0)
    assert health.is_down(key)  # one success is not enough
    clock.advance(1.0)
    assert not health.is_down(key)
    health.update(ir.RoutingTable())
    assert not health.probers


def test_a_probe_that_fails_counts_as_a_failure() -> None:
    clock = Clock()
    health = EndpointHealth(clock, Metrics(), lambda key, check: fail(ConnectionRefusedError()))
    check = ir.ActiveCheck("/h", interval=1.0, unhealthy_threshold=1)
    health.update(_table(check))
    clock.advance(1.0)
    clock.advance(1.0)
    assert health.is_down(("10.0.0.9", 80))

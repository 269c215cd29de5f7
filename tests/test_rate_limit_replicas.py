"""A rate limit shared by two gateway replicas through a real Redis
(``--rate-limit-redis``): the burst holds across both, and when Redis is gone each
replica fails open or closed as its ``--rate-limit-redis-failure`` says, and counts it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import RawBackend
from tests.support.redisserver import RedisServer, redis_server_path

if redis_server_path() is None:
    if os.environ.get("TWISTGW_REQUIRE_REDIS") == "1":
        pytest.fail("redis-server is not on PATH, and TWISTGW_REQUIRE_REDIS=1")
    pytest.skip("needs Debian's redis-server (apt-get install it)", allow_module_level=True)

LIMIT = {"requests": 4, "unit": "Hour", "key": {"type": "Global"}}


def _documents(server: RawBackend) -> list[dict]:
    rules = [{"backendRefs": [backend("web")]}]
    policy = {
        "apiVersion": "gateway.twistgw.dev/v1alpha1",
        "kind": "TrafficPolicy",
        "metadata": {"name": "limit", "namespace": "default"},
        "spec": {"targetRefs": [{"kind": "HTTPRoute", "name": "web"}], "rateLimit": LIMIT},
    }
    return [
        gateway_class(),
        gateway_manifest(),
        *service("web", [server.address]),
        http_route("web", rules),
        policy,
    ]


@pytest.fixture
def replicas() -> Iterator[tuple[RedisServer, GatewayProcess, GatewayProcess]]:
    directory = tempfile.mkdtemp(prefix="twistgw-redis-")
    redis = RedisServer(directory).start()
    server = RawBackend()
    gateways = [
        GatewayProcess(
            ("--workers", "1", "--rate-limit-redis", redis.url, "--rate-limit-redis-failure", mode)
        ).start()
        for mode in ("open", "closed")
    ]
    for gateway in gateways:
        gateway.write("limit.yaml", _documents(server))
        wait_until(lambda g=gateway: "limit" in g.admin("/config_dump")[1].decode(), what="table")
    yield redis, *gateways
    for gateway in gateways:
        gateway.stop()
    server.close()
    redis.stop()


def test_two_replicas_share_one_limit_through_redis(replicas) -> None:
    _, first, second = replicas
    codes = [gateway.request("/")[0] for _ in range(4) for gateway in (first, second)]
    assert codes == [200] * 4 + [429] * 4  # 4 in all, not 4 per replica


def test_without_redis_a_replica_fails_open_or_closed_as_told(replicas) -> None:
    redis, fail_open, fail_closed = replicas
    redis.stop()
    assert all(fail_open.request("/")[0] == 200 for _ in range(6))  # more than the limit
    assert fail_closed.request("/")[0] == 503
    metrics = fail_open.admin("/metrics")[1].decode()
    assert 'twistgw_rate_limit_store_failures_total{outcome="allowed"}' in metrics
    closed = fail_closed.admin("/metrics")[1].decode()
    assert 'twistgw_rate_limit_store_failures_total{outcome="refused"}' in closed

"""Cluster mode against the API server fixture, through the real kubernetes client:
objects reach traffic and status, watches survive restarts, drops and 410 Gone,
status conflicts are retried, other controllers' entries are kept, and with leader
election one replica writes statuses until it dies and another takes over."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from tests.support.apiserver import APIServer
from tests.support.gateway import CONTROLLER, GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service

PORT = 8181


@pytest.fixture(scope="module")
def api():
    server = APIServer().start()
    yield server
    server.stop()


def _cluster_gateway(api: APIServer, *extra: str, token: str = "test") -> GatewayProcess:
    kubeconfig = api.kubeconfig(tempfile.mktemp(suffix=".kubeconfig"), token)
    return GatewayProcess(extra_args=("--kubernetes", "--kubeconfig", kubeconfig, *extra)).start()


def _condition(obj: dict | None, type_: str, where=lambda status: status) -> str | None:
    if obj is None:
        return None
    for condition in where(obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == type_:
            return f"{condition['status']}/{condition['reason']}"
    return None


def _route_accepted(api: APIServer, name: str) -> str | None:
    route = api.get("HTTPRoute", name, "default")
    ours = [
        p
        for p in ((route or {}).get("status") or {}).get("parents") or []
        if p["controllerName"] == CONTROLLER
    ]
    return _condition({"status": ours[0]}, "Accepted") if ours else None


def _seed(api: APIServer, address: tuple[str, int]) -> None:
    """GatewayClass, Gateway ``gw`` on PORT, and HTTPRoute ``app`` to a Service there."""
    for obj in [
        gateway_class(),
        gateway_manifest("gw", listeners=[{"name": "http", "port": PORT, "protocol": "HTTP"}]),
        *service("app", [address]),
        http_route("app", [{"backendRefs": [backend("app")]}]),
    ]:
        api.apply(obj)


def _dead_end(name: str, prefix: str) -> dict:
    """An HTTPRoute whose prefix answers 500 (its backend does not exist)."""
    return http_route(
        name,
        [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "backendRefs": [backend("nope")],
            }
        ],
    )


def _change_app_route(api: APIServer, hostnames: list[str], **metadata) -> None:
    route = api.get("HTTPRoute", "app", "default")
    api.apply(
        {
            **route,
            "metadata": {**route["metadata"], **metadata},
            "spec": {**route["spec"], "hostnames": hostnames},
        }
    )


def _app_status_is_current(api: APIServer) -> bool:
    """Whether our conditions on route ``app`` observed its current generation."""
    route = api.get("HTTPRoute", "app", "default")
    return all(
        c["observedGeneration"] == route["metadata"]["generation"]
        for p in route["status"]["parents"]
        if p["controllerName"] == CONTROLLER
        for c in p["conditions"]
    )


@pytest.fixture(scope="module")
def cluster(api, backends):
    _seed(api, backends.start("cluster-app"))
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "front", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "ports": [{"port": 80}]},
        }
    )
    gateway = _cluster_gateway(api, "--publish-service", "default/front")
    wait_until(lambda: gateway.request("/", port=PORT)[0] == 200, what="cluster config served")
    yield gateway
    gateway.stop()


def test_objects_reach_traffic_and_status(api, cluster):
    wait_until(
        lambda: _condition(api.get("Gateway", "gw", "default"), "Programmed") == "True/Programmed",
        what="Gateway status written",
    )
    wait_until(lambda: _route_accepted(api, "app") == "True/Accepted", what="route status")
    assert _condition(api.get("GatewayClass", "twistgw"), "Accepted") == "True/Accepted"
    # a change: a second route; a deletion: the first one
    api.apply(_dead_end("extra", "/extra"))
    wait_until(lambda: cluster.request("/extra", port=PORT)[0] == 500, what="new route served")
    api.delete("HTTPRoute", "extra", "default")
    wait_until(lambda: cluster.request("/extra", port=PORT)[0] == 200, what="route deleted")


def test_listener_sets_are_watched_and_their_status_written(api, cluster):
    """A ListenerSet's listener on the seeded Gateway (which allows its namespace)
    serves a route that names the ListenerSet; both statuses are written."""
    gw = api.get("Gateway", "gw", "default")
    api.apply({**gw, "spec": {**gw["spec"], "allowedListeners": {"namespaces": {"from": "Same"}}}})
    api.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "ListenerSet",
            "metadata": {"name": "extra-listeners", "namespace": "default"},
            "spec": {
                "parentRef": {"name": "gw"},
                "listeners": [
                    {"name": "set", "port": PORT, "protocol": "HTTP", "hostname": "set.test"}
                ],
            },
        }
    )
    route = _dead_end("via-set", "/via-set")
    route["spec"]["parentRefs"] = [{"kind": "ListenerSet", "name": "extra-listeners"}]
    api.apply(route)
    wait_until(
        lambda: cluster.request("/via-set", host="set.test", port=PORT)[0] == 500,
        what="route through the ListenerSet served",
    )
    assert cluster.request("/via-set", port=PORT)[0] == 200  # not on the Gateway's listener
    wait_until(
        lambda: (
            _condition(api.get("ListenerSet", "extra-listeners", "default"), "Accepted")
            == "True/Accepted"
        ),
        what="ListenerSet status written",
    )
    wait_until(
        lambda: (
            (api.get("Gateway", "gw", "default").get("status") or {}).get("attachedListenerSets")
            == 1
        ),
        what="attachedListenerSets written",
    )
    api.delete("HTTPRoute", "via-set", "default")
    api.delete("ListenerSet", "extra-listeners", "default")


def test_policies_are_watched_enforced_and_their_status_written(api, cluster):
    """A SecurityPolicy from the API server answers the seeded route 403 and gets its
    ancestor status; deleted, the route is open again."""
    policy = {
        "apiVersion": "gateway.twistgw.dev/v1alpha1",
        "kind": "SecurityPolicy",
        "metadata": {"name": "nobody", "namespace": "default"},
        "spec": {
            "targetRefs": [{"kind": "HTTPRoute", "name": "app"}],
            "ipAccess": {"allow": ["192.0.2.0/24"]},
        },
    }
    api.apply(policy)
    wait_until(lambda: cluster.request("/", port=PORT)[0] == 403, what="the policy enforced")

    def accepted() -> str | None:
        found = api.get("SecurityPolicy", "nobody", "default")
        ancestors = ((found or {}).get("status") or {}).get("ancestors") or []
        return _condition({"status": ancestors[0]}, "Accepted") if ancestors else None

    wait_until(lambda: accepted() == "True/Accepted", what="the policy's status written")
    api.delete("SecurityPolicy", "nobody", "default")
    wait_until(lambda: cluster.request("/", port=PORT)[0] == 200, what="the policy gone")


def test_published_service_addresses_are_the_gateways(api, cluster):
    def addresses():
        return (api.get("Gateway", "gw", "default").get("status") or {}).get("addresses")

    wait_until(
        lambda: addresses() == [{"type": "IPAddress", "value": "10.96.0.10"}],
        what="the cluster IP while no load balancer is there",
    )
    front = api.get("Service", "front", "default")
    front["status"] = {
        "loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}
    }
    api.write_status(front)
    wait_until(
        lambda: (
            addresses()
            == [
                {"type": "IPAddress", "value": "203.0.113.7"},
                {"type": "Hostname", "value": "lb.example.com"},
            ]
        ),
        what="the load balancer's addresses",
    )


def test_other_controllers_entries_are_kept(api, cluster):
    route = api.get("HTTPRoute", "app", "default")
    theirs = {
        "parentRef": {"name": "elsewhere"},
        "controllerName": "example.com/other",
        "conditions": [
            {
                "type": "Accepted",
                "status": "True",
                "reason": "Accepted",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    route["status"]["parents"].append(theirs)
    api.write_status(route)
    _change_app_route(api, ["kept.example.com"])
    # the spec change makes the gateway write the route's status again
    wait_until(lambda: _app_status_is_current(api), what="the route's status rewritten")
    parents = api.get("HTTPRoute", "app", "default")["status"]["parents"]
    assert theirs in parents and len(parents) == 2
    _change_app_route(api, [])


def test_a_status_conflict_is_read_again_and_retried(api, cluster):
    api.fail_next("PUT", "/httproutes/app/status", 409)
    conflicts_before = api.count("PUT", "/httproutes/app/status")
    _change_app_route(api, ["retry.example.com"], labels={"try": "again"})
    wait_until(
        lambda: api.count("PUT", "/httproutes/app/status") >= conflicts_before + 2,
        what="a second status write after the conflict",
    )
    wait_until(lambda: _app_status_is_current(api), what="the status written after the conflict")
    _change_app_route(api, [])


def test_watches_survive_drops_restarts_and_gone(api, cluster):
    api.drop_watches()
    api.apply(_dead_end("after-drop", "/dropped"))
    wait_until(lambda: cluster.request("/dropped", port=PORT)[0] == 500, what="after a drop")
    lists_before = api.count("GET", "/httproutes")
    api.stop()  # a restart: every watch is cut ...
    api.apply(_dead_end("after-restart", "/restarted"))  # ... a change no watch saw ...
    api.state.compact()  # ... and its history gone: resuming watches get 410, list again
    api.start()
    wait_until(lambda: cluster.request("/restarted", port=PORT)[0] == 500, what="after restart")
    assert api.count("GET", "/httproutes") > lists_before  # listed again after the 410
    for name in ("after-drop", "after-restart"):
        api.delete("HTTPRoute", name, "default")


def test_a_kind_that_is_not_installed_is_skipped(backends):
    server = APIServer().start()
    server.uninstall("UDPRoute")
    _seed(server, backends.start("partial-app"))
    gateway = _cluster_gateway(server)
    try:
        wait_until(lambda: gateway.request("/", port=PORT)[0] == 200, what="served without it")
        assert "UDPRoute is not served by the API server" in gateway.log()
    finally:
        gateway.stop()
        server.stop()


def test_leader_election_hands_status_writing_over(backends):
    server = APIServer().start()
    _seed(server, backends.start("elected-app"))
    args = ("--leader-elect", "--leader-election-namespace", "default", "--lease-duration", "2")
    first = _cluster_gateway(server, *args, token="first")
    second = _cluster_gateway(server, *args, token="second")
    tokens = {first: "first", second: "second"}
    try:
        lease = lambda: (server.get("Lease", "twistgw-leader", "default") or {}).get("spec", {})  # noqa: E731
        wait_until(lambda: lease().get("holderIdentity"), what="a leader")
        holder = lease()["holderIdentity"]
        leader, other = (
            (first, second) if holder.endswith(f"-{first.process.pid}") else (second, first)
        )
        assert holder.endswith(f"-{leader.process.pid}")
        wait_until(lambda: _route_accepted(server, "app") == "True/Accepted", what="status")
        for replica in (leader, other):  # both serve traffic
            wait_until(lambda r=replica: r.request("/", port=PORT)[0] == 200, what="served")
        status_puts = "/httproutes/app/status"
        assert server.count("PUT", status_puts, tokens[leader]) >= 1
        assert server.count("PUT", status_puts, tokens[other]) == 0  # only the leader writes
        os.killpg(leader.process.pid, signal.SIGKILL)  # no release: the Lease must expire
        wait_until(
            lambda: lease().get("holderIdentity", "").endswith(f"-{other.process.pid}"),
            timeout=30,
            what="the other replica taking the Lease",
        )
        writes = server.count("PUT", status_puts, tokens[other])
        _change_app_route(server, ["new.example.com"])
        wait_until(
            lambda: server.count("PUT", status_puts, tokens[other]) > writes,
            what="the new leader writing status",
        )
    finally:
        first.stop()
        second.stop()
        server.stop()

"""deploy/observability, the optional kustomize component: it renders with ``kubectl
kustomize`` from an overlay, and its Grafana dashboard and Prometheus alerts use only
metrics that a real gateway's ``/metrics`` exposes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile

import pytest
import yaml

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.kubectl import kubectl_or_skip
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.tlsecho import TLSEcho

DEPLOY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "deploy"))
COMPONENT = os.path.join(DEPLOY, "observability")
METRIC = re.compile(r"\btwistgw_[a-z0-9_]+\b")
TCP_PORT = 7101
WATCHDOG_KILLS = re.compile(r"^twistgw_worker_watchdog_kills_total [1-9]", re.MULTILINE)

#: Counted only on events the test does not cause (overload, retries, timeouts, mirrors,
#: HTTP/2 attacks): their series appear in
#: /metrics with the first such event. Each is checked against the gateway's registry.
EVENT_ONLY = {
    "twistgw_backend_overflow_total",
    "twistgw_backend_waiting_requests",
    "twistgw_connections_refused_total",
    "twistgw_http2_refused_total",
    "twistgw_http_mirrors_total",
    "twistgw_http_retries_total",
    "twistgw_http_timeouts_total",
}


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict]:
    kubectl = kubectl_or_skip()
    with tempfile.TemporaryDirectory(prefix="twistgw-overlay-") as overlay:
        # kustomize takes only relative paths to bases and components
        with open(os.path.join(overlay, "kustomization.yaml"), "w") as handle:
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(DEPLOY, overlay)],
                    "components": [os.path.relpath(COMPONENT, overlay)],
                },
                handle,
            )
        output = subprocess.run(
            [kubectl, "kustomize", overlay], capture_output=True, text=True, timeout=60
        )
    assert output.returncode == 0, output.stderr
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(output.stdout) if o}


def _dashboard() -> dict:
    with open(os.path.join(COMPONENT, "dashboard.json")) as handle:
        return json.load(handle)


def _dashboard_expressions(dashboard: dict) -> list[str]:
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if variable["type"] == "query":
            expressions.append(query["query"] if isinstance(query, dict) else query)
    return expressions


def _alert_expressions() -> list[str]:
    with open(os.path.join(COMPONENT, "prometheusrule.yaml")) as handle:
        rule = yaml.safe_load(handle)
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def _metric_names(expressions: list[str]) -> set[str]:
    names = set()
    for expression in expressions:
        found = METRIC.findall(expression)
        assert found, f"no twistgw metric in {expression!r}"
        names.update(found)
    return names


def test_the_component_renders_beside_the_base(rendered):
    dashboard = rendered[("ConfigMap", "twistgw-dashboard")]
    assert dashboard["metadata"]["namespace"] == "twistgw-system"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["twistgw.json"]) == _dashboard()
    rule = rendered[("PrometheusRule", "twistgw")]
    assert rule["metadata"]["namespace"] == "twistgw-system"
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {
        "TwistgwConfigRejected",
        "TwistgwWorkerCrashLoop",
        "TwistgwHighErrorRatio",
        "TwistgwNoReadyWorkers",
    } <= alerts
    monitor = rendered[("PodMonitor", "twistgw")]["spec"]
    pod = rendered[("Deployment", "twistgw")]["spec"]["template"]
    assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    # /metrics needs the admin token the pods read
    secret = pod["spec"]["volumes"][1]["secret"]["secretName"]
    assert endpoint["authorization"]["credentials"] == {"name": secret, "key": "token"}


def test_the_dashboard_covers_what_the_issue_asks_for():
    names = _metric_names(_dashboard_expressions(_dashboard()))
    assert {
        "twistgw_http_requests_total",
        "twistgw_http_request_duration_seconds_bucket",
        "twistgw_active_connections",
        "twistgw_config_reloads_total",
        "twistgw_config_reload_errors_total",
        "twistgw_worker_restarts_total",
    } <= names
    text = json.dumps(_dashboard())
    for label in ("by (gateway)", "by (route)", "by (backend, code)"):
        assert label in text


def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _exposed_after_traffic(backends) -> set[str]:
    """The sample names of a real gateway's /metrics after a proxied request, a request
    the codec refuses, TCP connections, a broken manifest and a worker the watchdog
    kills, with a client connection and a TCP connection still open."""
    web = backends.start("web")
    tcp = TLSEcho("tcp", None)
    gateway = GatewayProcess(extra_args=("--workers", "2", "--worker-watchdog-timeout", "2"))
    with contextlib.ExitStack() as stack:
        stack.callback(tcp.close)
        gateway.start()
        stack.callback(gateway.stop)
        listeners = [
            {"name": "http", "port": 8080, "protocol": "HTTP"},
            {"name": "tcp", "port": TCP_PORT, "protocol": "TCP"},
        ]
        tcp_route = {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TCPRoute",
            "metadata": {"name": "tcp", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "gw", "sectionName": "tcp"}],
                "rules": [{"backendRefs": [backend("tcp", 9)]}],
            },
        }
        gateway.write(
            "gw.yaml",
            [
                gateway_class(),
                gateway_manifest(listeners=listeners),
                *service("web", [web]),
                *service("tcp", [tcp.address], port=9),
                http_route(
                    "web",
                    [{"backendRefs": [backend("web")]}],
                    parents=[{"name": "gw", "sectionName": "http"}],
                ),
                tcp_route,
            ],
        )
        wait_until(lambda: gateway.request("/")[0] == 200, what="the route served")
        gateway.write("broken.yaml", "kind: [unclosed\n")

        def answering() -> int:  # the watchdog watches a worker from its first answer
            workers = json.loads(gateway.admin("/config_dump")[1])["workers"]
            return next((w["pid"] for w in workers if w["alive"] and w["heartbeat"] > 0), 0)

        victim = wait_until(answering, what="a worker answering the watchdog")
        os.kill(victim, signal.SIGSTOP)  # silent: the watchdog kills and replaces it
        stack.callback(_resume, victim)  # should the watchdog not have killed it
        wait_until(
            lambda: WATCHDOG_KILLS.search(gateway.admin("/metrics")[1].decode()),
            timeout=60,
            what="the watchdog's kill",
        )
        wait_until(lambda: gateway.admin("/readyz")[0] == 200, what="a replacement worker")
        # connections held open while /metrics is read: the live gauges have series
        web_connection = socket.create_connection((gateway.address, 8080), timeout=5)
        tcp_connection = socket.create_connection((gateway.address, TCP_PORT), timeout=5)
        stack.callback(web_connection.close)
        stack.callback(tcp_connection.close)
        web_connection.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert web_connection.recv(1024).startswith(b"HTTP/1.1 200")
        tcp_connection.sendall(b"ping\n")
        assert tcp_connection.recv(1024)
        with socket.create_connection((gateway.address, TCP_PORT), timeout=5) as sock:
            sock.sendall(b"ping\n")  # a closed stream: its bytes are counted
            assert sock.recv(1024)
        with socket.create_connection((gateway.address, 8080), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")  # two Hosts: 400
            assert sock.recv(1024).startswith(b"HTTP/1.1 400")

        def exposed() -> set[str]:
            text = gateway.admin("/metrics")[1].decode()
            names = {
                re.split(r"[{ ]", line, maxsplit=1)[0]
                for line in text.splitlines()
                if line and not line.startswith("#")
            }
            wanted = {
                "twistgw_http_requests_total",
                "twistgw_http_refused_total",
                "twistgw_active_connections",
                "twistgw_stream_active",
                "twistgw_stream_sent_bytes_total",
                "twistgw_config_reload_errors_total",
            }
            return names if wanted <= names else set()

        return wait_until(exposed, timeout=30, what="the events counted in /metrics")


def _registry_samples() -> set[str]:
    """Sample names the gateway's registry can expose (a counter's with ``_total``)."""
    from twistgw.metrics import Metrics

    names = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_dashboard_and_alerts_use_only_exposed_metrics(backends):
    exposed = _exposed_after_traffic(backends)
    assert _registry_samples() >= EVENT_ONLY
    assert not EVENT_ONLY & exposed, "exposed now: move it out of EVENT_ONLY"
    for what, expressions in (
        ("dashboard", _dashboard_expressions(_dashboard())),
        ("alerts", _alert_expressions()),
    ):
        unknown = _metric_names(expressions) - exposed - EVENT_ONLY
        assert not unknown, f"the {what} uses metrics /metrics does not expose: {unknown}"

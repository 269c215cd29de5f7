"""The prefork supervisor with real worker processes: sockets shared, workers replaced,
hung workers killed by the watchdog, configuration pushed under load, graceful drain."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.procs import alive, connection_owner
from twistgw.dataplane.worker import TEST_HANG_ENV
from twistgw.supervisor.workers import RestartPolicy


def _workers(process: GatewayProcess) -> list[dict]:
    return json.loads(process.admin("/config_dump")[1])["workers"]


def _live_pids(process: GatewayProcess) -> list[int]:
    return [w["pid"] for w in _workers(process) if w["alive"]]


def _serving(backends, name: str, drain_timeout: int, *extra_args: str) -> GatewayProcess:
    """A two-worker gateway routing everything to an echo backend."""
    process = GatewayProcess(
        extra_args=("--workers", "2", "--drain-timeout", str(drain_timeout), *extra_args)
    ).start()
    address = backends.start(name)
    process.write(
        "base.yaml",
        [
            gateway_class(),
            gateway_manifest(),
            *service("app", [address]),
            http_route("stable", [{"backendRefs": [backend("app")]}]),
        ],
    )
    wait_until(lambda: process.request("/stable")[0] == 200, what="route served")
    return process


@pytest.fixture(scope="module")
def prefork(backends):
    process = _serving(backends, "prefork", 10)
    wait_until(lambda: len(_live_pids(process)) == 2, what="two workers")
    yield process
    process.stop()


def _get(connection: http.client.HTTPConnection, path: str = "/stable") -> int:
    connection.request("GET", path, headers={"Host": "example.com"})
    response = connection.getresponse()
    response.read()
    return response.status


def _counter(process: GatewayProcess, name: str) -> float:
    """An unlabelled counter's value on ``/metrics`` (0 before anything counted it)."""
    for line in process.admin("/metrics")[1].decode().splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _keep_alive_per_worker(
    process: GatewayProcess, pids: list[int]
) -> dict[int, list[http.client.HTTPConnection]]:
    """Keep-alive connections to the gateway, by the worker that holds each."""
    owned: dict[int, list[http.client.HTTPConnection]] = {pid: [] for pid in pids}
    for _ in range(60):
        connection = http.client.HTTPConnection(process.address, 8080, timeout=10)
        assert _get(connection) == 200
        owned[connection_owner(connection.sock, pids)].append(connection)
        if all(len(c) >= 2 for c in owned.values()):
            break
    assert all(owned.values()), f"connections did not spread over both workers: {owned}"
    return owned


def _replaced_while_the_other_serves(
    process: GatewayProcess, stop_worker: int, *, signal_number: int
) -> float:
    """Signal worker ``stop_worker`` (0 or 1 of the live pids) and wait for its
    replacement while keep-alive requests to the other worker must all succeed; the
    time of the signal."""
    pids = _live_pids(process)
    owned = _keep_alive_per_worker(process, pids)
    victim = pids[stop_worker]
    (survivor,) = [pid for pid in pids if pid != victim]
    failures, served = [], [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for connection in owned[survivor]:
                try:
                    assert _get(connection) == 200
                    served[0] += 1
                except Exception as exc:  # any failure on the surviving worker counts
                    failures.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.3)
    signalled_at = time.monotonic()
    os.kill(victim, signal_number)
    replacement = wait_until(
        lambda: [p for p in _live_pids(process) if p not in pids and alive(p)],
        what="a replacement worker",
    )
    print(
        f"replacement worker {replacement} seen {time.monotonic() - signalled_at:.2f}s "
        "after the signal"
    )
    time.sleep(0.3)
    stop.set()
    thread.join()
    assert failures == [] and served[0] > 0
    assert not alive(victim)
    return signalled_at


def test_a_killed_worker_is_replaced_and_the_other_keeps_serving(prefork):
    killed_at = _replaced_while_the_other_serves(prefork, 0, signal_number=signal.SIGKILL)
    wait_until(lambda: prefork.admin("/readyz")[0] == 200, what="ready with the new worker")
    print(f"all workers have the current table {time.monotonic() - killed_at:.2f}s after the kill")
    for _ in range(20):  # new connections reach both workers and all succeed
        assert prefork.request("/stable")[0] == 200
    metrics = prefork.admin("/metrics")[1].decode()
    assert "twistgw_worker_restarts_total 1.0" in metrics


def test_fifty_config_changes_under_load_fail_no_request_on_a_stable_route(prefork):
    failures, served = [], [0]
    stop = threading.Event()

    def load() -> None:
        connection = http.client.HTTPConnection(prefork.address, 8080, timeout=10)
        while not stop.is_set():
            try:
                assert _get(connection) == 200  # keep-alive
                assert prefork.request("/stable")[0] == 200  # a new connection each time
                served[0] += 2
            except Exception as exc:
                failures.append(repr(exc))
                connection = http.client.HTTPConnection(prefork.address, 8080, timeout=10)

    thread = threading.Thread(target=load)
    thread.start()
    listeners = [{"name": "http", "port": 8080, "protocol": "HTTP"}]
    extra = listeners + [{"name": "extra", "port": 8081, "protocol": "HTTP"}]
    for change in range(50):
        if change % 10 == 5:
            prefork.write("gateway-extra.yaml", [gateway_manifest(listeners=extra)])
        elif change % 10 == 9:
            prefork.remove("gateway-extra.yaml")
        else:
            route = http_route(
                f"churn-{change % 3}", [{"matches": [{"path": {"value": f"/churn/{change}"}}]}]
            )
            prefork.write(f"churn-{change % 3}.yaml", [route])
        time.sleep(0.05)
    wait_until(lambda: prefork.admin("/readyz")[0] == 200, what="ready after the churn")
    time.sleep(0.3)
    stop.set()
    thread.join()
    assert failures == [] and served[0] > 50
    versions = {w["tableVersion"] for w in _workers(prefork) if w["alive"]}
    assert len(versions) == 1  # every worker has the current table


def test_metrics_sum_over_workers(prefork):
    def total() -> float:
        text = prefork.admin("/metrics")[1].decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("twistgw_http_requests_total{") and 'route="default/stable"' in line
        )

    def settled() -> list[float]:  # earlier tests' last requests may still be counted
        first = total()
        time.sleep(0.6)  # workers add their counts to the metrics every 0.25 s
        return [first] if total() == first else []

    (before,) = wait_until(settled, what="a steady count")
    for _ in range(40):
        assert prefork.request("/stable")[0] == 200
    # a worker counts a request once its response is out: the count may trail by a hair
    wait_until(lambda: total() - before >= 40, what="40 requests counted")
    assert total() - before == 40
    wait_until(  # sampled once a second in each worker
        lambda: (
            'twistgw_active_connections{listener="'
            in (text := prefork.admin("/metrics")[1].decode())
            and "pid=" in text
        ),
        what="the connections gauge",
    )


def test_sighup_rereads_the_configuration(prefork):
    os.kill(prefork.process.pid, signal.SIGHUP)
    wait_until(lambda: "SIGHUP: reading the configuration again" in prefork.log(), what="log line")
    assert prefork.request("/stable")[0] == 200


def test_sigterm_lets_a_slow_request_finish_then_exits_with_no_worker_left(backends):
    process = _serving(backends, "slow", 20)
    pids = _live_pids(process)
    result = {}

    def slow() -> None:
        result["response"] = process.request("/slow?seconds=2")

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.7)  # the request is in flight at the backend
    os.kill(process.process.pid, signal.SIGTERM)
    thread.join(30)
    code, headers, body = result["response"]
    assert code == 200 and json.loads(body)["path"] == "/slow?seconds=2"
    assert process.process.wait(30) == 0
    assert not any(alive(pid) for pid in pids)
    assert "draining workers" in process.log()


def test_restart_policy_backs_off_while_workers_die_young():
    policy = RestartPolicy(first_delay=0.0, base_delay=0.5, max_delay=4.0, stable_after=10.0)
    assert [policy.delay(lived=0.2) for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(lived=60.0) == 0.0  # a worker that ran for a while: replace at once
    assert policy.delay(lived=1.0) == 0.5


@pytest.fixture(scope="module")
def watched(backends):
    """A two-worker gateway with a 2 s watchdog whose workers spin forever on SIGUSR1."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TEST_HANG_ENV, "SIGUSR1")
        process = _serving(backends, "watched", 10, "--worker-watchdog-timeout", "2")
    wait_until(lambda: len(_live_pids(process)) == 2, what="two workers")
    yield process
    process.stop()


def _heartbeats(process: GatewayProcess) -> dict[int, int]:
    return {w["pid"]: w["heartbeat"] for w in _workers(process) if w["alive"]}


def test_a_stalled_supervisor_does_not_count_against_its_workers(watched):
    pids = sorted(_live_pids(watched))
    kills = _counter(watched, "twistgw_worker_watchdog_kills_total")
    wait_until(lambda: min(_heartbeats(watched).values()) > 0, what="workers answering")
    os.kill(watched.process.pid, signal.SIGSTOP)
    time.sleep(3)  # longer than the watchdog timeout; the workers' answers go unread
    os.kill(watched.process.pid, signal.SIGCONT)
    after = _heartbeats(watched)
    wait_until(  # the watchdog has run a few rounds since: a kill would have happened
        lambda: all(n >= after[pid] + 8 for pid, n in _heartbeats(watched).items()),
        what="eight more heartbeats from every worker",
    )
    assert sorted(_live_pids(watched)) == pids
    assert _counter(watched, "twistgw_worker_watchdog_kills_total") == kills


def test_a_hung_worker_is_killed_by_the_watchdog_and_replaced(watched):
    kills = _counter(watched, "twistgw_worker_watchdog_kills_total")
    _replaced_while_the_other_serves(watched, 1, signal_number=signal.SIGUSR1)
    assert _counter(watched, "twistgw_worker_watchdog_kills_total") == kills + 1
    assert "has not answered the watchdog" in watched.log()
    wait_until(lambda: watched.admin("/readyz")[0] == 200, what="ready with the new worker")
    for _ in range(20):
        assert watched.request("/stable")[0] == 200

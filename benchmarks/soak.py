"""A soak run: steady, mixed HTTP traffic through twistgw for a while, with a
configuration change every few seconds and a worker killed (SIGKILL) now and then.
Every failed request is reported, and whether its connection was open when a worker
was killed (the only failures expected: a request in flight on the killed worker, or
the next request on a keep-alive connection that died with it).

    .venv/bin/python benchmarks/soak.py                       # 10 minutes, as documented
    .venv/bin/python benchmarks/soak.py --duration 60 --rate 100

Loopback only; it starts and stops its own origin and gateway. Not a CI test: the
figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402 - the benchmarks' own helpers (origin, gateway config)

#: (share, method, path, body size, new connection per request)
MIX = [
    (50, "GET", "/", 0, False),
    (20, "GET", "/", 0, True),
    (10, "POST", "/", 65536, False),
    (10, "GET", "/r3/x", 0, False),
    (5, "HEAD", "/", 0, False),
    (5, "GET", "/big", 0, False),
]


@dataclass
class Outcome:
    started: float
    ended: float
    kind: str
    error: str | None
    opened: float  # when its connection was opened


def toggle_route(directory: str, step: int) -> None:
    """An HTTPRoute whose path and response header change at each step."""
    text = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: soak-toggle, namespace: default}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /toggle-{step % 7}}}}}]
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: X-Step, value: "{step}"}}]}}
    backendRefs: [{{name: origin, port: 80}}]
"""
    temporary = os.path.join(directory, ".soak.yaml.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
    os.rename(temporary, os.path.join(directory, "soak.yaml"))


def workers_of(pid: int) -> list[int]:
    found = []
    for child in run.tree(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as handle:
                if b"twistgw.dataplane.worker" in handle.read():
                    found.append(child)
        except OSError:
            continue
    return sorted(found)


def client(port: int, deadline: float, interval: float, outcomes: list, lock) -> None:
    """One client thread: a request every ``interval`` seconds, kinds drawn from MIX."""
    rng = random.Random()
    weights = [share for share, *_ in MIX]
    connection = None
    opened = 0.0
    next_at = time.monotonic() + rng.random() * interval
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        _, method, path, size, fresh = rng.choices(MIX, weights)[0]
        kind = f"{method} {path}{' (new connection)' if fresh else ''}"
        started = time.time()
        error = None
        try:
            if connection is None or fresh:
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                opened = started
            connection.request(method, path, body=b"x" * size if size else None)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                error = f"status {response.status}"
            if fresh or response.will_close:
                connection.close()
                connection = None
        except (OSError, http.client.HTTPException) as exc:
            error = type(exc).__name__
            if connection is not None:
                connection.close()
            connection = None
        with lock:
            outcomes.append(Outcome(started, time.time(), kind, error, opened))
    if connection is not None:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s in all")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--change-every", type=float, default=5.0)
    parser.add_argument("--kill-every", type=float, default=30.0)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="twistgw-soak-")
    origin = run.start_origin(workdir)
    gateway = run.start_twistgw(workdir, origin, 2)
    config = os.path.join(workdir, "twistgw-2-10-http")
    outcomes: list[Outcome] = []
    kills: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + args.duration
    threads = [
        threading.Thread(
            target=client,
            args=(gateway.port, deadline, args.clients / args.rate, outcomes, lock),
            daemon=True,
        )
        for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    step = 0
    next_change = started + args.change_every
    next_kill = started + args.kill_every
    try:
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = time.monotonic()
            if now >= next_change:
                step += 1
                toggle_route(config, step)
                next_change += args.change_every
            if now >= next_kill:
                pids = workers_of(gateway.process.pid)
                if pids:
                    kills.append(time.time())
                    os.kill(pids[len(kills) % len(pids)], signal.SIGKILL)
                next_kill += args.kill_every
        for thread in threads:
            thread.join(15)
    finally:
        for service in (gateway, origin):
            os.killpg(service.process.pid, signal.SIGTERM)
            service.process.wait(30)

    failed = [o for o in outcomes if o.error]

    def at_kill(outcome: Outcome) -> bool:
        """In flight when a worker was killed, or sent on a keep-alive connection opened
        before a kill (the connection may have died with its worker)."""
        return any(outcome.opened - 0.05 <= kill <= outcome.ended + 0.05 for kill in kills)

    explained = [o for o in failed if at_kill(o)]
    unexplained = [o for o in failed if not at_kill(o)]
    latencies = sorted(o.ended - o.started for o in outcomes if not o.error)
    print(f"# twistgw soak, {time.strftime('%Y-%m-%d %H:%M')}")
    print(
        f"{args.duration:.0f} s, {args.clients} clients at {args.rate:.0f} req/s in all; "
        f"a config change every {args.change_every:.0f} s ({step} in all); a worker "
        f"killed every {args.kill_every:.0f} s ({len(kills)} in all)"
    )
    print(f"requests: {len(outcomes)} ({len(outcomes) / args.duration:.1f}/s)")
    if latencies:
        p99 = latencies[int(len(latencies) * 0.99)]
        print(f"latency: p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    print(
        f"failed: {len(failed)}; on a connection open when a worker was killed: "
        f"{len(explained)}; "
        f"otherwise: {len(unexplained)}"
    )
    for (kind, error), count in Counter((o.kind, o.error) for o in failed).most_common():
        print(f"  {count} × {kind}: {error}")
    for outcome in unexplained[:20]:
        since = max(
            (outcome.started - kill for kill in kills if kill <= outcome.started), default=-1
        )
        print(
            f"  otherwise: {outcome.kind} {outcome.error}, {since:.2f} s after the last kill, "
            f"connection opened {outcome.started - outcome.opened:.2f} s before"
        )
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())

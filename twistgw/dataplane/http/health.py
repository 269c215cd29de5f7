"""Endpoint health (a TrafficPolicy's ``healthCheck``), as one worker sees it.

Active checks: every worker probes each endpoint of the backends a policy reaches
(``GET path`` with the endpoint as Host), each endpoint once however many routes
share it; ``unhealthyThreshold`` failures in a row take it out of rotation,
``healthyThreshold`` successes bring it back. Passive checks: ``consecutiveErrors``
errors in a row seen in traffic (a 5xx answer, a failed connection, a reset, a
timeout) eject it for ``ejectionTime``, unless more than ``maxEjectionPercent`` of the
backend's endpoints would then be out.

An endpoint out of rotation is skipped by the routes a health check reaches; when every
endpoint of a backend is out, all of them are used again (better a request tried than
none at all: Envoy's panic mode)."""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers as TwistedHeaders

from twistgw.dataplane.http.discard import DiscardBody
from twistgw.routing import ir

log = Logger()
Key = tuple[str, int]


def probe_endpoint(agent: Agent, reactor, key: Key, check: ir.ActiveCheck) -> Deferred:
    """GET the check's path from the endpoint: fires with the answer's status."""
    address, port = key
    host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    headers = TwistedHeaders({b"user-agent": [b"twistgw-health-check"]})
    asked = agent.request(b"GET", f"http://{host}{check.path}".encode(), headers)

    def status(response) -> int:
        response.deliverBody(DiscardBody(reactor, check.timeout))
        return response.code

    return asked.addCallback(status).addTimeout(check.timeout, reactor)


class Prober:
    """The active check of one endpoint: its probes and their run of outcomes."""

    def __init__(self, health: EndpointHealth, key: Key, check: ir.ActiveCheck) -> None:
        self.health = health
        self.key = key
        self.check = check
        self.successes = 0
        self.failures = 0
        self.busy = False
        self.loop = LoopingCall(self.probe)
        self.loop.clock = health.reactor

    def start(self) -> None:
        # (started at a random point of the interval, so probes do not come in bursts)
        self.health.reactor.callLater(random.uniform(0, self.check.interval), self._begin)

    def _begin(self) -> None:
        if self.health.probers.get(self.key) is self:
            self.loop.start(self.check.interval, now=True)

    def stop(self) -> None:
        if self.loop.running:
            self.loop.stop()

    def probe(self) -> None:
        if self.busy:
            return
        self.busy = True
        found = self.health.probe(self.key, self.check)
        found.addCallbacks(self._answered, lambda failure: self._done(False, failure))

    def _answered(self, status: int) -> None:
        self._done(status in self.check.expected_statuses, f"answered {status}")

    def _done(self, passed: bool, why) -> None:
        self.busy = False
        if self.health.probers.get(self.key) is not self:
            return  # (stopped meanwhile)
        if passed:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes == self.check.healthy_threshold:
                self.health.mark(self.key, "active", False, "passed its health checks")
        else:
            self.failures, self.successes = self.failures + 1, 0
            if self.failures == self.check.unhealthy_threshold:
                reason = why.getErrorMessage() if hasattr(why, "getErrorMessage") else why
                self.health.mark(self.key, "active", True, f"failed its health checks: {reason}")


class EndpointHealth:
    """A worker's endpoints out of rotation, and the checks that decide."""

    def __init__(
        self,
        reactor,
        metrics,
        probe: Callable[[Key, ir.ActiveCheck], Deferred] | None = None,
    ) -> None:
        self.reactor = reactor
        self.metrics = metrics
        self.probers: dict[Key, Prober] = {}
        #: endpoints failing active checks, and those ejected (until when)
        self.failing: set[Key] = set()
        self.ejected: dict[Key, float] = {}
        self.errors: dict[Key, int] = {}
        if probe is None:
            pool = HTTPConnectionPool(reactor, persistent=False)
            agent = Agent(reactor, pool=pool, connectTimeout=5)
            probe = lambda key, check: probe_endpoint(agent, reactor, key, check)  # noqa: E731
        self.probe = probe

    # -- the table

    def update(self, table: ir.RoutingTable) -> None:
        """Probe the endpoints the table's health checks reach (and stop probing
        others); forget what was known of endpoints no check reaches any more."""
        wanted: dict[Key, ir.ActiveCheck] = {}
        checked: set[Key] = set()
        for route in table.http_routes():
            if route.policies is None or route.policies.health_check is None:
                continue
            check = route.policies.health_check.active
            for backend in route.backends:
                for endpoint in backend.endpoints:
                    key = (endpoint.address, endpoint.port)
                    checked.add(key)
                    if check is not None:
                        wanted.setdefault(key, check)
        for key in [k for k in (*self.errors, *self.ejected) if k not in checked]:
            self.errors.pop(key, None)
            if self.ejected.pop(key, None) is not None and key not in self.failing:
                self.metrics.endpoint_down(f"{key[0]}:{key[1]}", False)
        for key in [k for k, p in self.probers.items() if wanted.get(k) != p.check]:
            self.probers.pop(key).stop()
            if key in self.failing:
                self.mark(key, "active", False, "is no longer checked")
        for key, check in wanted.items():
            if key not in self.probers:
                prober = self.probers[key] = Prober(self, key, check)
                prober.start()

    def stop(self) -> None:
        for prober in self.probers.values():
            prober.stop()
        self.probers.clear()

    # -- state

    def mark(self, key: Key, source: str, down: bool, why: str) -> None:
        """An endpoint's health changed by ``source`` (active, passive)."""
        address, port = key
        log.info(
            "endpoint {address}:{port} {why}: {state}",
            address=address,
            port=port,
            why=why,
            state="out of rotation" if down else "back in rotation",
        )
        if source == "active":
            (self.failing.add if down else self.failing.discard)(key)
        if down:
            self.metrics.endpoint_ejected(f"{address}:{port}", source)
        self.metrics.endpoint_down(f"{address}:{port}", self.is_down(key))

    def is_down(self, key: Key) -> bool:
        if key in self.failing:
            return True
        until = self.ejected.get(key)
        if until is None:
            return False
        if until <= self.reactor.seconds():
            del self.ejected[key]
            self.metrics.endpoint_down(f"{key[0]}:{key[1]}", key in self.failing)
            return False
        return True

    def choose(self, backend) -> ir.Endpoint | None:
        """The backend's next endpoint in rotation (any, when none is)."""
        first = backend.endpoint()
        if first is None or not (self.failing or self.ejected):
            return first
        endpoint = first
        for _ in range(len(backend.endpoints)):
            if not self.is_down((endpoint.address, endpoint.port)):
                return endpoint
            endpoint = backend.endpoint()
        return first

    # -- traffic

    def outcome(self, backend, endpoint: ir.Endpoint, check: ir.PassiveCheck, ok: bool) -> None:
        """What one request to ``endpoint`` came to (``ok``: not an error)."""
        key = (endpoint.address, endpoint.port)
        if ok:
            if self.errors.get(key):
                del self.errors[key]
            return
        errors = self.errors[key] = self.errors.get(key, 0) + 1
        if errors < check.consecutive_errors or key in self.ejected:
            return
        endpoints = {(e.address, e.port) for e in backend.endpoints}
        out = sum(1 for k in endpoints if k != key and self.is_down(k))
        if (out + 1) * 100 > check.max_ejection_percent * len(endpoints):
            return  # (ejecting it would take out more of the backend than allowed)
        del self.errors[key]
        self.ejected[key] = self.reactor.seconds() + check.ejection_time
        self.mark(key, "passive", True, f"had {errors} errors in a row")
        # (back in rotation when the time is up, traffic or not: the gauge says so)
        self.reactor.callLater(check.ejection_time, self.is_down, key)

"""Prometheus metrics, shared across the supervisor and its workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (the supervisor sets it before anything imports
prometheus-client, and workers inherit it), every process writes its values to files
there and the supervisor's ``/metrics`` sums them: counters and histograms over all
processes that ever ran, gauges per live process (a ``pid`` label tells workers apart).
"""

from __future__ import annotations

import os
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


#: The histogram's bucket bounds as prometheus-client keeps them (+Inf last).
BUCKET_BOUNDS = (*LATENCY_BUCKETS, float("inf"))


def add_observations(child, tally: list[float]) -> None:
    """Add ``tally`` (the count of observations per bucket of BUCKET_BOUNDS, then their
    sum per bucket) to a histogram child. prometheus-client has no public call for many
    observations at once: its child's per-bucket values are used when they have the
    expected shape; else each bucket's observations are replayed at their mean, which
    falls in the same bucket and keeps the sum."""
    size = len(BUCKET_BOUNDS)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if (
        buckets is not None
        and total is not None
        and tuple(getattr(child, "_upper_bounds", ())) == BUCKET_BOUNDS
    ):
        for bucket, count in zip(buckets, tally[:size], strict=True):
            if count:
                bucket.inc(count)
        total.inc(sum(tally[size:]))
        return
    for count, seconds in zip(tally[:size], tally[size:], strict=True):
        for _ in range(int(count)):
            child.observe(seconds / count)


class Metrics:
    """The gateway's metrics in their own registry; labelled children are cached, so a
    request costs a dict lookup and two increments."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "twistgw_http_requests",
            "HTTP requests answered, by gateway, route, rule (its name, else its index), "
            "backend, status code, the client's protocol (HTTP/1.1, HTTP/2) and, for gRPC "
            "calls, the gRPC status",
            ["gateway", "route", "rule", "backend", "code", "protocol", "grpc_status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twistgw_http_request_duration_seconds",
            "Time from request head to response end",
            ["gateway", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.connections = Gauge(
            "twistgw_active_connections",
            "Client connections open now, per worker",
            ["listener"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.http_refused = Counter(
            "twistgw_http_refused",
            "HTTP requests the codec refused before routing (malformed, over a limit, too "
            "slow), by listening socket and status code (400, 408, 414, 417, 431, 501, 505)",
            ["listener", "code"],
            registry=self.registry,
        )
        self.http2_refused = Counter(
            "twistgw_http2_refused",
            "HTTP/2 streams refused (a malformed request) or connections ended for an "
            "attack (control-frames, empty-data, rapid-reset), by listening socket and reason",
            ["listener", "reason"],
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "twistgw_connections_refused",
            "Client connections closed at once because the worker (limit=worker) or the "
            "listening socket (limit=port) held its most",
            ["listener", "limit"],
            registry=self.registry,
        )
        self.proxy_protocol_refused = Counter(
            "twistgw_proxy_protocol_refused",
            "Client connections on --proxy-protocol ports closed before their PROXY header "
            "was read, by listening socket and reason: malformed, too_large, timeout, "
            "incomplete (the client closed first)",
            ["listener", "reason"],
            registry=self.registry,
        )
        self.backend_overflow = Counter(
            "twistgw_backend_overflow",
            "Requests answered 503 because their backend endpoint had too many waiting "
            "(reason=pending) or none of its connections came free in time (reason=timeout)",
            ["backend", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "twistgw_http_retries",
            "Backend attempts retried under a rule's retry policy, by route and reason "
            "(connect, reset, timeout: backendRequest or the backend's own, status)",
            ["route", "reason"],
            registry=self.registry,
        )
        self.timeouts = Counter(
            "twistgw_http_timeouts",
            "Requests ended by a rule's timeout (answered 504, or cut short once the "
            "response had started), by route and timeout (request, backend_request)",
            ["route", "timeout"],
            registry=self.registry,
        )
        self.policy_denials = Counter(
            "twistgw_policy_denials",
            "Requests a TrafficPolicy or SecurityPolicy answered itself, by policy "
            "(namespace/name) and reason: ip_access (403), rate_limit (429), basic_auth "
            "(401), auth_busy (503: too many bcrypt checks at once)",
            ["policy", "reason"],
            registry=self.registry,
        )
        self.endpoint_ejections = Counter(
            "twistgw_endpoint_ejections",
            "Times a worker took an endpoint out of rotation, by endpoint and source: "
            "active (failed health checks) or passive (errors in a row in traffic)",
            ["endpoint", "source"],
            registry=self.registry,
        )
        self.endpoints_down = Gauge(
            "twistgw_endpoint_down",
            "1 while an endpoint a TrafficPolicy health check reaches is out of rotation "
            "in any worker, else 0",
            ["endpoint"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.filter_failures = Counter(
            "twistgw_filter_failures",
            "Requests a filter plugin failed (raised, or its Deferred failed), answered 500, "
            "by plugin",
            ["plugin"],
            registry=self.registry,
        )
        self.rate_limit_store_failures = Counter(
            "twistgw_rate_limit_store_failures",
            "Rate-limit decisions the shared store (--rate-limit-redis) could not make, by "
            "outcome: allowed (--rate-limit-redis-failure open) or refused (closed: 503)",
            ["outcome"],
            registry=self.registry,
        )
        self.mirrors = Counter(
            "twistgw_http_mirrors",
            "Request copies sent by RequestMirror filters, by route and outcome: completed "
            "(the mirror answered), or dropped: backlog (the mirror fell behind the "
            "client), unavailable (no connection), error, no_endpoint, in_flight_limit, "
            "client_gone",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.backend_waiting = Gauge(
            "twistgw_backend_waiting_requests",
            "Requests waiting now for a connection to their backend (every connection "
            "to its endpoint busy, --backend-max-connections), summed over workers",
            ["backend"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.memory_shedding = Gauge(
            "twistgw_worker_memory_shedding",
            "1 while a worker is past --worker-memory-limit (not accepting connections, "
            "closing idle ones), else 0; per worker",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.workers = Gauge(
            "twistgw_workers",
            "Worker processes running",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.worker_restarts = Counter(
            "twistgw_worker_restarts",
            "Workers that died and were replaced",
            registry=self.registry,
        )
        self.watchdog_kills = Counter(
            "twistgw_worker_watchdog_kills",
            "Workers killed because they stopped answering the watchdog (each is also "
            "counted as a restart)",
            registry=self.registry,
        )
        self.table_rejections = Counter(
            "twistgw_table_rejections",
            "Routing tables a worker could not compile and rejected, keeping its last good "
            "one (once per worker and table)",
            registry=self.registry,
        )
        self.reloads = Counter(
            "twistgw_config_reloads",
            "Configuration snapshots translated and applied",
            registry=self.registry,
        )
        self.reload_errors = Counter(
            "twistgw_config_reload_errors",
            "Configuration inputs rejected (parse or validation errors)",
            registry=self.registry,
        )
        self.config_refused = Counter(
            "twistgw_config_refused",
            "Configuration input refused for a limit: a file (limit=file_bytes, documents, "
            "nodes, text, depth; once per version of the file) or the whole config directory "
            "(limit=files, total_bytes, objects; once each time it goes over)",
            ["limit"],
            registry=self.registry,
        )
        self.streams = Counter(
            "twistgw_stream_connections",
            "Spliced connections (TLS, TCP) and UDP sessions opened, by listener, route, backend",
            ["listener", "route", "backend"],
            registry=self.registry,
        )
        self.stream_active = Gauge(
            "twistgw_stream_active",
            "Spliced connections and UDP sessions open now, per worker",
            ["listener", "route", "backend"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.stream_received = Counter(
            "twistgw_stream_received_bytes",
            "Bytes received from clients of spliced connections and UDP sessions (when they end)",
            ["listener", "route", "backend"],
            registry=self.registry,
        )
        self.stream_sent = Counter(
            "twistgw_stream_sent_bytes",
            "Bytes sent to clients of spliced connections and UDP sessions (when they end)",
            ["listener", "route", "backend"],
            registry=self.registry,
        )
        self._connections: dict[str, object] = {}
        # requests counted since the last flush: (gateway, route, backend, code) -> count;
        # (gateway, route) -> [count per latency bucket..., seconds per latency bucket...]
        self._pending_requests: dict[tuple[str, str, str, int], int] = {}
        self._pending_latency: dict[tuple[str, str], list[float]] = {}

    def request(
        self,
        gateway: str,
        route: str,
        rule: str,
        backend: str,
        code: int,
        seconds: float,
        protocol: str = "HTTP/1.1",
        grpc_status: bytes | None = None,
    ) -> None:
        """Count a request; the shared values are updated by ``flush``, so a request
        costs two dictionary updates instead of three locked writes to the metrics
        files (and as many getpid calls)."""
        key = (gateway, route, rule, backend, code, protocol, grpc_status)
        pending = self._pending_requests
        pending[key] = pending.get(key, 0) + 1
        tally = self._pending_latency.get((gateway, route))
        if tally is None:
            tally = self._pending_latency[(gateway, route)] = [0.0] * (2 * len(BUCKET_BOUNDS))
        bucket = bisect_left(BUCKET_BOUNDS, seconds)
        tally[bucket] += 1
        tally[bucket + len(BUCKET_BOUNDS)] += seconds

    def retried(self, route: str, reason: str) -> None:
        """Count a retry (rare: counted at once)."""
        self.retries.labels(route, reason).inc()

    def timed_out(self, route: str, timeout: str) -> None:
        """Count a request ended by a rule's timeout."""
        self.timeouts.labels(route, timeout).inc()

    def policy_denied(self, policy: str, reason: str) -> None:
        """Count a request a policy answered itself."""
        self.policy_denials.labels(policy, reason).inc()

    def endpoint_ejected(self, endpoint: str, source: str) -> None:
        """Count an endpoint taken out of rotation."""
        self.endpoint_ejections.labels(endpoint, source).inc()

    def endpoint_down(self, endpoint: str, down: bool) -> None:
        """Whether an endpoint is out of rotation in this worker now."""
        self.endpoints_down.labels(endpoint).set(1 if down else 0)

    def filter_failed(self, plugin: str) -> None:
        """Count a request a filter plugin failed."""
        self.filter_failures.labels(plugin).inc()

    def rate_limit_store_failed(self, outcome: str) -> None:
        """Count a rate-limit decision the shared store could not make."""
        self.rate_limit_store_failures.labels(outcome).inc()

    def mirrored(self, route: str, outcome: str) -> None:
        """Count a request copy's outcome."""
        self.mirrors.labels(route, outcome).inc()

    def flush(self) -> None:
        """Add the requests counted since the last flush to the shared values."""
        pending, self._pending_requests = self._pending_requests, {}
        for (gateway, route, rule, backend, code, protocol, grpc), count in pending.items():
            grpc_status = grpc.decode("latin-1") if grpc is not None else ""
            self.requests.labels(
                gateway, route, rule, backend, str(code), protocol, grpc_status
            ).inc(count)
        latencies, self._pending_latency = self._pending_latency, {}
        for (gateway, route), tally in latencies.items():
            add_observations(self.latency.labels(gateway, route), tally)

    def stream_opened(self, listener: str, route: str, backend: str) -> None:
        self.streams.labels(listener, route, backend).inc()

    def stream_closed(
        self, listener: str, route: str, backend: str, received: int, sent: int
    ) -> None:
        self.stream_received.labels(listener, route, backend).inc(received)
        self.stream_sent.labels(listener, route, backend).inc(sent)

    def exposition_registry(self) -> CollectorRegistry:
        """The registry ``/metrics`` renders: every process's values when shared."""
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return registry
        return self.registry

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's live gauges."""
        if os.environ.get(MULTIPROCESS_ENV):
            multiprocess.mark_process_dead(pid)

    def count_waiting(self, backend: str, change: int) -> None:
        """``change`` more requests wait for a connection to ``backend``."""
        self.backend_waiting.labels(backend).inc(change)

    def connection_gauge(self, listener: str):
        gauge = self._connections.get(listener)
        if gauge is None:
            gauge = self._connections[listener] = self.connections.labels(listener)
        return gauge

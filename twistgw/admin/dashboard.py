"""The dashboard's data: one JSON document joining the statuses, the routing table and
the metrics, Gateway by Gateway, listener by listener, route by route.

Counters are cumulative (since the gateway started); the page turns successive
documents into rates and a recent p99. Work is linear in the routing table, the
status items and the metric series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from twistgw.metrics import BUCKET_BOUNDS
from twistgw.routing.ir import HTTPListener, RoutingTable, StreamListener, TLSListener
from twistgw.status.store import is_wrong

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")


def problems(conditions: Iterable[dict]) -> list[str]:
    """The conditions that say something is wrong, as "Type (Reason): message"."""
    return [
        f"{condition.get('type')} ({condition.get('reason')}): {condition.get('message')}"
        for condition in conditions
        if is_wrong(condition)
    ]


def _name(item: dict) -> str:
    meta = item["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class _Traffic:
    """Request counters per (gateway, route) and per backend, from the metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.routes: dict[tuple[str, str], dict] = defaultdict(_zero)
        self.buckets: dict[tuple[str, str], list[float]] = {}
        self.streams: dict[str, dict] = defaultdict(_zero)
        #: endpoints a health check has taken out of rotation (in any worker)
        self.down: set[str] = set()
        bounds = {_bound(bound): index for index, bound in enumerate(BUCKET_BOUNDS)}
        for family in registry.collect():
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "twistgw_endpoint_down":
                    if sample.value:
                        self.down.add(labels["endpoint"])
                    continue
                if sample.name == "twistgw_http_requests_total":
                    stats = self.routes[(labels["gateway"], labels["route"])]
                    error = labels["code"].startswith("5")
                elif sample.name == "twistgw_stream_connections_total":
                    stats = self.streams[labels["route"]]
                    error = False
                elif sample.name == "twistgw_http_request_duration_seconds_bucket":
                    key = (labels["gateway"], labels["route"])
                    counts = self.buckets.setdefault(key, [0.0] * len(BUCKET_BOUNDS))
                    index = bounds.get(labels["le"])
                    if index is not None:
                        counts[index] += sample.value
                    continue
                else:
                    continue
                stats["requests"] += sample.value
                stats["errors"] += sample.value if error else 0
                backend = stats["backends"][labels["backend"]]
                backend[0] += sample.value
                backend[1] += sample.value if error else 0

    def of(self, gateway: str, route: str, stream: bool) -> dict:
        stats = self.streams.get(route) if stream else self.routes.get((gateway, route))
        if stats is None:
            return {"requests": 0, "errors": 0, "buckets": None, "backends": {}}
        return {
            "requests": stats["requests"],
            "errors": stats["errors"],
            "buckets": None if stream else self.buckets.get((gateway, route)),
            "backends": stats["backends"],
        }


def _zero() -> dict:
    """Counts of no requests: in all, 5xx, and [in all, 5xx] per backend."""
    return {"requests": 0, "errors": 0, "backends": defaultdict(lambda: [0, 0])}


def _bound(bound: float) -> str:
    """A bucket bound as the ``le`` label spells it."""
    return "+Inf" if bound == float("inf") else repr(bound)


def _table_listeners(table: RoutingTable) -> dict[str, dict]:
    """Every listener of the table by its name ("namespace/gateway/listener"): where it
    binds and its routes in order, each with its backends (union over its rules)."""
    listeners: dict[str, dict] = {}
    for bind in table.binds:
        for listener in bind.listeners:
            routes: dict[str, dict[str, Any]] = {}
            if isinstance(listener, HTTPListener):
                entries = [route for host in listener.virtual_hosts for route in host.routes]
            elif isinstance(listener, TLSListener):
                entries = [route for _, route in listener.routes]
            elif isinstance(listener, StreamListener) and listener.route is not None:
                entries = [listener.route]
            else:
                entries = []
            for entry in entries:
                backends = routes.setdefault(entry.route, {})
                for backend in entry.backends:
                    backends[backend.name] = {
                        "name": backend.name,
                        "endpoints": [f"{e.address}:{e.port}" for e in backend.endpoints],
                        "invalid": backend.invalid,
                    }
            listeners[listener.name] = {
                "gateway": listener.gateway,
                "protocol": bind.protocol,
                "address": bind.address,
                "port": bind.port,
                "hostname": listener.hostname,
                "stream": not isinstance(listener, HTTPListener),
                "routes": routes,
            }
    return listeners


def summary(status: dict, table: RoutingTable, registry: CollectorRegistry) -> dict:
    """The dashboard document: config errors, and every Gateway with its listeners, their
    routes (kind, problems, cumulative requests, 5xx, latency buckets) and backends
    (endpoints, those a health check took out of rotation, requests, 5xx); routes that
    name a Gateway but are in none of its listeners are listed as its ``unattached``
    routes."""
    traffic = _Traffic(registry)
    listeners = _table_listeners(table)
    routes: dict[str, dict] = {}
    parents_of: dict[str, set[str]] = defaultdict(set)
    for item in status.get("items", ()):
        if item["kind"] not in ROUTE_KINDS:
            continue
        name = _name(item)
        route = routes.setdefault(name, {"kind": item["kind"], "problems": []})
        for parent in item.get("status", {}).get("parents", ()):
            ref = parent.get("parentRef", {})
            namespace = ref.get("namespace", item["metadata"].get("namespace", ""))
            if ref.get("kind", "Gateway") == "Gateway":
                parents_of[f"{namespace}/{ref.get('name')}"].add(name)
            route["problems"] += problems(parent.get("conditions", ()))
    by_gateway: dict[str, list[str]] = defaultdict(list)
    for name, found in listeners.items():
        by_gateway[found["gateway"]].append(name)
    gateways = []
    for item in status.get("items", ()):
        if item["kind"] != "Gateway":
            continue
        gateway = _name(item)
        state = item.get("status", {})
        shown: list[dict] = []
        listed: set[str] = set()
        in_status = {listener["name"]: listener for listener in state.get("listeners", ())}
        names = [f"{gateway}/{name}" for name in in_status]
        known = set(names)
        names += [name for name in by_gateway.get(gateway, ()) if name not in known]
        for full in names:
            found = listeners.get(full, {})
            written = in_status.get(full[len(gateway) + 1 :], {})
            rows = []
            for route, backends in found.get("routes", {}).items():
                listed.add(route)
                stats = traffic.of(gateway, route, found["stream"])
                for backend in backends.values():
                    backend["requests"], backend["errors"] = stats["backends"].get(
                        backend["name"], (0, 0)
                    )
                    backend["down"] = [e for e in backend["endpoints"] if e in traffic.down]
                info = routes.get(route, {})
                rows.append(
                    {
                        "name": route,
                        "kind": info.get("kind", ""),
                        "problems": info.get("problems", []),
                        "requests": stats["requests"],
                        "errors": stats["errors"],
                        "buckets": stats["buckets"],
                        "backends": list(backends.values()),
                    }
                )
            shown.append(
                {
                    "name": full[len(gateway) + 1 :],
                    "protocol": found.get("protocol"),
                    "address": found.get("address"),
                    "port": found.get("port"),
                    "hostname": found.get("hostname"),
                    "attachedRoutes": written.get("attachedRoutes"),
                    "problems": problems(written.get("conditions", ())),
                    "routes": rows,
                }
            )
        gateways.append(
            {
                "name": gateway,
                "addresses": [address["value"] for address in state.get("addresses", ())],
                "problems": problems(state.get("conditions", ())),
                "listeners": shown,
                "unattached": [
                    {"name": route, **routes[route]}
                    for route in sorted(parents_of.get(gateway, ()))
                    if route not in listed
                ],
            }
        )
    return {
        "errors": status.get("errors", []),
        "buckets": [None if bound == float("inf") else bound for bound in BUCKET_BOUNDS],
        "gateways": gateways,
    }

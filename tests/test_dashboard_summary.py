"""The dashboard document (/dashboard.json) from statuses, a routing table and metrics."""

from __future__ import annotations

from twistgw.admin.dashboard import problems, summary
from twistgw.metrics import Metrics
from twistgw.routing.ir import (
    Backend,
    Bind,
    Endpoint,
    HTTPListener,
    Match,
    Route,
    RoutingTable,
    VirtualHost,
)

ROUTES = 1000


def _condition(type_: str, status: str, reason: str = "R", message: str = "m") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def _route_status(name: str, *conditions: dict) -> dict:
    parent = {"parentRef": {"name": "gw"}, "conditions": list(conditions)}
    return {
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "ns"},
        "status": {"parents": [parent]},
    }


def test_problems_are_the_conditions_in_their_bad_state():
    found = problems(
        [
            _condition("Accepted", "True"),
            _condition("ResolvedRefs", "False", "BackendNotFound", "no such Service"),
            _condition("Conflicted", "False"),
            _condition("PartiallyInvalid", "True", "UnsupportedValue", "rule 2 dropped"),
        ]
    )
    assert found == [
        "ResolvedRefs (BackendNotFound): no such Service",
        "PartiallyInvalid (UnsupportedValue): rule 2 dropped",
    ]


def test_a_thousand_routes_with_traffic_and_problems():
    backend = Backend("ns/svc:80", 1, (Endpoint("10.0.0.1", 8080),))
    routes = tuple(
        Route(f"ns/r{index}", 0, Match(path=f"/{index}"), backends=(backend,))
        for index in range(ROUTES)
    )
    listener = HTTPListener("ns/gw/http", "ns/gw", None, (VirtualHost("*", routes),))
    table = RoutingTable((Bind("10.1.1.1", 80, "HTTP", (listener,)),))
    gateway = {
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "ns"},
        "status": {
            "addresses": [{"value": "10.1.1.1"}],
            "conditions": [_condition("Accepted", "True")],
            "listeners": [{"name": "http", "attachedRoutes": ROUTES, "conditions": []}],
        },
    }
    items = [
        gateway,
        *(_route_status(f"r{i}", _condition("Accepted", "True")) for i in range(ROUTES)),
    ]
    items[1] = _route_status("r0", _condition("ResolvedRefs", "False", "BackendNotFound", "gone"))
    items.append(_route_status("lost", _condition("Accepted", "False", "NoMatchingParent", "x")))
    metrics = Metrics()
    for code, seconds in ((200, 0.003), (200, 0.003), (503, 0.2)):
        metrics.request("ns/gw", "ns/r7", "0", "ns/svc:80", code, seconds)
    metrics.flush()
    metrics.endpoint_down("10.0.0.1:8080", True)  # (a health check took it out)

    # (its cost on 1,000 routes is a benchmark's business, not a test's: ~35 ms here)
    document = summary({"items": items, "errors": []}, table, metrics.registry)

    (shown,) = document["gateways"]
    assert shown["name"] == "ns/gw" and shown["addresses"] == ["10.1.1.1"]
    (http,) = shown["listeners"]
    assert (http["name"], http["port"], http["attachedRoutes"]) == ("http", 80, ROUTES)
    rows = {row["name"]: row for row in http["routes"]}
    assert len(rows) == ROUTES
    assert rows["ns/r0"]["problems"] == ["ResolvedRefs (BackendNotFound): gone"]
    r7 = rows["ns/r7"]
    assert (r7["requests"], r7["errors"]) == (3, 1)
    assert r7["buckets"][3] == 2 and r7["buckets"][-1] == 3  # cumulative, 5 ms and +Inf
    assert r7["backends"] == [
        {"name": "ns/svc:80", "endpoints": ["10.0.0.1:8080"], "invalid": False,
         "requests": 3, "errors": 1, "down": ["10.0.0.1:8080"]}
    ]  # fmt: skip
    assert rows["ns/r8"]["requests"] == 0 and rows["ns/r8"]["buckets"] is None
    assert shown["unattached"] == [
        {"name": "ns/lost", "kind": "HTTPRoute", "problems": ["Accepted (NoMatchingParent): x"]}
    ]

"""How a large but valid configuration translates: N HTTPRoutes (each with two rules
and a backend Service of its own) through the control plane's pure pipeline, assembly
(validation, generations) then translation, and the peak memory it takes; then one
route edited among them, as a watch event brings it (the other documents the same
objects) and as a re-read file brings it (every document a new, equal dict).

    .venv/bin/python benchmarks/translate_scale.py                 # 10,000 routes
    .venv/bin/python benchmarks/translate_scale.py --routes 1000
    .venv/bin/python benchmarks/translate_scale.py --routes 2000 --tenants
    .venv/bin/python benchmarks/translate_scale.py --worst-case 20
    .venv/bin/python benchmarks/translate_scale.py --worst-case 60 --listeners 2

``--tenants`` puts each route in a namespace of its own, reaching its Service in
``default`` through a ReferenceGrant there (one per route namespace).

``--worst-case N`` translates N of the largest HTTPRoutes the CRDs allow (16 hostnames,
128 matches) on a Gateway of ``--listeners`` listeners without hostnames (64, the most
a Gateway may have), each route expanding into listeners x 16 x 128 routing entries,
and reports the entries built, the routes refused for their expansion, the CPU of
translation and of compiling the table as a worker does, and the encoded table's size.
``--route-max-entries`` and ``--routing-table-max-entries`` set the bounds (0: none);
``--heavy`` gives every match 16 header matches and every rule 16 backendRefs and a
filter setting 16 headers (on each backendRef too), the most an entry may carry.
"""

from __future__ import annotations

import argparse
import copy
import gc
import pickle
import resource
import sys
import time

from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate

GW_API = "gateway.networking.k8s.io/v1"


def manifests(routes: int) -> list[dict]:
    """A class, a Gateway with one HTTP listener, and ``routes`` routes and Services."""
    documents: list[dict] = [
        {
            "apiVersion": GW_API,
            "kind": "GatewayClass",
            "metadata": {"name": "scale"},
            "spec": {"controllerName": "gateway.twistgw.dev/controller"},
        },
        {
            "apiVersion": GW_API,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "gatewayClassName": "scale",
                "addresses": [{"value": "127.0.0.1"}],
                "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}],
            },
        },
    ]
    for index in range(routes):
        documents += [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{index}", "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"svc-{index}",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": f"svc-{index}"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8000}],
                "endpoints": [{"addresses": ["127.0.0.1"]}],
            },
            {
                "apiVersion": GW_API,
                "kind": "HTTPRoute",
                "metadata": {"name": f"route-{index}", "namespace": "default"},
                "spec": {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": [f"host-{index % 100}.example.com"],
                    "rules": [
                        {
                            "matches": [{"path": {"type": "PathPrefix", "value": f"/r{index}"}}],
                            "backendRefs": [{"name": f"svc-{index}", "port": 80}],
                        },
                        {
                            "matches": [
                                {
                                    "path": {"type": "Exact", "value": f"/exact/{index}"},
                                    "headers": [{"name": "X-Pick", "value": str(index)}],
                                }
                            ],
                            "filters": [
                                {
                                    "type": "RequestHeaderModifier",
                                    "requestHeaderModifier": {
                                        "set": [{"name": "X-Route", "value": str(index)}]
                                    },
                                }
                            ],
                            "backendRefs": [{"name": f"svc-{index}", "port": 80}],
                        },
                    ],
                },
            },
        ]
    return documents


def tenants(documents: list[dict]) -> list[dict]:
    """``documents`` (from ``manifests``) with each route in a namespace of its own,
    allowed to reach its Service in ``default`` by a ReferenceGrant there."""
    documents = copy.deepcopy(documents)
    documents[1]["spec"]["listeners"][0]["allowedRoutes"] = {"namespaces": {"from": "All"}}
    grants = []
    for document in documents:
        if document["kind"] != "HTTPRoute":
            continue
        namespace = f"team-{document['metadata']['name']}"
        document["metadata"]["namespace"] = namespace
        document["spec"]["parentRefs"] = [{"name": "gw", "namespace": "default"}]
        for rule in document["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                ref["namespace"] = "default"
        grants.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1beta1",
                "kind": "ReferenceGrant",
                "metadata": {"name": namespace, "namespace": "default"},
                "spec": {
                    "from": [
                        {"group": GW_API.split("/")[0], "kind": "HTTPRoute", "namespace": namespace}
                    ],
                    "to": [{"group": "", "kind": "Service"}],
                },
            }
        )
    return documents + grants


def edited(documents: list[dict], routes: int, mark: str) -> list[dict]:
    """``documents`` with ``mark`` added to the path of one route's first rule (in a
    new dict)."""
    index = 2 + 3 * (routes // 2) + 2  # the middle route
    route = copy.deepcopy(documents[index])
    route["spec"]["rules"][0]["matches"][0]["path"]["value"] += mark
    return [*documents[:index], route, *documents[index + 1 :]]


def timed_change(
    assembler: ObjectAssembler, options: TranslateOptions, documents: list[dict], label: str
) -> None:
    """Assemble and translate ``documents`` after a first assembly, and print the costs."""
    validations = assembler.validations
    gc.collect()  # the earlier steps' garbage is not this step's cost
    started = time.process_time()
    snapshot = assembler.assemble({"scale.yaml": documents})
    assembled = time.process_time()
    translate(snapshot, options)
    translated = time.process_time()
    assert not snapshot.errors, snapshot.errors[:3]
    print(
        f"{label}: assembly {assembled - started:.3f} s CPU "
        f"({assembler.validations - validations} validated); "
        f"translation {translated - assembled:.2f} s CPU"
    )


def _heavy(rule: dict) -> dict:
    """``rule`` with the most a rule may carry: 16 header matches per match, a filter
    setting 16 headers, and 16 backendRefs with that filter each."""
    setter = {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": f"X-S{i}", "value": "v"} for i in range(16)]},
    }
    for match in rule["matches"]:
        match["headers"] = [{"name": f"X-M{i}", "value": "v"} for i in range(16)]
    rule["filters"] = [setter]
    rule["backendRefs"] = [{"name": f"svc-{i}", "port": 80, "filters": [setter]} for i in range(16)]
    return rule


def worst_case(routes: int, listeners: int, heavy: bool = False) -> list[dict]:
    """A class, a Gateway of ``listeners`` listeners without hostnames (one port each)
    and ``routes`` of the CRDs' largest HTTPRoutes attached to all of them; ``heavy``:
    their rules as ``_heavy`` makes them (with 16 Services to reach)."""
    documents = [d for d in manifests(16 if heavy else 0) if d["kind"] != "HTTPRoute"]
    documents[1]["spec"]["listeners"] = [
        {"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(listeners)
    ]
    shape = _heavy if heavy else dict
    for index in range(routes):
        documents.append(
            {
                "apiVersion": GW_API,
                "kind": "HTTPRoute",
                "metadata": {
                    "name": f"wide-{index:04}",
                    "namespace": "default",
                    "creationTimestamp": f"2026-01-01T{index // 3600:02}:"
                    f"{index // 60 % 60:02}:{index % 60:02}Z",
                },
                "spec": {
                    "parentRefs": [{"name": "gw"}],
                    "hostnames": [f"h{i}.example.com" for i in range(16)],
                    "rules": [
                        shape(
                            {
                                "matches": [
                                    {"path": {"value": f"/r{index}/{j}/{k}"}} for k in range(64)
                                ]
                            }
                        )
                        for j in range(2)
                    ],
                },
            }
        )
    return documents


def run_worst_case(
    routes: int, listeners: int, options: TranslateOptions, heavy: bool = False
) -> None:
    """Translate ``worst_case`` and report what it cost, the table and its compiling."""
    from twistgw.dataplane.http.router import Router

    snapshot = ObjectAssembler(GenerationTracker(time.time)).assemble(
        {"worst.yaml": worst_case(routes, listeners, heavy)}
    )
    assert not snapshot.errors, snapshot.errors[:3]
    gc.collect()
    started = time.process_time()
    translation = translate(snapshot, options)
    translated = time.process_time()
    encoded = pickle.dumps(translation.table, protocol=pickle.HIGHEST_PROTOCOL)
    pickled = time.process_time()
    for bind in pickle.loads(encoded).binds:
        Router(bind)
    compiled = time.process_time()
    entries = sum(
        len(vhost.routes)
        for bind in translation.table.binds
        for listener in bind.listeners
        for vhost in getattr(listener, "virtual_hosts", ())
    )
    refused = sum(
        1
        for status in translation.statuses
        if status.key.kind == "HTTPRoute"
        and any(
            c["type"] == "Accepted" and c["status"] == "False"
            for parent in status.status["parents"]
            for c in parent["conditions"]
        )
    )
    per_route = listeners * 16 * 128
    route_bound, table_bound = (
        f"{bound:,}" if bound < sys.maxsize else "none"
        for bound in (options.max_route_entries, options.max_table_entries)
    )
    print(
        f"{routes} routes x {per_route:,} entries on {listeners} listeners "
        f"(bounds: route {route_bound}, table {table_bound}): "
        f"{entries:,} entries built, {refused} routes refused"
    )
    per_entry = f"{(translated - started) / entries * 1e6:.1f} us/entry" if entries else "-"
    print(
        f"translation {translated - started:.2f} s CPU ({per_entry}); table "
        f"{len(encoded) / 1e6:.1f} MB encoded ({pickled - translated:.2f} s); "
        f"compiled as a worker does {compiled - pickled:.2f} s CPU"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--tenants", action="store_true", help="a namespace per route")
    parser.add_argument("--worst-case", type=int, metavar="N", help="N of the largest routes")
    parser.add_argument("--listeners", type=int, default=64, help="with --worst-case")
    parser.add_argument("--heavy", action="store_true", help="with --worst-case: full rules")
    parser.add_argument("--route-max-entries", type=int, help="with --worst-case; 0: none")
    parser.add_argument("--routing-table-max-entries", type=int, help="with --worst-case")
    args = parser.parse_args(argv)
    if args.worst_case is not None:
        bounds = {}
        for name, value in [
            ("max_route_entries", args.route_max_entries),
            ("max_table_entries", args.routing_table_max_entries),
        ]:
            if value is not None:
                bounds[name] = value or sys.maxsize
        run_worst_case(args.worst_case, args.listeners, TranslateOptions(**bounds), args.heavy)
        return 0
    configure = tenants if args.tenants else list
    documents = configure(manifests(args.routes))
    options = TranslateOptions(controller_name="gateway.twistgw.dev/controller")
    assembler = ObjectAssembler(GenerationTracker(time.time))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    snapshot = assembler.assemble({"scale.yaml": documents})
    assembled = time.process_time()
    translation = translate(snapshot, options)
    translated = time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    routes = sum(
        len(vhost.routes)
        for bind in translation.table.binds
        for listener in bind.listeners
        for vhost in getattr(listener, "virtual_hosts", ())
    )
    assert not snapshot.errors, snapshot.errors[:3]
    print(f"{args.routes} HTTPRoutes ({len(documents)} objects): {routes} compiled route matches")
    print(
        f"assembly (validation, generations) {assembled - started:.2f} s CPU; "
        f"translation {translated - assembled:.2f} s CPU; peak RSS {peak / 1024:.0f} MiB "
        f"({(peak - before) / 1024:.0f} MiB over the manifests already in memory)"
    )
    timed_change(assembler, options, edited(documents, args.routes, "-a"), "one route edited")
    reread = edited(configure(manifests(args.routes)), args.routes, "-b")
    timed_change(assembler, options, reread, "one route edited, whole file re-read")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

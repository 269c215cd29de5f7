"""How a large but valid configuration translates: N HTTPRoutes (each with two rules
and a backend Service of its own) through the control plane's pure pipeline, assembly
(validation, generations) then translation, and the peak memory it takes.

    .venv/bin/python benchmarks/translate_scale.py                 # 10,000 routes
    .venv/bin/python benchmarks/translate_scale.py --routes 1000
"""

from __future__ import annotations

import argparse
import resource
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    args = parser.parse_args(argv)
    documents = manifests(args.routes)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.process_time()
    snapshot = ObjectAssembler(GenerationTracker(time.time)).assemble({"scale.yaml": documents})
    assembled = time.process_time()
    translation = translate(
        snapshot, TranslateOptions(controller_name="gateway.twistgw.dev/controller")
    )
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

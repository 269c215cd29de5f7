"""Statuses stay within their CRDs' bounds however many objects refer to each other:
a BackendTLSPolicy used by more Gateways than its status may list names the first 16
(by namespace and name), once each."""

from __future__ import annotations

import time

from twistgw.options import address_pool
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate
from twistgw.translate.backendtls import MAX_ANCESTORS

GW_API = "gateway.networking.k8s.io/v1"


def _documents(gateways: int) -> list[dict]:
    documents = [
        {
            "apiVersion": GW_API,
            "kind": "GatewayClass",
            "metadata": {"name": "twistgw"},
            "spec": {"controllerName": "gateway.twistgw.dev/controller"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "svc", "namespace": "default"},
            "spec": {"ports": [{"name": "https", "port": 443}]},
        },
        {
            "apiVersion": GW_API,
            "kind": "BackendTLSPolicy",
            "metadata": {"name": "tls", "namespace": "default"},
            "spec": {
                "targetRefs": [{"group": "", "kind": "Service", "name": "svc"}],
                "validation": {"hostname": "svc.example.com", "wellKnownCACertificates": "System"},
            },
        },
    ]
    for index in reversed(range(gateways)):
        gateway = f"gw{index:02d}"
        listeners = [{"name": "http", "port": 80, "protocol": "HTTP"}]
        spec = {"gatewayClassName": "twistgw", "listeners": listeners}
        documents.append(
            {
                "apiVersion": GW_API,
                "kind": "Gateway",
                "metadata": {"name": gateway, "namespace": "default"},
                "spec": spec,
            }
        )
        rules = [{"backendRefs": [{"name": "svc", "port": 443}]} for _ in range(2)]
        documents.append(
            {
                "apiVersion": GW_API,
                "kind": "HTTPRoute",
                "metadata": {"name": f"to-{gateway}", "namespace": "default"},
                "spec": {"parentRefs": [{"name": gateway}], "rules": rules},
            }
        )
    return documents


def test_a_policy_lists_at_most_the_crds_number_of_ancestors() -> None:
    snapshot = ObjectAssembler(GenerationTracker(time.time)).assemble({"f": _documents(40)})
    translation = translate(snapshot, TranslateOptions(address_pool=address_pool("10.1.0.0/24")))
    (status,) = [s for s in translation.statuses if s.key.kind == "BackendTLSPolicy"]
    names = [a["ancestorRef"]["name"] for a in status.status["ancestors"]]
    assert names == [f"gw{index:02d}" for index in range(MAX_ANCESTORS)]

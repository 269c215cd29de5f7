"""Translation work grows linearly with listeners however they are spread over
Gateways, ListenerSets and ports: the work is counted (not timed), or the result
checked at a size that quadratic work would take minutes to reach."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.certs import CA, ca_config_map, tls_secret
from twistgw.api.resource import ObjectKey, Resource
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, Translation, certificates, gateways, translate
from twistgw.translate.conditions import Conditions
from twistgw.translate.model import WILDCARD_ADDRESS

GW_API = "gateway.networking.k8s.io/v1"
CLASS = {
    "apiVersion": GW_API,
    "kind": "GatewayClass",
    "metadata": {"name": "gc"},
    "spec": {"controllerName": "gateway.twistgw.dev/controller"},
}


def _created(index: int) -> str:
    return f"2026-01-01T{index // 3600:02}:{index // 60 % 60:02}:{index % 60:02}Z"


def _snapshot(documents: list[dict]) -> Snapshot:
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble({"x.yaml": documents})
    assert not snapshot.errors, snapshot.errors[:2]
    return snapshot


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def _statuses(translation: Translation, kind: str) -> list[dict[str, Any]]:
    return [s.status for s in translation.statuses if s.key.kind == kind]


def test_listener_set_listeners_are_checked_in_constant_work(monkeypatch):
    """20 ListenerSets of 64 HTTP listeners on port 80: each listener is compared with
    the protocols on its port, not with the up to 1,280 listeners there before it."""
    sets, per = 20, 64
    documents = [
        CLASS,
        {
            "apiVersion": GW_API,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "gatewayClassName": "gc",
                "allowedListeners": {"namespaces": {"from": "All"}},
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            },
        },
    ]
    for i in range(sets):
        listeners = [
            {"name": f"l{k}", "port": 80, "protocol": "HTTP", "hostname": f"h{k}.s{i}.example"}
            for k in range(per)
        ]
        listeners[0]["hostname"] = "h0.s0.example"  # after the first set, a conflict
        documents.append(
            {
                "apiVersion": GW_API,
                "kind": "ListenerSet",
                "metadata": {
                    "name": f"ls{i}",
                    "namespace": "default",
                    "creationTimestamp": _created(i),
                },
                "spec": {"parentRef": {"name": "gw"}, "listeners": listeners},
            }
        )
    compared = 0
    compatible = gateways._compatible

    def counting(one: str, other: str) -> bool:
        nonlocal compared
        compared += 1
        return compatible(one, other)

    monkeypatch.setattr(gateways, "_compatible", counting)
    translation = translate(_snapshot(documents), TranslateOptions())
    assert compared <= 2 * (1 + sets * per)  # was 820,000
    statuses = _statuses(translation, "ListenerSet")
    assert all(_condition(s, "Accepted")["status"] == "True" for s in statuses)
    conflicted = [_condition(s["listeners"][0], "Conflicted") for s in statuses]
    assert [c["reason"] for c in conflicted] == ["NoConflicts"] + ["HostnameConflict"] * 19
    assert conflicted[1]["message"] == (
        "listener l0 has the same port, protocol family and hostname"
    )


def _gateway_state(name: str, address: str, ports: list[int]) -> gateways.GatewayState:
    """A Gateway on ``address`` with an accepted HTTP listener on each of ``ports``."""
    key = ObjectKey("Gateway", "default", name)
    resource = Resource(key, GW_API, 1, "", name, {}, {}, {})
    gateway = gateways.GatewayState(resource, Conditions(1), addresses=[address])
    for index, port in enumerate(ports):
        spec = {"name": f"l{index}", "port": port, "protocol": "HTTP"}
        listener = gateways.ListenerState(gateway, index, spec, Conditions(1))
        listener.conditions.set("Accepted", True, "Accepted")
        gateway.listeners.append(listener)
    return gateway


def test_port_owners_are_looked_up_not_searched():
    """1,000 Gateways on the wildcard address, 64 ports each: each listener looks its
    port up among the 64,000 claimed before it (a search of them all took minutes)."""
    states = [
        _gateway_state(f"gw{i}", WILDCARD_ADDRESS, [1 + 64 * i + k for k in range(64)])
        for i in range(1000)
    ]
    states.append(_gateway_state("specific", "10.0.0.1", [65000]))
    late = _gateway_state("late", WILDCARD_ADDRESS, [1, 65000, 65001])
    gateways._port_clashes([*states, late])
    assert all(li.accepted for gateway in states for li in gateway.listeners)
    assert [li.conditions.get("Accepted")["message"] for li in late.listeners] == [
        "port 1 on 0.0.0.0 is already used by Gateway default/gw0",
        "port 65000 on 0.0.0.0 is already used by Gateway default/specific",
        "Accepted",
    ]


def _noting(parse: Callable[[Resource], Any], kinds: list[str]) -> Callable[[Resource], Any]:
    """``parse``, noting the kind of each object it is given in ``kinds``."""

    def noted(resource: Resource) -> Any:
        kinds.append(resource.kind)
        return parse(resource)

    return noted


def test_certificates_and_ca_bundles_are_parsed_once(monkeypatch):
    """4 Gateways of 64 HTTPS listeners naming one Secret, and the same ConfigMap 8
    times for client validation: each is parsed once (not 256 and 2,048 times) and the
    listeners share one bundle holding the CA once."""
    ca = CA()
    documents = [CLASS, tls_secret("cert", ca.issue("h.example")), ca_config_map("ca", ca.pem)]
    refs = [{"group": "", "kind": "ConfigMap", "name": "ca"}] * 4
    refs += [{"group": "", "kind": "ConfigMap", "name": "ca", "namespace": "default"}] * 4
    for g in range(4):
        listeners = [
            {
                "name": f"l{k}",
                "port": 443 + g,
                "protocol": "HTTPS",
                "hostname": f"h{k}.example",
                "tls": {"certificateRefs": [{"name": "cert"}]},
            }
            for k in range(64)
        ]
        validation = {"caCertificateRefs": refs}
        spec = {
            "gatewayClassName": "gc",
            "tls": {"frontend": {"default": {"validation": validation}}},
            "listeners": listeners,
        }
        documents.append(
            {
                "apiVersion": GW_API,
                "kind": "Gateway",
                "metadata": {"name": f"gw{g}", "namespace": "default"},
                "spec": spec,
            }
        )
    parsed: list[str] = []
    for name in ("_pair", "_ca_certificates"):
        monkeypatch.setattr(certificates, name, _noting(getattr(certificates, name), parsed))
    translation = translate(_snapshot(documents), TranslateOptions())
    assert sorted(parsed) == ["ConfigMap", "Secret"]
    bundles = [
        listener.tls.client_validation.ca_certificates
        for bind in translation.table.binds
        for listener in bind.listeners
    ]
    assert len(bundles) == 256
    assert bundles[0] == ca.pem
    assert all(bundle is bundles[0] for bundle in bundles)

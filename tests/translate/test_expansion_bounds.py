"""The expansion bounds hold for the worst configurations the CRDs allow: the entries
the translator builds are counted (not timed), and never exceed the table's bound
however many routes ask for more."""

from __future__ import annotations

from typing import Any

import pytest

import twistgw.translate as translator
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, Translation, translate
from twistgw.translate.budget import DEFAULT_MAX_ROUTE_ENTRIES, DEFAULT_MAX_TABLE_ENTRIES

GW_API = "gateway.networking.k8s.io/v1"
#: The CRDs' largest HTTPRoute: 16 hostnames, 2 rules of 64 matches (128 in all).
HOSTNAMES = [f"h{i}.example.com" for i in range(16)]


def _gateway(listeners: list[dict]) -> list[dict]:
    return [
        {
            "apiVersion": GW_API,
            "kind": "GatewayClass",
            "metadata": {"name": "gc"},
            "spec": {"controllerName": "gateway.twistgw.dev/controller"},
        },
        {
            "apiVersion": GW_API,
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "gatewayClassName": "gc",
                "addresses": [{"value": "127.0.0.1"}],
                "listeners": listeners,
            },
        },
    ]


def _largest_route(index: int, parent_refs: list[dict]) -> dict:
    """The CRDs' largest HTTPRoute, created ``index`` seconds into the day."""
    return {
        "apiVersion": GW_API,
        "kind": "HTTPRoute",
        "metadata": {
            "name": f"r{index:03}",
            "namespace": "default",
            "creationTimestamp": f"2026-01-01T00:{index // 60:02}:{index % 60:02}Z",
        },
        "spec": {
            "parentRefs": parent_refs,
            "hostnames": HOSTNAMES,
            "rules": [
                {"matches": [{"path": {"value": f"/r{index}/{j}/{k}"}} for k in range(64)]}
                for j in range(2)
            ],
        },
    }


def _snapshot(documents: list[dict]) -> Snapshot:
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble({"x.yaml": documents})
    assert not snapshot.errors, snapshot.errors[:2]
    return snapshot


def _counted_translation(
    monkeypatch: pytest.MonkeyPatch, snapshot: Snapshot, options: TranslateOptions
) -> tuple[Translation, int]:
    """The translation, and how many routing entries the translator built (each is
    placed in precedence order once)."""
    built = 0
    precedence = translator._precedence

    def counting(*args: Any) -> tuple:
        nonlocal built
        built += 1
        return precedence(*args)

    monkeypatch.setattr(translator, "_precedence", counting)
    return translate(snapshot, options), built


def _entries(translation: Translation) -> int:
    return sum(
        len(vhost.routes)
        for bind in translation.table.binds
        for listener in bind.listeners
        for vhost in getattr(listener, "virtual_hosts", ())
    )


def _accepted_conditions(translation: Translation, name: str) -> list[dict]:
    """Route ``name``'s Accepted condition on each of its parents."""
    (status,) = [s for s in translation.statuses if s.key.name == name]
    return [
        next(c for c in parent["conditions"] if c["type"] == "Accepted")
        for parent in status.status["parents"]
    ]


def _accepted(translation: Translation) -> dict[str, list[str]]:
    """HTTPRoute name -> each parent's Accepted reason."""
    return {
        status.key.name: [c["reason"] for c in _accepted_conditions(translation, status.key.name)]
        for status in translation.statuses
        if status.key.kind == "HTTPRoute"
    }


def test_the_largest_routes_on_64_listeners_build_nothing(monkeypatch):
    """Each would expand into 64 x 16 x 128 = 131,072 entries (2.6 million for the 20):
    refused before any is built."""
    listeners = [{"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(64)]
    routes = [_largest_route(i, [{"name": "gw"}]) for i in range(20)]
    translation, built = _counted_translation(
        monkeypatch, _snapshot(_gateway(listeners) + routes), TranslateOptions()
    )
    assert built == _entries(translation) == 0
    assert set(map(tuple, _accepted(translation).values())) == {("UnsupportedValue",)}
    (accepted,) = _accepted_conditions(translation, "r019")
    assert "131,072 routing entries" in accepted["message"]
    assert "4,096 a route may have" in accepted["message"]


def test_the_table_bound_holds_and_the_oldest_routes_keep_their_entries(monkeypatch):
    """Routes of exactly the per-route bound (16 hostnames x 128 matches on two
    listeners) until the table is full: the oldest fill it, the rest are refused, and
    the translator builds no more entries than the bound."""
    assert DEFAULT_MAX_ROUTE_ENTRIES == 16 * 128 * 2
    fitting = DEFAULT_MAX_TABLE_ENTRIES // DEFAULT_MAX_ROUTE_ENTRIES
    listeners = [{"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(2)]
    routes = [_largest_route(i, [{"name": "gw"}]) for i in range(fitting + 5)]
    routes.reverse()  # the files' order does not matter, the routes' age does
    translation, built = _counted_translation(
        monkeypatch, _snapshot(_gateway(listeners) + routes), TranslateOptions()
    )
    assert built == _entries(translation) == fitting * DEFAULT_MAX_ROUTE_ENTRIES
    assert built <= DEFAULT_MAX_TABLE_ENTRIES
    accepted = _accepted(translation)
    assert [name for name, reasons in sorted(accepted.items()) if reasons == ["Accepted"]] == [
        f"r{i:03}" for i in range(fitting)
    ]
    assert all(accepted[f"r{i:03}"] == ["UnsupportedValue"] for i in range(fitting, fitting + 5))


def test_a_route_bound_counts_all_its_parents(monkeypatch):
    """32 parentRefs of one listener each cannot multiply what a route may take."""
    listeners = [{"name": f"l{i}", "port": 8000 + i, "protocol": "HTTP"} for i in range(32)]
    refs = [{"name": "gw", "sectionName": f"l{i}"} for i in range(32)]
    translation, built = _counted_translation(
        monkeypatch, _snapshot(_gateway(listeners) + [_largest_route(0, refs)]), TranslateOptions()
    )
    assert _accepted(translation)["r000"] == ["Accepted"] * 2 + ["UnsupportedValue"] * 30
    assert built == DEFAULT_MAX_ROUTE_ENTRIES


def test_tls_routes_count_one_entry_per_hostname_and_listener():
    listeners = [
        {
            "name": f"tls{i}",
            "port": 9000 + i,
            "protocol": "TLS",
            "tls": {"mode": "Passthrough"},
        }
        for i in range(3)
    ]
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TLSRoute",
        "metadata": {"name": "tls", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": ["a.example.com", "b.example.com", "c.example.com"],
            "rules": [{"backendRefs": [{"name": "svc", "port": 443}]}] * 2,
        },
    }
    snapshot = _snapshot(_gateway(listeners) + [route])
    (accepted,) = _accepted_conditions(translate(snapshot, TranslateOptions()), "tls")
    assert accepted["reason"] == "Accepted"
    bounded = TranslateOptions(max_route_entries=8, max_table_entries=8)
    (accepted,) = _accepted_conditions(translate(snapshot, bounded), "tls")
    assert accepted["reason"] == "UnsupportedValue"
    assert accepted["message"].startswith("The route would expand into 9 routing entries")

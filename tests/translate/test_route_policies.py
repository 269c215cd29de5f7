"""The timeouts and retry policies of the golden case ``httproute-timeouts-retry``, as
the routing table holds them (the case's route lines do not show policies)."""

from __future__ import annotations

import pathlib

import attrs
import yaml

from twistgw.options import address_pool
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate

CASE = pathlib.Path(__file__).parent / "cases" / "httproute-timeouts-retry.yaml"


def _plain(value) -> dict | None:
    if value is None:
        return None
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(value).items()}


def test_policies_reach_the_routing_table() -> None:
    case = yaml.safe_load(CASE.read_text())
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble(
        {str(CASE): case["objects"]}
    )
    options = TranslateOptions(
        controller_name="gateway.twistgw.dev/controller",
        address_pool=address_pool(case["options"]["addressPool"]),
    )
    table = translate(snapshot, options).table
    found = {
        route.match.path: {"timeouts": _plain(route.timeouts), "retry": _plain(route.retry)}
        for bind in table.binds
        for listener in bind.listeners
        for vhost in listener.virtual_hosts
        for route in vhost.routes
    }
    assert found == case["policies"]

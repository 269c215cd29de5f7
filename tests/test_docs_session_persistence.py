"""docs/policies/session-persistence.md keeps up with the code: its example is valid,
accepted, and puts the sessions it describes in the routing table."""

from __future__ import annotations

import pathlib
import re

import yaml

from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate

PAGE = pathlib.Path(__file__).parent.parent / "docs" / "policies" / "session-persistence.md"


def _example() -> Snapshot:
    block = re.search(r"```yaml\n(.*?)```", PAGE.read_text(), re.S).group(1)
    documents = list(yaml.safe_load_all(block))
    return ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble({"example.yaml": documents})


def test_the_example_is_accepted_with_its_sessions() -> None:
    snapshot = _example()
    assert not snapshot.errors
    translation = translate(snapshot, TranslateOptions())
    route = next(s for s in translation.statuses if s.key.kind == "HTTPRoute")
    conditions = {c["type"]: c for c in route.status["parents"][0]["conditions"]}
    assert conditions["Accepted"]["status"] == "True"
    assert "PartiallyInvalid" not in conditions
    sessions = {
        r.match.path: r.session
        for bind in translation.table.binds
        for listener in bind.listeners
        for host in listener.virtual_hosts
        for r in host.routes
    }
    assert sessions == {
        "/cart": ir.SessionPersistence("Cookie", "cart-session", "HTTPRoute/shop/shop/[0]", 28800),
        "/account": ir.SessionPersistence(
            "Cookie",
            "account-session",
            "HTTPRoute/shop/shop/account",
            86400,
            permanent=True,
            path="/account",
        ),
        "/api": ir.SessionPersistence("Header", "X-Cart-Session", "HTTPRoute/shop/shop/[2]", 1800),
    }

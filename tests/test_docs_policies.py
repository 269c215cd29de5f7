"""Every page of docs/policies/ keeps up with the code: its example is valid, every
policy in it is accepted, and the routes it targets carry what it describes."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from twistgw.routing import ir
from twistgw.sources.assembly import ObjectAssembler
from twistgw.sources.generations import GenerationTracker
from twistgw.translate import TranslateOptions, translate

PAGES = pathlib.Path(__file__).parent.parent / "docs" / "policies"
#: Each page and the ``ir.Policies`` field its example must set on a route.
SECTIONS = {
    "rate-limits.md": "rate_limit",
    "ip-access.md": "ip_access",
    "basic-auth.md": "basic_auth",
    "jwt.md": "jwt",
    "ext-auth.md": "ext_auth",
    "compression.md": "compression",
    "health-checks.md": "health_check",
}


def _routes(table: ir.RoutingTable) -> list[ir.Route]:
    return [
        route
        for bind in table.binds
        for listener in bind.listeners
        for host in listener.virtual_hosts
        for route in host.routes
    ]


@pytest.mark.parametrize("page", sorted(SECTIONS))
def test_the_pages_example_is_accepted_and_in_force(page) -> None:
    block = re.search(r"```yaml\n(.*?)```", (PAGES / page).read_text(), re.S).group(1)
    documents = list(yaml.safe_load_all(block))
    snapshot = ObjectAssembler(GenerationTracker(lambda: 0.0)).assemble({page: documents})
    assert not snapshot.errors
    translation = translate(snapshot, TranslateOptions())
    policies = [s for s in translation.statuses if s.key.kind.endswith("Policy")]
    assert policies
    for status in policies:
        for ancestor in status.status["ancestors"]:
            condition = ancestor["conditions"][0]
            assert (condition["status"], condition["reason"]) == ("True", "Accepted"), status
    assert any(
        route.policies is not None and getattr(route.policies, SECTIONS[page]) is not None
        for route in _routes(translation.table)
    )


def test_every_page_is_listed_in_the_index() -> None:
    index = (PAGES / "README.md").read_text()
    for page in PAGES.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, page.name

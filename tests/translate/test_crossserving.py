"""Cross serving claims: the indexed lookup finds what comparing every pair of
hostnames finds, and the first claim wins."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twistgw.hostnames import wildcard_matches
from twistgw.translate.crossserving import HostnameClaims


def meet(a: str, b: str) -> bool:
    """Whether two hostnames ("*": any) have a host in common, pair by pair."""
    return "*" in (a, b) or a == b or wildcard_matches(a, b) or wildcard_matches(b, a)


labels = st.sampled_from(["a", "b"])
names = st.lists(labels, min_size=1, max_size=3).map(".".join)
hostnames = st.one_of(names, names.map(lambda n: "*." + n), st.just("*"))
routes = st.lists(
    st.tuples(st.sampled_from(["HTTPRoute", "GRPCRoute", "TLSRoute"]), st.sampled_from([0, 0, 1])),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize(
    ("held", "offered", "meets"),
    [
        ("a.b", "a.b", True),
        ("a.b", "b", False),
        ("*.b", "a.b", True),
        ("*.b", "b", False),
        ("*.b", "x.a.b", True),
        ("*.a.b", "*.b", True),
        ("*.b", "*.a.b", True),
        ("*.a.b", "*.c.b", False),
        ("x.a.b", "*.b", True),
        ("a.b", "*.a.b", False),
        ("*", "a.b", True),
        ("*.b", "*", True),
    ],
)
def test_hostnames_meet(held: str, offered: str, meets: bool) -> None:
    claims, listener = HostnameClaims(), object()
    holder = SimpleNamespace(kind="HTTPRoute", name="held")
    claims.claim(listener, holder, [held])
    route = SimpleNamespace(kind="GRPCRoute", name="offered")
    assert (claims.rival(listener, route, [offered]) is holder) is meets
    assert meet(held, offered) is meets


@given(routes, st.data())
def test_rival_is_the_first_claim_that_meets(offered: list, data: st.DataObject) -> None:
    claims, held = HostnameClaims(), []
    listeners = [object(), object()]
    for index, (kind, listener) in enumerate(offered):
        route = SimpleNamespace(kind=kind, name=str(index))
        hosts = data.draw(st.lists(hostnames, max_size=2))
        expected = next(
            (
                holder
                for holder_listener, holder, held_hosts in held
                if holder_listener == listener
                and {holder.kind, kind} == {"HTTPRoute", "GRPCRoute"}
                and any(meet(a, b) for a in hosts for b in held_hosts)
            ),
            None,
        )
        assert claims.rival(listeners[listener], route, hosts) is expected
        if expected is None:
            claims.claim(listeners[listener], route, hosts)
            held.append((listener, route, hosts))


def test_thousands_of_claims_on_one_listener_are_checked_by_index() -> None:
    """6,000 routes of 16 hostnames each: a scan of every claim made this 10^9 pairs."""
    claims, listener = HostnameClaims(), object()
    for index in range(3000):
        for kind in ("HTTPRoute", "GRPCRoute"):
            route = SimpleNamespace(kind=kind, name=f"{kind}{index}")
            hosts = [f"h{j}.{kind.lower()}{index}.example.com" for j in range(16)]
            assert claims.rival(listener, route, hosts) is None
            claims.claim(listener, route, hosts)
    late = SimpleNamespace(kind="GRPCRoute", name="late")
    assert claims.rival(listener, late, ["*.httproute2999.example.com"]).name == "HTTPRoute2999"
    assert claims.rival(listener, late, ["*.example.com"]).name == "HTTPRoute0"

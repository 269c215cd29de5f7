"""The real client's address, and address lists to judge it by.

The peer of the connection is the client unless it is a proxy the operator trusts
(``--trusted-proxies``); then ``X-Forwarded-For`` is read from its right end, each
trusted hop skipped, and the first address left is the client (as nginx's realip
module does with ``real_ip_recursive``). A malformed entry ends the walk at the hop
that wrote it."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from twistgw.dataplane.http.messages import Headers

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: X-Forwarded-For entries read at most (a client may send any number).
MAX_HOPS = 32


#: Addresses parsed, by their text (kept per process; emptied when this many).
PARSED_CACHE = 4096
_parsed: dict[bytes, Address | None] = {}


def peer_address(peer: bytes) -> Address | None:
    """``parse_address`` of a connection's peer, remembered (peers repeat: each
    request on a connection, each connection of a client)."""
    try:
        return _parsed[peer]
    except KeyError:
        if len(_parsed) >= PARSED_CACHE:
            _parsed.clear()
        found = _parsed[peer] = parse_address(peer)
        return found


def parse_address(text: bytes | str) -> Address | None:
    """An IP address (an IPv4-mapped IPv6 address as the IPv4 one); None if it is none."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Networks:
    """A set of CIDRs, looked up by prefix length: a handful of set lookups per
    address however many networks there are."""

    __slots__ = ("_v4", "_v6")

    def __init__(self, cidrs: Iterable[str]) -> None:
        self._v4: dict[int, set[int]] = {}
        self._v6: dict[int, set[int]] = {}
        for cidr in cidrs:
            network = ipaddress.ip_network(cidr, strict=False)
            by_length = self._v4 if network.version == 4 else self._v6
            shift = network.max_prefixlen - network.prefixlen
            by_length.setdefault(shift, set()).add(int(network.network_address) >> shift)

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def __contains__(self, address: Address) -> bool:
        by_length = self._v4 if address.version == 4 else self._v6
        value = int(address)
        return any(value >> shift in prefixes for shift, prefixes in by_length.items())


def client_address(peer: bytes, headers: Headers, trusted: Networks) -> Address | None:
    """The client's address for a request from ``peer`` with ``headers``."""
    address = peer_address(peer)
    if address is None or not trusted or address not in trusted:
        return address
    hops: list[bytes] = []
    for name, value in headers:
        if name == b"x-forwarded-for":
            hops += value.split(b",")
    for hop in reversed(hops[-MAX_HOPS:]):
        found = parse_address(hop)
        if found is None:
            return address
        address = found
        if address not in trusted:
            return address
    return address

"""The PROXY protocol header without sockets: bytes in, header (or error) out, for
every split of valid headers, versions 1 and 2; then the layer a ``--proxy-protocol``
port puts in front of its entry factory, on a test reactor: the header's source
becomes the peer the HTTP connection sees, a connection without a valid header is
closed, and one that does not finish its header within the deadline too."""

from __future__ import annotations

import os
import socket
import struct

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock

from tests.http.test_no_cycles import Transport
from twistgw.dataplane.plane import DataPlane
from twistgw.dataplane.proxyprotocol import (
    MAX_V2_LENGTH,
    V1_MAX,
    V2_SIGNATURE,
    HeaderError,
    HeaderReader,
    Parsed,
    ProxyHeader,
    parse,
)
from twistgw.ipc.settings import DataPlaneSettings
from twistgw.metrics import Metrics
from twistgw.routing import ir

REQUEST = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
NOOP, ALPN, CUSTOM = 0x04, 0x01, 0xE0


def v2(command: int, family_protocol: int, block: bytes, version: int = 2) -> bytes:
    """A version 2 header: signature, version and command, family and protocol, block."""
    return (
        V2_SIGNATURE
        + bytes([version << 4 | command, family_protocol])
        + (struct.pack("!H", len(block)) + block)
    )


def inet(source: str, destination: str, sport: int, dport: int) -> bytes:
    return (
        socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", sport, dport)
    )


def inet6(source: str, destination: str, sport: int, dport: int) -> bytes:
    return (
        socket.inet_pton(socket.AF_INET6, source)
        + socket.inet_pton(socket.AF_INET6, destination)
        + struct.pack("!HH", sport, dport)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def stream(version, family, source=None, destination=None) -> ProxyHeader:
    return ProxyHeader(version, "PROXY", family, "STREAM", source, destination)


KEEP_V1 = ProxyHeader(1, "PROXY", "UNSPEC", "UNSPEC")
IPV6_FULL = "2001:0DB8:0000:0000:0000:0000:0000:00FF"
UNKNOWN_LONGEST = (
    b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
)

#: (name, header bytes, what it reads as)
VALID = [
    (
        "v1 TCP4",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n",
        stream(1, "INET", ("192.0.2.7", 56324), ("198.51.100.1", 443)),
    ),
    (
        "v1 TCP4 longest",
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        stream(1, "INET", ("255.255.255.255", 65535), ("255.255.255.255", 65535)),
    ),
    (
        "v1 TCP4 zeros",
        b"PROXY TCP4 0.0.0.0 10.0.0.1 0 0\r\n",
        stream(1, "INET", ("0.0.0.0", 0), ("10.0.0.1", 0)),
    ),
    (
        "v1 TCP6",
        b"PROXY TCP6 2001:db8::1 ::1 40000 8443\r\n",
        stream(1, "INET6", ("2001:db8::1", 40000), ("::1", 8443)),
    ),
    (
        "v1 TCP6 uncompressed, upper case",
        f"PROXY TCP6 {IPV6_FULL} {IPV6_FULL} 1 2\r\n".encode(),
        stream(1, "INET6", ("2001:db8::ff", 1), ("2001:db8::ff", 2)),
    ),
    ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n", KEEP_V1),
    ("v1 UNKNOWN with fields", b"PROXY UNKNOWN 1.2.3.4 whatever, ignored\r\n", KEEP_V1),
    ("v1 UNKNOWN, 107 bytes", UNKNOWN_LONGEST, KEEP_V1),
    (
        "v2 PROXY TCP over IPv4",
        v2(1, 0x11, inet("203.0.113.9", "10.1.2.3", 51000, 8080)),
        stream(2, "INET", ("203.0.113.9", 51000), ("10.1.2.3", 8080)),
    ),
    (
        "v2 PROXY TCP over IPv6",
        v2(1, 0x21, inet6("2001:db8::42", "fd00::1", 3000, 443)),
        stream(2, "INET6", ("2001:db8::42", 3000), ("fd00::1", 443)),
    ),
    (
        "v2 PROXY with TLVs",
        v2(
            1,
            0x11,
            inet("203.0.113.9", "10.1.2.3", 1, 2)
            + tlv(ALPN, b"h2")
            + tlv(NOOP, b"")
            + tlv(CUSTOM, b"x" * 300),
        ),
        stream(2, "INET", ("203.0.113.9", 1), ("10.1.2.3", 2)),
    ),
    (
        "v2 PROXY, block of the largest length",
        v2(1, 0x11, inet("203.0.113.9", "10.1.2.3", 1, 2) + tlv(NOOP, bytes(MAX_V2_LENGTH - 15))),
        stream(2, "INET", ("203.0.113.9", 1), ("10.1.2.3", 2)),
    ),
    ("v2 LOCAL", v2(0, 0x00, b""), ProxyHeader(2, "LOCAL", "UNSPEC", "UNSPEC")),
    (
        "v2 LOCAL with addresses (ignored)",
        v2(0, 0x11, inet("203.0.113.9", "10.1.2.3", 1, 2)),
        ProxyHeader(2, "LOCAL", "INET", "STREAM"),
    ),
    (
        "v2 LOCAL, block unread",
        v2(0, 0x11, b"\x00\x01"),
        ProxyHeader(2, "LOCAL", "INET", "STREAM"),
    ),
    ("v2 PROXY UNSPEC", v2(1, 0x00, b"any bytes"), ProxyHeader(2, "PROXY", "UNSPEC", "UNSPEC")),
    (
        "v2 PROXY UDP over IPv4 (kept as UNSPEC)",
        v2(1, 0x12, inet("203.0.113.9", "10.1.2.3", 1, 2)),
        ProxyHeader(2, "PROXY", "INET", "DGRAM"),
    ),
    (
        "v2 PROXY UNIX stream (kept as UNSPEC)",
        v2(1, 0x31, b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")),
        ProxyHeader(2, "PROXY", "UNIX", "STREAM"),
    ),
]

#: (name, bytes, reason)
MALFORMED = [
    ("HTTP instead", REQUEST, "malformed"),
    ("TLS instead", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "malformed"),
    ("lower case", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("no space after PROXY", b"PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("unknown protocol", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("UDP4", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("UNKNOWN glued", b"PROXY UNKNOWNX\r\n", "malformed"),
    ("lone LF", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "malformed"),
    ("lone CR", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET", "malformed"),
    ("LF inside", b"PROXY UNKNOWN a\nb\r\n", "malformed"),
    ("CR inside", b"PROXY UNKNOWN a\rb\r\n", "malformed"),
    ("two spaces", b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("tab", b"PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("trailing space", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "malformed"),
    ("a field missing", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
    ("a field too many", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed"),
    ("nothing after TCP4", b"PROXY TCP4\r\n", "malformed"),
    ("leading zero in address", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("octet past 255", b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "malformed"),
    ("three octets", b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "malformed"),
    ("IPv4 as a number", b"PROXY TCP4 16909060 5.6.7.8 1 2\r\n", "malformed"),
    ("IPv6 on TCP4", b"PROXY TCP4 ::1 ::1 1 2\r\n", "malformed"),
    ("IPv4 on TCP6", b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "malformed"),
    ("IPv6 zone", b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "malformed"),
    ("IPv6 dotted tail", b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", "malformed"),
    ("IPv6 two double colons", b"PROXY TCP6 1::2::3 ::1 1 2\r\n", "malformed"),
    ("IPv6 group of 5 digits", b"PROXY TCP6 12345::1 ::1 1 2\r\n", "malformed"),
    ("leading zero in port", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "malformed"),
    ("port past 65535", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "malformed"),
    ("signed port", b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "malformed"),
    ("empty port", b"PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n", "malformed"),
    ("108 bytes", UNKNOWN_LONGEST[:-2] + b"0\r\n", "too_large"),
    ("no CRLF in 107 bytes", b"PROXY UNKNOWN " + b"a" * 200, "too_large"),
    ("v2 signature wrong", V2_SIGNATURE[:7] + b"X" + V2_SIGNATURE[8:] + bytes(4), "malformed"),
    ("v2 version 1", v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2), version=1), "malformed"),
    ("v2 version 3", v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2), version=3), "malformed"),
    ("v2 command 2", v2(2, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2)), "malformed"),
    ("v2 family 4", v2(1, 0x41, inet("1.2.3.4", "5.6.7.8", 1, 2)), "malformed"),
    ("v2 protocol 3", v2(1, 0x13, inet("1.2.3.4", "5.6.7.8", 1, 2)), "malformed"),
    ("v2 IPv4 block short", v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2)[:11]), "malformed"),
    ("v2 IPv6 block short", v2(1, 0x21, inet6("::1", "::2", 1, 2)[:35]), "malformed"),
    ("v2 UNIX block short", v2(1, 0x31, bytes(215)), "malformed"),
    (
        "v2 TLV truncated",
        v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00"),
        "malformed",
    ),
    (
        "v2 TLV past the block",
        v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + b"\x04\x00\x05abcd"),
        "malformed",
    ),
    (
        "v2 block past the bound",
        v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + tlv(NOOP, bytes(MAX_V2_LENGTH - 14))),
        "too_large",
    ),
]


@pytest.mark.parametrize(("name", "header", "expected"), VALID, ids=[v[0] for v in VALID])
def test_a_valid_header_reads_at_every_split(name, header, expected):
    assert parse(header) == (expected, len(header))
    data = header + REQUEST
    for split in range(len(data) + 1):
        reader = HeaderReader()
        first = reader.feed(data[:split])
        if split < len(header):
            assert first is None, split
            assert reader.feed(data[split:]) == Parsed(expected, REQUEST), split
        else:
            assert first == Parsed(expected, data[len(header) : split]), split


@pytest.mark.parametrize(("name", "header", "expected"), VALID, ids=[v[0] for v in VALID])
def test_a_valid_header_reads_byte_by_byte(name, header, expected):
    reader = HeaderReader()
    for position in range(len(header) - 1):
        assert reader.feed(header[position : position + 1]) is None, position
    assert reader.feed(header[-1:] + b"rest") == Parsed(expected, b"rest")


def test_nothing_after_the_header_leaves_no_rest():
    assert HeaderReader().feed(b"PROXY UNKNOWN\r\n") == Parsed(KEEP_V1, b"")


def test_nothing_yet_needs_more():
    assert HeaderReader().feed(b"") is None


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_header_is_refused_whole_and_byte_by_byte(name, data, reason):
    with pytest.raises(HeaderError) as whole:
        HeaderReader().feed(data + REQUEST)
    assert whole.value.reason == reason
    reader = HeaderReader()
    with pytest.raises(HeaderError) as bytewise:
        for position in range(len(data)):
            assert reader.feed(data[position : position + 1]) is None
    assert bytewise.value.reason == reason


@pytest.mark.parametrize(
    ("data", "refused_at"),
    [
        (REQUEST, 1),  # G
        (b"POST / HTTP/1.1\r\n", 2),  # PO
        (b"PROXY GET / HTTP/1.1\r\n", 7),  # PROXY G
        (v2(1, 0x11, bytes(12), version=1), 13),  # the version, before the rest
        (v2(1, 0x51, bytes(12)), 14),  # the family, before the length
        (V2_SIGNATURE + b"\x21\x11\xff\xff", 16),  # the length, before the block
    ],
)
def test_garbage_is_refused_as_soon_as_the_bytes_show_it(data, refused_at):
    reader = HeaderReader()
    for position in range(refused_at - 1):
        assert reader.feed(data[position : position + 1]) is None
    with pytest.raises(HeaderError):
        reader.feed(data[refused_at - 1 : refused_at])


def test_a_reader_is_done_after_its_header():
    reader = HeaderReader()
    assert reader.feed(b"PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n").rest == b"PROXY UNKNOWN\r\n"
    with pytest.raises(RuntimeError):
        reader.feed(b"more")


def test_the_v2_bound_is_the_readers_choice():
    header = v2(1, 0x11, inet("1.2.3.4", "5.6.7.8", 1, 2) + tlv(NOOP, bytes(100)))
    assert HeaderReader(max_v2_length=115).feed(header).header.source == ("1.2.3.4", 1)
    with pytest.raises(HeaderError) as refused:
        HeaderReader(max_v2_length=114).feed(header[:16])
    assert refused.value.reason == "too_large"


def test_the_v1_bound_is_107_bytes():
    assert len(UNKNOWN_LONGEST) == V1_MAX
    reader = HeaderReader()
    assert reader.feed(UNKNOWN_LONGEST[:-1]) is None  # (106 bytes, CR last: wait)
    assert reader.feed(b"\n") == Parsed(KEEP_V1, b"")


# -- the layer in front of a port's entry factory, on a test reactor

BIND = ir.Bind("127.0.0.1", 8080, "HTTP")
OTHER = ir.Bind("127.0.0.1", 8081, "HTTP")
BALANCER = IPv4Address("TCP", "10.0.0.5", 40000)


def _plane(timeout: float = 10.0) -> DataPlane:
    settings = DataPlaneSettings(proxy_protocol=(8080,), header_timeout=timeout)
    plane = DataPlane(MemoryReactorClock(), Metrics(), settings)
    plane.apply(ir.RoutingTable((BIND, OTHER)))
    for bind in (BIND, OTHER):
        plane.adopt(bind.key, os.open(os.devnull, os.O_RDONLY), socket.AF_INET)
    return plane


def _accept(plane: DataPlane, bind: ir.Bind = BIND) -> Transport:
    """A connection from the balancer accepted on ``bind``, as Twisted's port does it."""
    server = plane.servers[bind.key]
    transport = Transport(peerAddress=BALANCER)
    transport.protocol = server.buildProtocol(BALANCER)
    transport.protocol.makeConnection(transport)
    return transport


def _receive(transport: Transport, data: bytes) -> None:
    """Bytes read from the socket go to the transport's protocol of the moment."""
    transport.protocol.dataReceived(data)


def _refused(plane: DataPlane, reason: str) -> float:
    sample = plane.metrics.registry.get_sample_value(
        "twistgw_proxy_protocol_refused_total", {"listener": "127.0.0.1:8080", "reason": reason}
    )
    return sample or 0.0


def test_the_header_source_is_the_peer_the_http_connection_sees():
    plane = _plane()
    server = plane.servers[BIND.key]
    transport = _accept(plane)
    front = transport.protocol
    assert server.open_connections == 1  # (counted while its header is read)
    _receive(transport, b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 8080\r\nGET / HT")
    http = transport.protocol
    assert http.peer_host == b"192.0.2.7"
    assert transport.getPeer() == IPv4Address("TCP", "192.0.2.7", 56324)
    assert server.open_connections == 1  # (now as an HTTP connection)
    _receive(transport, b"TP/1.1\r\nHost: example.com\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 404 ")  # (the table has no routes)
    assert front.timer is None  # (the deadline is cancelled)


def test_a_v2_ipv6_source_and_a_local_command():
    plane = _plane()
    transport = _accept(plane)
    _receive(transport, v2(1, 0x21, inet6("2001:db8::42", "fd00::1", 3000, 8080)) + REQUEST)
    assert transport.protocol.peer_host == b"2001:db8::42"
    assert transport.getPeer() == IPv6Address("TCP", "2001:db8::42", 3000)
    local = _accept(plane)
    _receive(local, v2(0, 0x00, b"") + REQUEST)
    assert local.protocol.peer_host == b"10.0.0.5"  # (the balancer's own connection)
    assert local.value().startswith(b"HTTP/1.1 404 ")


def test_a_connection_without_a_header_is_closed_without_an_answer():
    plane = _plane()
    transport = _accept(plane)
    _receive(transport, REQUEST)
    assert transport.disconnecting and transport.value() == b""
    assert _refused(plane, "malformed") == 1
    assert plane.servers[BIND.key].open_connections == 0


def test_a_header_not_finished_within_the_deadline_is_closed():
    plane = _plane(timeout=3.0)
    transport = _accept(plane)
    _receive(transport, b"PROXY TCP4 192.0.2.7 ")
    plane.reactor.advance(2.9)
    assert not transport.disconnecting
    plane.reactor.advance(0.2)
    assert transport.disconnecting and transport.value() == b""
    assert _refused(plane, "timeout") == 1
    silent = _accept(plane)  # (nothing at all: the same deadline)
    plane.reactor.advance(3.0)
    assert silent.disconnecting
    assert _refused(plane, "timeout") == 2
    assert plane.servers[BIND.key].open_connections == 0


def test_a_client_leaving_mid_header_is_counted_and_forgotten():
    plane = _plane()
    transport = _accept(plane)
    front = transport.protocol
    _receive(transport, b"PROXY TCP4 19")
    front.connectionLost(None)
    assert _refused(plane, "incomplete") == 1
    assert plane.servers[BIND.key].open_connections == 0
    assert front.timer is None


def test_an_oversize_header_is_refused():
    plane = _plane()
    transport = _accept(plane)
    _receive(transport, V2_SIGNATURE + b"\x21\x11\x10\x01")
    assert transport.disconnecting
    assert _refused(plane, "too_large") == 1


def test_ports_not_listed_have_no_header_layer():
    plane = _plane()
    transport = _accept(plane, OTHER)
    assert transport.protocol.peer_host == b"10.0.0.5"  # (the HTTP protocol at once)
    _receive(transport, REQUEST)
    assert transport.value().startswith(b"HTTP/1.1 404 ")
    assert plane.servers[OTHER.key].proxy is None

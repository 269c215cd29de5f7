"""The PROXY protocol header (versions 1 and 2, as HAProxy specifies them) that a load
balancer sends before a connection's own bytes, read without any I/O.

Feed a ``HeaderReader`` the connection's first bytes as they come: it answers None
while the header is incomplete, then a ``Parsed`` (the header, and the bytes after it,
which belong to the connection's own protocol), or raises ``HeaderError`` for anything
that is not a valid header, as soon as the bytes show it. The version is told by the
first byte: ``P`` starts the text line of version 1, ``\\r`` the binary signature of
version 2; anything else is refused.

- Version 1: ``PROXY TCP4|TCP6 SOURCE DESTINATION SPORT DPORT\\r\\n``, fields separated
  by exactly one space, addresses of the named family (IPv4 as four decimal numbers
  without leading zeros, IPv6 in hexadecimal with colons), ports 0 to 65535 without
  leading zeros, at most 107 bytes with the CRLF; or ``PROXY UNKNOWN`` and anything
  up to the CRLF. A lone CR or LF is refused.
- Version 2: the 12-byte signature, version 2 with command LOCAL or PROXY, a known
  family (UNSPEC, INET, INET6, UNIX) and protocol (UNSPEC, STREAM, DGRAM), and a block
  of at most ``max_v2_length`` bytes (4096 by default; the format allows 65535)
  holding the addresses and then TLVs, which are skipped (their framing is checked).

``ProxyHeader.source`` is the client to use in place of the connection's peer; it is
None when the connection's own peer stays: a LOCAL command (the balancer's own
connection, e.g. a health check), UNKNOWN (v1) or UNSPEC (v2), and what a stream
listener does not use (UNIX addresses, DGRAM), which the specification lets a
receiver treat as UNSPEC.
"""

from __future__ import annotations

import ipaddress
import re

import attrs

V1_PREFIX = b"PROXY "
#: Longest version 1 line, CRLF included ("PROXY UNKNOWN" with two full IPv6 addresses).
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Bytes of a version 2 header before its address block (signature, version and
#: command, family and protocol, length).
V2_FIXED = 16
#: Largest version 2 address block (addresses and TLVs) accepted by default.
MAX_V2_LENGTH = 4096

#: How the rest of a version 1 line may begin.
_V1_TOKENS = (b"TCP4 ", b"TCP6 ", b"UNKNOWN ", b"UNKNOWN\r")
_FAMILIES = ("UNSPEC", "INET", "INET6", "UNIX")
_PROTOCOLS = ("UNSPEC", "STREAM", "DGRAM")
#: Bytes of the addresses (and ports) of each family in a version 2 block.
_ADDRESS_BYTES = {"INET": 12, "INET6": 36, "UNIX": 216}
_IPV4 = re.compile(rb"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6 = re.compile(rb"[0-9A-Fa-f:]{2,39}")
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")

Address = tuple[str, int]


class HeaderError(ValueError):
    """Not a valid PROXY protocol header; ``reason`` is ``malformed``, or ``too_large``
    for a header past its size bound."""

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen
class ProxyHeader:
    """A header read: ``version`` 1 or 2; ``command`` ``PROXY`` or ``LOCAL`` (v2 only);
    ``family`` ``INET``, ``INET6``, ``UNIX`` or ``UNSPEC`` (v1's TCP4, TCP6 and
    UNKNOWN are INET, INET6 and UNSPEC); ``protocol`` ``STREAM``, ``DGRAM`` or
    ``UNSPEC``; ``source`` and ``destination`` as (address, port) when the connection
    is to take them (see the module's docstring), else None."""

    version: int
    command: str
    family: str
    protocol: str
    source: Address | None = None
    destination: Address | None = None


@attrs.frozen
class Parsed:
    """A complete header and the bytes that followed it."""

    header: ProxyHeader
    rest: bytes


class HeaderReader:
    """The header at the start of one connection, from its bytes as they arrive."""

    def __init__(self, max_v2_length: int = MAX_V2_LENGTH) -> None:
        self.max_v2_length = max_v2_length
        self._buffer = b""
        self.done = False

    def feed(self, data: bytes) -> Parsed | None:
        """None while more bytes are needed, then the header and the bytes after it
        (what follows is no longer the reader's); HeaderError for an invalid header
        (the connection is to be closed)."""
        if self.done:
            raise RuntimeError("the header was read already")
        buffer = self._buffer + data
        found = parse(buffer, self.max_v2_length)
        if found is None:
            self._buffer = buffer
            return None
        header, size = found
        self._buffer = b""
        self.done = True
        return Parsed(header, buffer[size:])


def parse(data: bytes, max_v2_length: int = MAX_V2_LENGTH) -> tuple[ProxyHeader, int] | None:
    """The header at the start of ``data`` and its size in bytes; None if ``data`` is a
    valid beginning of a header but not all of it."""
    if not data:
        return None
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data, max_v2_length)
    raise HeaderError("not a PROXY protocol header")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    start = min(len(data), len(V1_PREFIX))
    if data[:start] != V1_PREFIX[:start]:
        raise HeaderError("not a PROXY protocol header")
    window = data[:V1_MAX]
    after = window[len(V1_PREFIX) : len(V1_PREFIX) + 8]
    if not any(after[: len(token)] == token[: len(after)] for token in _V1_TOKENS):
        raise HeaderError("a version 1 line names TCP4, TCP6 or UNKNOWN")
    end = window.find(b"\r\n")
    lone = window.find(b"\n")
    if lone != -1 and (end == -1 or lone < end + 1):
        raise HeaderError("a line feed without carriage return")
    carriage = window.find(b"\r")
    if carriage != -1 and carriage != end and carriage + 1 < len(window):
        raise HeaderError("a carriage return without line feed")
    if end == -1:
        if len(data) >= V1_MAX:
            raise HeaderError(f"no CRLF in the first {V1_MAX} bytes", "too_large")
        return None
    line = window[len(V1_PREFIX) : end]
    if line == b"UNKNOWN" or line.startswith(b"UNKNOWN "):
        return ProxyHeader(1, "PROXY", "UNSPEC", "UNSPEC"), end + 2
    fields = line.split(b" ")
    if len(fields) != 5 or fields[0] not in (b"TCP4", b"TCP6"):
        raise HeaderError("a version 1 line is PROXY TCP4|TCP6 SRC DST SPORT DPORT")
    family, source, destination, source_port, destination_port = fields
    read = _ipv4_text if family == b"TCP4" else _ipv6_text
    header = ProxyHeader(
        1,
        "PROXY",
        "INET" if family == b"TCP4" else "INET6",
        "STREAM",
        (read(source), _port_text(source_port)),
        (read(destination), _port_text(destination_port)),
    )
    return header, end + 2


def _ipv4_text(text: bytes) -> str:
    if _IPV4.fullmatch(text):
        try:  # (refuses numbers past 255 and leading zeros)
            return str(ipaddress.IPv4Address(text.decode("ascii")))
        except ValueError:
            pass
    raise HeaderError(f"not an IPv4 address: {text[:40]!r}")


def _ipv6_text(text: bytes) -> str:
    if _IPV6.fullmatch(text):  # (no zone, no dotted IPv4 tail)
        try:
            return str(ipaddress.IPv6Address(text.decode("ascii")))
        except ValueError:
            pass
    raise HeaderError(f"not an IPv6 address: {text[:40]!r}")


def _port_text(text: bytes) -> int:
    if _PORT.fullmatch(text) and int(text) <= 65535:
        return int(text)
    raise HeaderError(f"not a port: {text[:10]!r}")


def _parse_v2(data: bytes, max_length: int) -> tuple[ProxyHeader, int] | None:
    start = min(len(data), len(V2_SIGNATURE))
    if data[:start] != V2_SIGNATURE[:start]:
        raise HeaderError("not a PROXY protocol header")
    if len(data) > 12:
        version, command = data[12] >> 4, data[12] & 0x0F
        if version != 2:
            raise HeaderError(f"version {version} after the version 2 signature")
        if command > 1:
            raise HeaderError(f"unknown command {command}")
    if len(data) > 13:
        family, protocol = data[13] >> 4, data[13] & 0x0F
        if family >= len(_FAMILIES) or protocol >= len(_PROTOCOLS):
            raise HeaderError(f"unknown family and protocol 0x{data[13]:02x}")
    if len(data) < V2_FIXED:
        return None
    length = int.from_bytes(data[14:16], "big")
    if length > max_length:
        raise HeaderError(f"an address block of {length} bytes (most {max_length})", "too_large")
    size = V2_FIXED + length
    if len(data) < size:
        return None
    family_name, protocol_name = _FAMILIES[family], _PROTOCOLS[protocol]
    if command == 0 or family_name == "UNSPEC" or protocol_name == "UNSPEC":
        # the block is skipped whatever it holds: the connection's own peer stays
        name = "LOCAL" if command == 0 else "PROXY"
        return ProxyHeader(2, name, family_name, protocol_name), size
    block = data[V2_FIXED:size]
    needed = _ADDRESS_BYTES[family_name]
    if length < needed:
        raise HeaderError(f"{length} bytes for {family_name} addresses of {needed}")
    _check_tlvs(block[needed:])
    if family_name == "UNIX" or protocol_name == "DGRAM":
        return ProxyHeader(2, "PROXY", family_name, protocol_name), size
    width = 4 if family_name == "INET" else 16
    make = ipaddress.IPv4Address if width == 4 else ipaddress.IPv6Address
    ports = 2 * width
    header = ProxyHeader(
        2,
        "PROXY",
        family_name,
        protocol_name,
        (str(make(block[:width])), int.from_bytes(block[ports : ports + 2], "big")),
        (str(make(block[width:ports])), int.from_bytes(block[ports + 2 : ports + 4], "big")),
    )
    return header, size


def _check_tlvs(tlvs: bytes) -> None:
    """TLVs (a type byte, a 2-byte length, the value) are skipped; each must fit."""
    position = 0
    while position < len(tlvs):
        if len(tlvs) - position < 3:
            raise HeaderError("a truncated TLV")
        position += 3 + int.from_bytes(tlvs[position + 1 : position + 3], "big")
        if position > len(tlvs):
            raise HeaderError("a TLV longer than the header")

"""Requests and responses as the exchange sees them, whatever the wire protocol.

Codecs own the connection-level fields: they hand over headers without hop-by-hop
fields, Host or framing fields, and say how long the body is instead."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: (lower-case name, value) pairs; parsed heads hand over shared tuples, never to be
#: changed in place (filters make new lists).
Headers = Sequence[tuple[bytes, bytes]]

#: uri-host [":" port]: a reg-name or IP literal (RFC 3986), without user info.
HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]*)?")


class Request:
    """``authority`` comes from Host (or the target's authority, or ``:authority``);
    ``target`` is the path and query; ``length`` is the body's length when known (None:
    streamed, e.g. chunked); ``upgrade`` names the protocol of an upgrade request."""

    __slots__ = (
        "method",
        "authority",
        "target",
        "headers",
        "has_body",
        "length",
        "protocol",
        "upgrade",
    )

    def __init__(
        self,
        method: bytes,
        authority: bytes,
        target: bytes,
        headers: Headers,
        has_body: bool = False,
        length: int | None = 0,
        protocol: str = "HTTP/1.1",
        upgrade: bytes | None = None,
    ) -> None:
        self.method = method
        self.authority = authority
        self.target = target
        self.headers = headers
        self.has_body = has_body
        self.length = length
        self.protocol = protocol
        self.upgrade = upgrade


class Response:
    """A response head; ``length`` as for requests (None: until the end, however it is
    framed)."""

    __slots__ = ("status", "headers", "length")

    def __init__(self, status: int, headers: Headers, length: int | None = None) -> None:
        self.status = status
        self.headers = headers
        self.length = length


def has_content_type(headers: Headers | None) -> bool:
    """Whether ``headers`` has a Content-Type (a local answer's own, e.g. an auth
    service's denial, is kept; else the gateway's text/plain is added)."""
    return any(name == b"content-type" for name, _ in headers or ())

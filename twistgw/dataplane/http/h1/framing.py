"""The connection-level fields of an HTTP/1.1 message (RFC 9112 §6-9, RFC 9110 §7.6):
framing, persistence, upgrade and the hop-by-hop fields, sorted out of a head in one
pass."""

from __future__ import annotations

from twistgw.dataplane.http.h1.bodies import (
    EMPTY,
    BodyReader,
    ChunkedBody,
    CloseDelimitedBody,
    LengthBody,
)
from twistgw.dataplane.http.h1.heads import Fields, ProtocolError

#: Fields a ``Connection`` header may not make hop-by-hop: framing and routing.
NEVER_NOMINATED = frozenset({b"content-length", b"transfer-encoding", b"host", b"expect"})
#: Connection tokens that nominate no field.
PLAIN_TOKENS = frozenset({b"close", b"keep-alive", b"upgrade"})
NO_TOKENS: frozenset[bytes] = frozenset()
#: Longest Content-Length value accepted (up to about 9 exabytes).
MAX_LENGTH_DIGITS = 18


class Connection:
    """What the connection fields of one head say; ``headers`` are its end-to-end
    fields, less those ``Connection`` nominates."""

    __slots__ = (
        "headers",
        "hosts",
        "lengths",
        "codings",
        "tokens",
        "upgrade",
        "expect",
        "underscores",
    )

    def __init__(self, fields: Fields) -> None:
        self.headers = fields.headers
        self.hosts: list[bytes] = []
        self.lengths: list[bytes] = []
        self.codings: list[bytes] = []
        self.tokens: frozenset[bytes] | set[bytes] = NO_TOKENS
        self.upgrade: bytes | None = None
        self.expect: bytes | None = None
        self.underscores = fields.underscores  # whether an end-to-end name has one
        for name, value in fields.connection:
            if name == b"host":
                self.hosts.append(value)
            elif name == b"content-length":
                self.lengths.append(value)
            elif name == b"connection":
                if self.tokens is NO_TOKENS:
                    self.tokens = set()
                self.tokens.update(_tokens(value))
            elif name == b"transfer-encoding":
                self.codings += _tokens(value)
            elif name == b"upgrade":
                self.upgrade = value
            elif name == b"expect":
                self.expect = value.lower()
        tokens = self.tokens
        if tokens and not tokens <= PLAIN_TOKENS:
            nominated = tokens - NEVER_NOMINATED
            self.headers = [field for field in self.headers if field[0] not in nominated]

    def length(self, error_status: int) -> int | None:
        """The Content-Length (None when absent); several equal values count as one."""
        lengths = self.lengths
        if not lengths:
            return None
        value = lengths[0]
        if len(lengths) == 1 and value.isdigit() and len(value) <= MAX_LENGTH_DIGITS:
            return int(value)  # the usual case
        values = set()
        for field in lengths:
            values.update(part.strip(b" \t") for part in field.split(b","))
        if len(values) != 1:
            raise ProtocolError(error_status, "conflicting Content-Length values")
        value = values.pop()
        if not value.isdigit() or not value.isascii() or len(value) > MAX_LENGTH_DIGITS:
            raise ProtocolError(error_status, "invalid Content-Length")
        return int(value)

    def chunked(self, error_status: int, unknown_status: int) -> bool:
        """Whether Transfer-Encoding says chunked; any other coding is refused."""
        codings = self.codings
        if not codings:
            return False
        if codings[-1] != b"chunked":
            raise ProtocolError(error_status, "Transfer-Encoding does not end with chunked")
        if len(codings) > 1:
            raise ProtocolError(unknown_status, "transfer codings other than chunked")
        return True

    def persistent(self, version: bytes) -> bool:
        """Whether the connection stays open after this message (RFC 9112 §9.3)."""
        if b"close" in self.tokens:
            return False
        return version == b"1.1" or b"keep-alive" in self.tokens


def _tokens(value: bytes) -> list[bytes]:
    value = value.lower()
    if b"," not in value:
        return [value] if value else []
    return [token.strip(b" \t") for token in value.split(b",") if token.strip(b" \t")]


def request_body(fields: Connection, version: bytes, max_trailer: int) -> BodyReader:
    """How a request's body is framed; ambiguous framing is refused (400, or 501 for a
    coding this gateway does not decode)."""
    chunked = fields.chunked(400, 501)
    length = fields.length(400)
    if chunked:
        if length is not None:
            raise ProtocolError(400, "both Content-Length and Transfer-Encoding")
        if version != b"1.1":
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        return ChunkedBody(400, max_trailer)
    if length:
        return LengthBody(length)
    return EMPTY


def response_body(
    fields: Connection, status: int, head_request: bool, max_trailer: int
) -> tuple[BodyReader, int | None]:
    """How a response's body is framed (RFC 9112 §6.3), and its length when known;
    anything ambiguous is a bad gateway (502)."""
    chunked = fields.chunked(502, 502)
    length = fields.length(502)
    if head_request or status in (204, 304) or status < 200:
        return EMPTY, length if status != 204 else None
    if chunked:
        if length is not None:
            raise ProtocolError(502, "both Content-Length and Transfer-Encoding")
        return ChunkedBody(502, max_trailer), None
    if length is not None:
        return (LengthBody(length) if length else EMPTY), length
    return CloseDelimitedBody(), None

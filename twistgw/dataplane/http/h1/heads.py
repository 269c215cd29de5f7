"""HTTP/1.1 message heads (RFC 9112): parsing, syntax checks and serialisation.

Parsing is strict where leniency lets two parsers disagree about a message: no bare
CR or LF, no obs-fold, no NUL or other controls, no white space before a field's colon,
only ``HTTP/1.0`` and ``HTTP/1.1``. Each head is checked by one regular expression over
the whole head whose parts cannot overlap, so the check is linear in its size.
"""

from __future__ import annotations

import re

#: RFC 9110 token characters, as a regular-expression class.
TCHAR = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]"
#: A field value: visible ASCII, obs-text, SP and HTAB (trimmed afterwards).
FIELD_CHARS = rb"[\t \x21-\x7e\x80-\xff]"
FIELD_LINES = re.compile(rb"(?:" + TCHAR + rb"+:" + FIELD_CHARS + rb"*\r\n)*")
REQUEST_LINE = re.compile(rb"(" + TCHAR + rb"+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [\t \x21-\x7e\x80-\xff]*)?")
VALID_NAME = re.compile(TCHAR + rb"+")
VALID_VALUE = re.compile(
    rb"(?:[\x21-\x7e\x80-\xff](?:" + FIELD_CHARS + rb"*[\x21-\x7e\x80-\xff])?)?"
)

Headers = list[tuple[bytes, bytes]]


class ProtocolError(Exception):
    """A message that breaks the protocol; ``status`` answers it (on the server side)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class RequestHead:
    """A request head as received: names lower-cased, values trimmed."""

    __slots__ = ("method", "target", "version", "headers", "size")

    def __init__(
        self, method: bytes, target: bytes, version: bytes, headers: Headers, size: int
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.size = size


class ResponseHead:
    """A response head as received: names lower-cased, values trimmed."""

    __slots__ = ("status", "version", "headers")

    def __init__(self, status: int, version: bytes, headers: Headers) -> None:
        self.status = status
        self.version = version
        self.headers = headers


def head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """The index just past a head's blank line in ``buffer``, or -1."""
    end = buffer.find(b"\r\n\r\n", start)
    return end + 4 if end != -1 else -1


def has_bare_newline(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds an LF without its CR (a framing ambiguity)."""
    return data.count(b"\n") != data.count(b"\r\n")


def _fields(block: bytes, max_count: int, error_status: int, count_status: int) -> Headers:
    """The field lines of a head (``block`` ends with CRLF, or is empty)."""
    if FIELD_LINES.fullmatch(block) is None:
        raise ProtocolError(error_status, "malformed header field")
    lines = block.split(b"\r\n")
    lines.pop()
    if len(lines) > max_count:
        raise ProtocolError(count_status, "too many header fields")
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.lower(), value.strip(b" \t")))
    return headers


def parse_request_head(
    head: bytes, max_line: int, max_count: int = 1 << 30, start: int = 0
) -> RequestHead:
    """The request in ``head`` (from ``start`` up to and including its blank line)."""
    line_end = head.find(b"\r\n", start)
    if line_end - start > max_line:
        raise ProtocolError(414, "request line too long")
    match = REQUEST_LINE.fullmatch(head, start, line_end)
    if match is None:
        raise ProtocolError(400, "malformed request line")
    method, target, major, minor = match.groups()
    if major != b"1" or minor not in (b"0", b"1"):
        if major in (b"1", b"2", b"3"):
            raise ProtocolError(505, "HTTP version not supported")
        raise ProtocolError(400, "malformed request line")
    headers = _fields(head[line_end + 2 : -2], max_count, 400, 431)
    return RequestHead(method, target, b"1." + minor, headers, len(head) - start)


def parse_response_head(head: bytes, max_count: int = 1 << 30) -> ResponseHead:
    """The response in ``head`` (up to and including its blank line)."""
    line_end = head.find(b"\r\n")
    match = STATUS_LINE.fullmatch(head, 0, line_end)
    if match is None:
        raise ProtocolError(502, "malformed status line")
    minor, status = match.groups()
    headers = _fields(head[line_end + 2 : -2], max_count, 502, 502)
    return ResponseHead(int(status), b"1." + minor, headers)


def serialize(first_line: bytes, headers: Headers, extra: bytes = b"") -> bytes:
    """A head's bytes: the first line (with its CRLF), the fields, ``extra`` (ready
    field lines) and the blank line."""
    parts = [first_line]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts += (extra, b"\r\n")
    return b"".join(parts)


def valid_field(name: bytes, value: bytes) -> bool:
    """Whether a field is safe to write: a token name and a value without CR, LF, NUL
    or other controls."""
    return VALID_NAME.fullmatch(name) is not None and VALID_VALUE.fullmatch(value) is not None

"""HTTP/1.1 message heads (RFC 9112): parsing, syntax checks and serialisation.

Parsing is strict where leniency lets two parsers disagree about a message: no bare
CR or LF, no obs-fold, no NUL or other controls, no white space before a field's colon,
only ``HTTP/1.0`` and ``HTTP/1.1``. The first line and the field lines are each checked
by one regular expression whose parts cannot overlap, so the check is linear in the
head's size; a head is parsed only once complete, so its cost is linear too.
"""

from __future__ import annotations

import re

from twistgw.httpfields import CONNECTION_FIELDS as HTTP_CONNECTION_FIELDS

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
FieldTuple = tuple[tuple[bytes, bytes], ...]

#: Fields that concern one connection only, never forwarded (RFC 9110 §7.6.1), plus
#: the framing, Host and Expect fields, which the codecs handle themselves. Parsing
#: sets them apart from the end-to-end fields.
CONNECTION_FIELDS = frozenset(name.encode() for name in HTTP_CONNECTION_FIELDS)


class ProtocolError(Exception):
    """A message that breaks the protocol; ``status`` answers it (on the server side)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Fields:
    """A head's fields as received (names lower-cased, values trimmed): the end-to-end
    ones in ``headers``, the CONNECTION_FIELDS in ``connection``; ``underscores`` says
    whether an end-to-end name has a ``_``. Tuples: parsed heads are shared, and so is
    what the codecs' fast paths concluded of them, None until they looked: the
    client's of a response's framing (``response_framing``), the server's of a
    request's Host (``request_host``)."""

    __slots__ = ("headers", "connection", "underscores", "response_framing", "request_host")

    def __init__(self, headers: FieldTuple, connection: FieldTuple, underscores: bool) -> None:
        self.headers = headers
        self.connection = connection
        self.underscores = underscores
        self.response_framing: object = None
        self.request_host: object = None


class RequestHead:
    __slots__ = ("method", "target", "version", "fields")

    def __init__(self, method: bytes, target: bytes, version: bytes, fields: Fields) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.fields = fields


class ResponseHead:
    __slots__ = ("status", "version", "fields")

    def __init__(self, status: int, version: bytes, fields: Fields) -> None:
        self.status = status
        self.version = version
        self.fields = fields


def head_end(buffer: bytes | bytearray, start: int = 0) -> int:
    """The index just past a head's blank line in ``buffer``, or -1."""
    end = buffer.find(b"\r\n\r\n", start)
    return end + 4 if end != -1 else -1


def has_bare_newline(data: bytes | bytearray) -> bool:
    """Whether ``data`` holds an LF without its CR (a framing ambiguity)."""
    return data.count(b"\n") != data.count(b"\r\n")


#: Field lines seen before, parsed: most heads repeat their neighbours' lines (User-Agent,
#: Accept, Server, Content-Type), and a dictionary lookup beats splitting one again.
#: Bounded in entries and in the length of a line kept; emptied when full.
_LINES: dict[bytes, tuple[tuple[bytes, bytes], int]] = {}
MAX_CACHED_LINES = 4096
MAX_CACHED_LINE = 160
#: Whole field blocks seen before, parsed (shared: their fields are tuples). Bounded in
#: entries and in the size of a block kept; emptied when full.
_BLOCKS: dict[bytes, Fields] = {}
MAX_CACHED_BLOCKS = 1024
MAX_CACHED_BLOCK = 2048
#: What a cached line is: an end-to-end field, a connection field, or an end-to-end
#: field whose name has an underscore.
END_TO_END, CONNECTION, UNDERSCORED = 0, 1, 2


def _line(line: bytes) -> tuple[tuple[bytes, bytes], int]:
    name, _, value = line.partition(b":")
    name = name.lower()
    kind = CONNECTION if name in CONNECTION_FIELDS else UNDERSCORED if b"_" in name else 0
    parsed = ((name, value.strip(b" \t")), kind)
    if len(line) <= MAX_CACHED_LINE:
        if len(_LINES) >= MAX_CACHED_LINES:
            _LINES.clear()
        _LINES[line] = parsed
    return parsed


def _fields(block: bytes, max_count: int, error: int, count_error: int) -> Fields:
    """The fields of a head whose field lines are ``block``: from the cache of whole
    blocks (a client repeats its own, a backend its own but for Date), else line by
    line. A block made only of lines met before passed the syntax check already (a line
    is kept only from a block that passed it); any other is checked whole."""
    fields = _BLOCKS.get(block)
    if fields is not None:
        return fields
    lines = block.split(b"\r\n")
    lines.pop()
    if len(lines) > max_count:
        raise ProtocolError(count_error, "too many header fields")
    headers = []
    connection = []
    underscores = False
    checked = False
    known = _LINES.get
    for line in lines:
        parsed = known(line)
        if parsed is None:
            if not checked:
                if FIELD_LINES.fullmatch(block) is None:
                    raise ProtocolError(error, "malformed header field")
                checked = True
            parsed = _line(line)
        if parsed[1] == CONNECTION:
            connection.append(parsed[0])
        else:
            headers.append(parsed[0])
            if parsed[1]:
                underscores = True
    fields = Fields(tuple(headers), tuple(connection), underscores)
    if len(block) <= MAX_CACHED_BLOCK:
        if len(_BLOCKS) >= MAX_CACHED_BLOCKS:
            _BLOCKS.clear()
        _BLOCKS[block] = fields
    return fields


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
    fields = _fields(head[line_end + 2 : -2], max_count, 400, 431)
    return RequestHead(method, target, b"1." + minor, fields)


def parse_response_head(head: bytes, max_count: int = 1 << 30) -> ResponseHead:
    """The response in ``head`` (up to and including its blank line)."""
    line_end = head.find(b"\r\n")
    match = STATUS_LINE.fullmatch(head, 0, line_end)
    if match is None:
        raise ProtocolError(502, "malformed status line")
    minor, status = match.groups()
    fields = _fields(head[line_end + 2 : -2], max_count, 502, 502)
    return ResponseHead(int(status), b"1." + minor, fields)


def serialize(first_line: bytes, headers: Headers, extra: bytes = b"") -> bytes:
    """A head's bytes: the first line (with its CRLF), the fields, ``extra`` (ready
    field lines) and the blank line."""
    if not headers:
        return first_line + extra + b"\r\n"
    return b"".join((first_line, b"\r\n".join(map(b": ".join, headers)), b"\r\n", extra, b"\r\n"))


def valid_field(name: bytes, value: bytes) -> bool:
    """Whether a field is safe to write: a token name and a value without CR, LF, NUL
    or other controls."""
    return VALID_NAME.fullmatch(name) is not None and VALID_VALUE.fullmatch(value) is not None

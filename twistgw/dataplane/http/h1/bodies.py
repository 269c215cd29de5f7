"""HTTP/1.1 message bodies (RFC 9112 §6-7): readers for each framing and the chunked
encoder.

A reader's ``feed(data)`` returns the body bytes found in ``data`` and, once the body
has ended, the bytes after it (``None`` while it goes on). Chunk-size lines and
trailers are bounded; trailers are read and dropped.
"""

from __future__ import annotations

import re

from twistgw.dataplane.http.h1.heads import ProtocolError

#: Longest chunk-size line, extensions included.
MAX_CHUNK_LINE = 4096
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[\t \x21-\x7e\x80-\xff]*)?")
TRAILER_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t \x21-\x7e\x80-\xff]*")

Fed = tuple[list[bytes], bytes | None]


class BodyReader:
    """The interface every framing implements."""

    #: Bytes of body read so far.
    received = 0

    def feed(self, data: bytes) -> Fed:
        raise NotImplementedError

    def eof(self) -> bool:
        """The connection ended: whether that ends the body well (only when the body
        is delimited by the close)."""
        return False


class EmptyBody(BodyReader):
    """No body (stateless: one instance serves every message)."""

    def feed(self, data: bytes) -> Fed:
        return [], data


EMPTY = EmptyBody()


class LengthBody(BodyReader):
    """A body of ``Content-Length`` bytes."""

    def __init__(self, length: int) -> None:
        self.remaining = length

    def feed(self, data: bytes) -> Fed:
        remaining = self.remaining
        if len(data) < remaining:
            self.remaining = remaining - len(data)
            self.received += len(data)
            return [data], None
        self.remaining = 0
        self.received += remaining
        return ([data[:remaining]] if remaining else []), data[remaining:]


class CloseDelimitedBody(BodyReader):
    """A response body that ends when the backend closes the connection."""

    def feed(self, data: bytes) -> Fed:
        self.received += len(data)
        return [data], None

    def eof(self) -> bool:
        return True


class ChunkedBody(BodyReader):
    """A chunked body; ``error_status`` answers a broken one (400 from a client, 502
    from a backend); trailers are bounded by ``max_trailer``."""

    def __init__(self, error_status: int, max_trailer: int) -> None:
        self.error_status = error_status
        self.max_trailer = max_trailer
        self.buffer = b""
        self.remaining = 0  # bytes left of the current chunk's data
        self.state = "size"  # size | data | data-end | trailer
        self.trailer = 0

    def _fail(self, reason: str) -> ProtocolError:
        return ProtocolError(self.error_status, reason)

    def feed(self, data: bytes) -> Fed:
        pieces: list[bytes] = []
        if self.buffer:
            data, self.buffer = self.buffer + data, b""
        position = 0
        size = len(data)
        while position < size:
            state = self.state
            if state == "data":
                end = position + self.remaining
                piece = data[position:end]
                pieces.append(piece)
                self.received += len(piece)
                self.remaining -= len(piece)
                position += len(piece)
                if self.remaining == 0:
                    self.state = "data-end"
                continue
            line_end = data.find(b"\r\n", position)
            if line_end == -1:
                rest = data[position:]
                if b"\n" in rest or len(rest) > MAX_CHUNK_LINE:
                    raise self._fail("malformed chunk framing")
                self.buffer = rest
                break
            line = data[position:line_end]
            position = line_end + 2
            if state == "size":
                match = CHUNK_LINE.fullmatch(line)
                if match is None:
                    raise self._fail("malformed chunk size")
                self.remaining = int(match.group(1), 16)
                self.state = "data" if self.remaining else "trailer"
            elif state == "data-end":
                if line:
                    raise self._fail("chunk data longer than its size")
                self.state = "size"
            else:  # trailer
                if not line:
                    return pieces, data[position:]
                self.trailer += len(line) + 2
                if self.trailer > self.max_trailer or TRAILER_LINE.fullmatch(line) is None:
                    raise self._fail("malformed or oversized trailer")
        return pieces, None


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"

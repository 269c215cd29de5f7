"""Response compression (a TrafficPolicy's ``compression``): which responses, which
encoding by the client's Accept-Encoding, and a streaming encoder that sends what it
has at every flush, so a streamed response (server-sent events) still streams."""

from __future__ import annotations

import zlib

import brotli
import zstandard

from twistgw.dataplane.http.messages import Headers, Response
from twistgw.routing import ir

#: gzip's compression level: zlib's default trade of CPU for size.
GZIP_LEVEL = 6
#: brotli's quality: 4 is near gzip 6 in speed and smaller (11, its default, is for
#: static files: ten times slower).
BROTLI_QUALITY = 4
ZSTD_LEVEL = 3
#: Statuses whose bodies are compressed (not 206: its ranges are of the original).
COMPRESSIBLE_STATUS = frozenset({200, 201, 202, 203, 300, 301, 302, 303, 307, 308, 404, 410})
#: Accept-Encoding values longer than this are not read (the client gets no encoding).
MAX_ACCEPT_ENCODING = 1024


class Encoder:
    """One response body's encoder."""

    __slots__ = ("_compress", "_flush", "_finish")

    def __init__(self, encoding: str) -> None:
        if encoding == "gzip":
            z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
            self._compress = z.compress
            self._flush = lambda: z.flush(zlib.Z_SYNC_FLUSH)
            self._finish = z.flush
        elif encoding == "br":
            b = brotli.Compressor(quality=BROTLI_QUALITY)
            self._compress = b.process
            self._flush = b.flush
            self._finish = b.finish
        else:
            c = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
            self._compress = c.compress
            self._flush = lambda: c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            self._finish = c.flush

    def compress(self, data: bytes) -> bytes:
        return self._compress(data)

    def flush(self) -> bytes:
        """Everything given so far, encoded (the stream goes on)."""
        return self._flush()

    def finish(self) -> bytes:
        """The end of the encoded stream."""
        return self._finish()


def accepted(header: bytes) -> dict[bytes, float]:
    """Accept-Encoding's codings (lower-case) and their weights."""
    found: dict[bytes, float] = {}
    for part in header.split(b","):
        coding, _, params = part.partition(b";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for param in params.split(b";"):
            name, _, value = param.partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        found.setdefault(coding, weight)
    return found


class CompiledCompression:
    """A compression section, ready to judge responses."""

    __slots__ = ("types", "min_size", "content_types")

    def __init__(self, spec: ir.Compression) -> None:
        self.types = [(t, t.encode()) for t in spec.types]
        self.min_size = spec.min_size
        self.content_types = frozenset(t.encode() for t in spec.content_types)

    def choose(self, request_headers: Headers) -> str | None:
        """The encoding to use for a client that sent ``request_headers``, if any."""
        header = b""
        for name, value in request_headers:
            if name == b"accept-encoding":
                header = value if not header else header + b"," + value
        if not header or len(header) > MAX_ACCEPT_ENCODING:
            return None
        weights = accepted(header)
        anything = weights.get(b"*", 0.0)
        for encoding, token in self.types:
            if weights.get(token, anything) > 0:
                return encoding
        return None

    def encoder_for(self, response: Response, encoding: str) -> Encoder | None:
        """An encoder for ``response``, its head changed to say so; None when the
        response is to go as it is (already encoded, too small, not a listed type,
        ``no-transform``)."""
        if response.status not in COMPRESSIBLE_STATUS:
            return None
        if response.length is not None and response.length < self.min_size:
            return None
        media = None
        for name, value in response.headers:
            if name == b"content-encoding":
                return None
            if name == b"content-type":
                media = value.partition(b";")[0].strip().lower()
            elif name == b"cache-control" and b"no-transform" in value.lower():
                return None
        if media not in self.content_types or media.startswith(b"application/grpc"):
            return None  # (gRPC messages say themselves whether they are compressed)
        headers = []
        vary = False
        for name, value in response.headers:
            if name == b"etag" and value.startswith(b'"'):
                value = b"W/" + value  # (the compressed body is not byte-equal)
            elif name == b"vary":
                vary = True
                if b"accept-encoding" not in value.lower() and value.strip() != b"*":
                    value += b", Accept-Encoding"
            headers.append((name, value))
        headers.append((b"content-encoding", encoding.encode()))
        if not vary:
            headers.append((b"vary", b"Accept-Encoding"))
        response.headers = headers
        response.length = None
        return Encoder(encoding)

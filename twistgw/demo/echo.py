"""An HTTP/1.1 echo backend: answers every request with a JSON description of it.

    python -m twistgw.demo.echo --listen 127.0.0.1:9081 --name demo-v1

``GET /stream?chunks=N&size=B`` answers with a chunked body of N chunks of B bytes;
``/slow?seconds=S`` answers after S seconds; ``/bytes?size=B`` answers B bytes with a
Content-Length. Request bodies are read in pieces and counted, never held whole.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PIECE = 64 * 1024


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "twistgw-echo"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        if self.server.verbose:
            super().log_message(format, *args)

    def _read_body(self) -> int:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                remaining = size
                while remaining:
                    remaining -= len(self.rfile.read(min(PIECE, remaining)))
                self.rfile.readline()
                total += size
        remaining = int(self.headers.get("Content-Length") or 0)
        total = remaining
        while remaining:
            got = self.rfile.read(min(PIECE, remaining))
            if not got:
                break
            remaining -= len(got)
        return total

    def _answer(self) -> None:
        received = self._read_body()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/slow":
            time.sleep(float(query.get("seconds", "1")))
        if url.path == "/stream":
            self._stream(int(query.get("chunks", "4")), int(query.get("size", "1024")))
            return
        if url.path == "/bytes":
            size = int(query.get("size", "1024"))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                block = b"x" * min(size, PIECE)
                sent = 0
                while sent < size:
                    part = block[: size - sent]
                    self.wfile.write(part)
                    sent += len(part)
            return
        body = (
            json.dumps(
                {
                    "backend": self.server.name,
                    "method": self.command,
                    "path": self.path,
                    "headers": {name: value for name, value in self.headers.items()},
                    "header_list": [[name, value] for name, value in self.headers.items()],
                    "received_bytes": received,
                }
            ).encode()
            + b"\n"
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, chunks: int, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        block = b"y" * size
        for _ in range(chunks):
            self.wfile.write(b"%x\r\n%s\r\n" % (size, block))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str, verbose: bool = False) -> None:
        super().__init__(address, EchoHandler)
        self.name = name
        self.verbose = verbose


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9081", help="HOST:PORT to listen on")
    parser.add_argument("--name", default="echo", help="name reported in every answer")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = EchoServer((host, int(port)), args.name, args.verbose)
    print(f"echo backend {args.name} on {host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

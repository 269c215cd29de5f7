"""A small HTTP/1.1 load generator for benchmarks when wrk is not installed.

    python benchmarks/loadgen.py URL --connections 64 --duration 5 [--close] [--header F]

Prints wrk-like lines (``Requests/sec:``, ``50%``, ``99%``) that benchmarks/run.py
parses. It is much slower than wrk: figures taken with it measure the generator as
much as the proxy, and run.py says so.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time
from urllib.parse import urlsplit


async def _worker(
    host: str,
    port: int,
    path: str,
    close: bool,
    deadline: float,
    latencies: list[float],
    tls: ssl.SSLContext | None,
    fields: list[str],
) -> None:
    extra = "".join(f"{field}\r\n" for field in fields)
    extra += "Connection: close\r\n" if close else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()
    reader = writer = None
    while time.monotonic() < deadline:
        if reader is None:
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        started = time.monotonic()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.monotonic() - started)
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run(url: str, connections: int, duration: float, close: bool, fields: list[str]) -> None:
    parts = urlsplit(url)
    tls = ssl._create_unverified_context() if parts.scheme == "https" else None  # a test cert
    deadline = time.monotonic() + duration
    latencies: list[float] = []
    started = time.monotonic()
    await asyncio.gather(
        *(
            _worker(
                parts.hostname,
                parts.port or (443 if parts.scheme == "https" else 80),
                parts.path or "/",
                close,
                deadline,
                latencies,
                tls,
                fields,
            )
            for _ in range(connections)
        ),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> str:
        return (
            f"{latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000:.2f}ms"
            if latencies
            else "0ms"
        )

    print(f"     50%    {pct(0.50)}")
    print(f"     99%    {pct(0.99)}")
    print(f"Requests/sec: {len(latencies) / elapsed:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--close", action="store_true")
    parser.add_argument("--header", action="append", default=[], help="a field: 'Name: value'")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.connections, args.duration, args.close, args.header))


if __name__ == "__main__":
    main()

"""UDP for benchmarks: an echo server and a load generator.

    python benchmarks/udp.py echo PORT
    python benchmarks/udp.py load HOST PORT --clients 32 --window 8 --duration 5

The load generator keeps ``window`` datagrams in flight from each of ``clients``
sockets (each its own source port, so a gateway sees that many sessions) and prints
``Datagrams/sec:`` (answered datagrams) and ``Lost:`` (sent but never answered).
"""

from __future__ import annotations

import argparse
import asyncio
import time

PAYLOAD = b"x" * 64


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self, window: int) -> None:
        self.window = window
        self.answered = 0
        self.sent = 0
        self.running = True

    def connection_made(self, transport) -> None:
        self.transport = transport
        for _ in range(self.window):
            self._send()

    def _send(self) -> None:
        self.sent += 1
        self.transport.sendto(PAYLOAD)

    def datagram_received(self, data: bytes, addr) -> None:
        self.answered += 1
        if self.running:
            self._send()


async def _echo(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


async def _load(host: str, port: int, clients: int, window: int, duration: float) -> None:
    loop = asyncio.get_running_loop()
    made = [
        await loop.create_datagram_endpoint(lambda: Client(window), remote_addr=(host, port))
        for _ in range(clients)
    ]
    await asyncio.sleep(0.5)  # warm up: sessions opened
    start = sum(protocol.answered for _, protocol in made)
    began = time.monotonic()
    await asyncio.sleep(duration)
    answered = sum(protocol.answered for _, protocol in made) - start
    elapsed = time.monotonic() - began
    for _, protocol in made:
        protocol.running = False
    await asyncio.sleep(0.2)
    lost = sum(protocol.sent - protocol.answered for _, protocol in made)
    for transport, _ in made:
        transport.close()
    print(f"Datagrams/sec: {answered / elapsed:.1f}")
    print(f"Lost: {lost}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("port", type=int)
    load = sub.add_parser("load")
    load.add_argument("host")
    load.add_argument("port", type=int)
    load.add_argument("--clients", type=int, default=32)
    load.add_argument("--window", type=int, default=8)
    load.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    if args.command == "echo":
        asyncio.run(_echo(args.port))
    else:
        asyncio.run(_load(args.host, args.port, args.clients, args.window, args.duration))


if __name__ == "__main__":
    main()

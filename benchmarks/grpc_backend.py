"""A gRPC backend for benchmarks (grpcio's asyncio server, h2c on loopback): a generic
handler on raw bytes, so no protobuf is involved.

    python benchmarks/grpc_backend.py PORT

``bench.Echo/Unary`` answers with the message it got; ``bench.Echo/Count`` with the
number of Unary calls answered so far (decimal digits), so that a load generator which
sees only HTTP statuses (h2load) can be checked against the calls the backend served.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

SERVICE = "bench.Echo"
#: The request message h2load sends (and the backend echoes).
MESSAGE = b"hello, world\n"


def _identity(data: bytes) -> bytes:
    return data


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


async def serve(port: int) -> None:
    calls = 0

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        nonlocal calls
        calls += 1
        return request

    async def count(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return b"%d" % calls

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
        "Count": grpc.unary_unary_rpc_method_handler(count, _identity, _identity),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def count(port: int) -> int:
    """Unary calls the backend on 127.0.0.1:``port`` has answered so far."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return int(channel.unary_unary(f"/{SERVICE}/Count")(b"", timeout=10))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))

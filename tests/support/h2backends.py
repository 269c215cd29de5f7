"""HTTP/2 backends for tests: a gRPC server (grpcio, h2c) with unary, streaming and
failing methods on raw bytes, and a plain h2c echo server (hyper-h2 over a socket)
that answers each stream with what it received, and a trailer."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from concurrent import futures

import grpc
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset
from hyperframe.frame import GoAwayFrame

from tests.support.certs import load_pair

SERVICE = "twistgw.test.Echo"


def _identity(data: bytes) -> bytes:
    return data


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    metadata = dict(context.invocation_metadata())
    context.set_trailing_metadata((("x-trailer", "unary"),))
    return b"echo:" + request + b" authority:" + metadata.get(":authority", "").encode()


def _bidi(requests, context: grpc.ServicerContext):
    for request in requests:
        yield b"echo:" + request
    context.set_trailing_metadata((("x-trailer", "bidi"),))


def _fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.PERMISSION_DENIED, "not you")


class GrpcEcho:
    """``twistgw.test.Echo`` on an ephemeral loopback port: Unary, Bidi, Fail."""

    def __init__(self) -> None:
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary, _identity, _identity),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi, _identity, _identity),
            "Fail": grpc.unary_unary_rpc_method_handler(_fail, _identity, _identity),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = ("127.0.0.1", self.port)
        self.server.start()

    def close(self) -> None:
        self.server.stop(0)


class H2Echo:
    """An h2c server (or h2 over TLS, ALPN h2 only, with ``pair``: certificate and key
    PEM) answering every stream with JSON of its pseudo-header fields, headers and body
    size, and an ``x-trailer`` trailer; counts its connections and the streams the
    gateway reset. Paths ending in ``/misbehave-204`` (a 204 with DATA), ``/bad-status``
    (``:status`` "abc") and ``/goaway`` (a graceful GOAWAY, then the answer) misbehave."""

    def __init__(self, pair: tuple[bytes, bytes] | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.connections = 0
        self.streams = 0
        self.resets = 0
        self.tls: ssl.SSLContext | None = None
        if pair is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.set_alpn_protocols(["h2"])
            load_pair(self.tls, pair)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                return
            if sock.selected_alpn_protocol() != "h2":
                sock.close()
                return
        config = H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False
        )
        h2 = H2Connection(config)
        h2.initiate_connection()
        sock.sendall(h2.data_to_send())
        requests: dict[int, dict] = {}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for event in h2.receive_data(data):
                    if isinstance(event, RequestReceived):
                        self.streams += 1
                        requests[event.stream_id] = {"headers": event.headers, "body": 0}
                    elif isinstance(event, DataReceived):
                        requests[event.stream_id]["body"] += len(event.data)
                        h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, StreamEnded):
                        self._answer(h2, event.stream_id, requests.pop(event.stream_id))
                    elif isinstance(event, StreamReset):
                        self.resets += 1
                        requests.pop(event.stream_id, None)
                sock.sendall(h2.data_to_send())

    @staticmethod
    def _answer(h2: H2Connection, stream_id: int, request: dict) -> None:
        path = dict(request["headers"])[b":path"]
        if path.endswith(b"/misbehave-204"):
            h2.send_headers(stream_id, [(b":status", b"204")])
            h2.send_data(stream_id, b"HTTP/1.1 200 OK\r\nx-smuggled: yes\r\n\r\n", True)
            return
        if path.endswith(b"/bad-status"):
            h2.send_headers(stream_id, [(b":status", b"abc")], end_stream=True)
            return
        if path.endswith(b"/goaway"):
            goaway = GoAwayFrame(0)  # (hyper-h2 would send nothing after its own)
            goaway.last_stream_id = stream_id
            h2._data_to_send += goaway.serialize()
        fields = [(name.decode(), value.decode()) for name, value in request["headers"]]
        body = json.dumps({"fields": fields, "received": request["body"]}).encode()
        h2.send_headers(stream_id, [(b":status", b"200"), (b"content-type", b"application/json")])
        h2.send_data(stream_id, body)
        h2.send_headers(stream_id, [(b"x-trailer", b"h2echo")], end_stream=True)

    def close(self) -> None:
        self.listener.close()

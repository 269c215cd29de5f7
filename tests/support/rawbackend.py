"""Backends that speak HTTP/1.1 by hand, for what a well-behaved echo server never does:
close-delimited bodies, silence, interim responses, stale keep-alive connections,
protocol upgrades. Each records the raw requests it read."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class Conn:
    """One accepted connection, with a buffered reader of request heads and bodies."""

    def __init__(self, sock: socket.socket, backend: RawBackend) -> None:
        self.sock = sock
        self.backend = backend
        self.buffer = b""

    def read_until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_request(self) -> bytes | None:
        """A request head and its body, by Content-Length or chunked (recorded as
        received), None at EOF."""
        head = self.read_until(b"\r\n\r\n")
        if head is None:
            return None
        length = 0
        chunked = False
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower() == b"chunked"
        body = self.read_exactly(length)
        while chunked:
            size_line = self.read_until(b"\r\n") or b"0\r\n"
            size = int(size_line.split(b";")[0], 16)
            body += size_line + self.read_exactly(size + 2)
            chunked = size != 0
        request = head + body
        with self.backend.lock:
            self.backend.requests.append(request)
        return request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


Handler = Callable[[Conn], None]


def respond_ok(conn: Conn) -> None:
    """Keep-alive: every request gets a 200 naming its request line."""
    while (request := conn.read_request()) is not None:
        line = request.split(b"\r\n", 1)[0]
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(line), line))


class RawBackend:
    """A loopback TCP server running ``handler`` per connection in a thread."""

    def __init__(self, handler: Handler = respond_ok) -> None:
        self.handler = handler
        self.requests: list[bytes] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.handler(Conn(sock, self))
        except OSError:
            pass
        finally:
            sock.close()

    def request_lines(self) -> list[bytes]:
        with self.lock:
            return [request.split(b"\r\n", 1)[0] for request in self.requests]

    def close(self) -> None:
        self.listener.close()

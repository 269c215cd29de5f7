"""A UDP echo backend: answers each datagram with ``NAME:`` and the datagram."""

from __future__ import annotations

import socket
import threading


class UDPEcho:
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
                self.sock.sendto(self.name + b":" + data, peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def exchange(sock: socket.socket, address: tuple[str, int], data: bytes) -> bytes:
    """Send one datagram and return the answer (raises TimeoutError without one)."""
    sock.sendto(data, address)
    return sock.recvfrom(65535)[0]

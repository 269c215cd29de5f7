"""A TLS echo backend for passthrough tests: answers each line with its name."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading


class TLSEcho:
    def __init__(self, name: str, pair: tuple[bytes, bytes]) -> None:
        self.name = name
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile() as cert, tempfile.NamedTemporaryFile() as key:
            cert.write(pair[0])
            key.write(pair[1])
            cert.flush()
            key.flush()
            self.context.load_cert_chain(cert.name, key.name)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        try:
            with self.context.wrap_socket(client, server_side=True) as tls:
                reader = tls.makefile("rb")
                for line in reader:
                    tls.sendall(self.name.encode() + b":" + line)
        except (OSError, ssl.SSLError):
            pass

    def close(self) -> None:
        self.sock.close()

"""Stream echo backends for TLS tests: each line gets its name back (``NAME:line``), or,
in HTTP mode, each request a 200 whose body names the backend, the SNI it was reached
by and the client certificate's common name. Without a certificate pair they speak
plaintext; with ``client_ca`` they require a client certificate signed by it."""

from __future__ import annotations

import socket
import ssl
import threading

from tests.support.certs import load_pair


class TLSEcho:
    def __init__(
        self,
        name: str,
        pair: tuple[bytes, bytes] | None,
        client_ca: bytes | None = None,
        http: bool = False,
    ) -> None:
        self.name = name
        self.http = http
        self.server_names: list[str | None] = []
        self.context = None
        if pair is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            load_pair(self.context, pair)
            self.context.sni_callback = self._sni
            if client_ca is not None:
                self.context.verify_mode = ssl.CERT_REQUIRED
                self.context.load_verify_locations(cadata=client_ca.decode())
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _sni(self, sock, server_name, context) -> None:
        self.server_names.append(server_name)

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        try:
            if self.context is not None:
                client = self.context.wrap_socket(client, server_side=True)
            with client:
                if self.http:
                    self._answer_http(client)
                else:
                    for line in client.makefile("rb"):
                        client.sendall(self.name.encode() + b":" + line)
        except (OSError, ssl.SSLError):
            pass

    def _answer_http(self, client) -> None:
        reader = client.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            length = 0
            while (field := reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = field.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)  # (a body, if any, is read and ignored)
            peer = client.getpeercert() if isinstance(client, ssl.SSLSocket) else None
            common = dict(x[0] for x in peer["subject"]).get("commonName") if peer else "-"
            sni = self.server_names[-1] if self.server_names else "-"
            body = f"{self.name} sni={sni} client={common}\n".encode()
            client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def close(self) -> None:
        self.sock.close()

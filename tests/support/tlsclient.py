"""Clients for TLS tests: one HTTPS request, or one line over a TLS stream, with the
SNI (and Host) chosen by the test."""

from __future__ import annotations

import http.client
import socket
import ssl

import attrs

from tests.support.certs import load_pair


@attrs.frozen
class HTTPSAnswer:
    status: int
    body: bytes
    names: list[str]  # DNS names of the certificate the server presented
    alpn: str | None


def client_context(ca_pem: bytes, pair: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """Trusts ``ca_pem``; presents ``pair`` (certificate, key PEM) when given."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.set_alpn_protocols(["http/1.1"])
    if pair is not None:
        load_pair(context, pair)
    return context


def https_request(
    address: str,
    port: int,
    context: ssl.SSLContext,
    sni: str,
    host: str | None = None,
    path: str = "/",
) -> HTTPSAnswer:
    raw = socket.create_connection((address, port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname=sni)
    try:
        connection = http.client.HTTPConnection(address, port, timeout=10)
        connection.sock = tls
        connection.request("GET", path, headers={"Host": host or sni})
        response = connection.getresponse()
        body = response.read()
        certificate = tls.getpeercert()
        names = [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
        return HTTPSAnswer(response.status, body, names, tls.selected_alpn_protocol())
    finally:
        tls.close()


def stream_line(
    address: str, port: int, context: ssl.SSLContext, sni: str, line: bytes = b"hello\n"
) -> bytes:
    """Send one line over TLS and return the line that comes back."""
    with (
        socket.create_connection((address, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        tls.sendall(line)
        return tls.makefile("rb").readline()

"""TLS termination for HTTPS listeners: one OpenSSL context per listener, chosen by SNI.

All HTTPS listeners sharing an address and port share one socket; the client's SNI
picks the listener (exact hostname over wildcard over none), whose certificate is then
presented. A connection remembers the listener its handshake chose, so a request whose
``Host`` belongs to another listener can be answered 421 (Misdirected Request).
New tables bring new contexts: new handshakes use them, open connections keep theirs.
"""

from __future__ import annotations

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from twistgw.hostnames import host_matches, specificity
from twistgw.routing.ir import Bind, HTTPListener

MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
#: Forward-secret AEAD suites only (TLS 1.3 suites are OpenSSL's defaults).
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"
ALPN = (b"http/1.1",)


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    for protocol in ALPN:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def listener_context(listener: HTTPListener, min_version: str) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(MIN_VERSIONS[min_version])
    context.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION
    )
    context.set_cipher_list(CIPHERS)
    certificates = _split_chain(listener.tls.certificate_chain)
    context.use_certificate(crypto.load_certificate(crypto.FILETYPE_PEM, certificates[0]))
    for intermediate in certificates[1:]:
        context.add_extra_chain_cert(crypto.load_certificate(crypto.FILETYPE_PEM, intermediate))
    context.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, listener.tls.private_key))
    context.check_privatekey()
    context.set_alpn_select_callback(_select_alpn)
    return context


def _split_chain(pem: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [part + marker for part in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in part]


@implementer(IOpenSSLServerConnectionCreator)
class SNIContexts:
    """Creates server-side TLS connections whose context follows the client's SNI."""

    def __init__(self, bind: Bind, min_version: str = "1.2") -> None:
        self.min_version = min_version
        self.update(bind)

    def update(self, bind: Bind) -> None:
        """Use this bind's listeners and certificates for new handshakes."""
        listeners = sorted(
            (li for li in bind.listeners if li.tls is not None),
            key=lambda li: specificity(li.hostname),
        )
        contexts = [
            (listener, listener_context(listener, self.min_version)) for listener in listeners
        ]
        default = contexts[-1][1] if contexts else SSL.Context(SSL.TLS_SERVER_METHOD)
        default.set_tlsext_servername_callback(self._servername)
        self.contexts = contexts
        self.default = default

    def choose(self, server_name: str | None) -> tuple[HTTPListener, SSL.Context] | None:
        """The most specific listener for a server name; without one, the listener with
        no hostname if there is one, else the least specific."""
        if not self.contexts:
            return None
        if server_name:
            for listener, context in self.contexts:
                if host_matches(server_name, listener.hostname):
                    return listener, context
        return self.contexts[-1]

    def _servername(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        chosen = self.choose(name.decode("ascii", "replace").lower() if name else None)
        if chosen is not None:
            listener, context = chosen
            connection.set_context(context)
            connection.set_app_data(listener.name)

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        connection = SSL.Connection(self.default, None)
        chosen = self.choose(None)
        if chosen is not None:  # until (unless) SNI says otherwise
            connection.set_app_data(chosen[0].name)
        return connection


def handshake_listener(transport) -> str | None:
    """The name of the listener a TLS connection's handshake chose (None for TCP)."""
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if isinstance(handle, SSL.Connection):
        return handle.get_app_data()
    return None

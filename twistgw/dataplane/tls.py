"""TLS termination for HTTPS and TLS listeners: one OpenSSL context per listener,
chosen by SNI.

All HTTPS listeners sharing an address and port share one socket; the client's SNI
picks the listener (exact hostname over wildcard over none), whose certificate is then
presented. A connection remembers the listener its handshake chose, so a request whose
``Host`` belongs to another listener can be answered 421 (Misdirected Request).
New tables bring new contexts: new handshakes use them, open connections keep theirs.
"""

from __future__ import annotations

import hashlib

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from twistgw.hostnames import host_matches, specificity
from twistgw.routing.ir import Bind, CertificateKey, HTTPListener, TLSListener

Listener = HTTPListener | TLSListener

MIN_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
#: Forward-secret AEAD suites only (TLS 1.3 suites are OpenSSL's defaults).
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"
#: Application protocols of HTTPS listeners, the gateway's preference first.
ALPN = (b"h2", b"http/1.1")


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    for protocol in ALPN:
        if protocol in offered:
            return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def split_chain(pem: bytes) -> list[bytes]:
    """The PEM certificates of a bundle, one each."""
    marker = b"-----END CERTIFICATE-----"
    return [part + marker for part in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in part]


def load_certificate_key(context: SSL.Context, pair: CertificateKey) -> None:
    """Present ``pair`` (leaf, intermediates, key) on connections of ``context``."""
    certificates = split_chain(pair.certificate_chain)
    context.use_certificate(crypto.load_certificate(crypto.FILETYPE_PEM, certificates[0]))
    for intermediate in certificates[1:]:
        context.add_extra_chain_cert(crypto.load_certificate(crypto.FILETYPE_PEM, intermediate))
    context.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, pair.private_key))
    context.check_privatekey()


def _accept_any(connection, certificate, error, depth, ok) -> bool:
    return True


def _accept_valid(connection, certificate, error, depth, ok) -> bool:
    return bool(ok)


@implementer(IOpenSSLServerConnectionCreator)
class ListenerContext:
    """A terminating listener's OpenSSL context and how it treats client certificates;
    as a connection creator, it serves a listener already chosen (by the ClientHello's
    SNI, read before the handshake)."""

    def __init__(self, listener: Listener, min_version: str) -> None:
        self.listener = listener
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(MIN_VERSIONS[min_version])
        context.set_options(
            SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION
        )
        context.set_cipher_list(CIPHERS)
        load_certificate_key(context, listener.tls.certificate)
        if isinstance(listener, HTTPListener):  # a TLS listener's stream is not ours to name
            context.set_alpn_select_callback(_select_alpn)
        self.verify_mode, self.verify = SSL.VERIFY_NONE, None
        validation = listener.tls.client_validation
        if validation is not None:
            store = context.get_cert_store()
            authorities = []
            for pem in split_chain(validation.ca_certificates):
                certificate = crypto.load_certificate(crypto.FILETYPE_PEM, pem)
                store.add_cert(certificate)
                authorities.append(certificate.get_subject())
            context.set_client_ca_list(authorities)
            if validation.mode == "AllowInsecureFallback":
                self.verify_mode, self.verify = SSL.VERIFY_PEER, _accept_any
            else:
                self.verify_mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT
                self.verify = _accept_valid
            context.set_verify(self.verify_mode, self.verify)
        # a session is resumed only on the listener that made it (and checked its client)
        context.set_session_id(hashlib.sha256(listener.name.encode()).digest()[:32])
        self.context = context

    def apply(self, connection: SSL.Connection) -> None:
        """Make ``connection`` (created on another context) behave as this listener's."""
        connection.set_context(self.context)
        connection.set_verify(self.verify_mode, self.verify)
        connection.set_app_data(self.listener.name)

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        self.apply(connection)
        return connection


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
        contexts = [ListenerContext(listener, self.min_version) for listener in listeners]
        default = contexts[-1].context if contexts else SSL.Context(SSL.TLS_SERVER_METHOD)
        default.set_tlsext_servername_callback(self._servername)
        self.contexts = contexts
        self.by_name = {c.listener.name: c for c in contexts}
        self.default = default

    def choose(self, server_name: str | None) -> ListenerContext | None:
        """The most specific listener for a server name; without one, the listener with
        no hostname if there is one, else the least specific."""
        if not self.contexts:
            return None
        if server_name:
            for context in self.contexts:
                if host_matches(server_name, context.listener.hostname):
                    return context
        return self.contexts[-1]

    def _servername(self, connection: SSL.Connection) -> None:
        name = connection.get_servername()
        chosen = self.choose(name.decode("ascii", "replace").lower() if name else None)
        if chosen is not None:
            chosen.apply(connection)

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        connection = SSL.Connection(self.default, None)
        chosen = self.choose(None)
        if chosen is not None:  # until (unless) SNI says otherwise
            chosen.apply(connection)
        return connection


def handshake_listener(transport) -> str | None:
    """The name of the listener a TLS connection's handshake chose (None for TCP)."""
    get_handle = getattr(transport, "getHandle", None)
    handle = get_handle() if get_handle is not None else None
    if isinstance(handle, SSL.Connection):
        return handle.get_app_data()
    return None

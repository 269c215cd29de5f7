"""TLS from the gateway to backends (BackendTLSPolicy): SNI, trust anchors, and the
certificate checked against the policy's hostname or subjectAltNames; the Gateway's
client certificate presented when the backend asks for one."""

from __future__ import annotations

from cryptography import x509
from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from twistgw.dataplane.tls import load_certificate_key, split_chain
from twistgw.routing.ir import BackendTLS, CertificateKey

log = Logger()


def identity_matches(certificate: x509.Certificate, names: tuple[tuple[str, str], ...]) -> bool:
    """Whether the certificate carries one of ``names`` (("Hostname" | "URI", value)):
    DNS names by RFC 6125 (wildcards included), URIs exactly."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = set(sans.get_values_for_type(x509.UniformResourceIdentifier))
    except x509.ExtensionNotFound:
        uris = set()
    for kind, value in names:
        if kind == "URI":
            if value in uris:
                return True
            continue
        try:
            verify_certificate_hostname(certificate, value)
            return True
        except (VerificationError, CertificateError, ValueError):
            continue
    return False


@implementer(IOpenSSLClientConnectionCreator)
class BackendConnectionCreator:
    """Client-side TLS connections for one backend policy (and client certificate);
    ``http2``: ALPN offers ``h2`` only (the backend speaks HTTP/2)."""

    def __init__(self, tls: BackendTLS, client: CertificateKey | None, http2: bool = False) -> None:
        self.hostname = tls.hostname
        self.names = tls.subject_alt_names or (("Hostname", tls.hostname),)
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
        if tls.system_trust:
            context.set_default_verify_paths()
        else:
            store = context.get_cert_store()
            for pem in split_chain(tls.ca_certificates):
                store.add_cert(crypto.load_certificate(crypto.FILETYPE_PEM, pem))
        context.set_verify(SSL.VERIFY_PEER, self._verify)
        if client is not None:
            load_certificate_key(context, client)
        if http2:
            context.set_alpn_protos([b"h2"])
        self.context = context

    def _verify(self, connection, certificate, error: int, depth: int, ok: int) -> bool:
        if not ok:
            log.info(
                "backend {name}: certificate {subject} rejected (OpenSSL verify error {code})",
                name=self.hostname,
                subject=certificate.get_subject().CN,
                code=error,
            )
            return False
        if depth > 0:
            return True
        if identity_matches(certificate.to_cryptography(), self.names):
            return True
        log.info(
            "backend certificate does not match {names}",
            names=", ".join(value for _, value in self.names),
        )
        return False

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        connection.set_tlsext_host_name(self.hostname.encode("idna"))
        return connection


class BackendTLSCreators:
    """One connection creator (one OpenSSL context) per policy and client certificate,
    kept for as long as tables use them."""

    def __init__(self) -> None:
        self._creators: dict[tuple, BackendConnectionCreator] = {}

    def get(
        self, tls: BackendTLS, client: CertificateKey | None, http2: bool = False
    ) -> BackendConnectionCreator:
        key = (tls, client, http2)
        creator = self._creators.get(key)
        if creator is None:
            if len(self._creators) > 1024:  # policies churned: start over
                self._creators.clear()
            creator = self._creators[key] = BackendConnectionCreator(tls, client, http2)
        return creator

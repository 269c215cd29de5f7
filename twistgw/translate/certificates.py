"""Certificates named by references: listener certificates (``tls.certificateRefs``),
the Gateway's client certificate for backends, and CA bundles from ConfigMaps."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twistgw.api.resource import Resource
from twistgw.routing.ir import CertificateKey
from twistgw.snapshot import Snapshot
from twistgw.translate.references import BackendError, referenced

TLS_SECRET_TYPE = "kubernetes.io/tls"


def _decoded(secret: Resource, key: str, reason: str) -> bytes:
    value = (secret.body.get("data") or {}).get(key)
    if value is None:
        string = (secret.body.get("stringData") or {}).get(key)
        if string is None:
            raise BackendError(reason, f"Secret {secret.namespace}/{secret.name} has no {key}")
        return string.encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BackendError(
            reason, f"Secret {secret.namespace}/{secret.name} {key} is not base64"
        ) from exc


def checked_pair(secret: Resource, reason: str = "InvalidCertificateRef") -> CertificateKey:
    """The Secret's certificate chain and key, if they parse and belong together;
    otherwise BackendError with ``reason``."""
    where = f"Secret {secret.namespace}/{secret.name}"
    if secret.body.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
        raise BackendError(reason, f"{where} is not of type {TLS_SECRET_TYPE}")
    chain, key = _decoded(secret, "tls.crt", reason), _decoded(secret, "tls.key", reason)
    try:
        certificates = x509.load_pem_x509_certificates(chain)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise BackendError(reason, f"{where} does not hold a PEM certificate and key") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificates[0].public_key().public_bytes(
        encoding, public
    ) != private_key.public_key().public_bytes(encoding, public):
        raise BackendError(reason, f"{where}: tls.key does not match tls.crt")
    return CertificateKey(chain, key)


def listener_certificate(
    snapshot: Snapshot, gateway: Resource, tls: dict[str, Any]
) -> CertificateKey:
    """The first certificateRef of a listener, resolved; raises BackendError with the
    ResolvedRefs reason (InvalidCertificateRef, RefNotPermitted)."""
    refs = tls.get("certificateRefs") or []
    if not refs:
        raise BackendError("InvalidCertificateRef", "the listener has no certificateRefs")
    secret = referenced(
        snapshot,
        gateway,
        refs[0],
        "Secret",
        "certificateRef",
        "InvalidCertificateRef",
        "InvalidCertificateRef",
    )
    return checked_pair(secret)


def client_certificate(snapshot: Snapshot, gateway: Resource) -> CertificateKey | None:
    """The Gateway's ``spec.tls.backend.clientCertificateRef``, resolved (None when
    unset); raises BackendError (InvalidClientCertificateRef, RefNotPermitted)."""
    ref = ((gateway.spec.get("tls") or {}).get("backend") or {}).get("clientCertificateRef")
    if not ref:
        return None
    reason = "InvalidClientCertificateRef"
    secret = referenced(snapshot, gateway, ref, "Secret", "clientCertificateRef", reason, reason)
    return checked_pair(secret, reason)


def ca_bundle(
    snapshot: Snapshot,
    referrer: Resource,
    ref: dict[str, Any],
    kind_reason: str,
    cross_namespace: bool = True,
) -> bytes:
    """The PEM certificates in a ConfigMap's ``ca.crt``. Raises BackendError:
    ``kind_reason`` for another kind, RefNotPermitted across namespaces without a
    ReferenceGrant (or at all, when ``cross_namespace`` is False), and
    InvalidCACertificateRef for a missing ConfigMap or one without usable ``ca.crt``."""
    reason = "InvalidCACertificateRef"
    config_map = referenced(
        snapshot,
        referrer,
        ref,
        "ConfigMap",
        "caCertificateRef",
        kind_reason,
        reason,
        cross_namespace,
    )
    namespace, name = config_map.namespace, config_map.name
    pem = (config_map.body.get("data") or {}).get("ca.crt") or ""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except (ValueError, TypeError, AttributeError) as exc:
        raise BackendError(
            reason, f"ConfigMap {namespace}/{name} ca.crt holds no PEM certificate"
        ) from exc
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def ca_bundles(
    snapshot: Snapshot,
    referrer: Resource,
    refs: list[dict[str, Any]],
    kind_reason: str,
    cross_namespace: bool = True,
) -> tuple[bytes, BackendError | None]:
    """Every usable CA certificate of ``refs`` and the first problem, if any."""
    found, error = b"", None
    for ref in refs:
        try:
            found += ca_bundle(snapshot, referrer, ref, kind_reason, cross_namespace)
        except BackendError as exc:
            error = error or exc
    return found, error

"""Listener certificates: ``tls.certificateRefs`` resolved to a checked PEM pair."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twistgw.api.resource import Resource
from twistgw.routing.ir import ListenerTLS
from twistgw.snapshot import Snapshot
from twistgw.translate.references import BackendError, reference_permitted

TLS_SECRET_TYPE = "kubernetes.io/tls"


def _decoded(secret: Resource, key: str) -> bytes:
    value = (secret.body.get("data") or {}).get(key)
    if value is None:
        string = (secret.body.get("stringData") or {}).get(key)
        if string is None:
            raise BackendError(
                "InvalidCertificateRef", f"Secret {secret.namespace}/{secret.name} has no {key}"
            )
        return string.encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise BackendError(
            "InvalidCertificateRef", f"Secret {secret.namespace}/{secret.name} {key} is not base64"
        ) from exc


def checked_pair(secret: Resource) -> ListenerTLS:
    """The Secret's certificate chain and key, if they parse and belong together."""
    where = f"Secret {secret.namespace}/{secret.name}"
    if secret.body.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
        raise BackendError("InvalidCertificateRef", f"{where} is not of type {TLS_SECRET_TYPE}")
    chain, key = _decoded(secret, "tls.crt"), _decoded(secret, "tls.key")
    try:
        certificates = x509.load_pem_x509_certificates(chain)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise BackendError(
            "InvalidCertificateRef", f"{where} does not hold a PEM certificate and key"
        ) from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificates[0].public_key().public_bytes(
        encoding, public
    ) != private_key.public_key().public_bytes(encoding, public):
        raise BackendError("InvalidCertificateRef", f"{where}: tls.key does not match tls.crt")
    return ListenerTLS(chain, key)


def listener_certificate(snapshot: Snapshot, gateway: Resource, tls: dict[str, Any]) -> ListenerTLS:
    """The first certificateRef of a listener, resolved; raises BackendError with the
    ResolvedRefs reason (InvalidCertificateRef, RefNotPermitted)."""
    refs = tls.get("certificateRefs") or []
    if not refs:
        raise BackendError("InvalidCertificateRef", "the listener has no certificateRefs")
    ref = refs[0]
    group, kind, name = ref.get("group", ""), ref.get("kind", "Secret"), ref.get("name")
    namespace = ref.get("namespace") or gateway.namespace
    if (group, kind) != ("", "Secret"):
        raise BackendError(
            "InvalidCertificateRef",
            f"certificateRef kind {group or 'core'}/{kind} is not supported",
        )
    if not reference_permitted(
        snapshot, "Gateway", gateway.namespace, "", "Secret", namespace, name
    ):
        raise BackendError(
            "RefNotPermitted",
            f"certificateRef to Secret {namespace}/{name} is not permitted by any ReferenceGrant",
        )
    secret = snapshot.get("Secret", namespace, name)
    if secret is None:
        raise BackendError("InvalidCertificateRef", f"Secret {namespace}/{name} not found")
    return checked_pair(secret)

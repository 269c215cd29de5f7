"""Certificates named by references: listener certificates (``tls.certificateRefs``),
the Gateway's client certificate for backends, and CA bundles from ConfigMaps."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from twistgw.api.resource import ObjectKey, Resource
from twistgw.routing.ir import CertificateKey
from twistgw.snapshot import Snapshot
from twistgw.translate.references import BackendError, referenced

TLS_SECRET_TYPE = "kubernetes.io/tls"

T = TypeVar("T")


class _Unusable(Exception):
    """Why a Secret's certificate pair or a ConfigMap's CA bundle is unusable."""


def _once(snapshot: Snapshot, name: str, resource: Resource, parse: Callable[[Resource], T]) -> T:
    """``parse(resource)``, made once per snapshot (however many listeners name the
    object) and kept under ``name``; ``_Unusable`` is raised again when it was then."""
    done: dict[ObjectKey, T | str] = snapshot.index(name, lambda _: {})
    if resource.key not in done:
        try:
            done[resource.key] = parse(resource)
        except _Unusable as exc:
            done[resource.key] = str(exc)
    found = done[resource.key]
    if isinstance(found, str):
        raise _Unusable(found)
    return found


def secret_value(secret: Resource, key: str) -> bytes:
    """A Secret's ``key``: ``data`` (base64) or ``stringData``; raises ValueError (the
    message names the Secret and the key) when it has none or it is not base64."""
    try:
        return _decoded(secret, key)
    except _Unusable as exc:
        raise ValueError(str(exc)) from None


def _decoded(secret: Resource, key: str) -> bytes:
    value = (secret.body.get("data") or {}).get(key)
    if value is None:
        string = (secret.body.get("stringData") or {}).get(key)
        if string is None:
            raise _Unusable(f"Secret {secret.namespace}/{secret.name} has no {key}")
        return string.encode()
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise _Unusable(f"Secret {secret.namespace}/{secret.name} {key} is not base64") from exc


def _pair(secret: Resource) -> CertificateKey:
    """The Secret's certificate chain and key; _Unusable unless they parse and belong
    together."""
    where = f"Secret {secret.namespace}/{secret.name}"
    if secret.body.get("type", TLS_SECRET_TYPE) != TLS_SECRET_TYPE:
        raise _Unusable(f"{where} is not of type {TLS_SECRET_TYPE}")
    chain, key = _decoded(secret, "tls.crt"), _decoded(secret, "tls.key")
    try:
        certificates = x509.load_pem_x509_certificates(chain)
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise _Unusable(f"{where} does not hold a PEM certificate and key") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificates[0].public_key().public_bytes(
        encoding, public
    ) != private_key.public_key().public_bytes(encoding, public):
        raise _Unusable(f"{where}: tls.key does not match tls.crt")
    return CertificateKey(chain, key)


def checked_pair(
    snapshot: Snapshot, secret: Resource, reason: str = "InvalidCertificateRef"
) -> CertificateKey:
    """The Secret's certificate chain and key (parsed once per snapshot), if they parse
    and belong together; otherwise BackendError with ``reason``."""
    try:
        return _once(snapshot, "certificate-pairs", secret, _pair)
    except _Unusable as exc:
        raise BackendError(reason, str(exc)) from None


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
    return checked_pair(snapshot, secret)


def client_certificate(snapshot: Snapshot, gateway: Resource) -> CertificateKey | None:
    """The Gateway's ``spec.tls.backend.clientCertificateRef``, resolved (None when
    unset); raises BackendError (InvalidClientCertificateRef, RefNotPermitted)."""
    ref = ((gateway.spec.get("tls") or {}).get("backend") or {}).get("clientCertificateRef")
    if not ref:
        return None
    reason = "InvalidClientCertificateRef"
    secret = referenced(snapshot, gateway, ref, "Secret", "clientCertificateRef", reason, reason)
    return checked_pair(snapshot, secret, reason)


def _ca_certificates(config_map: Resource) -> bytes:
    """The PEM certificates in a ConfigMap's ``ca.crt``, re-encoded; _Unusable when it
    holds none."""
    pem = (config_map.body.get("data") or {}).get("ca.crt") or ""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except (ValueError, TypeError, AttributeError) as exc:
        raise _Unusable(
            f"ConfigMap {config_map.namespace}/{config_map.name} ca.crt holds no PEM certificate"
        ) from exc
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def ca_bundles(
    snapshot: Snapshot,
    referrer: Resource,
    refs: list[dict[str, Any]],
    kind_reason: str,
    cross_namespace: bool = True,
) -> tuple[bytes, BackendError | None]:
    """The PEM certificates in the ``ca.crt`` of the ConfigMaps ``refs`` name (each
    ConfigMap's once, parsed once per snapshot) and the first problem, if any: a
    BackendError with ``kind_reason`` for another kind, RefNotPermitted across
    namespaces without a ReferenceGrant (or at all, when ``cross_namespace`` is False),
    and InvalidCACertificateRef for a missing ConfigMap or one without usable
    ``ca.crt``."""
    reason = "InvalidCACertificateRef"
    found: list[bytes] = []
    seen: set[ObjectKey] = set()
    error = None
    for ref in refs:
        try:
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
            if config_map.key in seen:
                continue
            seen.add(config_map.key)
            found.append(_once(snapshot, "ca-certificates", config_map, _ca_certificates))
        except BackendError as exc:
            error = error or exc
        except _Unusable as exc:
            error = error or BackendError(reason, str(exc))
    return b"".join(found), error

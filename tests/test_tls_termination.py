"""Terminating TLS through a real gateway process: TLS listeners in Terminate mode,
Terminate, Passthrough and HTTPS listeners sharing one port, and client-certificate
validation in both modes."""

from __future__ import annotations

import json
import ssl

import pytest

from tests.support.certs import CA, ca_config_map, tls_secret
from tests.support.gateway import wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.tlsclient import client_context, https_request, stream_line
from tests.support.tlsecho import TLSEcho

MIXED_PORT = 9444
STRICT_PORT = 9445
FALLBACK_PORT = 9446
REFUSED = (ssl.SSLError, ConnectionError, OSError)


def _tls_route(name: str, section: str, hostname: str, service_name: str) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TLSRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "mixed", "sectionName": section}],
            "hostnames": [hostname],
            "rules": [{"backendRefs": [{"name": service_name, "port": 443}]}],
        },
    }


@pytest.fixture(scope="module")
def pki():
    return {"server": CA("server CA"), "clients": CA("clients CA"), "strangers": CA("other CA")}


@pytest.fixture(scope="module")
def mixed(gateway, backends, pki):
    """One port: term.example.com terminated to a plaintext echo, pass.example.com
    passed through to a TLS echo, web.example.com served as HTTPS."""
    ca = pki["server"]
    plain = TLSEcho("plain", None)
    secure = TLSEcho("secure", ca.issue("pass.example.com"))
    web = backends.start("web")
    listeners = [
        {
            "name": "terminate",
            "port": MIXED_PORT,
            "protocol": "TLS",
            "hostname": "term.example.com",
            "tls": {"mode": "Terminate", "certificateRefs": [{"name": "front"}]},
        },
        {
            "name": "passthrough",
            "port": MIXED_PORT,
            "protocol": "TLS",
            "hostname": "pass.example.com",
            "tls": {"mode": "Passthrough"},
        },
        {
            "name": "https",
            "port": MIXED_PORT,
            "protocol": "HTTPS",
            "hostname": "web.example.com",
            "tls": {"certificateRefs": [{"name": "front"}]},
        },
    ]
    gateway.write(
        "mixed.yaml",
        [
            gateway_class(),
            gateway_manifest("mixed", listeners=listeners),
            tls_secret("front", ca.issue("term.example.com", "web.example.com")),
            *service("plain", [plain.address], port=443),
            *service("secure", [secure.address], port=443),
            *service("web", [web]),
            _tls_route("to-plain", "terminate", "term.example.com", "plain"),
            _tls_route("to-secure", "passthrough", "pass.example.com", "secure"),
            http_route("web", [{"backendRefs": [backend("web")]}], parents=[{"name": "mixed"}]),
        ],
    )
    context = client_context(ca.pem)
    wait_until(
        lambda: stream_line(gateway.address, MIXED_PORT, context, "term.example.com"),
        what="terminated TLS served",
    )
    yield gateway, context
    plain.close()
    secure.close()


def test_terminate_mode_hands_the_backend_plaintext(mixed):
    gateway, context = mixed
    assert stream_line(gateway.address, MIXED_PORT, context, "term.example.com") == (
        b"plain:hello\n"
    )


def test_passthrough_shares_the_port(mixed):
    gateway, context = mixed
    # the backend, not the gateway, holds a certificate for pass.example.com
    assert stream_line(gateway.address, MIXED_PORT, context, "pass.example.com") == (
        b"secure:hello\n"
    )


def test_https_shares_the_port(mixed):
    gateway, context = mixed
    answer = https_request(gateway.address, MIXED_PORT, context, "web.example.com")
    assert answer.status == 200 and answer.alpn == "http/1.1"
    echoed = json.loads(answer.body)
    headers = {name.lower(): value for name, value in echoed["header_list"]}
    assert echoed["backend"] == "web" and headers["x-forwarded-proto"] == "https"


def test_sni_no_listener_serves_is_closed(mixed):
    gateway, context = mixed
    with pytest.raises(REFUSED):
        stream_line(gateway.address, MIXED_PORT, context, "nobody.example.com")


def test_mixed_listeners_are_accepted(mixed):
    gateway, _ = mixed
    listeners = gateway.status("Gateway", "mixed")["status"]["listeners"]
    for listener in listeners:
        accepted = next(c for c in listener["conditions"] if c["type"] == "Accepted")
        assert accepted["status"] == "True", listener
    attached = {li["name"]: li["attachedRoutes"] for li in listeners}
    assert attached == {"terminate": 1, "passthrough": 1, "https": 1}


@pytest.fixture(scope="module")
def mtls(gateway, backends, pki):
    """HTTPS on STRICT_PORT requires a certificate from the clients CA (the Gateway's
    default); FALLBACK_PORT asks for one but serves without (per-port override)."""
    app = backends.start("app")
    validation = {"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "clients"}]}
    frontend = {
        "default": {"validation": validation},
        "perPort": [
            {
                "port": FALLBACK_PORT,
                "tls": {"validation": {**validation, "mode": "AllowInsecureFallback"}},
            }
        ],
    }
    listeners = [
        {
            "name": name,
            "port": port,
            "protocol": "HTTPS",
            "tls": {"certificateRefs": [{"name": "mtls-cert"}]},
        }
        for name, port in (("strict", STRICT_PORT), ("fallback", FALLBACK_PORT))
    ]
    gateway.write(
        "mtls.yaml",
        [
            gateway_class(),
            gateway_manifest("mtls", listeners=listeners, tls={"frontend": frontend}),
            tls_secret("mtls-cert", pki["server"].issue("secure.example.com")),
            ca_config_map("clients", pki["clients"].pem),
            *service("app", [app]),
            http_route("app", [{"backendRefs": [backend("app")]}], parents=[{"name": "mtls"}]),
        ],
    )
    address = gateway.address_of("mtls")
    good = client_context(pki["server"].pem, pki["clients"].issue("alice"))
    wait_until(
        lambda: _status(address, STRICT_PORT, good) == 200, what="client-validated HTTPS served"
    )
    return address


def _status(address: str, port: int, context: ssl.SSLContext) -> int:
    return https_request(address, port, context, "secure.example.com").status


def test_a_valid_client_certificate_is_required(mtls, pki):
    server = pki["server"].pem
    assert _status(mtls, STRICT_PORT, client_context(server, pki["clients"].issue("alice"))) == 200
    for context in (
        client_context(server),  # no certificate
        client_context(server, pki["strangers"].issue("mallory")),  # untrusted issuer
    ):
        with pytest.raises(REFUSED):
            _status(mtls, STRICT_PORT, context)


def test_insecure_fallback_serves_without_a_valid_certificate(mtls, pki):
    server = pki["server"].pem
    for pair in (None, pki["strangers"].issue("mallory"), pki["clients"].issue("alice")):
        assert _status(mtls, FALLBACK_PORT, client_context(server, pair)) == 200

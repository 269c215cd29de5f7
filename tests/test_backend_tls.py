"""BackendTLSPolicy through a real gateway process: TLS to backends with SNI and a
private CA, hostname and URI subjectAltName checks, the Gateway's client certificate,
unusable policies, and re-encryption behind a terminating TLS listener."""

from __future__ import annotations

import pytest

from tests.support.certs import CA, ca_config_map, tls_secret
from tests.support.gateway import wait_until
from tests.support.manifests import (
    backend,
    backend_tls_policy,
    gateway_class,
    gateway_manifest,
    http_route,
    service,
)
from tests.support.tlsclient import client_context, stream_line
from tests.support.tlsecho import TLSEcho

HTTP_PORT = 8090
TLS_PORT = 9447
SPIFFE = "spiffe://example.test/ns/default/sa/app"
CA_REF = {"group": "", "kind": "ConfigMap", "name": "backend-ca"}


def _policy(name: str, service_name: str, **validation) -> dict:
    validation.setdefault("hostname", "abc.example.com")
    validation.setdefault("caCertificateRefs", [CA_REF])
    return backend_tls_policy(name, service_name, **validation)


@pytest.fixture(scope="module")
def btls(gateway):
    backend_ca, gateway_clients, stranger = CA("backend CA"), CA("gateway client CA"), CA("x")
    pair = backend_ca.issue("abc.example.com", uris=(SPIFFE,))
    plain_https = TLSEcho("https-app", pair, http=True)
    client_checking = TLSEcho("mtls-app", pair, client_ca=gateway_clients.pem, http=True)
    stream = TLSEcho("tls-stream", pair)
    cases = {  # path and Service -> (backend, policy validation)
        "good": (plain_https, {}),
        "wrong-host": (plain_https, {"hostname": "other.example.com"}),
        "wrong-ca": (plain_https, {"caCertificateRefs": [{**CA_REF, "name": "stranger-ca"}]}),
        "uri": (plain_https, {"subjectAltNames": [{"type": "URI", "uri": SPIFFE}]}),
        "wrong-uri": (plain_https, {"subjectAltNames": [{"type": "URI", "uri": SPIFFE + "x"}]}),
        "no-ca": (plain_https, {"caCertificateRefs": [{**CA_REF, "name": "missing"}]}),
        "client": (client_checking, {}),
        "stream": (stream, {}),
    }
    documents = [
        gateway_class(),
        gateway_manifest(
            "btls",
            listeners=[
                {"name": "http", "port": HTTP_PORT, "protocol": "HTTP"},
                {
                    "name": "tls",
                    "port": TLS_PORT,
                    "protocol": "TLS",
                    "hostname": "front.example.com",
                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": "front"}]},
                },
            ],
            tls={"backend": {"clientCertificateRef": {"name": "gateway-client"}}},
        ),
        tls_secret("front", backend_ca.issue("front.example.com")),
        tls_secret("gateway-client", gateway_clients.issue("twistgw-gateway")),
        ca_config_map("backend-ca", backend_ca.pem),
        ca_config_map("stranger-ca", stranger.pem),
        http_route(
            "apps",
            [
                {
                    "matches": [{"path": {"type": "Exact", "value": f"/{name}"}}],
                    "backendRefs": [backend(name, port=443)],
                }
                for name in cases
                if name != "stream"
            ],
            parents=[{"name": "btls", "sectionName": "http"}],
        ),
        {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TLSRoute",
            "metadata": {"name": "stream", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "btls", "sectionName": "tls"}],
                "rules": [{"backendRefs": [{"name": "stream", "port": 443}]}],
            },
        },
    ]
    for name, (server, validation) in cases.items():
        documents += service(name, [server.address], port=443)
        documents.append(_policy(name, name, **validation))
    gateway.write("btls.yaml", documents)
    address = gateway.address_of("btls")
    wait_until(
        lambda: gateway.request("/good", port=HTTP_PORT, address=address)[0] == 200,
        what="a backend served over TLS",
    )
    yield gateway, address, backend_ca, plain_https
    for server in (plain_https, client_checking, stream):
        server.close()


def _get(btls, path: str) -> tuple[int, bytes]:
    gateway, address, _, _ = btls
    status, _, body = gateway.request(path, port=HTTP_PORT, address=address)
    return status, body


def test_tls_to_the_backend_with_sni_and_a_private_ca(btls):
    status, body = _get(btls, "/good")
    assert status == 200 and body.startswith(b"https-app sni=abc.example.com"), body


def test_certificates_that_do_not_check_out_are_refused(btls):
    for path in ("/wrong-host", "/wrong-ca", "/wrong-uri"):
        assert _get(btls, path)[0] == 502, path


def test_a_uri_subject_alt_name_replaces_the_hostname_check(btls):
    status, body = _get(btls, "/uri")
    assert status == 200, body


def test_the_gateway_presents_its_client_certificate(btls):
    status, body = _get(btls, "/client")
    assert status == 200 and body.rstrip().endswith(b"client=twistgw-gateway"), body


def test_an_unusable_policy_fails_its_backend_and_says_why(btls):
    gateway = btls[0]
    assert _get(btls, "/no-ca")[0] == 500
    ancestors = gateway.status("BackendTLSPolicy", "no-ca")["status"]["ancestors"]
    conditions = {c["type"]: c["reason"] for c in ancestors[0]["conditions"]}
    assert ancestors[0]["ancestorRef"]["name"] == "btls"
    assert conditions == {
        "ResolvedRefs": "InvalidCACertificateRef",
        "Accepted": "NoValidCACertificate",
    }
    good = gateway.status("BackendTLSPolicy", "good")["status"]["ancestors"][0]["conditions"]
    assert {c["type"]: c["status"] for c in good} == {"ResolvedRefs": "True", "Accepted": "True"}


def test_a_terminated_tls_stream_is_re_encrypted(btls):
    _, address, backend_ca, _ = btls
    line = stream_line(address, TLS_PORT, client_context(backend_ca.pem), "front.example.com")
    assert line == b"tls-stream:hello\n"

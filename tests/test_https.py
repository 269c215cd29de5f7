"""HTTPS listeners through a real gateway process: SNI, certificates from Secrets,
rotation, 421, and bad certificate references."""

from __future__ import annotations

import http.client
import json
import socket
import ssl

import pytest
import yaml

from tests.support.certs import CA, tls_secret
from tests.support.gateway import wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.tlsclient import client_context, https_request

PORT = 8443


def _listener(name: str, hostname: str | None, secret: str, namespace: str | None = None) -> dict:
    ref = {"name": secret, **({"namespace": namespace} if namespace else {})}
    listener = {"name": name, "port": PORT, "protocol": "HTTPS", "tls": {"certificateRefs": [ref]}}
    if hostname:
        listener["hostname"] = hostname
    return listener


@pytest.fixture(scope="module")
def ca():
    return CA()


@pytest.fixture(scope="module")
def https(gateway, backends, ca):
    address = backends.start("tls-app")
    listeners = [
        _listener("exact", "a.example.com", "exact-cert"),
        _listener("wild", "*.example.com", "wild-cert"),
        _listener("any", None, "default-cert"),
        _listener("missing", "missing.example.org", "no-such-secret"),
        _listener("foreign", "foreign.example.org", "elsewhere", namespace="other"),
    ]
    gateway.write(
        "https.yaml",
        [
            gateway_class(),
            gateway_manifest("tls", listeners=listeners),
            tls_secret("exact-cert", ca.issue("a.example.com")),
            tls_secret("wild-cert", ca.issue("*.example.com")),
            tls_secret("default-cert", ca.issue("default.example.net")),
            tls_secret("elsewhere", ca.issue("foreign.example.org"), namespace="other"),
            *service("app", [address]),
            http_route("app", [{"backendRefs": [backend("app")]}], parents=[{"name": "tls"}]),
        ],
    )
    wait_until(lambda: _request(gateway, ca, "a.example.com")[0] == 200, what="HTTPS served")
    return gateway


def _context(ca: CA) -> ssl.SSLContext:
    return client_context(ca.pem)  # (offers http/1.1 only: h2 is tests/test_http2.py's)


def _request(gateway, ca, sni: str, host: str | None = None, path: str = "/"):
    answer = https_request(gateway.address, PORT, _context(ca), sni, host, path)
    return answer.status, answer.body, answer.names, answer.alpn


def test_sni_picks_the_listener_certificate(https, ca):
    assert _request(https, ca, "a.example.com")[2] == ["a.example.com"]
    assert _request(https, ca, "b.example.com")[2] == ["*.example.com"]
    status, body, names, alpn = _request(https, ca, "default.example.net")
    assert names == ["default.example.net"] and status == 200
    assert alpn == "http/1.1"
    echoed = json.loads(body)
    sent = {name.lower(): value for name, value in echoed["header_list"]}
    assert sent["x-forwarded-proto"] == "https"


def test_host_of_another_listener_is_misdirected(https, ca):
    status, body, _, _ = _request(https, ca, "a.example.com", host="b.example.com")
    assert status == 421, body
    assert _request(https, ca, "b.example.com", host="c.example.com")[0] == 200


def test_bad_certificate_refs_are_reported_and_the_rest_serve(https, ca):
    item = https.status("Gateway", "tls")
    listeners = {li["name"]: li for li in item["status"]["listeners"]}

    def condition(name: str, type_: str) -> str:
        found = next(c for c in listeners[name]["conditions"] if c["type"] == type_)
        return f"{found['status']}/{found['reason']}"

    assert condition("missing", "ResolvedRefs") == "False/InvalidCertificateRef"
    assert condition("missing", "Programmed") == "False/Invalid"
    assert condition("foreign", "ResolvedRefs") == "False/RefNotPermitted"
    assert condition("exact", "Programmed") == "True/Programmed"
    assert _request(https, ca, "a.example.com")[0] == 200


def test_rotated_secret_serves_new_handshakes_and_keeps_open_connections(https, ca):
    raw = socket.create_connection((https.address, PORT), timeout=10)
    tls = _context(ca).wrap_socket(raw, server_hostname="a.example.com")
    connection = http.client.HTTPConnection(https.address, PORT, timeout=10)
    connection.sock = tls
    connection.request("GET", "/before", headers={"Host": "a.example.com"})
    assert connection.getresponse().read()
    first_serial = tls.getpeercert()["serialNumber"]
    documents = []
    rotated = tls_secret("exact-cert", ca.issue("a.example.com", "rotated.example.com"))
    with open(f"{https.config_dir}/https.yaml") as handle:
        for document in yaml.safe_load_all(handle):
            if document["kind"] == "Secret" and document["metadata"]["name"] == "exact-cert":
                document = rotated
            documents.append(document)
    https.write("https.yaml", documents)
    wait_until(
        lambda: "rotated.example.com" in _request(https, ca, "a.example.com")[2],
        what="new certificate",
    )
    connection.request("GET", "/after", headers={"Host": "a.example.com"})  # the old connection
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["path"] == "/after"
    assert tls.getpeercert()["serialNumber"] == first_serial
    tls.close()


def _read_answer(stream) -> bytes:
    """The body of the next response on ``stream`` (a file over the connection)."""
    assert stream.readline().startswith(b"HTTP/1.1 200")
    length = None
    while (line := stream.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return stream.read(length)


def test_pipelined_and_keep_alive_requests_over_tls_are_answered_in_order(https, ca):
    requests = b"".join(
        b"GET /%s HTTP/1.1\r\nHost: a.example.com\r\n\r\n" % name for name in (b"one", b"two")
    )
    with (
        socket.create_connection((https.address, PORT), timeout=10) as raw,
        _context(ca).wrap_socket(raw, server_hostname="a.example.com") as tls,
        tls.makefile("rb") as stream,
    ):
        tls.sendall(requests)  # two at once: the second waits for the first's answer
        paths = [json.loads(_read_answer(stream))["path"] for _ in range(2)]
        tls.sendall(b"GET /three HTTP/1.1\r\nHost: a.example.com\r\n\r\n")  # kept alive
        paths.append(json.loads(_read_answer(stream))["path"])
    assert paths == ["/one", "/two", "/three"]

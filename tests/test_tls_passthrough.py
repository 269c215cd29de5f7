"""TLS passthrough through a real gateway process: the backend terminates TLS, the
gateway routes by SNI only."""

from __future__ import annotations

import os
import signal
import socket
import ssl
from collections import Counter

import pytest

from tests.support.certs import CA
from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import gateway_class, gateway_manifest, service
from tests.support.tlsecho import TLSEcho

PORT = 9443


def _configure(gateway, ca: CA) -> list[TLSEcho]:
    """A TLS passthrough listener on PORT routing *.example.com to two TLS echo
    backends weighted 1:3; returns the backends."""
    one = TLSEcho("one", ca.issue("*.example.com"))
    three = TLSEcho("three", ca.issue("*.example.com"))
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TLSRoute",
        "metadata": {"name": "secure", "namespace": "default"},
        "spec": {
            "parentRefs": [{"name": "pt"}],
            "hostnames": ["*.example.com"],
            "rules": [
                {
                    "backendRefs": [
                        {"name": "one", "port": 443, "weight": 1},
                        {"name": "three", "port": 443, "weight": 3},
                    ]
                }
            ],
        },
    }
    listener = {"name": "tls", "port": PORT, "protocol": "TLS", "tls": {"mode": "Passthrough"}}
    gateway.write(
        "passthrough.yaml",
        [
            gateway_class(),
            gateway_manifest("pt", listeners=[listener]),
            *service("one", [one.address], port=443),
            *service("three", [three.address], port=443),
            route,
        ],
    )
    context = ssl.create_default_context(cadata=ca.pem.decode())
    wait_until(lambda: _exchange(gateway, context, "a.example.com"), what="passthrough served")
    return [one, three]


@pytest.fixture(scope="module")
def passthrough(gateway):
    ca = CA()
    backends = _configure(gateway, ca)
    yield gateway, ssl.create_default_context(cadata=ca.pem.decode())
    for backend in backends:
        backend.close()


def _exchange(gateway, context, sni: str | None) -> str:
    with socket.create_connection((gateway.address, PORT), timeout=10) as raw:
        if sni is None:
            context = ssl._create_unverified_context()
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"hello\n")
            return tls.makefile("rb").readline().decode()


def test_sni_routes_to_a_backend_that_terminates_tls(passthrough):
    gateway, context = passthrough
    answer = _exchange(gateway, context, "a.example.com")
    assert answer in ("one:hello\n", "three:hello\n")


def test_weights_split_connections(passthrough):
    gateway, context = passthrough
    counts = Counter(_exchange(gateway, context, "b.example.com").split(":")[0] for _ in range(80))
    assert 0.55 < counts["three"] / 80 < 0.95, counts  # 3:1, with room for chance


def test_unknown_or_missing_sni_is_closed(passthrough):
    gateway, context = passthrough
    for sni in ("other.org", None):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            _exchange(gateway, context, sni)


def test_sigterm_lets_an_open_passthrough_connection_finish():
    ca = CA()
    process = GatewayProcess(extra_args=("--drain-timeout", "20")).start()
    backends = _configure(process, ca)
    context = ssl.create_default_context(cadata=ca.pem.decode())
    try:
        raw = socket.create_connection((process.address, PORT), timeout=10)
        with context.wrap_socket(raw, server_hostname="a.example.com") as tls:
            reader = tls.makefile("rb")
            tls.sendall(b"before\n")
            assert reader.readline().endswith(b":before\n")
            os.kill(process.process.pid, signal.SIGTERM)
            wait_until(lambda: "draining workers" in process.log(), what="the drain to start")
            tls.sendall(b"during\n")  # the connection outlives the listening socket
            assert reader.readline().endswith(b":during\n")
            reader.close()  # (a socket stays open while a makefile() object of it is)
        assert process.process.wait(30) == 0
    finally:
        process.stop()
        for backend in backends:
            backend.close()

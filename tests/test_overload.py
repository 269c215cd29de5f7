"""Overload protection through real gateway processes (one worker each): connection
limits close new connections at once while the open ones are served, and backend
limits queue requests for a busy endpoint or answer them 503 with Retry-After."""

from __future__ import annotations

import http.client
import re
import socket

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service
from tests.support.rawbackend import RawBackend


def _counter(gateway: GatewayProcess, name: str, **labels: str) -> float:
    """A counter's value summed over the series carrying ``labels``."""
    text = gateway.admin("/metrics")[1].decode()
    total = 0.0
    for found, value in re.findall(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        if all(f'{key}="{want}"' in found for key, want in labels.items()):
            total += float(value)
    return total


def _serve(gateway: GatewayProcess, server: RawBackend) -> None:
    documents = [gateway_class(), gateway_manifest(), *service("app", [server.address])]
    documents.append(http_route("app", [{"backendRefs": [backend("app")]}]))
    gateway.write("app.yaml", documents)


def _kept_alive(gateway: GatewayProcess) -> http.client.HTTPConnection | None:
    """A connection that got an answer and stays open; None if the gateway closed it."""
    connection = http.client.HTTPConnection(gateway.address, 8080, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": "example.com"})
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        connection.close()
        return None
    return connection


def _closed_at_once(gateway: GatewayProcess) -> bool:
    """Whether a new connection is closed by the gateway before it sends anything."""
    with socket.create_connection((gateway.address, 8080), timeout=10) as sock:
        try:
            return sock.recv(1) == b""
        except ConnectionResetError:
            return True


@pytest.mark.parametrize(
    ("option", "limit"), [("--max-connections", "worker"), ("--max-connections-per-port", "port")]
)
def test_a_connection_past_the_limit_is_closed_and_the_open_ones_are_served(option, limit):
    server = RawBackend()
    gateway = GatewayProcess(("--workers", "1", option, "5")).start()
    try:
        _serve(gateway, server)
        wait_until(lambda: gateway.request("/")[0] == 200, what="the route to be served")
        # connections closed just before may still count: each of the five is retried
        held = [
            wait_until(lambda: _kept_alive(gateway), what="a kept-alive connection")
            for _ in range(5)
        ]
        listener = f"{gateway.address}:8080"
        labels = {"listener": listener, "limit": limit}
        before = _counter(gateway, "twistgw_connections_refused_total", **labels)
        assert _closed_at_once(gateway)
        for connection in held:
            connection.request("GET", "/again", headers={"Host": "example.com"})
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"GET /again HTTP/1.1")
            connection.close()
        assert _counter(gateway, "twistgw_connections_refused_total", **labels) == before + 1
    finally:
        gateway.stop()
        server.close()

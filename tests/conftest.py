"""Fixtures: real gateway processes and real echo backends on loopback."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.gateway import GatewayProcess
from twistgw.demo.echo import EchoServer

# Property-based tests: a bounded run in CI, a long one before a release
# (HYPOTHESIS_PROFILE=release ./run-tests tests/http/test_h1_fuzz.py).
settings.register_profile("ci", max_examples=300, deadline=None)
settings.register_profile("release", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


class Backends:
    """Echo servers on 127.0.0.1, stopped at teardown."""

    def __init__(self) -> None:
        self.servers: list[EchoServer] = []

    def start(self, name: str) -> tuple[str, int]:
        server = EchoServer(("127.0.0.1", 0), name)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return server.server_address[0], server.server_address[1]

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def backends() -> Iterator[Backends]:
    found = Backends()
    yield found
    found.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    process = GatewayProcess().start()
    yield process
    process.stop()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/translate/cases/*.out.yaml from the translator's output",
    )

"""A real twistgw process for tests: config directory in, admin and traffic out."""

from __future__ import annotations

import ctypes
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import yaml

CONTROLLER = "gateway.twistgw.dev/controller"
#: twistd of the environment running the tests.
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
_pools = itertools.count()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_pool() -> str:
    """A /24 in 127.0.0.0/8 that no other gateway of this test process uses (and,
    by the pid, most likely none of another one)."""
    return f"127.{100 + os.getpid() % 150}.{next(_pools) % 250 + 1}.0/24"


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, so no gateway outlives it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def wait_until(
    check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, http.client.HTTPException, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class GatewayProcess:
    """``twistd --nodaemon gateway`` on a temporary config directory."""

    def __init__(self, extra_args: tuple[str, ...] = (), pool: str | None = None) -> None:
        self.config_dir = tempfile.mkdtemp(prefix="twistgw-test-")
        self.admin_port = free_port()
        self.pool = pool or unique_pool()
        self.log_path = os.path.join(
            self.config_dir, "..", os.path.basename(self.config_dir) + ".log"
        )
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """The first address of the pool: the first Gateway's."""
        return self.pool.rsplit(".", 1)[0] + ".1"

    def start(self) -> GatewayProcess:
        command = [
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            "gateway",
            "--config-dir",
            self.config_dir,
            "--admin-endpoint",
            f"tcp:{self.admin_port}:interface=127.0.0.1",
            "--address-pool",
            self.pool,
            *self.extra_args,
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - open while the process runs
        self.process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        wait_until(lambda: self.admin("/healthz")[0] == 200, 30, what="admin endpoint")
        return self

    def stop(self) -> int:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        with open(self.log_path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")

    # -- config

    def write(self, name: str, documents: list[dict] | str) -> None:
        """Write a manifest file atomically (temporary name, then rename)."""
        text = documents if isinstance(documents, str) else yaml.safe_dump_all(documents)
        temporary = os.path.join(self.config_dir, f".{name}.tmp")
        with open(temporary, "w") as handle:
            handle.write(text)
        os.rename(temporary, os.path.join(self.config_dir, name))

    def remove(self, name: str) -> None:
        os.remove(os.path.join(self.config_dir, name))

    # -- admin

    def admin(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.admin_port}{path}", timeout=5
            ) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def status_document(self) -> dict:
        return json.loads(self.admin("/status")[1])

    def address_of(self, gateway: str, namespace: str = "default") -> str:
        """The address a Gateway was given (waits for its status to say)."""
        found: list[str] = []

        def assigned() -> bool:
            item = self.status("Gateway", gateway, namespace)
            found[:] = [a["value"] for a in (item or {}).get("status", {}).get("addresses", [])]
            return bool(found)

        wait_until(assigned, what=f"an address for Gateway {gateway}")
        return found[0]

    def status(self, kind: str, name: str, namespace: str = "default") -> dict | None:
        for item in self.status_document()["items"]:
            meta = item["metadata"]
            if (
                item["kind"] == kind
                and meta["name"] == name
                and meta.get("namespace", "") == (namespace if kind != "GatewayClass" else "")
            ):
                return item
        return None

    def condition(
        self,
        kind: str,
        name: str,
        type_: str,
        namespace: str = "default",
    ) -> dict | None:
        item = self.status(kind, name, namespace)
        if item is None:
            return None
        for condition in item["status"].get("conditions", []):
            if condition["type"] == type_:
                return condition
        return None

    def route_condition(
        self, name: str, type_: str, namespace: str = "default", parent_index: int = 0
    ) -> dict | None:
        item = self.status("HTTPRoute", name, namespace)
        if item is None or len(item["status"]["parents"]) <= parent_index:
            return None
        for condition in item["status"]["parents"][parent_index]["conditions"]:
            if condition["type"] == type_:
                return condition
        return None

    # -- traffic

    def request(
        self,
        path: str = "/",
        host: str = "example.com",
        port: int = 8080,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body=None,
        address: str | None = None,
        chunked: bool = False,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(address or self.address, port, timeout=10)
        try:
            connection.request(
                method,
                path,
                body=body,
                headers={"Host": host, **(headers or {})},
                encode_chunked=chunked,
            )
            response = connection.getresponse()
            return (
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
        finally:
            connection.close()

    def echo(self, path: str = "/", **kwargs) -> dict:
        code, _, body = self.request(path, **kwargs)
        assert code == 200, (code, body)
        return json.loads(body)


def access_record(log_path: str, path: str) -> dict | None:
    """The first access-log record (JSON lines, ``--access-log``) for ``path``."""
    with open(log_path) as handle:
        for line in handle:
            record = json.loads(line)
            if record["path"] == path:
                return record
    return None

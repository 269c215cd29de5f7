"""The ``twistgw`` command, installed as a console script: ``validate`` on the bundled
example and on broken manifests, ``translate`` against what a running gateway reports
for the same directory, and ``status`` against a running gateway and against answers
that are no /status document (exit 2, never a traceback; control characters escaped)."""

from __future__ import annotations

import http.server
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator

import pytest
import yaml

import twisted.plugins
from tests.support.gateway import GatewayProcess, wait_until
from twistgw.cli import status
from twistgw.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "etc", "example")
TWISTGW = os.path.join(os.path.dirname(sys.executable), "twistgw")

BROKEN = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: no-backend, namespace: demo}
spec:
  parentRefs: [{name: demo}]
  rules:
  - backendRefs: [{name: missing, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: invalid, namespace: demo}
spec:
  parentRefs: [{name: demo}]
  rules:
  - matches: [{path: {type: Bogus, value: /x}}]
"""


def twistgw(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TWISTGW, *args], capture_output=True, text=True, timeout=60)


#: The example's Gateway asks for 127.0.0.1 (port 8080): the test gateways take their
#: pool's address instead, so they neither clash with ./run-demo nor with each other.
STATIC_ADDRESS = "  addresses:\n  - type: IPAddress\n    value: 127.0.0.1\n"


def copy_example(directory: str) -> None:
    for name in os.listdir(EXAMPLE):
        with open(os.path.join(EXAMPLE, name)) as source:
            text = source.read()
        assert name != "gateway.yaml" or STATIC_ADDRESS in text
        with open(os.path.join(directory, name), "w") as copy:
            copy.write(text.replace(STATIC_ADDRESS, ""))


@pytest.fixture
def broken() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="twistgw-cli-")
    copy_example(directory)
    with open(os.path.join(directory, "broken.yaml"), "w") as handle:
        handle.write(BROKEN)
    with open(os.path.join(directory, "unparsable.yaml"), "w") as handle:
        handle.write("key: [unclosed\n")
    yield directory
    shutil.rmtree(directory)


def test_validate_passes_the_example() -> None:
    done = twistgw("validate", EXAMPLE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert "no problems" in done.stderr


def test_validate_lists_each_problem_with_file_object_and_field(broken: str) -> None:
    done = twistgw("validate", broken)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    broken_file, unparsable = (os.path.join(broken, n) for n in ("broken.yaml", "unparsable.yaml"))
    assert any(line.startswith(f"{unparsable}: ") for line in lines), lines
    assert (
        f"{broken_file}: HTTPRoute demo/invalid is invalid: spec.rules[0].matches[0].path.type:"
        in done.stdout
    )
    missing = [line for line in lines if "HTTPRoute demo/no-backend parent demo" in line]
    assert missing and missing[0].startswith(f"{broken_file}: "), lines
    assert "ResolvedRefs False (BackendNotFound): Service demo/missing not found" in missing[0]
    assert "3 problem(s)" in done.stderr


def test_validate_refuses_bad_options_and_missing_directories() -> None:
    done = twistgw("validate", "--address-pool", "nonsense", EXAMPLE)
    assert done.returncode == 2 and "--address-pool" in done.stderr
    done = twistgw("translate", os.path.join(EXAMPLE, "no-such-directory"))
    assert done.returncode == 2 and "is not a directory" in done.stderr


def _without_times(document: dict) -> dict:
    text = json.dumps(document)
    return json.loads(
        text, object_hook=lambda d: {k: v for k, v in d.items() if k != "lastTransitionTime"}
    )


def test_translate_says_what_a_running_gateway_reports(broken: str) -> None:
    gateway = GatewayProcess(("--workers", "1"))
    shutil.rmtree(gateway.config_dir)
    shutil.copytree(broken, gateway.config_dir)
    gateway.start()
    try:
        wait_until(lambda: gateway.status_document()["items"], what="statuses")
        served = _without_times(gateway.status_document())
        done = twistgw("translate", "--address-pool", gateway.pool, gateway.config_dir)
        assert done.returncode == 0, done.stderr
        offline = _without_times(yaml.safe_load(done.stdout))
        assert offline.pop("routingTable")["binds"]
        assert offline == served
        as_json = twistgw(
            "translate", "-o", "json", "--address-pool", gateway.pool, gateway.config_dir
        )
        assert _without_times(json.loads(as_json.stdout)) == {**offline, "routingTable": ANY_TABLE}
    finally:
        gateway.stop()


class _AnyTable:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and "binds" in other


ANY_TABLE = _AnyTable()


def test_status_of_a_running_gateway(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    gateway = GatewayProcess(("--workers", "1", "--admin-token-file", str(token)))
    copy_example(gateway.config_dir)
    gateway.start()
    admin = f"http://127.0.0.1:{gateway.admin_port}"
    try:

        def healthy() -> subprocess.CompletedProcess | None:
            done = twistgw("status", "--admin", admin, "--token-file", str(token))
            return done if done.returncode == 0 else None

        done = wait_until(healthy, what="a healthy status")
        assert "Gateway demo/demo" in done.stdout
        assert "listener http" in done.stdout and "Programmed" in done.stdout
        assert "HTTPRoute demo/" in done.stdout
        assert twistgw("status", "--admin", admin).returncode == 2  # (no token: 401)
        gateway.write("broken.yaml", BROKEN)

        def unhealthy() -> subprocess.CompletedProcess | None:
            done = twistgw("status", "--admin", admin, "--token-file", str(token))
            return done if done.returncode == 1 else None

        done = wait_until(unhealthy, what="the broken route reported")
        assert "!! HTTPRoute demo/no-backend" in done.stdout
        assert "ResolvedRefs=False (BackendNotFound" in done.stdout
        assert "errors:" in done.stdout and "HTTPRoute demo/invalid is invalid" in done.stdout
    finally:
        gateway.stop()
    assert twistgw("status", "--admin", admin).returncode == 2  # (nothing listens)


HOSTILE = {
    "/list/status": b"[]",
    "/kind/status": b'{"items": [{"kind": 7}]}',
    "/condition/status": b'{"items": [{"kind": "Gateway", "metadata": {"name": "g"},'
    b' "status": {"conditions": [{"status": "False"}]}}]}',
    "/strings/status": b'{"items": ["x"], "errors": "y"}',
    "/deep/status": b"[" * 100_000,
    "/escape/status": b'{"items": [], "errors": [{"source": "\\u001b]0;pwned\\u0007",'
    b' "message": "\\u001b[2J"}]}',
    "/big/status": b'{"items": [], "pad": "' + b"x" * 4096 + b'"}',
}


@pytest.fixture(scope="module")
def hostile_admin() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            body = HOSTILE.get(self.path, b"{}")
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("case", ["list", "kind", "condition", "strings", "deep"])
def test_status_refuses_what_is_no_status_document(hostile_admin: str, case: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert status.run(f"{hostile_admin}/{case}", None, out, err) == 2
    assert out.getvalue() == "" and "twistgw status:" in err.getvalue()


def test_status_shows_control_characters_as_escapes(hostile_admin: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert status.run(f"{hostile_admin}/escape", None, out, err) == 1  # (errors: unhealthy)
    assert "\x1b" not in out.getvalue() and "\\x1b]0;pwned\\x07: \\x1b[2J" in out.getvalue()


def test_status_reads_a_bounded_answer(hostile_admin: str, monkeypatch) -> None:
    monkeypatch.setattr(status, "MAX_BYTES", 1024)
    out, err = io.StringIO(), io.StringIO()
    assert status.run(f"{hostile_admin}/big", None, out, err) == 2
    assert "larger than 1,024 bytes" in err.getvalue()


def test_validate_applies_the_directory_limits() -> None:
    done = twistgw("validate", "--config-max-objects", "3", EXAMPLE)
    assert done.returncode == 1
    assert f"{EXAMPLE}: " in done.stdout and "--config-max-objects" in done.stdout


def test_plugins_lists_the_installed_filter_plugins(monkeypatch, capsys) -> None:
    example = pathlib.Path(__file__).parents[1] / "examples" / "security-headers"
    monkeypatch.syspath_prepend(str(example))  # (twisted.plugins is imported already)
    plugins = [*twisted.plugins.__path__, str(example / "twisted" / "plugins")]
    monkeypatch.setattr(twisted.plugins, "__path__", plugins)
    assert main(["plugins"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("security-headers: adds HSTS")
    assert '"frameOptions"' in shown

"""The admin endpoint with --admin-token-file, on a real gateway process: the probes
stay open, everything else needs the bearer token."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.support.gateway import GatewayProcess

TOKEN = "d0n7-gu3ss-m3"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    token_file = tmp_path_factory.mktemp("admin") / "token"
    token_file.write_text(TOKEN + "\n")  # as `kubectl create secret --from-file` leaves it
    process = GatewayProcess(extra_args=("--admin-token-file", str(token_file))).start()
    yield process
    process.stop()


def _get(process: GatewayProcess, path: str, authorization: str | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{process.admin_port}{path}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_need_no_token(guarded, path):
    code, _ = _get(guarded, path)
    assert code in (200, 503)  # /readyz: 503 until the first configuration


@pytest.mark.parametrize(
    "path, content_type",
    [("/", "text/html"), ("/dashboard.js", "text/javascript"), ("/dashboard.css", "text/css")],
)
def test_dashboard_files_need_no_token(guarded, path, content_type):
    """The page holds no data (it asks for the token), and no inline script may run."""
    code, headers = _get(guarded, path)
    assert code == 200
    assert headers["Content-Type"].startswith(content_type)
    assert "script-src 'self';" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/status", "/config_dump", "/metrics", "/dashboard.json"])
def test_the_rest_needs_the_bearer_token(guarded, path):
    for authorization in (None, f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN):
        code, headers = _get(guarded, path, authorization)
        assert code == 401, authorization
        assert headers["WWW-Authenticate"].startswith("Bearer")
    assert _get(guarded, path, f"Bearer {TOKEN}")[0] == 200
    assert _get(guarded, path, f"bearer {TOKEN}")[0] == 200  # the scheme is case-insensitive

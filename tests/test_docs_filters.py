"""docs/filters.md's guide, typed in as written: its plugin module in a twisted/plugins
directory on the path, its manifests beside a Gateway and a Service, and a running
gateway answers as the guide says (503 with the message; the staff header reaches the
backend); its container image layer is the one deploy/smoke-test builds and checks."""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Iterator

import pytest
import yaml

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import gateway_class, gateway_manifest, service
from tests.support.rawbackend import RawBackend

GUIDE = (pathlib.Path(__file__).parents[1] / "docs" / "filters.md").read_text()


@pytest.fixture(scope="module")
def guide_gateway(tmp_path_factory) -> Iterator[tuple[GatewayProcess, RawBackend]]:
    code = re.search(r"```python\n(.*?)```", GUIDE, re.S).group(1)
    where = re.match(r"# (\S+)\n", code).group(1)  # the path its first line names
    root = tmp_path_factory.mktemp("guide")
    module = root / where
    module.parent.mkdir(parents=True)
    module.write_text(code)
    manifests = list(yaml.safe_load_all(re.search(r"```yaml\n(.*?)```", GUIDE, re.S).group(1)))
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(root / where.split("/")[0])
    server = RawBackend()
    gateway = GatewayProcess(("--workers", "1")).start()
    if before is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = before
    setup = [
        gateway_class(),
        gateway_manifest("demo", namespace="demo"),
        *service("web-v1", [server.address], port=80, namespace="demo"),
    ]
    gateway.write("guide.yaml", setup + manifests)
    wait_until(lambda: gateway.request("/shop")[0] == 503, what="the guide's filter")
    yield gateway, server
    gateway.stop()
    server.close()


def test_the_guides_filter_works_as_written(guide_gateway) -> None:
    gateway, server = guide_gateway
    code, headers, body = gateway.request("/shop")
    assert (code, body, headers["retry-after"]) == (
        503,
        b"down for maintenance until 14:00\n",
        "600",
    )
    assert gateway.request("/shop", headers={"X-Staff": "1"})[0] == 200
    seen = [r for r in server.requests if r.startswith(b"GET /shop")][-1].lower()
    assert b"\r\nx-maintenance: bypassed\r\n" in seen


def test_the_image_layer_in_the_guide_is_the_one_the_smoke_test_builds() -> None:
    """deploy/smoke-test builds and checks the layer docs/filters.md shows (with
    examples/security-headers for myfilters, on its own image)."""
    shown = re.search(r"In the container image.*?```\n(.*?)```", GUIDE, re.S).group(1)
    shown = [line.strip() for line in shown.splitlines() if line.strip()]
    script = (pathlib.Path(__file__).parents[1] / "deploy" / "smoke-test").read_text()
    built = re.search(r"cat <<'EOF'\n(.*?)\nEOF\n", script, re.S).group(1)
    built = [line.strip().replace("security-headers", "myfilters") for line in built.splitlines()]
    assert shown[0] == "FROM localhost/twistgw:latest" and shown[1:] == built

"""Careless or hostile route authors against a real gateway process: a regular
expression that backtracks exponentially in Python's ``re`` and one RE2 refuses, an
HTTPRoute far beyond its CRD's bounds, and a config directory past the operator's
limits (too large a file, too many files, bytes or objects). One worker, so a stuck
matcher would stall every request that follows."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import yaml

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import backend, gateway_class, gateway_manifest, http_route, service


@pytest.fixture(scope="module")
def hostile(backends) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(extra_args=("--workers", "1")).start()
    web = backends.start("web")
    gateway.write(
        "routes.yaml",
        [
            gateway_class(),
            gateway_manifest(),
            *service("web", [web]),
            http_route(
                "backtracking",
                [
                    {
                        "matches": [{"path": {"type": "RegularExpression", "value": "/(a+)+$"}}],
                        "backendRefs": [backend("web")],
                    }
                ],
            ),
            http_route(
                "lookahead",
                [
                    {
                        "matches": [
                            {
                                "path": {"value": "/look"},
                                "headers": [
                                    {
                                        "type": "RegularExpression",
                                        "name": "X-User",
                                        "value": "(?!admin).*",
                                    }
                                ],
                            }
                        ],
                        "backendRefs": [backend("web")],
                    }
                ],
            ),
        ],
    )
    wait_until(lambda: gateway.request("/aaa")[0] == 200, what="routes to be served")
    yield gateway
    gateway.stop()


def test_backtracking_regex_is_matched_in_linear_time(hostile):
    code, _, _ = hostile.request("/" + "a" * 50 + "!")  # within the client's timeout
    assert code == 404
    assert hostile.echo("/" + "a" * 50)["backend"] == "web"


def test_regex_re2_refuses_is_reported_with_its_reason(hostile):
    condition = wait_until(
        lambda: hostile.route_condition("lookahead", "Accepted"), what="lookahead status"
    )
    assert condition["status"] == "False" and condition["reason"] == "UnsupportedValue"
    assert "headers[0].value: RE2 cannot compile '(?!admin).*'" in condition["message"]
    assert "invalid perl operator: (?!" in condition["message"]
    assert hostile.request("/look", headers={"X-User": "bob"})[0] == 404


def test_route_beyond_crd_bounds_is_refused_naming_the_bound(hostile):
    rules = [
        {"matches": [{"path": {"value": f"/r{i}"}}], "backendRefs": [backend("web")]}
        for i in range(10000)
    ]
    hostile.write("big.json", json.dumps(http_route("big", rules)))  # JSON parses fast

    def reported() -> list[str]:
        errors = hostile.status_document()["errors"]
        return [e["message"] for e in errors if e["source"].endswith("big.json")]

    (message,) = wait_until(reported, what="the oversized route reported")
    assert message == (
        "HTTPRoute default/big is invalid: spec.rules: must have at most 16 items, has 10000"
    )
    assert hostile.status("HTTPRoute", "big") is None
    assert hostile.echo("/aaa")["backend"] == "web"


def test_oversized_annotations_are_refused(hostile):
    route = http_route("annotated", [{"backendRefs": [backend("web")]}])
    route["metadata"]["annotations"] = {"example.com/blob": "x" * (1024 * 1024)}
    hostile.write("annotated.json", json.dumps(route))

    def reported() -> list[str]:
        errors = hostile.status_document()["errors"]
        return [e["message"] for e in errors if e["source"].endswith("annotated.json")]

    (message,) = wait_until(reported, what="the oversized annotations reported")
    assert "metadata.annotations: must total at most 262144 bytes (256 KiB)" in message
    assert hostile.status("HTTPRoute", "annotated") is None


#: Limits small enough to reach with a few files.
LIMITED = (
    "--workers=1",
    "--config-max-files=5",
    "--config-max-file-bytes=65536",
    "--config-max-total-bytes=131072",
    "--config-max-objects=12",
)


@pytest.fixture(scope="module")
def limited(backends) -> Iterator[GatewayProcess]:
    """A gateway with LIMITED; its directory holds 00-base.yaml (4 objects) between
    tests, and each test leaves it so."""
    gateway = GatewayProcess(extra_args=LIMITED).start()
    web = backends.start("limited")
    gateway.write("00-base.yaml", [gateway_class(), gateway_manifest(), *service("web", [web])])
    yield gateway
    gateway.stop()


def _route(name: str, prefix: str) -> dict:
    return http_route(
        name,
        [{"matches": [{"path": {"value": prefix}}], "backendRefs": [backend("web")]}],
    )


def _served(gateway: GatewayProcess, path: str) -> bool:
    return gateway.request(path)[0] == 200


def _refused(gateway: GatewayProcess, limit: str) -> float:
    """twistgw_config_refused_total{limit} as /metrics has it."""
    text = gateway.admin("/metrics")[1].decode()
    found = re.search(rf'^twistgw_config_refused_total{{limit="{limit}"}} (\S+)$', text, re.M)
    assert found, f"no twistgw_config_refused_total for {limit}"
    return float(found.group(1))


def _errors(gateway: GatewayProcess, source: str) -> list[str]:
    """The /status errors of one file, or of the config directory (source "")."""
    path = gateway.config_dir + (f"/{source}" if source else "")
    return [e["message"] for e in gateway.status_document()["errors"] if e["source"] == path]


def test_every_config_limit_is_a_metric_from_the_start(limited):
    for limit in ("file_bytes", "documents", "nodes", "text", "depth"):
        assert _refused(limited, limit) >= 0
    for limit in ("files", "total_bytes", "objects"):
        assert _refused(limited, limit) >= 0


def test_too_large_a_file_is_refused_by_itself(limited):
    before = _refused(limited, "file_bytes")
    limited.write("big.yaml", [_route("big", "/big")])
    wait_until(lambda: _served(limited, "/big"), what="the route served")
    limited.write("big.yaml", yaml.safe_dump(_route("big", "/bigger")) + "#" * 70_000 + "\n")
    (message,) = wait_until(lambda: _errors(limited, "big.yaml"), what="the file refused")
    assert message == "refused: larger than 65,536 bytes (--config-max-file-bytes)"
    assert _served(limited, "/big") and not _served(limited, "/bigger")
    limited.write("later.yaml", [_route("later", "/later")])
    wait_until(lambda: _served(limited, "/later"), what="a later change applied")
    assert _refused(limited, "file_bytes") == before + 1
    limited.write("big.yaml", [_route("big", "/bigger")])
    wait_until(lambda: _served(limited, "/bigger"), what="the fixed file applied")
    assert not _errors(limited, "big.yaml")
    limited.remove("big.yaml")
    limited.remove("later.yaml")


def test_too_many_files_refuse_the_directory_until_it_is_within(limited):
    before = _refused(limited, "files")
    for index in range(1, 5):  # with 00-base.yaml: 5 files, the most
        limited.write(f"f{index}.yaml", [_route(f"f{index}", f"/f{index}")])
    wait_until(lambda: _served(limited, "/f4"), what="five files served")
    limited.write("f5.yaml", [_route("f5", "/f5")])
    (message,) = wait_until(lambda: _errors(limited, ""), what="the directory refused")
    assert message == (
        "refused: more than 5 manifest files (--config-max-files); the last configuration "
        "within the limits stays in force"
    )
    assert _served(limited, "/f1") and not _served(limited, "/f5")
    assert _refused(limited, "files") == before + 1
    limited.remove("f1.yaml")  # within the limit again: the directory as it is now applies
    wait_until(lambda: _served(limited, "/f5") and not _errors(limited, ""), what="applied")
    assert not _served(limited, "/f1")
    for index in range(2, 6):
        limited.remove(f"f{index}.yaml")


def test_too_many_bytes_refuse_the_directory_until_it_is_within(limited):
    before = _refused(limited, "total_bytes")
    for index in (1, 2):  # about 120 KB of the 128 KiB
        text = yaml.safe_dump(_route(f"pad{index}", f"/pad{index}")) + "#" * 60_000 + "\n"
        limited.write(f"pad{index}.yaml", text)
    wait_until(lambda: _served(limited, "/pad2"), what="the padded files served")
    limited.write("pad3.yaml", yaml.safe_dump(_route("pad3", "/pad3")) + "#" * 60_000 + "\n")
    (message,) = wait_until(lambda: _errors(limited, ""), what="the directory refused")
    assert message.startswith("refused: the manifest files total ")
    assert "more than 131,072 (--config-max-total-bytes)" in message
    assert _served(limited, "/pad1") and not _served(limited, "/pad3")
    assert _refused(limited, "total_bytes") == before + 1
    limited.remove("pad1.yaml")
    wait_until(lambda: _served(limited, "/pad3") and not _errors(limited, ""), what="applied")
    limited.remove("pad2.yaml")
    limited.remove("pad3.yaml")


def test_too_many_objects_refuse_the_directory_and_later_changes_apply(limited):
    before = _refused(limited, "objects")
    limited.write("route.yaml", [_route("r", "/one")])
    wait_until(lambda: _served(limited, "/one"), what="the route served")
    services = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"}} for i in range(8)
    ]
    limited.write("many.yaml", json.dumps({"apiVersion": "v1", "kind": "List", "items": services}))

    def refusal(objects: int) -> list[str]:
        return [
            m
            for m in _errors(limited, "")
            if m.startswith(f"refused: the manifest files hold {objects} objects")
        ]

    (message,) = wait_until(lambda: refusal(13), what="the directory refused")
    assert message.endswith(
        "more than 12 (--config-max-objects); the last configuration within the limits "
        "stays in force"
    )
    limited.write("route.yaml", [_route("r", "/two"), services[0] | {"metadata": {"name": "t"}}])
    wait_until(lambda: refusal(14), what="the next state refused too")
    assert _served(limited, "/one") and not _served(limited, "/two")
    assert _refused(limited, "objects") == before + 1  # once while it stays over
    limited.remove("many.yaml")
    wait_until(lambda: _served(limited, "/two") and not _errors(limited, ""), what="applied")
    limited.remove("route.yaml")

"""The config directory as the operator edits it: changes, mistakes and statuses, seen
through a real gateway process (inotify and polling)."""

from __future__ import annotations

import pytest

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.manifests import (
    backend,
    gateway_class,
    gateway_manifest,
    http_route,
    service,
)
from tests.test_config_limits import yaml_bomb


@pytest.fixture(scope="module", params=["auto", "poll"])
def watched(request, backends):
    process = GatewayProcess(extra_args=("--watch", request.param)).start()
    address = backends.start(f"cfg-{request.param}")
    process.write("00-base.yaml", [gateway_class(), gateway_manifest(), *service("app", [address])])
    yield process
    process.stop()


def _route(name: str, prefix: str) -> dict:
    return http_route(
        name,
        [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                "backendRefs": [backend("app")],
            }
        ],
    )


def _served(process: GatewayProcess, path: str) -> bool:
    return process.request(path)[0] == 200


def _gone(process: GatewayProcess, path: str) -> bool:
    return process.request(path)[0] == 404


def test_add_rewrite_rename_delete_take_effect(watched):
    watched.write("route.yaml", [_route("r", "/one")])
    wait_until(lambda: _served(watched, "/one"), what="added file served")
    watched.write("route.yaml", [_route("r", "/two")])
    wait_until(lambda: _served(watched, "/two") and _gone(watched, "/one"), what="rewrite")
    watched.write("renamed.yaml", [_route("r", "/two")])
    watched.remove("route.yaml")
    wait_until(lambda: _served(watched, "/two"), what="rename keeps the route")
    watched.remove("renamed.yaml")
    wait_until(lambda: _gone(watched, "/two"), what="deleted file's route removed")


def test_parse_error_is_reported_and_last_good_objects_stay(watched):
    watched.write("keep.yaml", [_route("keep", "/keep")])
    wait_until(lambda: _served(watched, "/keep"), what="route served")
    watched.write("keep.yaml", "kind: HTTPRoute\nmetadata: {name: [unclosed\n")

    def reported():
        errors = watched.status_document()["errors"]
        return [e for e in errors if e["source"].endswith("keep.yaml")]

    errors = wait_until(reported, what="parse error in /status")
    assert "flow sequence" in errors[0]["message"] or "expected" in errors[0]["message"]
    assert _served(watched, "/keep")  # the objects it held before stay in force
    watched.write("keep.yaml", [_route("keep", "/kept")])
    wait_until(lambda: not reported() and _served(watched, "/kept"), what="fixed file")
    watched.remove("keep.yaml")


def test_yaml_bomb_is_refused_and_later_changes_apply(watched):
    watched.write("bomb.yaml", [_route("bombed", "/bombed")])
    wait_until(lambda: _served(watched, "/bombed"), what="route served")
    watched.write("bomb.yaml", yaml_bomb())

    def reported():
        errors = watched.status_document()["errors"]
        return [e["message"] for e in errors if e["source"].endswith("bomb.yaml")]

    assert "more than 1,000,000 nodes" in wait_until(reported, what="bomb in /status")[0]
    assert _served(watched, "/bombed")  # the objects it held before stay in force
    watched.write("later.yaml", [_route("later", "/later")])
    wait_until(lambda: _served(watched, "/later"), what="a later change applied")
    assert reported()  # still reported, though not read again
    watched.write("bomb.yaml", [_route("bombed", "/defused")])
    wait_until(lambda: not reported() and _served(watched, "/defused"), what="fixed file")
    watched.remove("bomb.yaml")
    watched.remove("later.yaml")


def test_invalid_object_names_the_field_and_keeps_previous_version(watched):
    watched.write("valid.yaml", [_route("valid", "/valid")])
    wait_until(lambda: _served(watched, "/valid"), what="route served")
    bad = _route("valid", "/valid")
    bad["spec"]["rules"][0]["backendRefs"][0]["port"] = 70000
    watched.write("valid.yaml", [bad])

    def reported():
        return [e for e in watched.status_document()["errors"] if "valid.yaml" in e["source"]]

    errors = wait_until(reported, what="validation error")
    assert "spec.rules[0].backendRefs[0].port" in errors[0]["message"]
    assert "previous version stays in force" in errors[0]["message"]
    assert _served(watched, "/valid")
    watched.remove("valid.yaml")


def test_unknown_kinds_foreign_classes_and_dangling_refs_are_harmless(watched):
    watched.write(
        "misc.yaml",
        [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}},
            {"apiVersion": "example.com/v1", "kind": "Whatever", "metadata": {"name": "w"}},
            gateway_manifest("foreign", class_name="someone-elses"),
            http_route(
                "dangling", [{"backendRefs": [backend("nowhere")]}], parents=[{"name": "nope"}]
            ),
        ],
    )
    wait_until(lambda: watched.status("Gateway", "gw") is not None, what="status")
    wait_until(
        lambda: (
            watched.status("HTTPRoute", "dangling") is None
            and watched.status("Gateway", "foreign") is None
        )
    )
    wait_until(lambda: watched.status_document()["errors"] == [], what="no config errors")
    assert _served(watched, "/") or _gone(watched, "/")  # still answering
    watched.remove("misc.yaml")


def test_generation_bumps_on_spec_change_and_transition_time_holds(watched):
    watched.write("gen.yaml", [_route("gen", "/gen")])
    first = wait_until(lambda: watched.route_condition("gen", "Accepted"), what="route status")
    assert first["observedGeneration"] == 1
    watched.write("gen.yaml", [_route("gen", "/gen2")])

    def bumped():
        condition = watched.route_condition("gen", "Accepted")
        return condition if condition and condition["observedGeneration"] == 2 else None

    second = wait_until(bumped, what="generation 2")
    assert watched.status("HTTPRoute", "gen")["metadata"]["generation"] == 2
    assert second["lastTransitionTime"] == first["lastTransitionTime"]
    metadata_only = _route("gen", "/gen2")
    metadata_only["metadata"]["labels"] = {"changed": "labels only"}
    watched.write("gen.yaml", [metadata_only])
    wait_until(lambda: "gen.yaml" not in str(watched.status_document()["errors"]))
    assert watched.status("HTTPRoute", "gen")["metadata"]["generation"] == 2
    watched.remove("gen.yaml")


def test_ready_and_healthy(watched):
    assert watched.admin("/healthz")[0] == 200
    wait_until(lambda: watched.admin("/readyz")[0] == 200, what="ready")
    dump = watched.admin("/config_dump")
    assert dump[0] == 200 and b"routingTable" in dump[1]

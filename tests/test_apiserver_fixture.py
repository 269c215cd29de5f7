"""The API server fixture against the kubernetes client's own generated APIs: what
cluster mode's tests rely on behaves as a real API server's does for that client."""

from __future__ import annotations

import tempfile

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.support.apiserver import GATEWAY, APIServer


@pytest.fixture(scope="module")
def apis():
    server = APIServer().start()
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=server.kubeconfig(tempfile.mktemp()), client_configuration=configuration
    )
    api = client.ApiClient(configuration)
    yield server, client.CoreV1Api(api), client.CustomObjectsApi(api), client.CoordinationV1Api(api)
    server.stop()


def _route(name: str) -> dict:
    return {
        "apiVersion": f"{GATEWAY}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parentRefs": [{"name": "gw"}]},
    }


def test_list_watch_and_bookmarks(apis):
    server, core, _, _ = apis
    core.create_namespaced_config_map("default", {"metadata": {"name": "one"}, "data": {"a": "1"}})
    listed = core.list_namespaced_config_map("default")
    assert [m.metadata.name for m in listed.items] == ["one"]
    server.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "two", "namespace": "default"},
            "data": {},
        }
    )
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=listed.metadata.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=3,
    ):
        seen.append(event["type"])
        if event["type"] == "BOOKMARK":
            break
    assert seen[0] == "ADDED" and seen[-1] == "BOOKMARK"


def test_status_subresource_conflicts_and_patches(apis):
    _, _, custom, _ = apis
    created = custom.create_namespaced_custom_object(
        GATEWAY, "v1", "default", "httproutes", _route("r")
    )
    assert created["metadata"]["generation"] == 1
    stale = dict(created, status={"parents": []})
    custom.replace_namespaced_custom_object_status(
        GATEWAY, "v1", "default", "httproutes", "r", stale
    )
    with pytest.raises(ApiException) as conflict:  # its resourceVersion is now old
        custom.replace_namespaced_custom_object_status(
            GATEWAY, "v1", "default", "httproutes", "r", stale
        )
    assert conflict.value.status == 409
    merged = custom.patch_namespaced_custom_object(
        GATEWAY, "v1", "default", "httproutes", "r", {"spec": {"hostnames": ["a.example.com"]}}
    )
    assert merged["spec"]["hostnames"] == ["a.example.com"]
    assert merged["metadata"]["generation"] == 2
    patched = custom.patch_namespaced_custom_object(
        GATEWAY,
        "v1",
        "default",
        "httproutes",
        "r",
        [{"op": "add", "path": "/spec/hostnames/-", "value": "b.example.com"}],
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["hostnames"] == ["a.example.com", "b.example.com"]
    assert "status" in patched and patched["status"] == {"parents": []}  # kept by spec writes


def test_leases_and_missing_kinds(apis):
    server, _, custom, leases = apis
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="l"), spec=client.V1LeaseSpec(holder_identity="me")
    )
    leases.create_namespaced_lease("default", body)
    assert leases.read_namespaced_lease("l", "default").spec.holder_identity == "me"
    server.uninstall("UDPRoute")
    with pytest.raises(ApiException) as missing:
        custom.list_cluster_custom_object(GATEWAY, "v1alpha2", "udproutes")
    assert missing.value.status == 404

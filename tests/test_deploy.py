"""deploy/ renders with ``kubectl kustomize`` into what a production install needs:
least-privilege RBAC covering what cluster mode reads and writes, probes on the admin
endpoint, a locked-down security context, leader election, and the rest."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.support.kubectl import kubectl_or_skip
from twistgw.cluster.resources import LEASE, WATCHED
from twistgw.options import DEFAULT_CONTROLLER

#: The API groups whose objects get a status from twistgw.
GROUPS_WITH_STATUS = ("gateway.networking.k8s.io", "gateway.twistgw.dev")
#: Kinds of those groups twistgw writes no status for.
WITHOUT_STATUS = ("ReferenceGrant", "PythonFilter")
DEPLOY = os.path.join(os.path.dirname(__file__), "..", "deploy")


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict]:
    kubectl = kubectl_or_skip()
    output = subprocess.run(
        [kubectl, "kustomize", DEPLOY], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(output) if o}


def _rules(role: dict) -> list[tuple[str, str, set[str]]]:
    return [
        (group, resource, set(rule["verbs"]))
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    ]


def _allows(role: dict, group: str, resource: str, verbs: set[str]) -> bool:
    return any(g == group and r == resource and verbs <= v for g, r, v in _rules(role))


def test_every_kind_is_there(rendered):
    assert {kind for kind, _ in rendered} == {
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "GatewayClass",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "CustomResourceDefinition",
    }
    assert "namespace" not in rendered[("GatewayClass", "twistgw")]["metadata"]
    assert rendered[("GatewayClass", "twistgw")]["spec"]["controllerName"] == DEFAULT_CONTROLLER


def test_rbac_is_what_cluster_mode_needs_and_no_more(rendered):
    role = rendered[("ClusterRole", "twistgw")]
    for resource in WATCHED:
        assert _allows(role, resource.group, resource.plural, {"get", "list", "watch"}), resource
        status = f"{resource.plural}/status"
        if resource.group in GROUPS_WITH_STATUS and resource.kind not in WITHOUT_STATUS:
            assert _allows(role, resource.group, status, {"get", "update"}), status
    granted = {verb for _, _, verbs in _rules(role) for verb in verbs}
    assert granted <= {"get", "list", "watch", "update", "patch"}  # no create or delete
    writable = {r for _, r, verbs in _rules(role) if verbs & {"update", "patch"}}
    assert all(resource.endswith("/status") for resource in writable)
    lease_role = rendered[("Role", "twistgw-leader-election")]
    assert lease_role["metadata"]["namespace"] == "twistgw-system"
    assert _allows(lease_role, LEASE.group, LEASE.plural, {"get", "create", "update"})
    for kind, name in (
        ("ClusterRoleBinding", "twistgw"),
        ("RoleBinding", "twistgw-leader-election"),
    ):
        subject = rendered[(kind, name)]["subjects"][0]
        assert (subject["name"], subject["namespace"]) == ("twistgw", "twistgw-system")


def test_deployment_probes_security_and_arguments(rendered):
    deployment = rendered[("Deployment", "twistgw")]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 2
    assert pod["serviceAccountName"] == "twistgw"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    admin = next(p["containerPort"] for p in container["ports"] if p["name"] == "admin")
    assert f"--admin-endpoint=tcp:{admin}" in container["args"]
    assert {"--kubernetes", "--leader-elect"} <= set(container["args"])
    assert "--publish-service=twistgw-system/twistgw" in container["args"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    # (no_new_privs voids the file capability: the pod's sysctl opens ports 80 and 443)
    sysctls = {s["name"]: s["value"] for s in pod["securityContext"]["sysctls"]}
    assert sysctls["net.ipv4.ip_unprivileged_port_start"] == "0"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tmp"]["mountPath"] == "/tmp"  # metrics files
    assert set(mounts) == {"tmp", "admin-token"}
    assert int(pod["terminationGracePeriodSeconds"]) > 30  # longer than the drain
    env = {e["name"] for e in container["env"]}
    assert {"POD_NAME", "POD_NAMESPACE"} <= env


def test_the_admin_endpoint_needs_a_token_from_a_secret(rendered):
    pod = rendered[("Deployment", "twistgw")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    (flag,) = [a for a in container["args"] if a.startswith("--admin-token-file=")]
    path = flag.partition("=")[2]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "admin-token")
    assert mount["readOnly"] is True and path.startswith(mount["mountPath"] + "/")
    volume = next(v for v in pod["volumes"] if v["name"] == "admin-token")
    assert volume["secret"]["secretName"] == "twistgw-admin-token"
    assert volume["secret"]["items"] == [
        {"key": "token", "path": path[len(mount["mountPath"]) + 1 :]}
    ]
    # not shipped: a token in the repository would be everyone's
    assert ("Secret", "twistgw-admin-token") not in rendered


def test_service_budget_and_autoscaler_point_at_the_pods(rendered):
    labels = rendered[("Deployment", "twistgw")]["spec"]["template"]["metadata"]["labels"]
    service = rendered[("Service", "twistgw")]
    assert service["spec"]["type"] == "LoadBalancer"
    assert {p["port"] for p in service["spec"]["ports"]} == {80, 443}
    for selector in (
        service["spec"]["selector"],
        rendered[("PodDisruptionBudget", "twistgw")]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    autoscaler = rendered[("HorizontalPodAutoscaler", "twistgw")]["spec"]
    assert autoscaler["scaleTargetRef"]["name"] == "twistgw"
    assert autoscaler["metrics"][0]["resource"]["name"] == "cpu"
    assert autoscaler["minReplicas"] >= 2

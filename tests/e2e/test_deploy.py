"""deploy/ on the real control plane, and Keywright working under exactly its RBAC.

`kubectl apply -k` installs everything (Pods stay Pending: there is no kubelet). Then the
operator and the verifier run as processes authenticated with their ServiceAccounts'
tokens (minted by the controller-manager), the operator serving its admission webhooks,
and the lifecycle, verification, webhook and injection checks run against them.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from keywright import kube
from keywright.controller import redispassword
from keywright.dev import controlplane
from tests.support import k8s
from tests.support.k8s import Cluster, Operator, Verifier, kubectl
from tests.support.manifests import apikey, policy, role
from tests.support.waiting import eventually

SYSTEM = k8s.OPERATOR_NAMESPACE


@pytest.fixture(scope="module")
def installed(control_plane: controlplane.ControlPlane,
              crd: None) -> subprocess.CompletedProcess[str]:
    return kubectl(control_plane.kubeconfig, "apply", "--validate=false", "-k",
                   str(k8s.REPO / "deploy" / "k8s-1.20"))


@pytest.fixture(scope="module")
def as_deployed(installed: Any, webhooks: Operator,
                verifier: Verifier) -> tuple[Operator, Verifier]:
    """The session's operator with its webhooks on (conftest's `webhooks`), and the
    verifier, both as their ServiceAccounts."""
    verifier.ensure_ready()
    return webhooks, verifier


def _service_account(api: client.ApiClient, kubeconfig: Path, namespace: str, name: str,
                     role: str, directory: Path) -> Path:
    """A ServiceAccount in `namespace` bound there to the built-in ClusterRole `role`."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=name)))
    kubectl(kubeconfig, "-n", namespace, "create", "rolebinding", name,
            f"--clusterrole={role}", f"--serviceaccount={namespace}:{name}")
    token = k8s.service_account_token(api, namespace, name)
    return k8s.token_kubeconfig(kubeconfig, token, directory / name)


def test_apply_k_installs_everything(installed: subprocess.CompletedProcess[str],
                                     control_plane: controlplane.ControlPlane) -> None:
    for created in ("serviceaccount/keywright-operator", "serviceaccount/keywright-verifier",
                    "deployment.apps/keywright-operator", "deployment.apps/keywright-verifier",
                    "service/keywright-verifier", "service/keywright-webhook",
                    "poddisruptionbudget.policy/keywright-verifier",
                    "clusterrole.rbac.authorization.k8s.io/keywright-view",
                    "deployment.apps/keywright-redis", "service/keywright-redis",
                    "configmap/keywright-redis", "networkpolicy.networking.k8s.io/keywright-redis"):
        assert created in installed.stdout
    operator = json.loads(kubectl(control_plane.kubeconfig, "-n", SYSTEM, "get", "deployment",
                                  "keywright-operator", "-o", "json").stdout)
    assert operator["spec"]["strategy"]["type"] == "Recreate"
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]}}


def test_redis_and_the_verifiers_share_one_password_the_operator_made(
        as_deployed: tuple[Operator, Verifier], accounts: dict[str, Path], api: client.ApiClient,
        control_plane: controlplane.ControlPlane, caplog: pytest.LogCaptureFixture) -> None:
    core = client.CoreV1Api(api)
    made = eventually(lambda: _secret_or_none(core, "keywright-redis"), timeout=30,
                      what="the operator's Redis password Secret")
    assert made.metadata.labels["app.kubernetes.io/managed-by"] == "keywright"
    password = base64.b64decode(made.data["password"])
    assert len(password) >= 43  # 32 random bytes
    assert base64.b64decode(made.data["auth.conf"]) == b"requirepass " + password + b"\n"
    # what deploy/ mounts is what the operator made: the verifiers read `password` and
    # reach the Service by name; Redis includes `auth.conf`
    rendered = list(yaml.safe_load_all(kubectl(
        control_plane.kubeconfig, "kustomize", str(k8s.REPO / "deploy" / "base")).stdout))
    deployments = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in rendered
                   if d["kind"] == "Deployment"}
    verifier, redis = deployments["keywright-verifier"], deployments["keywright-redis"]
    mounted = {v["name"]: v["secret"] for spec in (verifier, redis)
               for v in spec["volumes"] if "secret" in v}
    assert mounted["redis-password"]["items"] == [{"key": "password", "path": "password"}]
    assert mounted["auth"]["items"] == [{"key": "auth.conf", "path": "auth.conf"}]
    assert {m["secretName"] for m in mounted.values()} == {"keywright-redis"}
    env = {e["name"]: e.get("value") for e in verifier["containers"][0]["env"]}
    assert env["KEYWRIGHT_REDIS_URL"] == "redis://keywright-redis:6379/0"
    assert "--redis-password-file=/etc/keywright/redis/password" in verifier[
        "containers"][0]["args"]
    config = next(d for d in rendered if d["kind"] == "ConfigMap")["data"]["redis.conf"]
    assert "include /etc/redis/auth/auth.conf" in config
    # made once: the operator's account finds it and changes nothing, nor a foreign one
    as_operator = kube.Kube.connect(str(accounts["operator"]))
    assert redispassword.ensure(as_operator, SYSTEM, "keywright-redis") is False
    assert core.read_namespaced_secret("keywright-redis", SYSTEM).metadata.resource_version \
        == made.metadata.resource_version
    core.create_namespaced_secret(SYSTEM, client.V1Secret(
        metadata=client.V1ObjectMeta(name="redis-by-hand"), string_data={"password": "x"}))
    with caplog.at_level("WARNING"):
        assert redispassword.ensure(as_operator, SYSTEM, "redis-by-hand") is False
    assert "has no auth.conf" in caplog.text
    assert core.read_namespaced_secret("redis-by-hand", SYSTEM).data == {
        "password": base64.b64encode(b"x").decode()}
    core.delete_namespaced_secret("redis-by-hand", SYSTEM)


def _secret_or_none(core: client.CoreV1Api, name: str) -> client.V1Secret | None:
    try:
        return core.read_namespaced_secret(name, SYSTEM)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_the_1_20_overlay_changes_only_the_pdb_api_version() -> None:
    def render(folder: str) -> list[dict[str, Any]]:
        out = subprocess.run(["kubectl", "kustomize", str(k8s.REPO / folder)],
                             capture_output=True, text=True, check=True).stdout
        return list(yaml.safe_load_all(out))
    base, old = render("deploy"), render("deploy/k8s-1.20")
    assert len(base) == len(old)
    for current, legacy in zip(base, old, strict=True):
        if current["kind"] == "PodDisruptionBudget":
            assert (current["apiVersion"], legacy["apiVersion"]) == ("policy/v1",
                                                                     "policy/v1beta1")
            legacy = {**legacy, "apiVersion": "policy/v1"}
        assert current == legacy


def test_the_built_in_roles_gain_apikeys_but_view_still_reads_no_secret(
    installed: Any, control_plane: controlplane.ControlPlane, api: client.ApiClient,
    namespace: str, tmp_path: Path
) -> None:
    viewer = _service_account(api, control_plane.kubeconfig, namespace, "viewer", "view",
                              tmp_path)
    editor = _service_account(api, control_plane.kubeconfig, namespace, "editor", "edit",
                              tmp_path)
    eventually(lambda: kubectl(viewer, "-n", namespace, "get", "apikeys",
                               check=False).returncode == 0, timeout=30,
               what="view aggregates keywright-view")
    refused = kubectl(viewer, "-n", namespace, "get", "secrets", check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    by_viewer = kubectl(viewer, "-n", namespace, "apply", "-f", "-", check=False,
                        stdin=json.dumps(apikey("by-viewer", namespace)))
    assert by_viewer.returncode != 0
    assert "forbidden" in by_viewer.stderr.lower()
    assert "apikeys" in by_viewer.stderr
    eventually(lambda: kubectl(editor, "-n", namespace, "apply", "-f", "-", check=False,
                               stdin=json.dumps(apikey("by-editor", namespace))
                               ).returncode == 0, timeout=30, what="edit can create ApiKeys")
    patched = kubectl(editor, "-n", namespace, "patch", "apikey", "by-editor",
                      "--subresource=status", "--type=merge", "-p",
                      '{"status":{"phase":"Active"}}', check=False)
    assert patched.returncode != 0  # only Keywright writes status
    assert "forbidden" in patched.stderr.lower()
    assert "apikeys/status" in patched.stderr


@pytest.mark.parametrize(("kind", "writers", "readers"), [
    pytest.param("apikeyrole", ("admin", "edit"), ("view",),
                 id="admins and editors write roles, viewers read them"),
    pytest.param("apikeypolicy", ("admin",), ("edit", "view"),
                 id="only admins write policies, editors and viewers read them"),
])
def test_who_writes_roles_and_policies(
    kind: str, writers: tuple[str, ...], readers: tuple[str, ...], installed: Any,
    control_plane: controlplane.ControlPlane, api: client.ApiClient, namespace: str,
    tmp_path: Path
) -> None:
    accounts = {who: _service_account(api, control_plane.kubeconfig, namespace,
                                      f"{who}-of-{kind}", who, tmp_path)
                for who in (*writers, *readers)}

    def apply(who: str) -> Any:
        made = role(f"by-{who}", namespace, {"area": "Invoices", "actions": ["Read"]}) \
            if kind == "apikeyrole" else policy(f"by-{who}", namespace, maxExpiration="90d")
        return kubectl(accounts[who], "-n", namespace, "apply", "-f", "-", check=False,
                       stdin=json.dumps(made))
    for who in writers:  # the aggregated roles may take a moment to include ours
        eventually(functools.partial(lambda by: apply(by).returncode == 0, who), timeout=30,
                   what=f"{who} can create a {kind}")
    for who in readers:
        assert kubectl(accounts[who], "-n", namespace, "get", kind, f"by-{writers[0]}"
                       ).returncode == 0, who
        refused = apply(who)
        assert refused.returncode != 0, who
        assert "forbidden" in refused.stderr.lower(), who
        deleted = kubectl(accounts[who], "-n", namespace, "delete", kind,
                          f"by-{writers[0]}", check=False)
        assert "forbidden" in deleted.stderr.lower(), who


def test_the_lifecycle_works_under_the_operators_rbac(
    as_deployed: tuple[Operator, Verifier], cluster: Cluster, namespace: str,
    api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, _deployment("consumer"))
    spec = {"scopes": ["Invoices.Read"], "rotation": {
        "restartTargets": [{"kind": "Deployment", "name": "consumer"}]}}
    cluster.apply(apikey("life", namespace, **spec))
    cluster.wait_phase(namespace, "life", "Active")
    first = cluster.plaintext(namespace, "life")

    manifest = apikey("life", namespace, **spec)
    manifest["metadata"]["annotations"] = {"keywright.dev/rotate": "under-rbac"}
    cluster.apply(manifest)
    eventually(lambda: cluster.status(namespace, "life").get("restartedRevision") == 2,
               what="rotated and restarted")
    assert cluster.plaintext(namespace, "life") != first
    template = apps.read_namespaced_deployment("consumer", namespace).spec.template
    assert template.metadata.annotations["keywright.dev/revision"] == "2"

    cluster.apply(apikey("life", namespace, active=False, **spec))
    cluster.wait_phase(namespace, "life", "Inactive")
    kubectl(cluster.kubeconfig, "-n", namespace, "delete", "apikey", "life")
    eventually(lambda: cluster.secret(namespace, "life") is None, timeout=90,
               what="Secret collected (the garbage collector learns a new CRD within 30 s)")
    log = as_deployed[0].log.read_text()
    assert "forbidden" not in log.lower(), "the operator was refused something"


def test_verification_works_under_the_verifiers_rbac(
    as_deployed: tuple[Operator, Verifier], cluster: Cluster, namespace: str
) -> None:
    verifier = as_deployed[1]
    earlier = len(verifier.log.read_text())  # the session's verifier: judge only this test
    cluster.apply(apikey("checked", namespace, scopes=["Invoices.Read"]))
    cluster.wait_phase(namespace, "checked", "Active")
    key = cluster.plaintext(namespace, "checked")
    eventually(lambda: verifier.get("/verify?scope=Invoices.Read",
                                    {"X-API-Key": key})[0] == 200, timeout=10, what="verified")
    eventually(lambda: cluster.status(namespace, "checked").get("lastUsedAt"), timeout=10,
               what="lastUsedAt written by the verifier")
    assert "forbidden" not in verifier.log.read_text()[earlier:].lower()


def test_the_verifiers_token_reads_the_pepper_and_no_tenant_secret(
    as_deployed: Any, accounts: dict[str, Path], cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("tenant", namespace))
    cluster.wait_phase(namespace, "tenant", "Active")
    refused = kubectl(accounts["verifier"], "-n", namespace, "get", "secret", "tenant",
                      check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr.lower()
    assert kubectl(accounts["verifier"], "-n", SYSTEM, "get", "secret", "keywright-pepper",
                   "-o", "name").stdout.strip() == "secret/keywright-pepper"
    others = kubectl(accounts["verifier"], "-n", SYSTEM, "get", "secrets", check=False)
    assert others.returncode != 0  # listing all of them: no
    assert "forbidden" in others.stderr.lower()
    assert 'cannot list resource "secrets"' in others.stderr


def test_the_webhook_refuses_changing_expiration_and_names_the_field(
    as_deployed: Any, cluster: Cluster, namespace: str
) -> None:
    cluster.apply(apikey("fixed", namespace, expiration="30d"))
    changed = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                      stdin=json.dumps(apikey("fixed", namespace, expiration="90d")))
    assert changed.returncode != 0
    assert "spec.expiration" in changed.stderr
    assert "immutable" in changed.stderr
    assert cluster.apikey(namespace, "fixed")["spec"]["expiration"] == "30d"
    # a change to anything else still goes through
    cluster.apply(apikey("fixed", namespace, expiration="30d", description="still fine"))


def test_the_webhook_refuses_what_only_code_can_check(
    as_deployed: Any, cluster: Cluster, namespace: str
) -> None:
    refused = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                      stdin=json.dumps(apikey("hosty", namespace, ipAllowlist=["10.0.0.1/8"])))
    assert refused.returncode != 0
    assert "spec.ipAllowlist[0]" in refused.stderr
    found = kubectl(cluster.kubeconfig, "-n", namespace, "get", "apikey", "hosty",
                    check=False)
    assert found.returncode != 0  # nothing was stored
    assert "NotFound" in found.stderr


def test_a_deployment_opted_in_to_injection_gets_pods_with_the_key_from_its_secret(
    as_deployed: Any, cluster: Cluster, namespace: str, api: client.ApiClient
) -> None:
    cluster.apply(apikey("injected", namespace, secret={"name": "injected-key",
                                                         "key": "token"}))
    cluster.wait_phase(namespace, "injected", "Active")
    client.AppsV1Api(api).create_namespaced_deployment(namespace, _deployment(
        "app", {"keywright.dev/inject": "injected", "keywright.dev/inject-env": "MY_KEY"},
        {"keywright.dev/inject": "true"}))
    core = client.CoreV1Api(api)
    pods = eventually(lambda: core.list_namespaced_pod(namespace,
                                                       label_selector="app=app").items,
                      timeout=30, what="pods made by the controller-manager")
    env = pods[0].spec.containers[0].env
    assert [(e.name, e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key)
            for e in env] == [("MY_KEY", "injected-key", "token")]


def test_a_pod_naming_a_missing_apikey_is_refused_with_a_clear_message(
    as_deployed: Any, cluster: Cluster, namespace: str
) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": f"lost-{uuid.uuid4().hex[:6]}", "namespace": namespace,
        "labels": {"keywright.dev/inject": "true"},
        "annotations": {"keywright.dev/inject": "nowhere"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}}
    refused = kubectl(cluster.kubeconfig, "apply", "-f", "-", check=False,
                      stdin=json.dumps(pod))
    assert refused.returncode != 0
    assert "ApiKey 'nowhere' not found" in refused.stderr


def _deployment(name: str, annotations: dict[str, str] | None = None,
                labels: dict[str, str] | None = None) -> client.V1Deployment:
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name, **(labels or {})},
                                             annotations=annotations),
                spec=client.V1PodSpec(containers=[client.V1Container(name="main",
                                                                     image="busybox")]))))


def test_the_operator_writes_nothing_a_gitops_diff_would_show(
    as_deployed: Any, cluster: Cluster, namespace: str
) -> None:
    """What Argo CD or Flux compare, the applied manifest against the live object, stays
    equal through issue, rotation and usage: Keywright writes only status (and Kopf only
    its bookkeeping inside status)."""
    manifest = apikey("gitops", namespace, scopes=["Invoices.Read"],
                      rotation={"gracePeriod": "1m"})
    manifest["metadata"]["annotations"] = {"keywright.dev/rotate": "from-git-1"}
    cluster.apply(manifest)  # a value present at creation is recorded, not acted on
    cluster.wait_phase(namespace, "gitops", "Active")
    manifest["metadata"]["annotations"] = {"keywright.dev/rotate": "from-git-2"}
    cluster.apply(manifest)
    eventually(lambda: cluster.status(namespace, "gitops").get("revision") == 2,
               what="rotated by the new annotation value in git")
    key = cluster.plaintext(namespace, "gitops")
    verifier = as_deployed[1]
    eventually(lambda: verifier.get("/verify", {"X-API-Key": key})[0] == 200, timeout=10,
               what="verified")
    eventually(lambda: cluster.status(namespace, "gitops").get("lastUsedAt"), timeout=10,
               what="usage written")
    diff = kubectl(cluster.kubeconfig, "diff", "-f", "-", stdin=json.dumps(manifest),
                   check=False)
    assert (diff.returncode, diff.stdout) == (0, "")
    live = cluster.apikey(namespace, "gitops")
    writers = {entry["manager"]: entry["fieldsV1"] for entry in live["metadata"]["managedFields"]
               if entry["manager"] != "kubectl-client-side-apply"}
    assert writers  # the operator's and the verifier's writes are there
    assert all(list(fields) == ["f:status"] for fields in writers.values()), writers


def test_an_operator_without_the_policy_rbac_stops_at_start_saying_which_list(
    installed: Any, control_plane: controlplane.ControlPlane, api: client.ApiClient,
    tmp_path: Path
) -> None:
    """The upgrade note's promise: an operator deployed with an older ClusterRole (no
    ApiKeyPolicies) exits 1 at start, naming the list it was refused, rather than judge
    keys without their policies."""
    rules = next(doc for doc in yaml.safe_load_all(
        (k8s.REPO / "deploy" / "base" / "rbac" / "operator.yaml").read_text())
        if doc["kind"] == "ClusterRole")["rules"]
    older = [rule for rule in rules if not any("apikeypolicies" in resource
                                               for resource in rule["resources"])]
    assert len(older) == len(rules) - 2  # the list/watch rule and the status rule
    name = f"older-operator-{uuid.uuid4().hex[:6]}"
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role(client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=name), rules=older))
    client.CoreV1Api(api).create_namespaced_service_account(
        k8s.OPERATOR_NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                  name=name),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name=name,
                                       namespace=k8s.OPERATOR_NAMESPACE)]))
    try:
        kubeconfig = k8s.token_kubeconfig(
            control_plane.kubeconfig,
            k8s.service_account_token(api, k8s.OPERATOR_NAMESPACE, name), tmp_path / "older")
        ran = subprocess.run(
            [sys.executable, "-m", "keywright.cli", "operator", "--kubeconfig",
             str(kubeconfig), "--namespace", k8s.OPERATOR_NAMESPACE],
            capture_output=True, text=True, timeout=90)
        assert ran.returncode == 1, ran.stderr[-2000:]
        assert "cannot list ApiKeyRoles, ApiKeyPolicies or ApiKeys at start" in ran.stderr
        assert "apikeypolicies" in ran.stderr  # the refusal names the resource
        assert "exiting 1" in ran.stderr
    finally:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)

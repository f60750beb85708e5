"""The whole product in real Pods on a real node, from the image `make image` builds and
README's `kubectl apply -k`: the operator and verifiers Ready as their ServiceAccounts,
the webhooks reached through their Service, a key injected into a real process that
uses it, a rotation that rolls the app exactly once, and faults (the operator Pod
deleted mid-issue, a verifier killed under load behind a retrying gateway), and a rate
limit that holds exactly across both verifiers through the Redis deploy/ runs."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from keywright.dev import image, node
from keywright.kits import processes
from tests.node.conftest import (
    IMAGE,
    SYSTEM,
    container_id,
    ctr,
    last_json,
    logs,
    pods,
    ready_pods,
)
from tests.support import k8s, manifests
from tests.support.k8s import Plaintext
from tests.support.waiting import eventually

OPERATOR = "app.kubernetes.io/name=keywright-operator"
VERIFIER = "app.kubernetes.io/name=keywright-verifier"

# A real process that uses its key: it prints a digest of what it sees (never the key)
# and the verifier's answer to it, once, then waits to be stopped.
APP = textwrap.dedent("""
    import hashlib, json, os, signal, sys, time, urllib.error, urllib.request
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    key = os.environ.get("API_KEY", "")
    request = urllib.request.Request("http://" + os.environ["VERIFIER"] + "/verify",
                                     headers={"X-API-Key": key})
    try:
        status = urllib.request.urlopen(request, timeout=5).status
    except urllib.error.HTTPError as error:
        status = error.code
    digest = hashlib.sha256(key.encode()).hexdigest() if key else None
    print(json.dumps({"sha256": digest, "status": status}), flush=True)
    while True:
        time.sleep(3600)
""")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def verifier_address(api: client.ApiClient) -> str:
    service = client.CoreV1Api(api).read_namespaced_service("keywright-verifier", SYSTEM)
    return f"{service.spec.cluster_ip}:8080"


def app_deployment(api: client.ApiClient, namespace: str, name: str, apikey: str,
                   *, inject: bool = True) -> dict[str, Any]:
    annotations = {"keywright.dev/inject": apikey} if inject else {}
    labels = {"app": name, **({"keywright.dev/inject": "true"} if inject else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {
                     "metadata": {"labels": labels, "annotations": annotations},
                     "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                         "name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                         "command": ["python3", "-c", APP],
                         "env": [{"name": "VERIFIER", "value": verifier_address(api)}]}]}}},
    }


def app_report(api: client.ApiClient, namespace: str, name: str,
               exclude: set[str] = frozenset()) -> tuple[str, dict[str, Any]]:  # type: ignore[assignment]
    """The (pod name, report) of the app's one ready Pod not in `exclude`."""
    def reported() -> tuple[str, dict[str, Any]] | None:
        for pod in pods(api, namespace, f"app={name}"):
            pod_name = str(pod.metadata.name)
            if pod_name in exclude or pod.metadata.deletion_timestamp:
                continue
            if pod.status.phase != "Running":
                continue
            report = last_json(logs(api, namespace, pod_name))
            if report is not None:
                return pod_name, report
        return None
    return eventually(reported, timeout=120, interval=0.5, what=f"a report from {name}")


# -- the image --------------------------------------------------------------------------


def test_the_image_runs_as_65532_on_a_read_only_root(
        archive: Path, api: client.ApiClient, namespace: str,
        cluster_node: node.Node) -> None:
    recorded = image.image_config(archive)["config"]
    assert isinstance(recorded, dict)
    assert recorded["User"] == "65532:65532"
    assert recorded["Entrypoint"] == ["python3", "-m", "keywright.cli"]
    probe = textwrap.dedent("""
        import errno, json, os
        try:
            open("/opt/keywright/x", "w")
            written = True
        except OSError as error:
            written = errno.errorcode[error.errno]
        print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "write": written}))
    """)
    for name, spec in (("help", {"args": ["--help"]}),
                       ("probe", {"command": ["python3", "-c", probe]})):
        k8s.kubectl(cluster_node.kubeconfig, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "c", "image": IMAGE, "imagePullPolicy": "Never", **spec,
                "securityContext": {"readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}}}],
                "securityContext": {"runAsNonRoot": True}}}))
    core = client.CoreV1Api(api)
    for name in ("help", "probe"):
        def succeeded(pod: str = name) -> bool:
            return bool(core.read_namespaced_pod(pod, namespace).status.phase == "Succeeded")
        eventually(succeeded, timeout=60, what=f"pod {name} Succeeded")
    assert "usage: keywright" in logs(api, namespace, "help")
    # the user comes from the image (the Pod sets none); containerd's CRI takes only the
    # uid from an image's USER, so the Deployments set runAsGroup themselves
    assert last_json(logs(api, namespace, "probe")) == {
        "uid": 65532, "gid": 0, "write": "EROFS"}


def test_the_same_commit_builds_the_same_layers(archive: Path,
                                                tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "keywright.cli", "image", "--source",
                    str(k8s.REPO), "--output", str(tmp_path)], check=True, timeout=1200,
                   capture_output=True)
    again = tmp_path / archive.name
    assert image.layer_digests(again) == image.layer_digests(archive)


# -- installed from deploy/ -------------------------------------------------------------


def test_operator_and_verifiers_run_as_their_service_accounts_in_cluster(
        api: client.ApiClient, installed: None, cluster_node: node.Node) -> None:
    for selector, account, count in ((OPERATOR, "keywright-operator", 1),
                                     (VERIFIER, "keywright-verifier", 2)):
        running = ready_pods(api, SYSTEM, selector, count)
        assert {p.spec.service_account_name for p in running} == {account}
        assert all(p.spec.security_context.run_as_user == 65532 for p in running)
        pod_ips = {str(p.status.pod_ip) for p in running}
        user = f"system:serviceaccount:{SYSTEM}:{account}"

        def seen(user: str = user, pod_ips: set[str] = pod_ips) -> bool:
            # their requests reach the API server from their Pod addresses, as their
            # ServiceAccount: the in-cluster token, through the `kubernetes` Service
            lines = cluster_node.audit_log.read_text().splitlines()
            sources = {ip for line in lines if (entry := json.loads(line))
                       ["user"]["username"] == user for ip in entry.get("sourceIPs", [])}
            return bool(sources & pod_ips)
        eventually(seen, timeout=60, interval=1, what=f"requests by {account} from its Pods")
        assert all(ipaddress.ip_address(str(p.status.pod_ip)) in ipaddress.ip_network(
            node.POD_CIDR) for p in running)


def test_the_webhooks_are_reached_through_their_service(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node) -> None:
    configs = client.AdmissionregistrationV1Api(api)
    validating = eventually(lambda: [w for c in configs.list_validating_webhook_configuration(
    ).items for w in c.webhooks or []], timeout=60, what="a validating webhook")
    assert all(w.client_config.service is not None and w.client_config.url is None
               for w in validating)
    refused = k8s.kubectl(cluster_node.kubeconfig, "apply", "-f", "-", check=False,
                          stdin=json.dumps(manifests.apikey(
                              "bad", namespace, expiration="30d", prefix="NOT OK")))
    assert refused.returncode != 0
    assert "admission webhook" in refused.stderr
    assert "prefix" in refused.stderr


def test_kubectl_apikey_doctor_finds_every_part_working(
        installed: None, cluster_node: node.Node, namespace: str) -> None:
    """The plugin's doctor against the whole product: every check ok, exit 0."""
    ran = subprocess.run([str(Path(sys.executable).parent / "kubectl-apikey"), "doctor",
                          "--kubeconfig", str(cluster_node.kubeconfig), "-n", namespace,
                          "--wait", "2m", "-o", "json"],
                         capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = {c["check"]: c["status"] for c in json.loads(ran.stdout)}
    assert found == dict.fromkeys(("API server", "CRDs", "operator", "verifiers",
                                   "admission webhook", "pepper", "clock"), "ok")


CHECKS = [
    ("fenced", ["--scope", "Invoices.Read", "--from", "203.0.113.7"], "200 OK: key fenced"),
    ("fenced", ["--scope", "Invoices.Read", "--from", "198.51.100.7"],
     "403 IP_NOT_ALLOWED: 198.51.100.7 is not in 203.0.113.0/24"),
    ("fenced", ["--scope", "Invoices.Write"], "403 INSUFFICIENT_SCOPE: key fenced lacks"),
    ("off", [], "401 INACTIVE: key off is not active: spec.active is false"),
    ("brief", [], "401 EXPIRED: key brief expired at"),
    ("unknown", [], "401 INVALID_KEY: no ApiKey holds this key"),
    ("garbled", [], "401 MALFORMED_KEY"),
]


def test_kubectl_apikey_check_asks_a_verifier_through_the_service_proxy(
        installed: None, cluster: k8s.Cluster, cluster_node: node.Node,
        namespace: str) -> None:
    """Each reason code, asked through the API server's proxy to the verifiers' Service,
    as a person outside the cluster would."""
    from keywright.core import tokens

    cluster.apply(manifests.apikey("fenced", namespace, scopes=["Invoices.Read"],
                                   ipAllowlist=["203.0.113.0/24"]))
    cluster.apply(manifests.apikey("off", namespace, active=False))
    cluster.apply(manifests.apikey("brief", namespace, expiration="3s"))
    keys = {name: Plaintext(eventually(
        lambda name=name: cluster.status(namespace, name).get("secretName")  # type: ignore[misc]
        and cluster.plaintext(namespace, name), timeout=60, what=f"{name} issued"))
        for name in ("fenced", "off", "brief")}
    keys["unknown"] = Plaintext(tokens.generate("kw"))
    keys["garbled"] = Plaintext(keys["fenced"][:-2])

    def check(who: str, args: list[str]) -> str:
        ran = subprocess.run([str(Path(sys.executable).parent / "kubectl-apikey"), "check",
                              "--kubeconfig", str(cluster_node.kubeconfig), "-n", namespace,
                              *args], input=keys[who], capture_output=True, text=True,
                             timeout=60)
        assert keys[who] not in ran.stdout + ran.stderr
        return ran.stdout
    for who, args, line in CHECKS:
        eventually(lambda who=who, args=args, line=line:  # type: ignore[misc]
                   check(who, args).startswith(line), timeout=30, what=f"{who}: {line}")


def test_a_deployment_gets_its_key_and_a_rotation_rolls_it_exactly_once(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node, timings: dict[str, float]) -> None:
    cluster.apply(manifests.apikey(
        "app-key", namespace, rotation={"gracePeriod": "1h", "restartTargets": [
            {"kind": "Deployment", "name": "app"}]}))
    cluster.wait_phase(namespace, "app-key", "Active", timeout=60)
    began = time.monotonic()
    cluster.apply(app_deployment(api, namespace, "app", "app-key"))
    first_pod, first = app_report(api, namespace, "app")
    timings["app Pod create to report"] = time.monotonic() - began
    key = cluster.plaintext(namespace, "app-key")
    assert first == {"sha256": sha256(key), "status": 200}

    k8s.kubectl(cluster_node.kubeconfig, "-n", namespace, "annotate", "apikey", "app-key",
                "keywright.dev/rotate=now-1")
    eventually(lambda: cluster.status(namespace, "app-key").get("restartedRevision") == 2,
               timeout=60, what="restartedRevision 2")
    second_pod, second = app_report(api, namespace, "app", exclude={first_pod})
    rotated = cluster.plaintext(namespace, "app-key")
    assert rotated != key
    assert second == {"sha256": sha256(rotated), "status": 200}
    time.sleep(5)  # a second roll would have started by now
    apps = client.AppsV1Api(api)
    deployment = apps.read_namespaced_deployment("app", namespace)
    assert deployment.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert len(apps.list_namespaced_replica_set(namespace, label_selector="app=app")
               .items) == 2
    assert [p.metadata.name for p in pods(api, namespace, "app=app")
            if not p.metadata.deletion_timestamp] == [second_pod]


def set_operator_env(the_node: node.Node, api: client.ApiClient, *pairs: str) -> client.V1Pod:
    """`kubectl set env` on the operator's Deployment (a rollout); its new Pod once Ready
    with exactly that environment."""
    k8s.kubectl(the_node.kubeconfig, "-n", SYSTEM, "set", "env",
                "deployment/keywright-operator", *pairs)
    wanted = {pair.split("=")[0]: not pair.endswith("-") for pair in pairs}

    def rolled() -> client.V1Pod | None:
        for pod in ready_pods(api, SYSTEM, OPERATOR, 1):
            present = {e.name for e in pod.spec.containers[0].env or []}
            if all((name.rstrip("-") in present) == keep for name, keep in wanted.items()):
                return pod
        return None
    return eventually(rolled, timeout=120, interval=1, what=f"the operator with {pairs}")


def test_the_operator_pod_deleted_mid_issue_is_replaced_and_loses_nothing(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node) -> None:
    """A rotation held between generating revision 2 and writing it (a pause point), the
    operator Pod deleted there: the Deployment's new Pod finishes it, once."""
    victim = f"{namespace}/held"
    pod = set_operator_env(cluster_node, api, f"KEYWRIGHT_PAUSE_AT=before-secret-patch@{victim}",
                           "KEYWRIGHT_PAUSE_UNTIL=/tmp/release")
    try:
        cluster.apply(manifests.apikey("held", namespace, rotation={"gracePeriod": "1h"}))
        cluster.wait_phase(namespace, "held", "Active", timeout=60)
        first = cluster.plaintext(namespace, "held")
        k8s.kubectl(cluster_node.kubeconfig, "-n", namespace, "annotate", "apikey", "held",
                    "keywright.dev/rotate=mid-issue")
        eventually(lambda: f"fault point before-secret-patch@{victim} reached" in logs(
            api, SYSTEM, str(pod.metadata.name)), timeout=60, interval=0.5,
            what="the rotation held mid-issue")
        k8s.kubectl(cluster_node.kubeconfig, "-n", SYSTEM, "delete", "pod",
                    str(pod.metadata.name), "--grace-period=0", "--force")
        (new,) = ready_pods(api, SYSTEM, OPERATOR, 1)
        assert new.metadata.name != pod.metadata.name  # the Deployment made a new Pod
        # the new Pod holds at the same point (still armed); let it go on
        eventually(lambda: f"fault point before-secret-patch@{victim} reached" in logs(
            api, SYSTEM, str(new.metadata.name)), timeout=60, interval=0.5,
            what="the new Pod at the rotation")
        k8s.kubectl(cluster_node.kubeconfig, "-n", SYSTEM, "exec", str(new.metadata.name),
                    "--", "python3", "-c", "open('/tmp/release', 'w').close()")
        status = eventually(lambda: (found := cluster.status(namespace, "held")).get(
            "revision") == 2 and found, timeout=60, what="revision 2")
        assert [p["revision"] for p in status.get("previous", [])] == [1]
        second = cluster.plaintext(namespace, "held")
        assert second != first
        assert verify_through_proxy(cluster_node, second) == 200  # Secret and hash agree
        assert verify_through_proxy(cluster_node, first) == 200  # in its grace period
    finally:
        set_operator_env(cluster_node, api, "KEYWRIGHT_PAUSE_AT-", "KEYWRIGHT_PAUSE_UNTIL-")


def test_the_operator_killed_between_secret_and_status_loses_nothing(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node) -> None:
    """The operator dies (as abruptly as SIGKILL: its crash point) right after writing a
    key's Secret and before its status; the restarted container adopts the Secret. The
    victim is the last key of the burst: ApiKeys are refused while the webhook is down."""
    count = 10
    victim = f"{namespace}/k{count - 1}"
    pod = set_operator_env(cluster_node, api,
                           f"KEYWRIGHT_CRASH_AT=after-secret-write@{victim}")
    try:
        k8s.kubectl(cluster_node.kubeconfig, "apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "List",
            "items": [manifests.apikey(f"k{i}", namespace) for i in range(count)]}))

        def crashed() -> bool:
            found = client.CoreV1Api(api).read_namespaced_pod(str(pod.metadata.name), SYSTEM)
            return int(found.status.container_statuses[0].restart_count or 0) >= 1
        eventually(crashed, timeout=60, interval=0.5, what="the crash at after-secret-write")
        converged(cluster, cluster_node, namespace, count)
    finally:
        set_operator_env(cluster_node, api, "KEYWRIGHT_CRASH_AT-")


def converged(cluster: k8s.Cluster, the_node: node.Node, namespace: str, count: int) -> None:
    """Every key Active at revision 1, and the key in each Secret is the one its status
    hash stands for: a verifier (through the API server's Service proxy) accepts it."""
    for i in range(count):
        status = cluster.wait_phase(namespace, f"k{i}", "Active", timeout=120)
        assert status["revision"] == 1
        assert verify_through_proxy(the_node, cluster.plaintext(namespace, f"k{i}")) == 200


def verify_through_proxy(the_node: node.Node, key: k8s.Plaintext) -> int:
    path = f"/api/v1/namespaces/{SYSTEM}/services/keywright-verifier:8080/proxy/verify"

    context = ssl.create_default_context(cafile=str(the_node.ca_file))

    def answered() -> int | None:
        request = urllib.request.Request(the_node.server + path, headers={  # noqa: S310
            "Authorization": f"Bearer {the_node.users['admin'].token}", "X-API-Key": key})
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
                return int(response.status)
        except (OSError, ssl.SSLError):
            return None  # 401 until the verifiers have indexed the key
    return eventually(answered, timeout=30, interval=0.5, what="the verifier's 200")


def test_the_operator_pod_serves_each_keys_metrics_on_its_metrics_port(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node) -> None:
    """deploy/ runs the operator with --metrics-port on its `metrics` port: scraped
    through the API server's Pod proxy, as a Prometheus in the cluster would reach it."""
    cluster.apply(manifests.apikey("scraped", namespace, expiration="1d"))
    status = cluster.wait_phase(namespace, "scraped", "Active", timeout=60)
    (operator,) = ready_pods(api, SYSTEM, OPERATOR, 1)
    # the Pod proxy dials the port as given: a number (the `metrics` port's), not a name
    path = f"/api/v1/namespaces/{SYSTEM}/pods/{operator.metadata.name}:8080/proxy/metrics"
    context = ssl.create_default_context(cafile=str(cluster_node.ca_file))
    series = (f'keywright_apikey_expiration_timestamp_seconds{{name="scraped",'
              f'namespace="{namespace}"}} ')

    def scraped() -> str | None:
        request = urllib.request.Request(cluster_node.server + path, headers={  # noqa: S310
            "Authorization": f"Bearer {cluster_node.users['admin'].token}"})
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
                text = response.read().decode()
        except (OSError, ssl.SSLError) as exc:
            tried.append(f"{type(exc).__name__}: {exc}"[:200])
            return None
        tried.append("answered without the series")
        return text if series in text else None
    tried: list[str] = []
    try:
        text = eventually(scraped, timeout=30, interval=0.5, what="the key's series")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the last try: {tried[-1:]}") from None
    line = next(line for line in text.splitlines() if line.startswith(series))
    expires = datetime.fromisoformat(status["expiresAt"].replace("Z", "+00:00"))
    assert float(line.split()[-1]) == expires.timestamp()


# -- the Pod webhook never holds the cluster hostage -------------------------------------


def test_a_hung_operator_delays_no_unrelated_pod(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node) -> None:
    cluster.apply(manifests.apikey("hostage", namespace))
    cluster.wait_phase(namespace, "hostage", "Active", timeout=60)
    (operator,) = ready_pods(api, SYSTEM, OPERATOR, 1)
    task = container_id(operator)
    ctr(cluster_node, "tasks", "pause", task)  # frozen: connections accepted, no answers
    try:
        core = client.CoreV1Api(api)

        def create(name: str, opted_in: bool) -> float:
            began = time.monotonic()
            core.create_namespaced_pod(namespace, {  # type: ignore[arg-type]
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name,
                             "labels": {"keywright.dev/inject": "true"} if opted_in else {},
                             "annotations": {"keywright.dev/inject": "hostage"}
                             if opted_in else {}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                    "command": ["python3", "-c", "import time; time.sleep(3600)"]}]}})
            return time.monotonic() - began

        unrelated = create("unrelated", opted_in=False)
        assert unrelated < 1.0, f"an unrelated Pod create took {unrelated:.1f}s"
        eventually(lambda: core.read_namespaced_pod("unrelated", namespace).status.phase
                   == "Running", timeout=30, what="the unrelated Pod Running")
        opted = create("opted-in", opted_in=True)
        configs = client.AdmissionregistrationV1Api(api)
        (pod_hook,) = [w for c in configs.list_mutating_webhook_configuration().items
                       for w in c.webhooks or [] if "pod" in w.name.lower()]
        timeout = int(pod_hook.timeout_seconds or 0)
        assert 0 < timeout <= 5
        assert pod_hook.failure_policy == "Ignore"
        assert opted < timeout + 2, f"opted-in Pod create took {opted:.1f}s"
        assert opted >= timeout - 1, f"{opted:.1f}s: the opted-in Pod never waited on it"
        admitted = core.read_namespaced_pod("opted-in", namespace)
        assert not any(e.name == "API_KEY" for c in admitted.spec.containers
                       for e in c.env or [])
    finally:
        ctr(cluster_node, "tasks", "resume", task)


# -- a verifier killed under load, behind a gateway that retries ------------------------


NGINX = """
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  upstream keywright {{ {servers} keepalive 16; }}
  server {{
    listen 127.0.0.1:{port};
    location = /_keywright {{
      internal;
      proxy_pass http://keywright/verify;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout http_502 http_503;
    }}
    location /api/ {{ auth_request /_keywright; return 200 "ok"; }}
  }}
}}
"""

LOAD = textwrap.dedent("""
    import collections, http.client, json, sys, threading, time
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    key = sys.stdin.readline().strip()
    counts = collections.Counter()
    lock = threading.Lock()
    def run():
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/x", headers={"X-API-Key": key})
                status = conn.getresponse().status
                conn.close()
            except OSError as error:
                status = type(error).__name__
            with lock:
                counts[str(status)] += 1
    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps(counts))
""")


def test_a_verifier_killed_under_load_costs_no_5xx_through_a_retrying_gateway(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node, tmp_path: Path) -> None:
    cluster.apply(manifests.apikey("loaded", namespace))
    cluster.wait_phase(namespace, "loaded", "Active", timeout=60)
    key = cluster.plaintext(namespace, "loaded")
    verify_through_proxy(cluster_node, key)
    verifiers = ready_pods(api, SYSTEM, VERIFIER, 2)
    servers = " ".join(f"server {p.status.pod_ip}:8080 max_fails=0;" for p in verifiers)
    port = 18080
    (tmp_path / "nginx.conf").write_text(NGINX.format(dir=tmp_path, servers=servers,
                                                      port=port))
    gateway = processes.spawn(cluster_node.nsenter(  # dies with us, whatever happens
        ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]),
        tmp_path / "nginx.out")
    try:
        time.sleep(1)
        assert gateway.poll() is None, (tmp_path / "nginx.out").read_text()
        load = subprocess.Popen(cluster_node.nsenter(
            [sys.executable, "-c", LOAD, str(port), "12"]), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert load.stdin is not None
        load.stdin.write(key + "\n")
        load.stdin.close()
        time.sleep(4)
        victim = verifiers[0]
        killer = threading.Thread(target=ctr, args=(cluster_node, "tasks", "kill", "-s",
                                                    "SIGKILL", container_id(victim)))
        killer.start()
        killer.join()
        assert load.stdout is not None
        counts: dict[str, int] = json.loads(load.stdout.read())
        load.wait(timeout=60)
    finally:
        processes.terminate(gateway)
    assert set(counts) == {"200"}, counts
    assert counts["200"] > 100, counts
    restarted = client.CoreV1Api(api).read_namespaced_pod(str(victim.metadata.name), SYSTEM)
    assert int(restarted.status.container_statuses[0].restart_count or 0) >= 1  # it really died
    ready_pods(api, SYSTEM, VERIFIER, 2)


# -- limits shared through deploy/'s Redis -----------------------------------------------

# From inside the node: `count` requests, alternating between the verifier Pods given, with
# the key from stdin; prints each (pod, status, X-RateLimit-Remaining).
ALTERNATE = textwrap.dedent("""
    import http.client, json, sys
    addresses, count = sys.argv[1].split(","), int(sys.argv[2])
    key = sys.stdin.readline().strip()
    answers = []
    for i in range(count):
        address = addresses[i % len(addresses)]
        conn = http.client.HTTPConnection(address, 8080, timeout=5)
        conn.request("GET", "/verify", headers={"X-API-Key": key})
        response = conn.getresponse()
        answers.append([address, response.status,
                        response.getheader("X-RateLimit-Remaining")])
        conn.close()
    print(json.dumps(answers))
""")


def test_the_default_install_allows_exactly_the_limit_across_both_verifiers(
        api: client.ApiClient, cluster: k8s.Cluster, namespace: str,
        cluster_node: node.Node) -> None:
    limit = 7
    cluster.apply(manifests.apikey("metered", namespace, scopes=["Orders.Read"],
                                   rateLimit={"requests": limit, "period": "1h"}))
    cluster.wait_phase(namespace, "metered", "Active", timeout=60)
    key = cluster.plaintext(namespace, "metered")
    verifiers = ready_pods(api, SYSTEM, VERIFIER, 2)
    addresses = ",".join(str(p.status.pod_ip) for p in verifiers)

    def indexed_by_both() -> bool:  # Orders.Write, which it lacks: 403, nothing spent
        probe = textwrap.dedent("""
            import http.client, sys
            key = sys.stdin.readline().strip()
            for address in sys.argv[1].split(","):
                conn = http.client.HTTPConnection(address, 8080, timeout=5)
                conn.request("GET", "/verify?scope=Orders.Write", headers={"X-API-Key": key})
                if conn.getresponse().status != 403:
                    sys.exit(1)
        """)
        return subprocess.run(cluster_node.nsenter([sys.executable, "-c", probe, addresses]),
                              input=key + "\n", text=True, check=False,
                              capture_output=True).returncode == 0
    eventually(indexed_by_both, timeout=30, interval=0.5, what="both verifiers have the key")
    result = subprocess.run(
        cluster_node.nsenter([sys.executable, "-c", ALTERNATE, addresses, str(3 * limit)]),
        input=key + "\n", text=True, capture_output=True, check=True, timeout=60)
    answers = json.loads(result.stdout)
    statuses = [status for _, status, _ in answers]
    assert statuses == [200] * limit + [429] * (2 * limit), statuses  # not 2 x the limit
    assert {address for address, status, _ in answers if status == 200} == set(
        addresses.split(","))  # both replicas let some through: one count, shared
    assert [int(left) for _, status, left in answers if status == 200] == list(
        range(limit - 1, -1, -1))
    for verifier in verifiers:
        said = logs(api, SYSTEM, str(verifier.metadata.name))
        assert "rate limits are in-process" not in said


def test_the_operator_makes_the_redis_password_and_only_verifiers_may_reach_redis(
        api: client.ApiClient, installed: None) -> None:
    core = client.CoreV1Api(api)
    secret = core.read_namespaced_secret("keywright-redis", SYSTEM)
    password = base64.b64decode(secret.data["password"])
    assert len(password) >= 32
    assert base64.b64decode(secret.data["auth.conf"]) == b"requirepass " + password + b"\n"
    (redis,) = ready_pods(api, SYSTEM, "app.kubernetes.io/name=keywright-redis", 1)
    assert redis.spec.security_context.run_as_user == 999
    policy = client.NetworkingV1Api(api).read_namespaced_network_policy(
        "keywright-redis", SYSTEM)
    assert policy.spec.ingress[0]._from[0].pod_selector.match_labels == {
        "app.kubernetes.io/name": "keywright-verifier"}
    # made once, by the operator's account (test_deploy checks that a second start
    # leaves it as it is)
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "keywright"


def test_secrets_never_reach_the_pods_logs(api: client.ApiClient, cluster: k8s.Cluster,
                                           namespace: str) -> None:
    cluster.apply(manifests.apikey("quiet", namespace))
    cluster.wait_phase(namespace, "quiet", "Active", timeout=60)
    key = cluster.plaintext(namespace, "quiet")
    pepper = cluster.pepper()
    needles = {"the key": key, **{f"pepper {name} ({form})": text
                                  for name, value in pepper.items()
                                  for form, text in (("base64", base64.b64encode(value)
                                                      .decode()), ("hex", value.hex()))}}
    leaks = [(str(pod.metadata.name), what)
             for selector in (OPERATOR, VERIFIER) for pod in pods(api, SYSTEM, selector)
             for what, needle in needles.items()
             if needle in logs(api, SYSTEM, str(pod.metadata.name))]
    assert leaks == []  # names only: a failure never prints a secret


@pytest.fixture(autouse=True)
def _operator_and_verifiers_ready(request: pytest.FixtureRequest) -> None:
    """Each test starts with the install whole (a fault test leaves it so, too): the
    Pods Ready, and the ApiKey webhook answering through its Service (a replaced
    operator Pod is Ready a moment before the Service's endpoints and kube-proxy's rules
    lead to it)."""
    if "installed" in request.fixturenames or "namespace" in request.fixturenames:
        api = request.getfixturevalue("api")
        ready_pods(api, SYSTEM, OPERATOR, 1)
        ready_pods(api, SYSTEM, VERIFIER, 2)
        kubeconfig = request.getfixturevalue("cluster_node").kubeconfig
        probe = json.dumps(manifests.apikey("webhook-probe", "default"))

        def webhook_answers() -> bool:
            return k8s.kubectl(kubeconfig, "apply", "--dry-run=server", "-f", "-",
                               stdin=probe, check=False).returncode == 0
        eventually(webhook_answers, timeout=60, interval=0.5, what="the ApiKey webhook")

"""Shared by the benchmarks that drive the real `keywright verifier` process against a
local control plane (verify_http, verify_limits).

A fresh control plane with the pepper Secret; ApiKeys written with their hashes in
status, as the operator leaves them (the verifier cannot tell); `keywright verifier`
processes pinned to the server core (wrkload.SERVER_CORE), their audit lines and
diagnostics in the plane's log directory; waiting until one has indexed the keys.
Everything listens on loopback only.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import wrkload
from keywright import kube
from keywright.core import hashing, names, tokens
from keywright.dev import binaries, controlplane, install
from keywright.kits import processes

NAMESPACE = "bench"
READER = "keywright-bench-reader"  # a verifier's user that may read but not write status
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@dataclass
class Verifier:
    """A running `keywright verifier`: its URL and process (granian's supervisor, whose
    worker is its child)."""

    url: str
    popen: subprocess.Popen[bytes]

    def indexed(self) -> int:
        """Keys indexed per /readyz; -1 while not ready or not answering."""
        try:
            _, body = wrkload.get(self.url + "/readyz")
        except OSError:
            return -1
        found = json.loads(body)
        return int(found["keysIndexed"]) if found.get("ready") else -1

    def wait_indexed(self, count: int, timeout: float = 120.0) -> float:
        """Until /readyz reports `count` keys; returns the seconds since the process
        started (prints them)."""
        started = time.monotonic()
        while self.indexed() < count:
            if self.popen.poll() is not None or time.monotonic() - started > timeout:
                raise SystemExit(f"verifier at {self.url} did not index {count} keys")
            time.sleep(0.2)
        took = time.monotonic() - started
        print(f"verifier at {self.url} indexed {count:,} keys {took:.1f} s after start")
        return took

    def answer(self, key: str, path: str) -> tuple[int, dict[str, str]]:
        """One /verify call: (status, headers, lower-cased names)."""
        request = urllib.request.Request(  # noqa: S310 - loopback
            self.url + path, headers={"X-API-Key": key})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                return response.status, {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}


class Bench:
    """The control plane, the pepper and the verifiers started here; a context manager
    that stops exactly those."""

    def __init__(self, namespaces: Sequence[str] = (NAMESPACE,)) -> None:
        self.namespaces = tuple(namespaces)
        self.plane = controlplane.ControlPlane(binaries.ensure_binaries(print))
        self.peppers = hashing.Peppers("v1", {"v1": secrets.token_bytes(32)})
        self.verifiers: list[Verifier] = []
        self._admin: kube.Kube | None = None
        self.plane.add_token_user(READER)  # before start: no kube-apiserver restart

    @property
    def admin(self) -> kube.Kube:
        assert self._admin is not None
        return self._admin

    @property
    def logs(self) -> Path:
        return self.plane.workdir / "logs"

    def __enter__(self) -> Bench:
        try:
            self.plane.start()
            self._admin = kube.Kube.connect(str(self.plane.kubeconfig))
            install.bootstrap(self.admin, self.namespaces)
            self.admin.create_secret(names.DEFAULT_NAMESPACE, {
                "metadata": {"name": names.PEPPER_SECRET}, "type": "Opaque",
                "data": kube.Kube.secret_data(self.peppers.to_data())})
            self._grant_reader()
        except BaseException:
            self.plane.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for verifier in self.verifiers:
            processes.terminate(verifier.popen)
        self.plane.stop()

    def write_keys(self, count: int, *, name: str = "key", namespace: str = NAMESPACE,
                   spec: Mapping[str, Any] | None = None) -> list[str]:
        """`count` ApiKeys `<name>-00000`... with scope Reviews.Write (and `spec` added),
        a hash in status as the operator leaves them; returns their plaintext keys."""
        plaintexts = [tokens.generate("kw") for _ in range(count)]
        started = time.monotonic()

        def write(i: int) -> None:
            apikey = f"{name}-{i:05d}"
            install.create_apikey(self.admin, namespace, {
                "apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.KIND,
                "metadata": {"name": apikey, "namespace": namespace},
                "spec": {"expiration": "90d", "scopes": ["Reviews.Write"], **(spec or {})}})
            key = plaintexts[i]
            self.admin.patch_apikey_status(namespace, apikey, {
                "phase": "Active", "revision": 1, "hash": hashing.digest(key, self.peppers),
                "lastCharacters": tokens.last_characters(key), "prefix": "kw",
                "expiresAt": "2099-01-01T00:00:00Z"})
            if i and i % 1000 == 0:
                print(f"  {i:,}/{count:,} ApiKeys written "
                      f"({time.monotonic() - started:.0f} s)", flush=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, range(count)))
        print(f"wrote {count:,} ApiKeys ({name}-*) in {time.monotonic() - started:.1f} s")
        return plaintexts

    def _grant_reader(self) -> None:
        """READER may do what the verifier's ServiceAccount may (deploy/base/rbac/
        verifier.yaml) but patch ApiKeys' status: list and watch ApiKeys and
        ApiKeyRoles, read the pepper Secret."""
        subject = [{"kind": "User", "name": READER, "apiGroup": "rbac.authorization.k8s.io"}]
        role_ref = {"apiGroup": "rbac.authorization.k8s.io", "name": READER}
        self.admin.create_object(f"{RBAC}/clusterroles", {
            "metadata": {"name": READER}, "rules": [
                {"apiGroups": [names.GROUP], "resources": ["apikeys", names.ROLE_PLURAL],
                 "verbs": ["get", "list", "watch"]}]})
        self.admin.create_object(f"{RBAC}/clusterrolebindings", {
            "metadata": {"name": READER}, "subjects": subject,
            "roleRef": {**role_ref, "kind": "ClusterRole"}})
        pepper = f"{RBAC}/namespaces/{names.DEFAULT_NAMESPACE}"
        self.admin.create_object(f"{pepper}/roles", {
            "metadata": {"name": READER}, "rules": [
                {"apiGroups": [""], "resources": ["secrets"],
                 "resourceNames": [names.PEPPER_SECRET], "verbs": ["get", "list", "watch"]}]})
        self.admin.create_object(f"{pepper}/rolebindings", {
            "metadata": {"name": READER}, "subjects": subject,
            "roleRef": {**role_ref, "kind": "Role"}})

    def start_verifier(self, *options: str, suffix: str = "",
                       status_writes: bool = True) -> Verifier:
        """`keywright verifier` on a free loopback port, pinned to the server core, with
        `options` added; audit lines to logs/audit<suffix>.log, diagnostics (WARNING and
        up) to logs/verifier<suffix>.log. With `status_writes` false it runs as READER:
        its usage patches are sent and refused (403), so the control plane, which here
        shares the two cores, does not write them and send them to every watcher."""
        kubeconfig = self.plane.kubeconfig if status_writes \
            else self.plane.user_kubeconfig(READER)
        port = processes.free_port()
        with (self.logs / f"audit{suffix}.log").open("ab") as out, \
                (self.logs / f"verifier{suffix}.log").open("ab") as err:
            popen = subprocess.Popen(
                ["taskset", "-c", wrkload.SERVER_CORE, sys.executable, "-m", "keywright.cli",
                 "verifier", "--kubeconfig", str(kubeconfig), "--host",
                 "127.0.0.1", "--port", str(port), "--log-level", "WARNING", *options],
                stdout=out, stderr=err, preexec_fn=processes.die_with_parent)
        verifier = Verifier(f"http://127.0.0.1:{port}", popen)
        self.verifiers.append(verifier)
        return verifier

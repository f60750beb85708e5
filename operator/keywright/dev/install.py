"""Putting Keywright's pieces into a fresh local cluster: the CRD, namespaces, ApiKeys.

Owns: the set-up that `keywright dev` and the benchmarks share (create or update the CRD
and wait until it is Established, create namespaces and ApiKeys if absent), through
`kube.Kube`'s generic calls; and the install overlay (deploy/ with the image replaced)
that `keywright dev --node` and the node tests apply, as README's install section shows
(on the local node, with the Redis image and the Redis address put in place too).
Must not: be needed by the operator or the verifier (a real cluster is installed with
`kubectl apply -k deploy/`), or decide anything about a key.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from keywright import kube
from keywright.core import crd, names

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SHIPPED_IMAGE = "ghcr.io/keywright/keywright"  # deploy/base's image, which overlays replace
SHIPPED_REDIS_IMAGE = "docker.io/library/redis"  # deploy/base/redis.yaml's
# no cluster DNS: $(VAR) takes the Service address Kubernetes sets in the environment of
# Pods created after the Service (kubectl apply -k creates Services before Deployments)
NO_DNS_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: keywright-verifier
  namespace: keywright-system
spec:
  template:
    spec:
      containers:
        - name: verifier
          env:
            - name: KEYWRIGHT_REDIS_URL
              value: redis://$(KEYWRIGHT_REDIS_SERVICE_HOST):6379/0
"""


def bootstrap(api: kube.Kube, namespaces: Iterable[str] = ()) -> None:
    """Keywright's CRDs, the operator's namespace and `namespaces`, ready to use."""
    for kind in crd.KINDS:
        apply_crd(api, crd.definition(kind))
    for name in (names.DEFAULT_NAMESPACE, *namespaces):
        ensure_namespace(api, name)


def apply_crd(api: kube.Kube, definition: Mapping[str, Any], timeout: float = 30.0) -> None:
    """Create or update a CustomResourceDefinition and wait until it is Established."""
    name = definition["metadata"]["name"]
    current = api.get_object(f"{CRDS}/{name}")
    if current is None:
        api.create_object(CRDS, definition)
    else:
        api.replace_object(f"{CRDS}/{name}", {**definition, "metadata": {
            **definition["metadata"],
            "resourceVersion": current["metadata"]["resourceVersion"]}})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api.get_object(f"{CRDS}/{name}") or {}
        if any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (found.get("status") or {}).get("conditions") or []):
            return
        time.sleep(0.2)
    raise kube.KubeError(504, f"CustomResourceDefinition {name} not Established in {timeout}s")


def ensure_namespace(api: kube.Kube, name: str) -> None:
    with contextlib.suppress(kube.Conflict):
        api.create_object("/api/v1/namespaces", {"metadata": {"name": name}})


def create_apikey(api: kube.Kube, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return api.create_object(api.apikeys_path(namespace), body)


def overlay(directory: Path, deploy: Path, image: str, *,
            redis_image: str | None = None) -> Path:
    """The overlay README's install section shows: `deploy` (a directory of deploy/) as
    is, with the image replaced by `image` (REPOSITORY:TAG). Written into `directory`.

    With `redis_image` (the local node's): Redis runs from that image, and the verifiers
    reach it by the Service's address that Kubernetes puts in their environment, since
    the local node has no cluster DNS to resolve `keywright-redis` with."""
    base = os.path.relpath(deploy.resolve(), directory.resolve())
    repository, tag = image.rsplit(":", 1)
    text = ("apiVersion: kustomize.config.k8s.io/v1beta1\n"
            "kind: Kustomization\n"
            f"resources:\n  - {base}\n"
            "images:\n"
            f"  - name: {SHIPPED_IMAGE}\n"
            f"    newName: {repository}\n"
            f"    newTag: \"{tag}\"\n")
    if redis_image is not None:
        redis_repository, redis_tag = redis_image.rsplit(":", 1)
        text += (f"  - name: {SHIPPED_REDIS_IMAGE}\n"
                 f"    newName: {redis_repository}\n"
                 f"    newTag: \"{redis_tag}\"\n"
                 f"patches:\n  - patch: |-\n{textwrap.indent(NO_DNS_PATCH, ' ' * 6)}")
    path = directory / "kustomization.yaml"
    path.write_text(text)
    return path

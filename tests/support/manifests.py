"""The manifest builders: an ApiKey (name, namespace and spec fields, a status if
given), an ApiKeyRole and an ApiKeyPolicy."""

from __future__ import annotations

from typing import Any

from keywright.core import names


def apikey(name: str = "billing", namespace: str = "pay", *,
           status: Any = None, **spec: Any) -> dict[str, Any]:
    """An ApiKey as `kubectl apply` takes it (expiration 30d unless given), with `status`
    as the operator would have written it when given."""
    manifest: dict[str, Any] = {
        "apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"expiration": "30d", **spec}}
    if status is not None:
        manifest["status"] = dict(status)
    return manifest


def role(name: str, namespace: str, *permissions: dict[str, Any]) -> dict[str, Any]:
    """An ApiKeyRole granting `permissions` ({area, actions, filter})."""
    return {"apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.ROLE_KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"permissions": list(permissions)}}


def policy(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """An ApiKeyPolicy with these spec fields."""
    return {"apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.POLICY_KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}

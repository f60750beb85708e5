"""The Redis password Secret deploy/ shares between its Redis and the verifiers: made on
the operator's first start when `--redis-password-secret NAME` is given.

Owns: Secret NAME in the operator's namespace, created if absent with two keys: `password`
(what the verifiers read with --redis-password-file) and `auth.conf` (the `requirepass`
line Redis includes). Creation is create-if-absent, so two operators starting at once
agree on one password, and a Secret that exists (made by hand, restored, rotated by a
person) is left exactly as it is.
Must not: log or raise with the password; overwrite, patch or delete an existing Secret.
"""

from __future__ import annotations

import logging
import secrets

from keywright import kube
from keywright.core import errors, names

log = logging.getLogger(__name__)

KEYS = ("password", "auth.conf")


class RedisPasswordUnavailable(errors.KeywrightError):
    """The Secret cannot be read or created; the message says what to fix."""


def new_data() -> dict[str, bytes]:
    password = secrets.token_urlsafe(32).encode("ascii")  # no quoting needed in redis.conf
    return {"password": password, "auth.conf": b"requirepass " + password + b"\n"}


def ensure(api: kube.Kube, namespace: str, name: str) -> bool:
    """Create the Secret if it is absent; True when this call created it. An existing
    Secret missing a key is reported (its consumers would fail) but never changed."""
    where = f"{namespace}/{name}"
    try:
        found = api.get_secret_metadata(namespace, name)
        if found is None:
            try:
                api.create_secret(namespace, {
                    "metadata": {"name": name, "namespace": namespace,
                                 "labels": {names.MANAGED_BY: names.MANAGED_BY_VALUE}},
                    "type": "Opaque",
                    "data": kube.Kube.secret_data(new_data()),
                })
            except kube.Conflict:
                return False  # another operator made it first
            log.info("created Redis password Secret %s", where)
            return True
    except kube.KubeError as exc:
        raise RedisPasswordUnavailable(
            f"cannot read or create Redis password Secret {where}: {exc}") from None
    missing = [key for key in KEYS if key not in _keys(api, namespace, name)]
    if missing:
        log.warning("Redis password Secret %s has no %s; Redis or the verifiers will not "
                    "start until it does (delete it to have a new one made)", where,
                    " or ".join(missing))
    return False


def _keys(api: kube.Kube, namespace: str, name: str) -> set[str]:
    found = api.get_secret(namespace, name) or {}
    return set(found.get("data") or {})

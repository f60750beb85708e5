"""The pepper Secret: loaded at start, created on first start if missing.

Owns: Secret `keywright-pepper` in the operator's namespace (data keys `v1`, `v2`, ...
and `active`). Creation is create-if-absent, so two operators starting at once agree on
one pepper.
Must not: log or raise with a pepper's bytes; rotate or delete peppers (people do that,
adding `v2` and pointing `active` at it; old versions stay so old hashes keep verifying).
"""

from __future__ import annotations

import logging

from keywright import hashing, kube, secretview

NAME = "keywright-pepper"
log = logging.getLogger(__name__)


class PepperUnavailable(RuntimeError):
    """The pepper cannot be read or created; the message says what to fix."""


def load_or_create(api: kube.Kube, namespace: str) -> hashing.Peppers:
    try:
        found = api.get_secret(namespace, NAME)
        if found is None:
            if api.any_apikey_issued():
                raise PepperUnavailable(
                    f"pepper Secret {namespace}/{NAME} is missing but ApiKeys already hold "
                    "hashes made with it; a new pepper would make every key fail "
                    "verification. Restore the Secret from a backup (or delete the ApiKeys "
                    "and start over)")
            fresh = hashing.Peppers.new()
            try:
                api.create_secret(namespace, {
                    "metadata": {"name": NAME, "namespace": namespace,
                                 "labels": {secretview.MANAGED_BY: secretview.MANAGER}},
                    "type": "Opaque",
                    "data": kube.Kube.secret_data(fresh.to_data()),
                })
                log.info("created pepper Secret %s/%s (version %s)", namespace, NAME,
                         fresh.active)
                return fresh
            except kube.Conflict:
                found = api.get_secret(namespace, NAME)  # another replica won the race
                if found is None:
                    raise PepperUnavailable(f"pepper Secret {namespace}/{NAME} vanished") from None
        return hashing.Peppers.from_data(kube.Kube.decode_data(found))
    except kube.KubeError as exc:
        if exc.status == 404:
            raise PepperUnavailable(
                f"cannot create pepper Secret {namespace}/{NAME}: namespace {namespace!r} "
                "does not exist (create it, or pass --namespace)") from None
        raise PepperUnavailable(f"cannot read or create pepper Secret {namespace}/{NAME}: "
                                f"{exc}") from None
    except hashing.PepperError as exc:
        raise PepperUnavailable(f"pepper Secret {namespace}/{NAME} is unusable: {exc}") from None

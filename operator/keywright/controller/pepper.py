"""The pepper Secret: loaded at start, created on first start if missing.

Owns: Secret `keywright-pepper` in the operator's namespace (data keys `v1`, `v2`, ...
and `active`). Creation is create-if-absent, so two operators starting at once agree on
one pepper.
Must not: log or raise with a pepper's bytes; rotate or delete peppers (people do that,
adding `v2` and pointing `active` at it; old versions stay so old hashes keep verifying).
"""

from __future__ import annotations

import logging

from keywright import kube
from keywright.core import errors, hashing, names

log = logging.getLogger(__name__)


class PepperUnavailable(errors.KeywrightError):
    """The pepper cannot be read or created; the message says what to fix."""


def load_or_create(api: kube.Kube, namespace: str) -> hashing.Peppers:
    where = f"{namespace}/{names.PEPPER_SECRET}"
    try:
        found = api.get_secret(namespace, names.PEPPER_SECRET)
        if found is None:
            if api.any_apikey_issued():
                raise PepperUnavailable(
                    f"pepper Secret {where} is missing but ApiKeys already hold "
                    "hashes made with it; a new pepper would make every key fail "
                    "verification. Restore the Secret from a backup (or delete the ApiKeys "
                    "and start over)")
            fresh = hashing.Peppers.new()
            try:
                api.create_secret(namespace, {
                    "metadata": {"name": names.PEPPER_SECRET, "namespace": namespace,
                                 "labels": {names.MANAGED_BY: names.MANAGED_BY_VALUE}},
                    "type": "Opaque",
                    "data": kube.Kube.secret_data(fresh.to_data()),
                })
                log.info("created pepper Secret %s (version %s)", where, fresh.active)
                return fresh
            except kube.Conflict:
                # another replica won the race
                found = api.get_secret(namespace, names.PEPPER_SECRET)
                if found is None:
                    raise PepperUnavailable(f"pepper Secret {where} vanished") from None
        return hashing.Peppers.from_data(kube.Kube.decode_data(found))
    except kube.KubeError as exc:
        if exc.status == 404:
            raise PepperUnavailable(
                f"cannot create pepper Secret {where}: namespace {namespace!r} "
                "does not exist (create it, or pass --namespace)") from None
        raise PepperUnavailable(f"cannot read or create pepper Secret {where}: "
                                f"{exc}") from None
    except hashing.PepperError as exc:
        raise PepperUnavailable(f"pepper Secret {where} is unusable: {exc}") from None

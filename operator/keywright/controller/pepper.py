"""The pepper Secret: loaded at start, created on first start if missing, followed live.

Owns: Secret `keywright-pepper` in the operator's namespace (data keys `v1`, `v2`, ...
and `active`). Creation is create-if-absent, so two operators starting at once agree on
one pepper. After start, `PepperWatch` follows that one Secret by name (list, then
watch), whatever its labels: a pepper made by hand or restored from a backup carries no
label of ours, and its rotation must still reach new hashes at once.
Must not: log or raise with a pepper's bytes; rotate or delete peppers (people do that,
adding `v2` and pointing `active` at it; old versions stay so old hashes keep verifying);
drop the peppers in use for a deleted or unusable Secret.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

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
        return hashing.Peppers.from_secret(found)
    except kube.KubeError as exc:
        if exc.status == 404:
            raise PepperUnavailable(
                f"cannot create pepper Secret {where}: namespace {namespace!r} "
                "does not exist (create it, or pass --namespace)") from None
        raise PepperUnavailable(f"cannot read or create pepper Secret {where}: "
                                f"{exc}") from None
    except hashing.PepperError as exc:
        raise PepperUnavailable(f"pepper Secret {where} is unusable: {exc}") from None


class PepperWatch:
    """Hands every usable version of the pepper Secret to `loaded`, from a thread of its
    own that follows that one Secret by name (`kube.Kube.follow`: list, then watch). A
    deleted or unusable Secret is logged and leaves the peppers in use."""

    def __init__(self, api: kube.Kube, namespace: str,
                 loaded: Callable[[hashing.Peppers], None]) -> None:
        self.api, self.loaded = api, loaded
        self.where = f"{namespace}/{names.PEPPER_SECRET}"
        self.stream = kube.Stream(
            f"pepper Secret {self.where}", kube.SECRETS.format(ns=namespace),
            {"fieldSelector": f"metadata.name={names.PEPPER_SECRET}"},
            self.listed, self.event)
        self.current: hashing.Peppers | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.api.follow_each([self.stream], self._stop)

    def stop(self) -> None:
        """Stops at the end of the watch in progress; the thread is a daemon."""
        self._stop.set()

    def listed(self, items: Iterable[dict[str, Any]]) -> None:
        for item in items:
            self.event("ADDED", item)

    def event(self, kind: str, secret: Mapping[str, Any]) -> None:
        if kind == "DELETED":
            log.warning("pepper Secret %s deleted; keeping the peppers in use (restore it "
                        "from a backup before the operator restarts)", self.where)
            return
        try:
            found = hashing.Peppers.from_secret(secret)
        except hashing.PepperError as exc:  # the message names a data key, never a value
            log.error("pepper Secret %s is unusable (%s); keeping the peppers in use",
                      self.where, exc)
            return
        if found != self.current:
            self.current = found
            self.loaded(found)
            log.info("peppers in use: %s", found)  # its repr shows versions, no bytes

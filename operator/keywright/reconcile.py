"""One ApiKey through observe -> decide (lifecycle) -> act (kube), under a per-key lock.

Owns: reading the ApiKey and its Secret, the only place a plaintext key exists (between
`tokens.generate` and the Secret write), status patches, events, and the scheduler that
wakes keys at their due instants.
Must not: decide anything itself (lifecycle does), or keep, log or return a plaintext.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from keywright import faults, hashing, kube, lifecycle, models, scheduler, tokens

log = logging.getLogger(__name__)
RETRY_AFTER_FAILURE = timedelta(seconds=5)
Key = tuple[str, str]


@dataclass(frozen=True)
class Settings:
    namespace: str = "keywright-system"  # where the pepper lives
    default_prefix: str = "kw"


class Reconciler:
    def __init__(self, api: kube.Kube, settings: Settings, peppers: hashing.Peppers,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api = api
        self.settings = settings
        self.peppers = peppers
        self.clock = clock
        self.scheduler: scheduler.Scheduler[Key] = scheduler.Scheduler(self._due, clock)
        self._locks: dict[Key, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def start(self) -> None:
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()

    def forget(self, namespace: str, name: str) -> None:
        self.scheduler.set((namespace, name), None)
        with self._locks_guard:
            self._locks.pop((namespace, name), None)

    def reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        with self._lock(key):
            raw = self.api.get_apikey(namespace, name)
            if raw is None:
                self.scheduler.set(key, None)
                return
            observed = self._observe(raw, secret=None, fetch=True)
            plan = lifecycle.decide(observed, self.clock())
            for _attempt in range(3):
                if plan.issue is None:
                    break
                written = self._issue(raw, plan.issue)
                faults.crash_point("after-secret-write")
                observed = self._observe(raw, secret=written, fetch=written is None)
                plan = lifecycle.decide(observed, self.clock())
            else:
                raise RuntimeError(f"issuing the key of {namespace}/{name} did not settle")
            if plan.status:
                self.api.patch_apikey_status(namespace, name, plan.status)
                faults.crash_point("after-status-patch")
            for event in plan.events:
                log.log(logging.WARNING if event.type == lifecycle.WARNING else logging.INFO,
                        "%s/%s: %s: %s", namespace, name, event.reason, event.message)
                self.api.post_event(raw, event.type, event.reason, event.message)
            self.scheduler.set(key, plan.next_due)

    def _due(self, key: Key) -> None:
        try:
            self.reconcile(*key)
        except Exception:
            log.exception("%s/%s: scheduled reconcile failed; retrying in %ss", *key,
                          RETRY_AFTER_FAILURE.seconds)
            self.scheduler.set(key, self.clock() + RETRY_AFTER_FAILURE)

    def _lock(self, key: Key) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _observe(self, raw: dict[str, Any], secret: dict[str, Any] | None,
                 fetch: bool) -> lifecycle.Observed:
        meta = raw["metadata"]
        try:
            spec: models.ApiKeySpec | models.SpecError = models.validate_spec(raw.get("spec"))
        except models.SpecError as exc:
            spec = exc
        status = models.ApiKeyStatus.model_validate(raw.get("status") or {})
        observed = lifecycle.Observed(
            namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
            generation=meta.get("generation", 1),
            created=lifecycle.parse_time(meta["creationTimestamp"]),
            spec=spec, status=status, secret=lifecycle.MISSING,
            default_prefix=self.settings.default_prefix,
        )
        if fetch:
            secret = self.api.get_secret(meta["namespace"], lifecycle.secret_name(observed))
        data_key = spec.secret.key if isinstance(spec, models.ApiKeySpec) else "api-key"
        return dataclasses.replace(observed, secret=lifecycle.view_secret(secret, data_key))

    def _issue(self, raw: dict[str, Any], issue: lifecycle.Issue) -> dict[str, Any] | None:
        """Write a fresh key into the Secret. Returns the Secret as written, or None when
        someone else wrote it first (the caller then re-reads and decides again)."""
        meta = raw["metadata"]
        token = tokens.generate(issue.prefix)
        body = _secret_body(raw, issue, token, hashing.digest(token, self.peppers),
                            lifecycle.timestamp(self.clock()))
        del token  # the plaintext now lives only in `body`, which goes to the API server
        faults.crash_point("before-secret-write")
        try:
            if issue.replace:
                current = self.api.get_secret(meta["namespace"], issue.secret_name)
                if current is None:
                    return None
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                return self.api.replace_secret(meta["namespace"], issue.secret_name, body)
            return self.api.create_secret(meta["namespace"], body)
        except kube.Conflict:
            log.info("%s/%s: Secret %s changed while issuing; deciding again",
                     meta["namespace"], meta["name"], issue.secret_name)
            return None


def _secret_body(raw: dict[str, Any], issue: lifecycle.Issue, token: str, hashed: str,
                 now: str) -> dict[str, Any]:
    meta = raw["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": issue.secret_name,
            "namespace": meta["namespace"],
            "labels": issue.labels,
            "annotations": {
                **issue.annotations,
                lifecycle.HASH_ANNOTATION: hashed,
                lifecycle.REVISION_ANNOTATION: str(issue.revision),
                lifecycle.LAST_CHARACTERS_ANNOTATION: tokens.last_characters(token),
                lifecycle.ISSUED_AT_ANNOTATION: now,
            },
            "ownerReferences": [{
                "apiVersion": raw["apiVersion"], "kind": raw["kind"], "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "data": kube.Kube.secret_data({issue.data_key: token.encode("ascii")}),
    }

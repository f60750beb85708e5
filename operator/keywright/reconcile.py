"""One ApiKey through observe -> decide (lifecycle) -> act (kube), one key at a time.

Owns: the work queue every trigger feeds (Kopf events, Secret events, the scheduler),
retries with backoff, reading the ApiKey and its Secret, the only place a plaintext key
exists (between `tokens.generate` and the Secret write), status patches and events.
Kopf handlers only enqueue, so a burst of thousands of keys holds a key each in the
queue instead of a suspended handler each in memory.
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

from keywright import faults, hashing, kube, lifecycle, models, scheduler, tokens, workqueue

log = logging.getLogger(__name__)
FIRST_RETRY = timedelta(seconds=1)
LAST_RETRY = timedelta(minutes=5)
Key = tuple[str, str]


@dataclass(frozen=True)
class Settings:
    namespace: str = "keywright-system"  # where the pepper lives
    default_prefix: str = "kw"
    workers: int = 8  # threads running handlers; each reconcile mostly waits on the API


class Reconciler:
    def __init__(self, api: kube.Kube, settings: Settings, peppers: hashing.Peppers,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api = api
        self.settings = settings
        self.peppers = peppers
        self.clock = clock
        self.scheduler: scheduler.Scheduler[Key] = scheduler.Scheduler(self.queue_add, clock)
        self.queue: workqueue.WorkQueue[Key] = workqueue.WorkQueue(
            self._work, settings.workers, name="reconcile")
        self._guard = threading.Lock()
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._failures: dict[Key, int] = {}
        # What the last reconcile of each key left behind: the Secret it expects
        # (data key, hash annotation, revision annotation). Lets a Secret event that only
        # echoes our own write be skipped without two GETs.
        self._expected: dict[Key, tuple[str, str | None, int | None]] = {}

    def start(self) -> None:
        self.queue.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.queue.stop()

    def submit(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        """Queue a reconcile of one ApiKey; never blocks (safe in the event loop)."""
        key = (namespace, name)
        if body is not None:
            with self._guard:
                self._bodies[key] = body
        self.queue.add(key)

    def queue_add(self, key: Key) -> None:
        self.queue.add(key)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.scheduler.set(key, None)
        with self._guard:
            self._expected.pop(key, None)
            self._bodies.pop(key, None)
            self._failures.pop(key, None)

    def secret_changed(self, namespace: str, apikey: str, secret: dict[str, Any] | None) -> None:
        """A Secret of ours changed (None: deleted): reconcile its ApiKey unless the
        Secret is exactly what that ApiKey's last reconcile left behind."""
        expected = self._expected.get((namespace, apikey))
        if secret is not None and expected is not None:
            view = lifecycle.view_secret(secret, expected[0])
            if view.has_key and not view.data_changed_by_others and \
                    (view.hash, view.revision) == expected[1:]:
                return
        self.submit(namespace, apikey)

    def _work(self, key: Key) -> None:
        with self._guard:
            body = self._bodies.pop(key, None)
        try:
            self.reconcile(*key, body=body)
        except Exception as exc:
            with self._guard:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = min(FIRST_RETRY * 2 ** (failures - 1), LAST_RETRY)
            log.error("%s/%s: reconcile failed (%s); retrying in %ss", *key, exc,
                      delay.total_seconds())
            self.scheduler.set(key, self.clock() + delay)
        else:
            with self._guard:
                self._failures.pop(key, None)

    def reconcile(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        """Bring one ApiKey in line; the queue guarantees one call per key at a time.

        `body`, when Kopf had a fresh one, saves a GET; it is used only for a key this
        process has not written to yet, since no status patch of ours can be missing
        from it."""
        key = (namespace, name)
        fresh = body is not None and key not in self._expected
        raw = body if fresh else self.api.get_apikey(namespace, name)
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
        status = {**observed.status.model_dump(), **plan.status}
        data_key = observed.spec.secret.key \
            if isinstance(observed.spec, models.ApiKeySpec) else "api-key"
        self._expected[key] = (data_key, status.get("hash"), status.get("revision"))

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

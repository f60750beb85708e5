"""One ApiKey through observe -> decide (lifecycle) -> act (kube), one key at a time.

Owns: the work queue every trigger feeds (ApiKey and Secret events, role and policy
changes, the scheduler), retries with backoff, reading the ApiKey and its Secret, the
facts the catalog holds about its namespace (policies, roles), the only place a
plaintext key exists (between `tokens.generate` and the Secret write), status patches
and events (posted from threads of their own, each key's in order, so a reconcile never
waits on one).
Watch events only enqueue, so a burst of thousands of keys holds a key each in the
queue instead of a suspended handler each in memory.
Must not: decide anything itself (lifecycle does), or keep, log or return a plaintext.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from keywright import kube
from keywright.controller import catalog, sealing, summaries
from keywright.core import (
    aging,
    compliance,
    hashing,
    lifecycle,
    models,
    names,
    recipients,
    secretview,
    times,
    tokens,
)
from keywright.kits import faults, scheduler, workqueue

log = logging.getLogger(__name__)
FIRST_RETRY = timedelta(seconds=1)
EVENTS_DRAIN = timedelta(seconds=2)  # at stop, how long queued events may still take
EVENT_POSTERS = 4  # one POST takes a round trip: as many in flight as keep up with issuing
LAST_RETRY = timedelta(minutes=5)
Key = tuple[str, str]


@dataclass(frozen=True)
class ReconcilerSettings:
    namespace: str = names.DEFAULT_NAMESPACE  # where the pepper lives
    default_prefix: str = names.DEFAULT_PREFIX
    workers: int = 8  # threads running handlers; each reconcile mostly waits on the API
    watch: aging.Watch = aging.DEFAULT  # expiry warnings and the NeverUsed condition


class Reconciler:
    def __init__(self, api: kube.Kube, settings: ReconcilerSettings, peppers: hashing.Peppers,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.api = api
        self.settings = settings
        self.peppers = peppers
        self.clock = clock
        self.queue: workqueue.WorkQueue[Key] = workqueue.WorkQueue(
            self._work, settings.workers, name="reconcile")
        self.scheduler: scheduler.Scheduler[Key] = scheduler.Scheduler(self.queue.add, clock)
        self._guard = threading.Lock()
        self._bodies: dict[Key, dict[str, Any]] = {}
        self._failures: dict[Key, int] = {}
        self._due: dict[Key, datetime] = {}  # the last successful reconcile's next_due
        self._touched: set[Key] = set()  # keys this process has written to
        # A key's Secret as the follower listed it (metadata only), until the key's first
        # reconcile here: a restart then reads no Secret whose annotations agree with
        # the key's status (see _observe)
        self._listed: dict[Key, dict[str, Any]] = {}
        # The Secret each key's last write left behind (data key, hash, revision): lets a
        # Secret event that only echoes our own write be skipped without two GETs.
        self._expected: dict[Key, tuple[str, str | None, int | None]] = {}
        self.catalog = catalog.Catalog(settings.default_prefix)
        self.summaries = summaries.Summaries(api, self.catalog, clock)
        # events go out from threads of their own, each key's always from the same one, in
        # the order they were decided: a reconcile does not wait for them (they are best
        # effort, after the status write)
        self._events: list[queue.SimpleQueue[tuple[dict[str, Any], lifecycle.Event] | None]] = [
            queue.SimpleQueue() for _ in range(EVENT_POSTERS)]
        self._posters = [threading.Thread(target=self._post_events, args=(q,),
                                          name=f"events-{i}", daemon=True)
                         for i, q in enumerate(self._events)]

    def start(self) -> None:
        self.summaries.start()
        for poster in self._posters:
            poster.start()
        self.queue.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.queue.stop()
        for waiting in self._events:
            waiting.put(None)  # after what is queued: those still go out, for a while
        deadline = time.monotonic() + EVENTS_DRAIN.total_seconds()
        for poster in self._posters:
            poster.join(timeout=max(0.0, deadline - time.monotonic()))
        self.summaries.stop()

    def resubmit(self, keys: Iterable[Key]) -> None:
        """Reconcile these keys again (a role or policy of theirs changed)."""
        for key in keys:
            self.queue.add(key)

    def submit(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        """Queue a reconcile of one ApiKey; never blocks (safe in the event loop)."""
        key = (namespace, name)
        if body is not None:
            with self._guard:
                self._bodies[key] = body
        self.queue.add(key)

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self.scheduler.set(key, None)
        with self._guard:
            for table in (self._expected, self._bodies, self._failures, self._due,
                          self._listed):
                table.pop(key, None)
            self._touched.discard(key)
        self.summaries.mark(self.catalog.forget(namespace, name))

    def secret_listed(self, namespace: str, apikey: str, secret: dict[str, Any]) -> None:
        """A Secret of ours, as listed before the keys were: kept (its metadata) for the
        key's first reconcile here, which the key's own listing asks for."""
        key = (namespace, apikey)
        with self._guard:
            if key not in self._touched:
                self._listed[key] = secretview.metadata_only(secret)

    def secret_changed(self, namespace: str, apikey: str, secret: dict[str, Any] | None) -> None:
        """A Secret of ours changed (None: deleted): reconcile its ApiKey unless the
        Secret is exactly what that ApiKey's last reconcile left behind."""
        with self._guard:
            expected = self._expected.get((namespace, apikey))
            self._listed.pop((namespace, apikey), None)  # no longer as listed
        if secret is not None and expected is not None:
            view = secretview.view_secret(secret, expected[0])
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
                due = self._due.get(key)
            now = self.clock()
            when = retry_at(now, failures, due)
            log.error("%s/%s: reconcile failed (%s); retrying in %ss", *key, exc,
                      (when - now).total_seconds())
            self.scheduler.set(key, when)
        else:
            with self._guard:
                self._failures.pop(key, None)

    def reconcile(self, namespace: str, name: str, body: dict[str, Any] | None = None) -> None:
        """Bring one ApiKey in line; the queue guarantees one call per key at a time.

        `body`, when a watch event brought a fresh one, saves a GET; it is used only for a key this
        process has not written to yet, since no status patch of ours can be missing
        from it."""
        key = (namespace, name)
        with self._guard:
            fresh = body is not None and key not in self._touched
            listed = self._listed.pop(key, None)
        raw = body if fresh else self.api.get_apikey(namespace, name)
        if raw is None:
            self.forget(namespace, name)
            return
        with self._guard:
            self._touched.add(key)
        # a key never decided has no Secret of ours, but for a crash right after writing
        # it: creating one then fails (409), and the Secret is read and adopted
        observed = self._observe(raw, secret=None,
                                 fetch=bool((raw.get("status") or {}).get("phase")),
                                 listed=listed if fresh else None)
        # Each step's plan is carried out, its status merged into what we observed, and
        # the next step decided from that, until a decision asks for nothing more: write a
        # Secret, adopt it into status, roll the workloads, record that they rolled.
        sealed_only = False  # a key without a Secret sealed, its adoption still to write
        for _step in range(6):
            plan = lifecycle.decide(observed, self.clock())
            if plan.issue is not None and not plan.issue.secret:
                observed = dataclasses.replace(observed, secret=self._seal(raw, plan.issue))
                sealed_only = True
                faults.crash_point("after-seal", f"{namespace}/{name}")
                continue
            if plan.issue is not None:
                written = self._issue(raw, plan.issue, observed.secret)
                if written is not None:  # a Secret was written (not refused: 409, 404)
                    faults.crash_point("after-secret-write", f"{namespace}/{name}")
                observed = self._observe(raw, secret=written, fetch=written is None,
                                         status=observed.status)
                continue
            events = list(plan.events) + self._restart(raw, plan.restarts, observed.status)
            if plan.status:
                if sealed_only and not self._adopt_sealed(raw, plan.status):
                    return  # someone wrote first: that key is dropped, never delivered
                if not sealed_only:
                    self.api.patch_apikey_status(namespace, name, plan.status)
                sealed_only = False
                faults.crash_point("after-status-patch", f"{namespace}/{name}")
                observed = dataclasses.replace(
                    observed, status=_merged(observed.status, plan.status))
            for event in events:
                self._post(raw, event)
            if not plan.status and not plan.restarts:
                break
        else:
            raise RuntimeError(f"reconciling {namespace}/{name} did not settle")
        self.scheduler.set(key, plan.next_due)
        spec = observed.spec
        self.summaries.mark(self.catalog.record(
            namespace, name, spec.roles if isinstance(spec, models.ApiKeySpec) else (),
            plan.broken))
        with self._guard:
            if plan.next_due is None:
                self._due.pop(key, None)
            else:
                self._due[key] = plan.next_due
            self._expected[key] = (_data_key(observed.spec), observed.status.hash,
                                   observed.status.revision)

    def _seal(self, raw: dict[str, Any], issue: lifecycle.Issue) -> secretview.SecretView:
        """A new key for an ApiKey without a Secret: generated, hashed and sealed here,
        and described as a Secret holding it would be. The plaintext leaves this method
        only as ciphertext; nothing is written yet."""
        meta = raw["metadata"]
        token = tokens.generate(issue.prefix)
        view = secretview.issued(
            meta["uid"], hashing.digest(token, self.peppers), issue.revision,
            tokens.last_characters(token), times.timestamp(self.clock()), issue.request,
            sealing.seal(token, issue.recipients), issue.recipients)
        del token
        return view

    def _adopt_sealed(self, raw: dict[str, Any], status: dict[str, Any]) -> bool:
        """Write a sealed key's hash and ciphertext in one status patch, conditional on
        the ApiKey being as it was read: two writers never both land a key for one
        revision, and a crash before it leaves no hash without its ciphertext. False
        when the ApiKey changed first (it is reconciled again at once)."""
        meta = raw["metadata"]
        try:
            self.api.patch_apikey_status(meta["namespace"], meta["name"], status,
                                         resource_version=meta.get("resourceVersion"))
        except kube.KubeError as exc:
            if exc.status != 409:
                raise
            log.info("%s/%s: changed while its new key was sealed; sealing another",
                     meta["namespace"], meta["name"])
            self.queue.add((meta["namespace"], meta["name"]))
            return False
        return True

    def _post(self, raw: dict[str, Any], event: lifecycle.Event) -> None:
        """Log an event and queue it for posting."""
        meta = raw["metadata"]
        log.log(logging.WARNING if event.type == lifecycle.WARNING else logging.INFO,
                "%s/%s: %s: %s", meta["namespace"], meta["name"], event.reason,
                event.message)
        shard = zlib.crc32(f"{meta['namespace']}/{meta['name']}".encode()) % EVENT_POSTERS
        self._events[shard].put(({"apiVersion": raw["apiVersion"], "kind": raw["kind"],
                           "metadata": {k: meta.get(k) for k in (
                               "name", "namespace", "uid", "resourceVersion")}}, event))

    def _post_events(
            self, waiting: queue.SimpleQueue[tuple[dict[str, Any], lifecycle.Event] | None],
    ) -> None:
        while (item := waiting.get()) is not None:
            try:
                self._post_one(*item)
            except Exception as exc:  # the poster outlives any one event's failure
                log.warning("%s/%s: could not post event %s: %s",
                            item[0]["metadata"]["namespace"], item[0]["metadata"]["name"],
                            item[1].reason, exc)

    def _post_one(self, raw: dict[str, Any], event: lifecycle.Event) -> None:
        """Post an event; best effort: a refused event never blocks the key."""
        meta = raw["metadata"]
        try:
            self.api.post_event(raw, event.type, event.reason, event.message)
        except kube.KubeError as exc:
            if exc.status == 403 and "being terminated" in str(exc):  # nothing is wrong
                log.debug("%s/%s: event %s not posted: the namespace is being deleted",
                          meta["namespace"], meta["name"], event.reason)
                return
            log.warning("%s/%s: could not post event %s: %s", meta["namespace"],
                        meta["name"], event.reason, exc)

    def _restart(self, raw: dict[str, Any], targets: tuple[models.RestartTarget, ...],
                 status: models.ApiKeyStatus) -> list[lifecycle.Event]:
        """Roll each workload by its pod-template annotations; best effort: a missing or
        refused one is a Warning event, never a failure of the rotation."""
        meta = raw["metadata"]
        events = []
        revision, rotated_at = status.revision or 1, status.rotatedAt or ""
        for target in targets:
            try:
                found = self.api.annotate_pod_template(
                    meta["namespace"], target.kind, target.name, {
                        names.REVISION_ANNOTATION: str(revision),
                        # unique per rotation: rolls even if another ApiKey (or an earlier
                        # one of the same name) already wrote this revision number
                        names.ROTATED_AT_ANNOTATION: rotated_at})
            except kube.KubeError as exc:
                events.append(lifecycle.Event(
                    lifecycle.WARNING, "RestartFailed",
                    f"{target.kind} {target.name} was not restarted: {exc} (the rotation "
                    "itself succeeded)"))
                continue
            if not found:
                events.append(lifecycle.Event(
                    lifecycle.WARNING, "RestartTargetMissing",
                    f"{target.kind} {target.name} in {meta['namespace']} does not exist; "
                    "it was not restarted (the rotation itself succeeded)"))
        return events

    def _observe(self, raw: dict[str, Any], secret: dict[str, Any] | None, fetch: bool,
                 status: models.ApiKeyStatus | None = None,
                 listed: dict[str, Any] | None = None) -> lifecycle.Observed:
        """The key as `raw` says, with its Secret: `secret` as given, or with `fetch`
        read (metadata only), unless `listed` (the Secret as the follower listed it)
        is that Secret and says what the key's status says (its hash and revision): an
        unchanged key found at a restart, then decided without a read. Anything else
        is read, so no decision rests on a list that may be a moment behind."""
        meta = raw["metadata"]
        try:
            spec: models.ApiKeySpec | models.SpecError = models.validate_spec(raw.get("spec"))
        except models.SpecError as exc:
            spec = exc
        if status is None:
            status = models.ApiKeyStatus.model_validate(raw.get("status") or {})
        observed = lifecycle.Observed(
            namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
            generation=meta.get("generation", 1),
            created=times.parse(meta["creationTimestamp"]),
            spec=spec, status=status, secret=secretview.MISSING,
            default_prefix=self.settings.default_prefix,
            rotate_request=(meta.get("annotations") or {}).get(names.ROTATE_ANNOTATION),
            reactivate_request=(meta.get("annotations") or {}).get(
                names.REACTIVATE_ANNOTATION),
            watch=self.settings.watch,
            seal_to=recipients.from_annotation(
                (meta.get("annotations") or {}).get(names.SEAL_TO_ANNOTATION)),
            facts=self.catalog.facts(meta["namespace"], spec.roles)
            if isinstance(spec, models.ApiKeySpec) else compliance.NONE,
        )
        if fetch and isinstance(spec, models.ApiKeySpec) and spec.secret.create:
            name = lifecycle.secret_name(observed)
            seen = secretview.view_secret(listed, _data_key(spec)) if listed and (
                listed["metadata"].get("name") == name) else secretview.MISSING
            agrees = seen.exists and seen.hash is not None and (
                seen.hash, seen.revision) == (status.hash, status.revision)
            secret = listed if agrees else self.api.get_secret_metadata(
                meta["namespace"], name)
        return dataclasses.replace(observed,
                                   secret=secretview.view_secret(secret, _data_key(spec)))

    def _issue(self, raw: dict[str, Any], issue: lifecycle.Issue,
               seen: secretview.SecretView) -> dict[str, Any] | None:
        """Write a fresh key into the Secret. Returns the Secret as written, or None when
        it changed since `seen` (the caller then reads it again and decides again): a
        rotation is a merge patch conditional on the resourceVersion that was decided on,
        so it never lands on a Secret someone replaced, nor races another writer into two
        plaintexts for one revision."""
        meta = raw["metadata"]
        token = tokens.generate(issue.prefix)
        sealed = sealing.seal(token, issue.recipients) if issue.recipients else None
        hashed = hashing.digest(token, self.peppers)
        body = _secret_body(raw, issue, token, hashed, times.timestamp(self.clock()), sealed)
        del token  # the plaintext now lives only in `body`, which goes to the API server
        faults.crash_point("before-secret-write", f"{meta['namespace']}/{meta['name']}")
        # the watch event of this very write can come before the write's own answer: it
        # is expected from now on, so that echo asks for no second reconcile (one key in
        # eight took one at 1,000 keys issued at once, with a GET of the key and of its
        # Secret); a write that does not land puts back what was expected before
        key = (meta["namespace"], meta["name"])
        with self._guard:
            before = self._expected.get(key)
            self._expected[key] = (issue.data_key, hashed, issue.revision)
        written = None
        try:
            written = self._write_secret(meta, issue, seen, body)
        finally:
            if written is None:
                with self._guard:
                    if before is None:
                        self._expected.pop(key, None)
                    else:
                        self._expected[key] = before
        return written

    def _write_secret(self, meta: dict[str, Any], issue: lifecycle.Issue,
                      seen: secretview.SecretView, body: dict[str, Any],
                      ) -> dict[str, Any] | None:
        try:
            if not issue.replace:
                return self.api.create_secret(meta["namespace"], body)
            new = body["metadata"]
            faults.pause_point("before-secret-patch", f"{meta['namespace']}/{meta['name']}")
            return self.api.patch_secret(meta["namespace"], issue.secret_name, {
                "metadata": {
                    "resourceVersion": seen.resource_version,
                    "labels": new["labels"],
                    "annotations": {names.ROTATE_REQUEST_ANNOTATION: None,
                                    # an earlier revision's ciphertext never stays behind
                                    names.SEALED_ANNOTATION: None,
                                    names.SEALED_TO_ANNOTATION: None,
                                    **new["annotations"]},
                },
                # our data key replaced; one we wrote under an earlier name removed;
                # anything others put there kept
                "data": {**dict.fromkeys(seen.our_data_keys), **body["data"]},
            })
        except kube.KubeError as exc:
            if exc.status not in (404, 409):
                raise
            log.info("%s/%s: Secret %s changed while writing a key; deciding again",
                     meta["namespace"], meta["name"], issue.secret_name)
            return None


def retry_at(now: datetime, failures: int, due: datetime | None) -> datetime:
    """When to try a key again after its `failures`-th failure in a row: 1 s, doubling,
    at most LAST_RETRY; sooner if the key's own next instant (an expiry, a retirement)
    comes first. An instant already past is not kept: it is what was just tried, and
    keeping it would retry at once, again and again, while the API server is away."""
    retry = now + min(FIRST_RETRY * 2 ** min(failures - 1, 16), LAST_RETRY)
    return due if due is not None and now < due < retry else retry


def _data_key(spec: models.ApiKeySpec | models.SpecError) -> str:
    return spec.secret.key if isinstance(spec, models.ApiKeySpec) else "api-key"


def _secret_body(raw: dict[str, Any], issue: lifecycle.Issue, token: str, hashed: str,
                 now: str, sealed: str | None) -> dict[str, Any]:
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
                names.HASH_ANNOTATION: hashed,
                names.REVISION_ANNOTATION: str(issue.revision),
                names.LAST_CHARACTERS_ANNOTATION: tokens.last_characters(token),
                names.ISSUED_AT_ANNOTATION: now,
                **({names.ROTATE_REQUEST_ANNOTATION: issue.request}
                   if issue.request else {}),
                # the same key sealed: adopted into status.sealed with the hash
                **({names.SEALED_ANNOTATION: sealed,
                    names.SEALED_TO_ANNOTATION: ",".join(issue.recipients)} if sealed else {}),
            },
            "ownerReferences": [{
                "apiVersion": raw["apiVersion"], "kind": raw["kind"], "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "data": kube.Kube.secret_data({issue.data_key: token.encode("ascii")}),
    }


def _merged(status: models.ApiKeyStatus, patch: dict[str, Any]) -> models.ApiKeyStatus:
    """`status` after a JSON merge patch of its top-level fields (None removes one)."""
    fields = {**status.model_dump(exclude_none=True), **patch}
    return models.ApiKeyStatus.model_validate({k: v for k, v in fields.items()
                                               if v is not None})

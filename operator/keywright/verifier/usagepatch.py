"""The loop that sends the verifier's `status.lastUsedAt` patches.

Owns: asking the usage tracker (`usage.py`) which patches are due, sending them at a
bounded pace under the verifier's own field manager, counting them in the metrics, and
keeping a failed one for later; with the shared limits backend, claiming each key first
so that one replica in all writes it per interval, and writing the credits Redis holds at
that moment. Runs in a thread of the worker
process.
Must not: decide when a key's patch is due (usage.py does), stop on an error (only its
`stop` event ends it), or touch any status field but those the tracker hands out.
"""

from __future__ import annotations

import logging
import threading
import time

from keywright import kube
from keywright.core import names
from keywright.verifier import app, limits_backend, usage

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0  # how often due usage patches are looked for (each key: once a minute)
PATCH_PAUSE = 0.005  # between two usage patches: at most 200 a second


def run(api: kube.Kube, verifier: app.Verifier, stop: threading.Event,
        claims: limits_backend.WriteClaims | None = None) -> None:
    """Send due lastUsedAt patches until `stop`; a failed one is retried later, and
    nothing ends the loop but `stop`."""
    while not stop.wait(FLUSH_SECONDS):
        try:
            _send_due(api, verifier, stop, claims)
        except Exception:
            log.exception("usage flush failed; trying again in %.0f s", FLUSH_SECONDS)


def _send_due(api: kube.Kube, verifier: app.Verifier, stop: threading.Event,
              claims: limits_backend.WriteClaims | None) -> None:
    for patch in verifier.usage.due(time.time()):
        namespace, name, fields = patch
        if claims is not None:
            if not claims.claim(namespace, name):
                verifier.usage.failed(patch, time.time())  # another replica wrote it: later
                continue
            # the credits as Redis holds them now, not as this replica last saw them:
            # another replica may have spent many since, and status.usage is where the
            # quota restarts from if Redis loses its data
            fresh = claims.credits(namespace, name)
            if fresh is not None:
                fields["usage"] = usage.usage_field(*fresh)
        stop.wait(PATCH_PAUSE)  # spread a burst: thousands of keys used in one second
        try:
            api.patch_apikey_status(namespace, name, fields,
                                    field_manager=names.VERIFIER_FIELD_MANAGER)
            verifier.metrics.usage_patches.labels("ok").inc()
        except kube.KubeError as exc:
            if exc.status == 404:  # deleted meanwhile: nothing to tell
                verifier.forget(namespace, name)
                continue
            verifier.usage.failed(patch, time.time())
            verifier.metrics.usage_patches.labels("failed").inc()
            log.warning("cannot record usage of ApiKey %s/%s: %s", namespace, name, exc)
        except Exception as exc:  # the API server is away; keep the note for later
            verifier.usage.failed(patch, time.time())
            verifier.metrics.usage_patches.labels("failed").inc()
            log.warning("cannot record usage of ApiKey %s/%s (%s)", namespace, name,
                        type(exc).__name__)

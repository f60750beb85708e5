"""What `lifecycle.decide` is given in the decision tables: an ApiKey as observed at a
fixed clock, its issued status and a Secret in sync with it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from keywright.core import aging, compliance, lifecycle, models, secretview

CREATED = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
NOW = CREATED + timedelta(days=10)
UID = "uid-1"
HASH = "hmac-sha256:v1:abc"
ISSUED: dict[str, Any] = {
    "phase": "Active", "revision": 1, "hash": HASH, "prefix": "kw", "lastCharacters": "x9Qa",
    "keyPreview": "kw_...x9Qa", "secretName": "k", "createdAt": "2026-11-01T12:00:00Z",
    "expiresAt": "2026-12-01T12:00:00Z", "observedGeneration": 1,
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Active", "message": "m",
         "lastTransitionTime": "2026-11-01T12:00:00Z"},
        {"type": "SecretSynced", "status": "True", "reason": "Synced", "message": "m",
         "lastTransitionTime": "2026-11-01T12:00:00Z"},
    ],
}
SYNCED = secretview.SecretView(exists=True, owner_uid=UID, hash=HASH, revision=1,
                              last_characters="x9Qa", has_key=True)


def observed(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None,
             secret: secretview.SecretView = secretview.MISSING, generation: int = 1,
             facts: compliance.Facts = compliance.NONE) -> lifecycle.Observed:
    raw = {"expiration": "30d", **(spec or {})}
    try:
        parsed: models.ApiKeySpec | models.SpecError = models.validate_spec(raw)
    except models.SpecError as exc:
        parsed = exc
    return lifecycle.Observed(
        namespace="ns", name="k", uid=UID, generation=generation, created=CREATED,
        spec=parsed, status=models.ApiKeyStatus.model_validate(status or {}), secret=secret,
        default_prefix="kw", facts=facts, watch=aging.QUIET)

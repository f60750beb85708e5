"""The Secret as the operator may know it: by its metadata, never by its plaintext.

Owns: the labels and annotations Keywright puts on a Secret, reading them back
(`SecretView`), and the SecretSynced condition. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keywright import conditions, models

MANAGER = "keywright"
MANAGED_BY = "app.kubernetes.io/managed-by"
APIKEY_LABEL = "keywright.dev/apikey"
HASH_ANNOTATION = "keywright.dev/hash"
REVISION_ANNOTATION = "keywright.dev/revision"
LAST_CHARACTERS_ANNOTATION = "keywright.dev/last-characters"
ISSUED_AT_ANNOTATION = "keywright.dev/issued-at"
ROTATE_REQUEST_ANNOTATION = "keywright.dev/rotate-request"


@dataclass(frozen=True)
class SecretView:
    """What the operator knows of a Secret without reading the plaintext it holds."""

    exists: bool
    owner_uid: str | None = None
    hash: str | None = None
    revision: int | None = None
    last_characters: str | None = None
    issued_at: str | None = None
    rotate_request: str | None = None  # the keywright.dev/rotate value this key answered
    has_key: bool = False
    data_changed_by_others: bool = False


MISSING = SecretView(exists=False)


def view_secret(raw: dict[str, Any] | None, data_key: str) -> SecretView:
    """A SecretView of a Secret as the API returns it (camelCase dict), or MISSING."""
    if raw is None:
        return MISSING
    meta = raw.get("metadata") or {}
    notes = meta.get("annotations") or {}
    owner = next((ref.get("uid") for ref in meta.get("ownerReferences") or []
                  if ref.get("controller")), None)
    revision = notes.get(REVISION_ANNOTATION, "")
    foreign = any(
        entry.get("manager") != MANAGER
        and f"f:{data_key}" in ((entry.get("fieldsV1") or {}).get("f:data") or {})
        for entry in meta.get("managedFields") or []
    )
    return SecretView(
        exists=True,
        owner_uid=owner,
        hash=notes.get(HASH_ANNOTATION),
        revision=int(revision) if revision.isdigit() else None,
        last_characters=notes.get(LAST_CHARACTERS_ANNOTATION),
        issued_at=notes.get(ISSUED_AT_ANNOTATION),
        rotate_request=notes.get(ROTATE_REQUEST_ANNOTATION),
        has_key=bool((raw.get("data") or {}).get(data_key)),
        data_changed_by_others=foreign,
    )


def condition(s: SecretView, status: models.ApiKeyStatus, name: str) -> models.Condition:
    if not s.exists:
        return conditions.false("SecretSynced", "SecretMissing",
                                f"Secret {name} is gone; the key is unchanged: request a "
                                "rotation to write a new one")
    problems = []
    if s.hash != status.hash or s.revision != status.revision:
        problems.append("its hash or revision annotation does not match status")
    if not s.has_key:
        problems.append("its data key is missing or empty")
    if s.data_changed_by_others:
        problems.append("its data was written by someone other than Keywright")
    if problems:
        return conditions.false("SecretSynced", "SecretModified",
                                f"Secret {name} was altered: {'; '.join(problems)}. The key "
                                "is unchanged: request a rotation to write a new one")
    return conditions.true("SecretSynced", "Synced", f"Secret {name} holds revision "
                           f"{status.revision}")

"""The Secret as the operator may know it: by its metadata, never by its plaintext.

Owns: the labels and annotations Keywright puts on a Secret, reading them back
(`SecretView`), and the SecretSynced condition. Pure. A key with `secret.create: false`
has no Secret: right after it is sealed, the reconciler describes what it holds in the
same shape (`issued`), so that one adoption serves both kinds of key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keywright.core import conditions, models, names, times


@dataclass(frozen=True)
class SecretView:
    """What the operator knows of a Secret without reading the plaintext it holds."""

    exists: bool
    owner_uid: str | None = None
    resource_version: str | None = None
    hash: str | None = None
    revision: int | None = None
    last_characters: str | None = None
    issued_at: str | None = None
    rotate_request: str | None = None  # the keywright.dev/rotate value this key answered
    has_key: bool = False
    data_changed_by_others: bool = False
    our_data_keys: frozenset[str] = frozenset()  # data keys Keywright's writes own
    sealed: str | None = None  # the key, age-armored to `sealed_to`, when it was sealed
    sealed_to: tuple[str, ...] = ()


MISSING = SecretView(exists=False)


def issued(owner_uid: str, hash_: str, revision: int, last_characters: str, issued_at: str,
           rotate_request: str | None, sealed: str, sealed_to: tuple[str, ...]) -> SecretView:
    """A key just generated and sealed for a key without a Secret, as if a Secret held
    it: adopted into status in one write (hash and ciphertext together)."""
    return SecretView(exists=True, owner_uid=owner_uid, hash=hash_, revision=revision,
                      last_characters=last_characters, issued_at=issued_at,
                      rotate_request=rotate_request, has_key=True, sealed=sealed,
                      sealed_to=sealed_to)


def view_secret(raw: dict[str, Any] | None, data_key: str) -> SecretView:
    """A SecretView of a Secret as the API returns it (camelCase dict), or MISSING.

    Works on metadata alone (a PartialObjectMetadata GET): which data keys exist, and who
    wrote them, is read from managedFields."""
    if raw is None:
        return MISSING
    meta = raw.get("metadata") or {}
    notes = meta.get("annotations") or {}
    owner = next((ref.get("uid") for ref in meta.get("ownerReferences") or []
                  if ref.get("controller")), None)
    us = names.OPERATOR_FIELD_MANAGER
    writers: dict[str, set[str | None]] = {}  # data key -> the field managers owning it
    for entry in meta.get("managedFields") or []:
        for field_name in (entry.get("fieldsV1") or {}).get("f:data") or {}:
            if field_name.startswith("f:"):
                writers.setdefault(field_name[2:], set()).add(entry.get("manager"))
    revision = notes.get(names.REVISION_ANNOTATION, "")
    issued_at = notes.get(names.ISSUED_AT_ANNOTATION)
    return SecretView(
        exists=True,
        owner_uid=owner,
        resource_version=meta.get("resourceVersion"),
        hash=notes.get(names.HASH_ANNOTATION),
        revision=int(revision) if revision.isascii() and revision.isdecimal() else None,
        last_characters=notes.get(names.LAST_CHARACTERS_ANNOTATION),
        issued_at=issued_at if issued_at and _is_time(issued_at) else None,
        rotate_request=notes.get(names.ROTATE_REQUEST_ANNOTATION),
        has_key=bool((raw.get("data") or {}).get(data_key)) if "data" in raw
        else data_key in writers,
        data_changed_by_others=bool(writers.get(data_key, set()) - {us}),
        our_data_keys=frozenset(k for k, who in writers.items() if us in who),
        sealed=notes.get(names.SEALED_ANNOTATION),
        sealed_to=tuple(r for r in notes.get(names.SEALED_TO_ANNOTATION, "").split(",") if r),
    )


def metadata_only(raw: dict[str, Any]) -> dict[str, Any]:
    """Of a Secret, only what `view_secret` reads of it without data (its name,
    resourceVersion, annotations, controller owner, and who wrote which data key):
    equal views, a fraction of the memory, and no data. What is kept of a listed
    Secret until its key is reconciled."""
    meta = raw.get("metadata") or {}
    return {"metadata": {
        "name": meta.get("name"), "resourceVersion": meta.get("resourceVersion"),
        "annotations": dict(meta.get("annotations") or {}),
        "ownerReferences": [{"uid": ref.get("uid"), "controller": ref.get("controller")}
                            for ref in meta.get("ownerReferences") or []
                            if ref.get("controller")],
        "managedFields": [
            {"manager": entry.get("manager"),
             "fieldsV1": {"f:data": dict.fromkeys((entry.get("fieldsV1") or {})["f:data"])}}
            for entry in meta.get("managedFields") or []
            if (entry.get("fieldsV1") or {}).get("f:data")]}}


def _is_time(text: str) -> bool:
    try:
        times.parse(text)
    except ValueError:
        return False
    return True


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

"""Admission decisions, pure: is this ApiKey, role or policy acceptable; what does this
Pod get injected.

Owns: the checks the CRD schema cannot make on every Kubernetes version (an immutable
`expiration`, CIDRs, scope grammar, durations, context keys: all of `models.validate_spec`),
the namespace's ApiKeyPolicies applied to a key as it is written, and to the keys a role
edit would widen; the env var a Pod labelled and annotated `keywright.dev/inject` gets
from its key's Secret, and what to tell whoever made a Pod that carries only one of the
two.
Must not: do I/O (the caller looks the ApiKey up), or ever hold a key: injection
references the Secret (`secretKeyRef`); it never reads it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from keywright.core import compliance, models, names, policy, recipients

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")

Obj = Mapping[str, Any]


class Refused(ValueError):
    """The admission request is refused; the message says which field and why."""


def check_apikey(operation: str, new: Obj | None, old: Obj | None) -> None:
    """Raise Refused if an ApiKey create or update must not be admitted."""
    if new is None or operation not in ("CREATE", "UPDATE"):
        return
    if (new.get("metadata") or {}).get("deletionTimestamp"):
        return  # never stand in the way of a deletion (finalizers coming off)
    seal_to = _checked_seal_to(new)
    spec, before = new.get("spec"), (old or {}).get("spec")
    if operation == "UPDATE" and spec == before:
        return  # metadata or annotations only: the spec was admitted before
    try:
        parsed = models.validate_spec(spec)
    except models.SpecError as exc:
        raise Refused(f"{exc.field}: {exc.reason}") from None
    if not parsed.secret.create and not parsed.delivery.age.recipients and not seal_to:
        raise Refused(f"spec.delivery.age.recipients: {recipients.NONE}; add "
                      "an age recipient (age-keygen -y), or set spec.secret.create to true")
    if operation == "UPDATE" and isinstance(before, Mapping):
        was, now = before.get("expiration"), (spec or {}).get("expiration")
        if was is not None and now != was:
            raise Refused(f"spec.expiration: is immutable (it was {was!r}, not {now!r}); "
                          "it is chosen once, at creation. Create a new ApiKey for "
                          "another lifetime")
        if ((old or {}).get("status") or {}).get("secretName"):  # issued
            _check_delivery_kept(before, spec or {}, (old or {}).get("metadata") or {})


def check_role(operation: str, new: Obj | None, old: Obj | None) -> None:
    """Raise Refused if an ApiKeyRole create or update must not be admitted: its spec,
    field by field (the schema cannot say what a filter field or a reference may be)."""
    _check_spec(models.validate_role_spec, operation, new, old)


def check_policy(operation: str, new: Obj | None, old: Obj | None) -> None:
    """Raise Refused if an ApiKeyPolicy create or update must not be admitted: its spec,
    field by field (a nameFormat that does not compile, say)."""
    _check_spec(models.validate_policy_spec, operation, new, old)


def _check_spec(validate: Callable[[Any], object], operation: str, new: Obj | None,
                old: Obj | None) -> None:
    """A written spec (see `spec_written`), field by field."""
    if not spec_written(operation, new, old) or new is None:
        return
    try:
        validate(new.get("spec"))
    except models.SpecError as exc:
        raise Refused(f"{exc.field}: {exc.reason}") from None


def spec_written(operation: str, new: Obj | None, old: Obj | None) -> bool:
    """Whether the request writes a spec the policies must see: a create, or an update
    that changes the spec (not a deletion's finalizers coming off)."""
    if new is None or operation not in ("CREATE", "UPDATE"):
        return False
    if (new.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return operation == "CREATE" or new.get("spec") != (old or {}).get("spec")


def check_apikey_policies(operation: str, new: Obj | None, old: Obj | None,
                          facts: compliance.Facts, default_prefix: str) -> None:
    """Raise Refused naming every rule of the namespace's policies the key would break,
    each as `ApiKeyPolicy <name>: <field and what is wrong>`. An update is refused only
    for what it newly breaks: a key that predates a policy can still be deactivated,
    or brought into line one rule at a time. Run after `check_apikey`."""
    if not facts.policies or not spec_written(operation, new, old) or new is None:
        return
    broken = _broken(new, facts, default_prefix)
    if operation == "UPDATE" and old is not None:
        broken = _new_violations(broken, _broken(old, facts, default_prefix))
    if broken:
        raise Refused("; ".join(str(v) for v in broken))


def check_role_policies(operation: str, new: Obj | None, old: Obj | None,
                        apikeys: Sequence[Obj], facts: compliance.Facts,
                        default_prefix: str) -> None:
    """Raise Refused if a role create or update would put ApiKeys that name it out of
    their namespace's policies (a permission a policy forbids, one that needs an
    allowlist the key lacks), listing the keys and why. What they broke already does
    not count. Run after `check_role`."""
    if not facts.policies or not spec_written(operation, new, old) or new is None:
        return
    name = str((new.get("metadata") or {}).get("name") or "")
    before = {**facts.roles}
    before.pop(name, None)
    if operation == "UPDATE" and old is not None:
        before[name] = compliance.read_role(old)
    after = {**before, name: compliance.read_role(new)}
    out = []
    for apikey in sorted(apikeys, key=lambda a: str((a.get("metadata") or {}).get("name"))):
        if name not in ((apikey.get("spec") or {}).get("roles") or []):
            continue
        was = _broken(apikey, dataclasses.replace(facts, roles=before), default_prefix)
        now = _broken(apikey, dataclasses.replace(facts, roles=after), default_prefix)
        added = _new_violations(now, was)
        if added:
            out.append(f"{(apikey.get('metadata') or {}).get('name')} "
                       f"({'; '.join(str(v) for v in added)})")
    if out:
        shown = out[:MAX_KEYS_LISTED]
        more = f"; and {len(out) - len(shown)} more" if len(out) > len(shown) else ""
        raise Refused(f"ApiKeyRole {name}: this change would put {len(out)} ApiKey"
                      f"{'' if len(out) == 1 else 's'} out of policy: "
                      f"{'; '.join(shown)}{more}")


MAX_KEYS_LISTED = 10  # keys a refusal names; the count says how many more


def policy_warning(new: Obj, apikeys: Sequence[Obj], roles: Sequence[Obj],
                   default_prefix: str) -> str | None:
    """For a policy being written: which of its namespace's keys break it already, and
    what will happen to them; None when none does (or the spec is unusable)."""
    read = compliance.read_policy(new)
    if read is None:
        return None
    namespace = str((new.get("metadata") or {}).get("namespace") or "")
    facts = compliance.facts_of(namespace, [new], roles)
    breaking = sorted(str((key.get("metadata") or {}).get("name"))
                      for key in apikeys if _broken(key, facts, default_prefix))
    if not breaking:
        return None
    shown = ", ".join(breaking[:MAX_KEYS_LISTED])
    more = f" and {len(breaking) - MAX_KEYS_LISTED} more" \
        if len(breaking) > MAX_KEYS_LISTED else ""
    fate = ("they are deactivated until they comply" if read.spec.enforcement == "Deactivate"
            else "they keep working, with PolicyCompliant=False and a Warning event")
    return (f"{len(breaking)} ApiKey{'' if len(breaking) == 1 else 's'} in {namespace} "
            f"already break{'s' if len(breaking) == 1 else ''} ApiKeyPolicy {read.name}: "
            f"{shown}{more}; enforcement {read.spec.enforcement}: {fate}")


def _broken(apikey: Obj, facts: compliance.Facts,
            default_prefix: str) -> list[policy.Violation]:
    try:
        spec = models.validate_spec(apikey.get("spec"))
    except models.SpecError:
        return []  # a spec admission never let in (or refuses anyway) breaks no policy
    name = str((apikey.get("metadata") or {}).get("name") or "")
    return policy.evaluate(facts.policies, compliance.subject(
        name, spec, spec.prefix or default_prefix, facts.roles))


def _new_violations(now: Sequence[policy.Violation],
                    was: Sequence[policy.Violation]) -> list[policy.Violation]:
    """The violations in `now` that `was` lacks, by policy, rule and what is wrong."""
    known = {(v.policy, v.rule, v.reason) for v in was}
    return [v for v in now if (v.policy, v.rule, v.reason) not in known]


def _checked_seal_to(apikey: Obj) -> tuple[str, ...]:
    """The keywright.dev/seal-to annotation's recipients; Refused naming the first that
    is not one."""
    value = ((apikey.get("metadata") or {}).get("annotations") or {}).get(
        names.SEAL_TO_ANNOTATION)
    parts = (value or "").replace(",", " ").split()
    for part in parts:
        wrong = recipients.problem(part)
        if wrong is not None:
            raise Refused(f"metadata.annotations[{names.SEAL_TO_ANNOTATION!r}]: "
                          f"{part[:70]!r} {wrong}")
    return tuple(parts)


def _check_delivery_kept(before: Obj, spec: Obj, meta: Obj) -> None:
    """Where the key was delivered is fixed once it is issued: a Secret named anew would
    hold no key (the operator never reads one back to copy it), and a key sealed to no
    Secret has nothing to put in one."""
    def delivery(of: Obj) -> tuple[str, str]:
        secret = of.get("secret") or {}
        return (secret.get("name") or meta.get("name") or "",
                secret.get("key") or names.DEFAULT_DATA_KEY)
    (was_name, was_key), (name, key) = delivery(before), delivery(spec)
    was_made, made = ((of.get("secret") or {}).get("create", True) for of in (before, spec))
    if was_made != made:
        raise Refused(f"spec.secret.create: is immutable once the key is issued (it was "
                      f"{str(was_made).lower()}): the key was delivered "
                      f"{'into a Secret' if was_made else 'sealed, with no Secret'}. To "
                      "deliver a key another way, create a new ApiKey")
    for field, was, now in (("name", was_name, name), ("key", was_key, key)):
        if now != was:
            raise Refused(f"spec.secret.{field}: is immutable once the key is issued (it was "
                          f"{was!r}, not {now!r}): the key was delivered there and is never "
                          "read back. To deliver a key elsewhere, create a new ApiKey")


def _labels_and_annotations(pod: Obj) -> tuple[Obj, Obj]:
    meta = pod.get("metadata") or {}
    return meta.get("labels") or {}, meta.get("annotations") or {}


def opted_in(pod: Obj) -> bool:
    """Whether the Pod carries the opt-in label (any value): only such Pods are sent to
    the Pod webhook (its objectSelector), and only such Pods get a key."""
    labels, _ = _labels_and_annotations(pod)
    return names.INJECT_LABEL in labels


def opt_in_warning(pod: Obj) -> str | None:
    """A warning for a Pod that carries the label or the annotation without the other,
    and so gets no key; None when it has both or neither. (A Pod with the annotation
    alone reaches the webhook only through a configuration without Keywright's selector;
    the API server never sends one otherwise.)"""
    labels, annotations = _labels_and_annotations(pod)
    label, annotation = names.INJECT_LABEL, names.INJECT_ANNOTATION
    wanted = annotations.get(annotation)
    if label in labels and wanted is None:
        return (f"label {label!r} is set but annotation {annotation!r} (the ApiKey's "
                "name) is not: nothing is injected")
    if wanted is not None and label not in labels:
        return (f"annotation {annotation!r} asks for ApiKey {wanted.strip()!r} but the Pod "
                f"lacks the label {label!r}: nothing is injected; label it "
                f"({label}: \"true\") to opt in")
    return None


def injection(pod: Obj, namespace: str, lookup: Callable[[str], Obj | None],
              ) -> dict[str, list[dict[str, Any]]] | None:
    """The Pod's containers and init containers with the key's env var added, or None
    when the Pod asks for nothing: it lacks the annotation naming the ApiKey, or the
    opt-in label (both are needed). Raise Refused when it asks for a key that cannot
    be given: a missing ApiKey, or a bad env var name. A container that already sets
    the variable keeps its own value."""
    _, annotations = _labels_and_annotations(pod)
    wanted = annotations.get(names.INJECT_ANNOTATION)
    if wanted is None or not opted_in(pod):
        return None
    wanted = wanted.strip()
    env_name = (annotations.get(names.INJECT_ENV_ANNOTATION) or names.DEFAULT_INJECT_ENV).strip()
    inject, inject_env = names.INJECT_ANNOTATION, names.INJECT_ENV_ANNOTATION
    if not _OBJECT_NAME.fullmatch(wanted):
        raise Refused(f"metadata.annotations[{inject!r}]: {wanted!r} is not an ApiKey name")
    if not _ENV_NAME.fullmatch(env_name):
        raise Refused(f"metadata.annotations[{inject_env!r}]: {env_name!r} is not a valid "
                      "environment variable name")
    apikey = lookup(wanted)
    if apikey is None:
        raise Refused(f"metadata.annotations[{inject!r}]: ApiKey {wanted!r} not found in "
                      f"namespace {namespace!r}; create it first, or fix the annotation")
    spec, status = apikey.get("spec") or {}, apikey.get("status") or {}
    secret = spec.get("secret") or {}
    if secret.get("create") is False:
        raise Refused(f"metadata.annotations[{inject!r}]: ApiKey {wanted!r} has "
                      "spec.secret.create: false: its key exists in no Secret (it is only "
                      "sealed to its age recipients), so there is nothing to inject")
    variable = {"name": env_name, "valueFrom": {"secretKeyRef": {
        "name": status.get("secretName") or secret.get("name") or wanted,
        "key": secret.get("key") or names.DEFAULT_DATA_KEY}}}
    pod_spec = pod.get("spec") or {}
    changed: dict[str, list[dict[str, Any]]] = {}
    for field in ("initContainers", "containers"):
        containers = pod_spec.get(field)
        if not containers:
            continue
        changed[field] = [
            container if any(e.get("name") == env_name for e in container.get("env") or [])
            else {**container, "env": [*(container.get("env") or []), variable]}
            for container in containers]
    return changed

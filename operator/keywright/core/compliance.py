"""Whether an issued ApiKey keeps its namespace's policies and finds its roles. Pure.

Owns: turning what the operator knows beyond the key (the namespace's ApiKeyPolicies,
the ApiKeyRoles the key names) into the key's `RolesResolved` and `PolicyCompliant`
conditions, the events their changes deserve, and whether a policy with
`enforcement: Deactivate` keeps the key from working. A condition is only there when it
has something to say: `RolesResolved` for a key that names roles, `PolicyCompliant` in a
namespace with policies; so a key with neither costs no status write.
Must not: read the cluster (the facts arrive as values), judge a request (the verifier
does, from the status this decides), or refuse anything: admission refuses, and that
is admission.py's. The rules themselves are policy.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from keywright.core import conditions, models, permissions, policy

ROLES_RESOLVED = "RolesResolved"
POLICY_COMPLIANT = "PolicyCompliant"
# reasons: a condition's and its event's
RESOLVED, ROLE_MISSING, ROLE_INVALID, CONTEXT_MISSING = (
    "Resolved", "RoleMissing", "RoleInvalid", "ContextMissing")
COMPLIANT, VIOLATION = "Compliant", "PolicyViolation"

_Event = conditions.Event
RoleFacts = Mapping[str, tuple[permissions.Permission, ...] | None]  # None: spec unusable


@dataclass(frozen=True)
class Facts:
    """The namespace as the operator last saw it: its policies, and the roles the key
    names that exist (a name absent from `roles` is a missing role)."""

    namespace: str = ""
    policies: tuple[policy.Policy, ...] = ()
    roles: RoleFacts = field(default_factory=dict)


NONE = Facts()


def read_policy(obj: Mapping[str, Any]) -> policy.Policy | None:
    """An ApiKeyPolicy object as the rules take it; None when its spec is unusable (the
    webhook refuses such a spec; with webhooks off it is skipped, and says so in its
    status)."""
    try:
        spec = models.validate_policy_spec(obj.get("spec"))
    except models.SpecError:
        return None
    return policy.Policy(str((obj.get("metadata") or {}).get("name") or ""), spec)


def read_role(obj: Mapping[str, Any]) -> tuple[permissions.Permission, ...] | None:
    """An ApiKeyRole object's permissions; None when its spec is unusable (it then
    grants nothing, as the verifier treats it)."""
    try:
        return models.role_permissions(models.validate_role_spec(obj.get("spec")))
    except models.SpecError:
        return None


def facts_of(namespace: str, policies: Iterable[Mapping[str, Any]],
             roles: Iterable[Mapping[str, Any]]) -> Facts:
    """Facts from a namespace's ApiKeyPolicy and ApiKeyRole objects as listed."""
    read = [read_policy(obj) for obj in policies]
    return Facts(namespace, tuple(p for p in read if p is not None),
                 {str((obj.get("metadata") or {}).get("name")): read_role(obj)
                  for obj in roles})


@dataclass(frozen=True)
class Verdict:
    violations: tuple[policy.Violation, ...] = ()
    conditions: tuple[models.Condition, ...] = ()  # to set
    dropped: tuple[str, ...] = ()  # condition types to remove
    events: tuple[_Event, ...] = ()

    @property
    def deactivating(self) -> tuple[policy.Violation, ...]:
        """The violations of policies whose enforcement is Deactivate."""
        return tuple(v for v in self.violations if v.enforcement == "Deactivate")


def subject(name: str, spec: models.ApiKeySpec, prefix: str,
            roles: RoleFacts) -> policy.Subject:
    """The key as the rules see it: its permissions through the roles that exist and
    whose spec is usable."""
    usable = {role: found for role, found in roles.items() if found is not None}
    return policy.Subject(name, spec, prefix, permissions.effective(
        spec.scopes, spec.roles, usable, spec.context))


def judge(name: str, spec: models.ApiKeySpec, prefix: str, facts: Facts,
          before: Sequence[models.Condition]) -> Verdict:
    """The key's role and policy conditions, given its conditions `before`, and the
    events for what changed."""
    key = subject(name, spec, prefix, facts.roles)
    violations = tuple(policy.evaluate(facts.policies, key))
    found: list[models.Condition] = []
    dropped: list[str] = []
    if spec.roles:
        found.append(_roles_condition(facts, spec, key.permissions))
    else:
        dropped.append(ROLES_RESOLVED)
    if facts.policies:
        found.append(_policy_condition(facts.policies, violations))
    else:
        dropped.append(POLICY_COMPLIANT)
    present = {c.type for c in before}
    return Verdict(violations=violations, conditions=tuple(found),
                   dropped=tuple(kind for kind in dropped if kind in present),
                   events=tuple(_events(before, found)))


def _roles_condition(facts: Facts, spec: models.ApiKeySpec,
                     effective: permissions.Effective) -> models.Condition:
    invalid = sorted(name for name in spec.roles if name in facts.roles
                     and facts.roles[name] is None)
    missing = [name for name in effective.missing if name not in invalid]
    where = f"namespace {facts.namespace}" if facts.namespace else "the namespace"
    if missing:
        extra = f"; ApiKeyRole {_and(invalid)} has an unusable spec" if invalid else ""
        return conditions.false(
            ROLES_RESOLVED, ROLE_MISSING,
            f"ApiKeyRole {_and(missing)} not found in {where}: "
            f"{'its' if len(missing) == 1 else 'their'} permissions are not granted{extra}")
    if invalid:
        return conditions.false(
            ROLES_RESOLVED, ROLE_INVALID,
            f"ApiKeyRole {_and(invalid)} has a spec the operator cannot use: "
            f"{'its' if len(invalid) == 1 else 'their'} permissions are not granted")
    if effective.unfilled:
        lacking = sorted({f"spec.context.{key}" for _, key in effective.unfilled})
        roles = sorted({role for role, _ in effective.unfilled})
        return conditions.false(
            ROLES_RESOLVED, CONTEXT_MISSING,
            f"ApiKeyRole {_and(roles)} filters rows by {_and(lacking)}, which the key "
            "lacks: those permissions are not granted")
    return conditions.true(ROLES_RESOLVED, RESOLVED,
                           f"ApiKeyRole {_and(sorted(spec.roles))} found")


def _policy_condition(policies: Sequence[policy.Policy],
                      violations: Sequence[policy.Violation]) -> models.Condition:
    if violations:
        return conditions.false(POLICY_COMPLIANT, VIOLATION,
                                "; ".join(str(v) for v in violations))
    return conditions.true(POLICY_COMPLIANT, COMPLIANT,
                           f"keeps ApiKeyPolicy {_and(sorted(p.name for p in policies))}")


def _events(before: Sequence[models.Condition],
            after: Sequence[models.Condition]) -> list[conditions.Event]:
    """A Warning when a condition turns False or its complaint changes; a Normal one
    when it turns True again. A condition appearing True says nothing new."""
    found = []
    for now in after:
        was = conditions.find(before, now.type)
        if now.status == "False":
            if was is None or (was.status, was.reason, was.message) != \
                    (now.status, now.reason, now.message):
                found.append(conditions.Event(conditions.WARNING, now.reason, now.message))
        elif was is not None and was.status == "False":
            found.append(conditions.Event(conditions.NORMAL, now.type, now.message))
    return found


def _and(items: Sequence[str]) -> str:
    return ", ".join(items)

"""The namespaces' ApiKeyPolicies and ApiKeyRoles as the operator last saw them, and
what each ApiKey made of them: the roles it names and the policies it breaks.

Owns: the facts a key's reconcile is given (`facts`), which keys a role or policy
change must be reconciled again (the `put`/`remove` answers), and what each role's
and policy's status should say (`status`: Ready and the key counts). It is filled once
at start (`prime`: one list of roles and policies, and the keys of the namespaces that
have any), then kept current by Kopf's watch events and by each key's reconcile
(`record`), so a restart finds the counts whole before it writes
any of them.
Must not: write to the API, decide a key's conditions (compliance.py does), or keep
ApiKey bodies: per key only its role names and the names of the policies it breaks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keywright import kube
from keywright.core import compliance, models, names, permissions, policy

log = logging.getLogger(__name__)

Ref = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Seen:
    """One role or policy as last seen: its generation and its status."""

    generation: int
    status: Mapping[str, Any]


@dataclass
class _Namespace:
    policies: dict[str, tuple[Seen, policy.Policy | None]] = field(default_factory=dict)
    roles: dict[str, tuple[Seen, tuple[permissions.Permission, ...] | None]] = field(
        default_factory=dict)
    keys: dict[str, tuple[tuple[str, ...], frozenset[str]]] = field(default_factory=dict)

    def table(self, plural: str) -> dict[str, tuple[Seen, Any]]:
        found: dict[str, tuple[Seen, Any]] = (self.roles if plural == names.ROLE_PLURAL
                                              else self.policies)
        return found


class Catalog:
    def __init__(self, default_prefix: str = names.DEFAULT_PREFIX) -> None:
        self.default_prefix = default_prefix
        self._lock = threading.Lock()
        self._spaces: dict[str, _Namespace] = {}

    # -- filling it -------------------------------------------------------------------

    def prime(self, api: kube.Kube) -> None:
        """One list of every role and policy, and of the ApiKeys of the namespaces that
        have any (where counts and violations matter), before the first reconcile."""
        for plural in (names.POLICY_PLURAL, names.ROLE_PLURAL):
            for obj in api.list_objects(api.apikeys_path(plural=plural))[0]:
                self.put(plural, obj)
        with self._lock:
            busy = sorted(ns for ns, space in self._spaces.items()
                          if space.policies or space.roles)
        for namespace in busy:
            for obj in api.list_objects(api.apikeys_path(namespace))[0]:
                self._prime_key(namespace, obj)
        log.info("catalog primed: %d namespaces with roles or policies", len(busy))

    def _prime_key(self, namespace: str, obj: Mapping[str, Any]) -> None:
        name = str(obj["metadata"]["name"])
        try:
            spec = models.validate_spec(obj.get("spec"))
        except models.SpecError:
            return
        facts = self.facts(namespace, spec.roles)
        broken = policy.evaluate(facts.policies, compliance.subject(
            name, spec, spec.prefix or self.default_prefix, facts.roles))
        self.record(namespace, name, tuple(spec.roles), {v.policy for v in broken})

    def put(self, plural: str, obj: Mapping[str, Any]) -> set[Ref]:
        """A role or policy (by `plural`) added or changed. Returns the keys to judge
        again when what it means for them changed (none for an echo of a status write,
        nor for a new description): a policy's whole namespace, a role's keys that name
        it."""
        namespace, name, seen = _seen(obj)
        read: Any = (compliance.read_role(obj) if plural == names.ROLE_PLURAL
                     else compliance.read_policy(obj))
        with self._lock:
            space = self._space(namespace)
            table = space.table(plural)
            before = table.get(name)
            table[name] = (seen, read)
            if before is not None and _meaning(before[1]) == _meaning(read):
                return set()
            return self._concerned(namespace, space, plural, name)

    def remove(self, plural: str, namespace: str, name: str) -> set[Ref]:
        with self._lock:
            space = self._space(namespace)
            if space.table(plural).pop(name, None) is None:
                return set()
            return self._concerned(namespace, space, plural, name)

    def record(self, namespace: str, name: str, roles: Iterable[str],
               broken: Iterable[str]) -> set[tuple[str, Ref]]:
        """What a key's reconcile found: the roles it names and the policies it breaks.
        Returns the roles and policies whose status counts may have changed, as
        (plural, (namespace, name))."""
        entry = (tuple(roles), frozenset(broken))
        with self._lock:
            space = self._space(namespace)
            before = space.keys.get(name)
            if before == entry:
                return set()
            space.keys[name] = entry
            return self._touched(namespace, space, before, entry)

    def forget(self, namespace: str, name: str) -> set[tuple[str, Ref]]:
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None or name not in space.keys:
                return set()
            before = space.keys.pop(name)
            return self._touched(namespace, space, before, None)

    # -- reading it -------------------------------------------------------------------

    def facts(self, namespace: str, roles: Iterable[str]) -> compliance.Facts:
        """The namespace's usable policies and, of the roles named, those that exist."""
        with self._lock:
            space = self._spaces.get(namespace)
            if space is None:
                return compliance.Facts(namespace)
            return compliance.Facts(
                namespace,
                tuple(read for _, read in space.policies.values() if read is not None),
                {role: space.roles[role][1] for role in roles if role in space.roles})

    def status(self, plural: str, namespace: str, name: str,
               ) -> tuple[dict[str, Any], Seen] | None:
        """What a role's or policy's status should hold (`ready` as (status, reason,
        message), and its counts), beside the object as last seen; None if it is gone."""
        with self._lock:
            space = self._spaces.get(namespace)
            found = space.table(plural).get(name) if space else None
            if space is None or found is None:
                return None
            seen, read = found
            if plural == names.ROLE_PLURAL:
                counts = {"keys": sum(1 for roles, _ in space.keys.values() if name in roles)}
            else:
                counts = {"keys": len(space.keys), "violating": sum(
                    1 for _, broken in space.keys.values() if name in broken)}
        if read is None:
            effect = "it grants nothing" if plural == names.ROLE_PLURAL else "it is not enforced"
            ready = ("False", "InvalidSpec",
                     f"the spec is not one the operator can use: {effect}")
        elif plural == names.ROLE_PLURAL:
            areas = sorted({p.area for p in read})
            ready = ("True", "Valid", f"{len(read)} permission"
                     f"{'' if len(read) == 1 else 's'} in {', '.join(areas)}")
        else:
            ready = ("True", "Enforced", f"enforced on every ApiKey in {namespace} "
                     f"(enforcement {read.spec.enforcement})")
        return {**counts, "ready": ready}, seen

    # -- inside -----------------------------------------------------------------------

    def _space(self, namespace: str) -> _Namespace:
        return self._spaces.setdefault(namespace, _Namespace())

    @staticmethod
    def _concerned(namespace: str, space: _Namespace, plural: str, name: str) -> set[Ref]:
        """The keys a role (those naming it) or a policy (all) concerns."""
        return {(namespace, key) for key, (roles, _) in space.keys.items()
                if plural == names.POLICY_PLURAL or name in roles}

    @staticmethod
    def _touched(namespace: str, space: _Namespace,
                 before: tuple[tuple[str, ...], frozenset[str]] | None,
                 after: tuple[tuple[str, ...], frozenset[str]] | None,
                 ) -> set[tuple[str, Ref]]:
        roles = set(before[0] if before else ()) ^ set(after[0] if after else ())
        if before is None or after is None:  # a key came or went: every count moves
            roles = set(before[0] if before else ()) | set(after[0] if after else ())
            changed = set(space.policies)
        else:
            changed = set(before[1] ^ after[1])
        return ({(names.ROLE_PLURAL, (namespace, r)) for r in roles if r in space.roles}
                | {(names.POLICY_PLURAL, (namespace, p)) for p in changed
                   if p in space.policies})


def _meaning(read: Any) -> Any:
    """What a role (its permissions) or policy (its rules) says to keys: its description
    aside."""
    if isinstance(read, policy.Policy):
        return read.spec.model_copy(update={"description": None})
    return read


def _seen(obj: Mapping[str, Any]) -> tuple[str, str, Seen]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""),
            Seen(generation=int(meta.get("generation") or 1),
                  status=obj.get("status") or {}))

"""Effective permissions: what a key may do, from its scopes and the roles it names.

Owns: the action grammar (`<Area>.<Action>`, Action one of Read, Write, Update, Delete;
Write also grants Read, Update and Delete only themselves), turning a key's scopes and
its roles' permissions into grants per `Area.Action`, each either unrestricted or bound
by row filters (alternatives: a row a filter matches is allowed) with the key's context
substituted into `${context.<key>}`, which named roles are missing and which filters
could not be filled, and the versioned JSON the filters travel in to the upstream.
Must not: read the cluster (roles arrive as values), decide a request (the verifier's
decision does), or fail open: a missing role grants nothing, a filter that names a
context entry the key lacks makes its permission grant nothing, and a grant with a
filter never widens to one without.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ACTIONS = ("Read", "Write", "Update", "Delete")
IMPLIES: Mapping[str, tuple[str, ...]] = {"Write": ("Read",)}  # Acrity's levels
FILTERS_VERSION = 1
# a filter value that is exactly `${context.<key>}` takes the key's context value
REFERENCE = re.compile(r"^\$\{context\.([A-Za-z0-9][A-Za-z0-9-]{0,62})\}$")

Filter = tuple[tuple[str, str], ...]  # (field, value), sorted by field: all must match


@dataclass(frozen=True)
class Permission:
    """One entry of an ApiKeyRole's spec.permissions."""

    area: str
    actions: tuple[str, ...]
    filter: Filter = ()  # values are literals or `${context.<key>}`


@dataclass(frozen=True)
class Effective:
    """A key's permissions. `filters`: for a granted `Area.Action` bound by row filters,
    the alternatives (a row any one matches is allowed); a granted one not in it is
    unrestricted."""

    granted: frozenset[str]
    filters: Mapping[str, tuple[Filter, ...]] = field(default_factory=dict)
    roles: tuple[str, ...] = ()  # the roles named that were found, sorted
    missing: tuple[str, ...] = ()  # the roles named that were not found, sorted
    unfilled: tuple[tuple[str, str], ...] = ()  # (role, context key) a filter lacked

    def allows(self, required: Iterable[str]) -> bool:
        return self.granted.issuperset(required)


def with_implied(actions: Iterable[str]) -> tuple[str, ...]:
    """The actions and what they imply, in ACTIONS' order."""
    given = set(actions)
    for action in list(given):
        given.update(IMPLIES.get(action, ()))
    return tuple(action for action in ACTIONS if action in given)


def implied_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """Scopes and what they imply: `Area.Write` also grants `Area.Read`."""
    granted: set[str] = set()
    for scope in scopes:
        area, _, action = scope.rpartition(".")
        granted.update(f"{area}.{each}" for each in with_implied([action]))
    return frozenset(granted)


def fill(filter_: Filter, context: Mapping[str, str]) -> tuple[Filter | None, str | None]:
    """The filter with the key's context in place of each `${context.<key>}`, or None
    and the first context key the key lacks."""
    filled = []
    for name, value in filter_:
        reference = REFERENCE.fullmatch(value)
        if reference is not None:
            if reference.group(1) not in context:
                return None, reference.group(1)
            value = context[reference.group(1)]
        filled.append((name, value))
    return tuple(sorted(filled)), None


def effective(scopes: Iterable[str], role_names: Sequence[str],
              roles: Mapping[str, Sequence[Permission]],
              context: Mapping[str, str]) -> Effective:
    """A key's effective permissions: its scopes (unrestricted) and what each role it
    names grants; `roles` holds the roles of its namespace that exist."""
    unrestricted = set(implied_scopes(scopes))
    bound: dict[str, set[Filter]] = {}
    found, missing, unfilled = [], [], []
    for name in dict.fromkeys(role_names):
        permissions = roles.get(name)
        if permissions is None:
            missing.append(name)
            continue
        found.append(name)
        for permission in permissions:
            filled, lacking = fill(permission.filter, context)
            if filled is None:
                assert lacking is not None
                unfilled.append((name, lacking))
                continue
            for action in with_implied(permission.actions):
                scope = f"{permission.area}.{action}"
                if filled:
                    bound.setdefault(scope, set()).add(filled)
                else:
                    unrestricted.add(scope)
    return Effective(
        granted=frozenset(unrestricted | bound.keys()),
        filters={scope: tuple(sorted(alternatives)) for scope, alternatives
                 in sorted(bound.items()) if scope not in unrestricted},
        roles=tuple(sorted(found)), missing=tuple(sorted(missing)),
        unfilled=tuple(sorted(set(unfilled))))


def filters_document(permissions: Effective, asked: Iterable[str] = ()) -> dict[str, object]:
    """What X-Keywright-Filters carries: `{"v": 1, "filters": {Area: {Action: [filter,
    ...]}}}` for the areas of the scopes asked for (all areas when none was), each
    filter an object of field to value. A granted action missing from it is unbound."""
    areas = {scope.rpartition(".")[0] for scope in asked}
    shown: dict[str, dict[str, list[dict[str, str]]]] = {}
    for scope, alternatives in permissions.filters.items():
        area, _, action = scope.rpartition(".")
        if areas and area not in areas:
            continue
        shown.setdefault(area, {})[action] = [dict(each) for each in alternatives]
    return {"v": FILTERS_VERSION, "filters": shown}


def filters_header(permissions: Effective, asked: Iterable[str] = ()) -> bytes:
    """filters_document as compact JSON in base64url without padding (as in a JWT)."""
    text = json.dumps(filters_document(permissions, asked), separators=(",", ":"),
                      sort_keys=True, ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=")

"""ApiKeyPolicy's rules: whether a key keeps its namespace's policies.

Owns: each rule as a named check (a function of one policy's spec and one `Subject`,
the key as admission or the operator sees it, returning a Violation or None), the chain
that runs every check of every policy, and the words of a violation: the policy, the
key's field, what is wrong and the policy's field that says so, as the webhook refuses
with and the condition says (`ApiKeyPolicy prod-guardrails: write scopes require
spec.ipAllowlist (Invoices.Write; requireIpAllowlistFor: Write)`).
Must not: read the cluster, act on a violation (the webhook refuses, the operator warns
or deactivates per `enforcement`), or stop early: several policies all apply, and a
person fixing a key wants every rule it breaks at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keywright.core import durations, models, permissions

# rule names: constants, as tests, conditions and docs name them
MAX_EXPIRATION = "MaxExpiration"
ALLOWED_AREAS = "AllowedAreas"
ALLOWED_SCOPES = "AllowedScopes"
REQUIRE_IP_ALLOWLIST = "RequireIpAllowlist"
ALLOWED_PREFIXES = "AllowedPrefixes"
MAX_RATE_LIMIT = "MaxRateLimit"
REQUIRE_QUOTA = "RequireQuota"
NAME_FORMAT = "NameFormat"


@dataclass(frozen=True)
class Policy:
    name: str
    spec: models.ApiKeyPolicySpec


@dataclass(frozen=True)
class Subject:
    """A key as the rules see it: its name, its spec, the prefix its key gets (the
    operator's default when the spec names none) and its effective permissions (scopes
    and roles: a permission held through a role counts as one held by scope)."""

    name: str
    spec: models.ApiKeySpec
    prefix: str
    permissions: permissions.Effective


@dataclass(frozen=True)
class Violation:
    policy: str
    rule: str
    field: str
    reason: str
    enforcement: models.Enforcement = "Warn"

    def __str__(self) -> str:
        return f"ApiKeyPolicy {self.policy}: {self.reason}"


Found = tuple[str, str] | None  # (field, reason)
Check = Callable[[models.ApiKeyPolicySpec, Subject], Found]


def max_expiration(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if spec.maxExpiration is None:
        return None
    chosen = durations.parse_expiration(key.spec.expiration)
    if chosen is None:
        return ("spec.expiration", f"spec.expiration Never is not allowed: maxExpiration "
                f"is {spec.maxExpiration}")
    if chosen > durations.parse(spec.maxExpiration):
        return ("spec.expiration", f"spec.expiration {key.spec.expiration} is longer than "
                f"maxExpiration {spec.maxExpiration}")
    return None


def allowed_areas(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if spec.allowedAreas is None:
        return None
    outside = sorted({scope.rpartition(".")[0] for scope in key.permissions.granted}
                     - set(spec.allowedAreas))
    if not outside:
        return None
    where = _where(key, outside[0])
    return (where, f"{where}: area {', '.join(outside)} {_is(outside)} not in allowedAreas "
            f"({', '.join(spec.allowedAreas) or 'none'})")


def allowed_scopes(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if spec.allowedScopes is None:
        return None
    outside = sorted(key.permissions.granted - permissions.implied_scopes(spec.allowedScopes))
    if not outside:
        return None
    where = _where(key, outside[0].rpartition(".")[0])
    return (where, f"{where}: {', '.join(outside)} {_is(outside)} not in allowedScopes "
            f"({', '.join(spec.allowedScopes) or 'none'})")


def require_ip_allowlist(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if not spec.requireIpAllowlistFor or key.spec.ipAllowlist:
        return None
    actions = [a for a in permissions.ACTIONS if a in spec.requireIpAllowlistFor]
    held = sorted(scope for scope in key.permissions.granted
                  if scope.rpartition(".")[2] in actions)
    if not held:
        return None
    kinds = {scope.rpartition(".")[2] for scope in held}
    words = " and ".join(action.lower() for action in actions if action in kinds)
    return ("spec.ipAllowlist", f"{words} scopes require spec.ipAllowlist ({', '.join(held)}; "
            f"requireIpAllowlistFor: {', '.join(actions)})")


def allowed_prefixes(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if spec.allowedPrefixes is None or key.prefix in spec.allowedPrefixes:
        return None
    given = key.prefix if key.spec.prefix else f"(the operator's default, {key.prefix})"
    return ("spec.prefix", f"spec.prefix {given} is not in allowedPrefixes "
            f"({', '.join(spec.allowedPrefixes) or 'none'})")


def max_rate_limit(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    most = spec.maxRateLimit
    if most is None:
        return None
    rate = key.spec.rateLimit
    if rate is None:
        return ("spec.rateLimit", f"spec.rateLimit is required: maxRateLimit is "
                f"{most.requests} per {most.period}")
    # requests per second compared exactly: r / p > R / P  <=>  r * P > R * p
    if rate.requests * durations.parse(most.period).total_seconds() > \
            most.requests * durations.parse(rate.period).total_seconds():
        return ("spec.rateLimit", f"spec.rateLimit {rate.requests} per {rate.period} is "
                f"more than maxRateLimit {most.requests} per {most.period}")
    return None


def require_quota(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if spec.requireQuota and key.spec.quota is None:
        return "spec.quota", "spec.quota is required by requireQuota"
    return None


def name_format(spec: models.ApiKeyPolicySpec, key: Subject) -> Found:
    if spec.nameFormat is None or re.fullmatch(spec.nameFormat, key.name):
        return None
    return "metadata.name", f"metadata.name {key.name} does not match nameFormat " \
        f"{spec.nameFormat}"


CHAIN: Sequence[tuple[str, Check]] = (
    (MAX_EXPIRATION, max_expiration),
    (ALLOWED_AREAS, allowed_areas),
    (ALLOWED_SCOPES, allowed_scopes),
    (REQUIRE_IP_ALLOWLIST, require_ip_allowlist),
    (ALLOWED_PREFIXES, allowed_prefixes),
    (MAX_RATE_LIMIT, max_rate_limit),
    (REQUIRE_QUOTA, require_quota),
    (NAME_FORMAT, name_format),
)


def evaluate(policies: Sequence[Policy], key: Subject) -> list[Violation]:
    """Every rule of every policy the key breaks, by policy name, then in CHAIN order."""
    found = []
    for each in sorted(policies, key=lambda p: p.name):
        for rule, check in CHAIN:
            broken = check(each.spec, key)
            if broken is not None:
                found.append(Violation(each.name, rule, *broken, each.spec.enforcement))
    return found


def _is(items: Sequence[str]) -> str:
    return "is" if len(items) == 1 else "are"


def _where(key: Subject, area: str) -> str:
    """Which field gives the key an area: its scopes, else its roles."""
    return "spec.scopes" if any(scope.rpartition(".")[0] == area
                                for scope in key.spec.scopes) else "spec.roles"

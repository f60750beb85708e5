"""The ApiKey resource as pydantic models: the single source of the CRD schema.

Owns: every field of spec and status, its description (what `kubectl explain` shows),
its pattern, its default, and the checks only code can make (`validate_spec`).
Must not: do I/O. Field names are the CRD's camelCase names on purpose, so the models and
the YAML read the same.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keywright.core import durations, names, permissions, recipients, tokens

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_DATA_KEY = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern, not a password
SCOPE = r"^[A-Za-z][A-Za-z0-9]*\.(Read|Write|Update|Delete)$"
AREA = r"^[A-Za-z][A-Za-z0-9]*$"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}(/(3[0-2]|[12]?[0-9]))?"
IPV6 = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?"
ADDRESS = rf"^({IPV4}|{IPV6})$"
# a context entry travels as the header X-Keywright-Context-<key>: <value>
CONTEXT_KEY = r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$"
CONTEXT_VALUE = r"^[^\x00-\x1f\x7f]*$"  # no control characters: no header splitting

# What each pattern means, in words: the webhook's refusals and the CRD's CEL rules say
# this instead of quoting the regex (crd.py turns every pattern into such a rule).
WORDS = {
    DNS_SUBDOMAIN: "must be a DNS subdomain name: lower-case letters, digits, '-' and '.', "
                   "beginning and ending with a letter or digit",
    SECRET_DATA_KEY: "must be a Secret data key: letters, digits, '-', '_' and '.'",
    SCOPE: "must be a scope, <Area>.<Action>: a letter, then letters or digits, a dot, "
           "then Read, Write, Update or Delete (for example Reviews.Read)",
    AREA: "must be an area: a letter, then letters or digits (for example Reviews)",
    ADDRESS: "must be an IPv4 or IPv6 address or CIDR (for example 203.0.113.0/24)",
    CONTEXT_VALUE: "must not contain control characters: it travels as a header value",
    durations.PATTERN: "must be a duration: a whole number and s, m, h or d (for example "
                       "1h, or 0s)",
    durations.POSITIVE_PATTERN: "must be a duration above zero: a whole number and s, m, h "
                                "or d (for example 30d)",
    durations.EXPIRATION_PATTERN: "must be Never, or a duration above zero: a whole number "
                                  "and s, m, h or d (for example 90d)",
    tokens.PREFIX_PATTERN: "must be a key prefix: 2 to 16 characters, a lower-case letter "
                           "and then lower-case letters or digits",
}

Phase = Literal["Active", "Inactive", "Expired", "Failed"]
MAX_RECIPIENTS = 16
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def _x(**extra: Any) -> dict[str, Any]:
    """Schema keys pydantic has no words for (x-kubernetes-*), passed through to the CRD."""
    return {key.replace("_", "-"): value for key, value in extra.items()}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Spec = TypeVar("_Spec", bound=_Model)


class SecretTarget(_Model):
    """Where the plaintext key is written."""

    create: Annotated[bool, Field(
        True, description="false: no Secret at all; the key is only sealed to "
                          "spec.delivery.age.recipients (it then exists nowhere in the "
                          "cluster, and cannot be injected into Pods). Immutable once the "
                          "key is issued.")]

    name: Annotated[str | None, Field(
        None, max_length=253, pattern=DNS_SUBDOMAIN,
        description="Name of the Secret in the ApiKey's namespace. Default: the ApiKey's "
                    "name. Immutable once the key is issued: make a new ApiKey to deliver "
                    "a key elsewhere.")]
    key: Annotated[str, Field(
        names.DEFAULT_DATA_KEY, max_length=253, pattern=SECRET_DATA_KEY,
        description=f"Data key that holds the plaintext key. Default: "
                    f"{names.DEFAULT_DATA_KEY}. Immutable once the key is issued.")]
    labels: Annotated[dict[str, str], Field(
        default_factory=dict, description="Extra labels for the Secret.")]
    annotations: Annotated[dict[str, str], Field(
        default_factory=dict, description="Extra annotations for the Secret.")]


class AgeDelivery(_Model):
    recipients: Annotated[list[Annotated[str, Field(max_length=recipients.LENGTH)]], Field(
        default_factory=list, max_length=MAX_RECIPIENTS,
        json_schema_extra=_x(x_kubernetes_list_type="set"),
        description="age X25519 recipients (age1..., from age-keygen -y): each new key is "
                    "encrypted to all of them, and the armored ciphertext published in "
                    "status.sealed, which only they can open (age -d -i KEYFILE).")]


class Delivery(_Model):
    """Who receives the key besides (or, with secret.create: false, instead of) a Secret."""

    age: Annotated[AgeDelivery, Field(default_factory=AgeDelivery, description=(
        "Seal each new key to these age recipients."))]


class RestartTarget(_Model):
    kind: Annotated[Literal["Deployment", "StatefulSet", "DaemonSet"], Field(
        description="Workload kind, in the ApiKey's namespace.")]
    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN,
                               description="Workload name.")]


class Rotation(_Model):
    """When the key is replaced and what happens to the previous one."""

    every: Annotated[str | None, Field(
        None, max_length=20, pattern=durations.POSITIVE_PATTERN,
        description="Rotate on this schedule: <n>s|m|h|d, counted from the last rotation "
                    "(or creation), or from the moment it was added to an issued key or "
                    "shortened, whichever is latest.")]
    gracePeriod: Annotated[str | None, Field(
        None, max_length=20, pattern=durations.PATTERN,
        description="How long the previous key stays valid after a rotation: <n>s|m|h|d. "
                    "Default: with a schedule, a tenth of every, at most 24h; without "
                    "one, 0s. 0s: invalid at once.")]
    restartTargets: Annotated[list[RestartTarget], Field(
        default_factory=list, max_length=32,
        description="Deployments, StatefulSets and DaemonSets rolled after each rotation.")]


class RateLimit(_Model):
    requests: Annotated[int, Field(ge=1, description="Requests allowed per period.")]
    period: Annotated[str, Field(max_length=20, pattern=durations.POSITIVE_PATTERN,
                                 description="The period: <n>s|m|h|d.")]


class QuotaRefill(_Model):
    every: Annotated[str, Field(max_length=20, pattern=durations.POSITIVE_PATTERN,
                                description="How often credits are added: <n>s|m|h|d.")]
    amount: Annotated[int | None, Field(
        None, ge=1, le=1_000_000_000,
        description="Credits added at each refill, up to the limit. Default: the limit.")]


class Quota(_Model):
    limit: Annotated[int, Field(ge=1, le=1_000_000_000, description=(
        "Credits: each allowed request spends one; none left answers 429 "
        "USAGE_LIMIT_REACHED. A new limit applies at the next refill or reset."))]
    refill: Annotated[QuotaRefill | None, Field(
        None, description="Lazy refills; none: the credits are spent once for good "
                          "(until the reset annotation).")]


class ApiKeySpec(_Model):
    """The desired API key. Only `expiration` is required."""

    description: Annotated[str | None, Field(
        None, max_length=1024, description="Free text: what the key is for, who owns it.")]
    scopes: Annotated[list[Annotated[str, Field(max_length=128, pattern=SCOPE)]], Field(
        default_factory=list, max_length=64,
        json_schema_extra=_x(x_kubernetes_list_type="set"),
        description="Granted scopes, <Area>.<Action> with Action Read, Write, Update "
                    "or Delete; Area.Write also satisfies Area.Read, Update and Delete "
                    "only themselves. Example: Reviews.Read.")]
    roles: Annotated[list[Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]], Field(
        default_factory=list, max_length=16,
        json_schema_extra=_x(x_kubernetes_list_type="set"),
        description="ApiKeyRoles of this namespace whose permissions the key holds too. "
                    "A role that does not exist grants nothing.")]
    expiration: Annotated[str, Field(
        max_length=20, pattern=durations.EXPIRATION_PATTERN,
        json_schema_extra=_x(x_kubernetes_validations=[{
            "rule": "self == oldSelf",
            "message": "expiration is immutable: it is chosen once, at creation"}]),
        description="Lifetime counted from creation: Never or <n>s|m|h|d "
                    "(presets 1h 1d 7d 30d 90d 180d 360d). Immutable; rotation does "
                    "not extend it.")]
    active: Annotated[bool, Field(
        True, description="false deactivates the key (history kept); true reactivates it "
                          "unless it has expired.")]
    ipAllowlist: Annotated[list[Annotated[str, Field(max_length=64, pattern=ADDRESS)]], Field(
        default_factory=list, max_length=256,
        description="IPv4/IPv6 addresses or CIDRs the key may be used from. "
                    "Empty: any origin.")]
    prefix: Annotated[str | None, Field(
        None, max_length=tokens.MAX_PREFIX_LENGTH, pattern=tokens.PREFIX_PATTERN,
        description="Key prefix, ^[a-z][a-z0-9]{1,15}$. Default: the operator's setting.")]
    context: Annotated[dict[str, Annotated[str, Field(max_length=1024, pattern=CONTEXT_VALUE)]],
                       Field(default_factory=dict, max_length=32, description=(
                           "Strings handed downstream as X-Keywright-Context-<key> on "
                           "success. Keys: letters, digits and '-', at most 63."))]
    rateLimit: Annotated[RateLimit | None, Field(
        None, description="Requests per period; beyond it the verifier answers 429.")]
    quota: Annotated[Quota | None, Field(
        None, description="Usage credits, refilled on a schedule; exhausted, the verifier "
                          "answers 429 USAGE_LIMIT_REACHED.")]
    secret: Annotated[SecretTarget, Field(
        default_factory=SecretTarget,
        description="Where the plaintext key is written. Fixed once the key is issued.")]
    delivery: Annotated[Delivery, Field(
        default_factory=Delivery,
        description="Sealed delivery: the key encrypted to people's public keys.")]
    rotation: Annotated[Rotation, Field(
        default_factory=Rotation, description="Rotation schedule and grace period.")]
    deactivateAfterUnused: Annotated[str | None, Field(
        None, max_length=20, pattern=durations.POSITIVE_PATTERN,
        description="Deactivate the key once it has not been used for this long: <n>s|m|h|d, "
                    "counted from its last use (status.lastUsedAt), creation or "
                    "reactivation, whichever is latest. Default: the shortest of its "
                    "namespace's ApiKeyPolicies' deactivateAfterUnused; none, never.")]

    @field_validator("scopes")
    @classmethod
    def _unique_scopes(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("scopes must not repeat")
        return value

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("roles must not repeat")
        return value


class Condition(_Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    lastTransitionTime: Timestamp
    observedGeneration: int | None = None


class PreviousKey(_Model):
    revision: int
    hash: str
    lastCharacters: str
    retiresAt: Timestamp


class Usage(_Model):
    remaining: int
    refilledAt: Timestamp
    resetQuota: str | None = Field(
        default=None, description="The keywright.dev/reset-quota value these credits "
        "count from; a quota restarts from them only while the annotation still has it.")


class Sealed(_Model):
    revision: Annotated[int, Field(description="The revision the ciphertext holds.")]
    recipients: Annotated[list[str], Field(
        default_factory=list, description="Whom it is sealed to.")]
    ciphertext: Annotated[str, Field(description=(
        "The key, age-encrypted to the recipients, ASCII-armored: age -d -i KEYFILE."))]


class Deactivation(_Model):
    reason: Annotated[str, Field(description="PolicyViolation: an ApiKeyPolicy with "
                                             "enforcement Deactivate is broken; Unused: "
                                             "deactivateAfterUnused has passed without use.")]
    message: str
    since: Timestamp


class ApiKeyStatus(_Model):
    """What the operator observed and did. Written by Keywright only."""

    model_config = ConfigDict(extra="allow", frozen=True)

    phase: Phase | None = Field(None, description="Active, Inactive, Expired or Failed; "
                                                  "absent until the operator first decides.")
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, SecretSynced, Expired, ExpiringSoon, Used, "
                                          "RolesResolved and PolicyCompliant conditions.",
        json_schema_extra=_x(x_kubernetes_list_type="map", x_kubernetes_list_map_keys=["type"]))
    observedGeneration: int | None = None
    revision: int | None = Field(None, description="1 at issue, +1 per rotation.")
    prefix: str | None = None
    lastCharacters: str | None = Field(None, description="Last 4 characters of the key.")
    keyPreview: str | None = Field(None, description="<prefix>_...<lastCharacters>.")
    hash: str | None = Field(None, description="hmac-sha256:<pepper version>:<base64url>.")
    previous: list[PreviousKey] = Field(
        default_factory=list, description="Previous keys still inside their grace period.")
    secretName: str | None = None
    createdAt: Timestamp | None = None
    expiresAt: Timestamp | None = Field(None, description="Fixed at creation; absent for Never.")
    rotatedAt: Timestamp | None = None
    nextRotationAt: Timestamp | None = None
    scheduledEvery: str | None = Field(
        None, description="The rotation.every the schedule counts with.")
    scheduleSince: Timestamp | None = Field(
        None, description="When that schedule was added or shortened: it counts from here "
                          "if that is later than the last rotation.")
    lastUsedAt: Timestamp | None = Field(None, description="Written by the verifier.")
    usage: Usage | None = Field(None, description="With spec.quota: the credits left and "
                                                  "the last refill, written by the verifier.")
    lastUsedByRevision: dict[str, Timestamp] = Field(
        default_factory=dict, description="Last use per revision, written by the verifier.")
    lastRotateRequest: str | None = Field(
        None, description="The keywright.dev/rotate value last acted on (done or refused).")
    lastRotateRefused: str | None = Field(
        None, description="The last keywright.dev/rotate value refused, until a rotation.")
    restartedRevision: int | None = Field(
        None, description="The revision whose restartTargets have been rolled.")
    sealed: Sealed | None = Field(
        None, description="With spec.delivery.age: the current key, sealed to its "
                          "recipients, anyone may pass it on; only they can open it.")
    deactivated: Deactivation | None = Field(
        None, description="Set while Keywright itself keeps the key from working although "
                          "spec.active is true: why, and since when.")
    expiryWarning: str | None = Field(
        None, description="The shortest expiry warning threshold already announced by an "
                          "ExpiringSoon event, e.g. 1d.")
    reactivatedAt: Timestamp | None = Field(
        None, description="When the key was last reactivated (spec.active turned true, or a "
                          "new keywright.dev/reactivate value): the unused clock restarts.")
    lastReactivateRequest: str | None = Field(
        None, description="The keywright.dev/reactivate value last acted on.")


def validate_spec(raw: Any) -> ApiKeySpec:
    """The spec, or SpecError naming the first field that is wrong and why."""
    spec = _parsed(ApiKeySpec, raw)
    for index, entry in enumerate(spec.ipAllowlist):
        try:
            ipaddress.ip_network(entry, strict=True)
        except ValueError as exc:
            raise SpecError(f"spec.ipAllowlist[{index}]", f"{entry!r}: {exc}") from None
    for key in spec.context:
        if not re.fullmatch(CONTEXT_KEY, key):
            raise SpecError(f"spec.context[{key!r}]", "a context key must be 1 to 63 letters, "
                            "digits or '-', not starting with '-': it becomes the header "
                            "X-Keywright-Context-<key>")
    checks: list[tuple[str, str | None, Callable[[str], object]]] = [
        ("spec.expiration", spec.expiration, durations.parse_expiration)]
    checks += [("spec.rotation.every", spec.rotation.every, durations.parse),
               ("spec.rotation.gracePeriod", spec.rotation.gracePeriod, durations.parse)]
    if spec.rateLimit:
        checks.append(("spec.rateLimit.period", spec.rateLimit.period, durations.parse))
    if spec.quota and spec.quota.refill:
        checks.append(("spec.quota.refill.every", spec.quota.refill.every, durations.parse))
    if spec.deactivateAfterUnused:
        checks.append(("spec.deactivateAfterUnused", spec.deactivateAfterUnused,
                       durations.parse))
    for where, value, parse in checks:
        if value is not None:
            try:
                parse(value)
            except durations.DurationError as exc:
                raise SpecError(where, str(exc)) from None
    if len(set(spec.delivery.age.recipients)) != len(spec.delivery.age.recipients):
        raise SpecError("spec.delivery.age.recipients", "recipients must not repeat")
    for index, recipient in enumerate(spec.delivery.age.recipients):
        wrong = recipients.problem(recipient)
        if wrong is not None:
            raise SpecError(f"spec.delivery.age.recipients[{index}]",
                            f"{recipient[:70]!r} {wrong}")
    every, grace = spec.rotation.every, spec.rotation.gracePeriod
    if every and grace is not None and durations.parse(grace) >= durations.parse(every):
        raise SpecError("spec.rotation.gracePeriod",
                        f"{spec.rotation.gracePeriod} is not shorter than rotation.every "
                        f"({every}): previous keys would pile up")
    return spec


Action = Literal["Read", "Write", "Update", "Delete"]
Enforcement = Literal["Warn", "Deactivate"]


class ApiKeyPolicySpec(_Model):
    """Rules every ApiKey in the policy's namespace must keep (several policies all
    apply). Enforced at admission; keys that predate a policy are warned or deactivated
    per `enforcement`."""

    description: Annotated[str | None, Field(
        None, max_length=1024, description="Free text: what the policy is for.")]
    maxExpiration: Annotated[str | None, Field(
        None, max_length=20, pattern=durations.POSITIVE_PATTERN,
        description="The longest spec.expiration allowed, <n>s|m|h|d; Never is refused "
                    "when this is set.")]
    allowedAreas: Annotated[list[Annotated[str, Field(max_length=64, pattern=AREA)]] | None,
                            Field(None, max_length=64, description=(
                                "The only areas a key may hold permissions in, by scope "
                                "or through a role."))]
    allowedScopes: Annotated[list[Annotated[str, Field(max_length=128, pattern=SCOPE)]] | None,
                             Field(None, max_length=128, description=(
                                 "The only scopes a key may hold, by scope or through a "
                                 "role; Area.Write allows Area.Read too."))]
    requireIpAllowlistFor: Annotated[list[Action], Field(
        default_factory=list, max_length=4,
        description="Actions that need spec.ipAllowlist: a key holding any of them, by "
                    "scope or through a role, must have one.")]
    allowedPrefixes: Annotated[list[Annotated[str, Field(
        max_length=tokens.MAX_PREFIX_LENGTH, pattern=tokens.PREFIX_PATTERN)]] | None, Field(
        None, max_length=32, description="The only key prefixes allowed.")]
    maxRateLimit: Annotated[RateLimit | None, Field(
        None, description="Every key needs a spec.rateLimit of at most this many requests "
                          "per this period.")]
    requireQuota: Annotated[bool, Field(False, description="Every key needs a spec.quota.")]
    nameFormat: Annotated[str | None, Field(
        None, max_length=256, description="A regular expression each ApiKey's name must "
                                          "match in full, e.g. ^[a-z]+-[a-z]+-(dev|prod)$.")]
    deactivateAfterUnused: Annotated[str | None, Field(
        None, max_length=20, pattern=durations.POSITIVE_PATTERN,
        description="A default, not a rule: keys of the namespace that set no "
                    "spec.deactivateAfterUnused are deactivated after this long unused "
                    "(the shortest, if several policies set one).")]
    enforcement: Annotated[Enforcement, Field(
        "Warn", description="For keys that predate the policy or a change to it: Warn "
                            "(condition PolicyCompliant=False and a Warning event) or "
                            "Deactivate (also stop the key working).")]


class RolePermission(_Model):
    """What a role grants in one area: actions, optionally bound by a row filter."""

    area: Annotated[str, Field(max_length=64, pattern=AREA, description=(
        "The area, as in a scope's <Area>.<Action>: a letter, then letters or digits."))]
    actions: Annotated[list[Action], Field(
        min_length=1, max_length=4, json_schema_extra=_x(x_kubernetes_list_type="set"),
        description="Read, Write, Update or Delete; Write also grants Read.")]
    filter: Annotated[dict[str, Annotated[str, Field(max_length=256, pattern=CONTEXT_VALUE)]],
                      Field(default_factory=dict, max_length=16, description=(
                          "Row filter: field -> value, all to match. A value that is "
                          "exactly ${context.<key>} takes the key's spec.context value; a "
                          "key without that entry gets nothing from this permission."))]


class ApiKeyRoleSpec(_Model):
    """Permissions defined once and named by ApiKeys' spec.roles."""

    description: Annotated[str | None, Field(
        None, max_length=1024, description="Free text: what the role is for.")]
    permissions: Annotated[list[RolePermission], Field(
        min_length=1, max_length=64, description="What a key with this role may do.")]


class _Summary(_Model):
    """What the operator observed of a role or a policy. Written by Keywright only."""

    model_config = ConfigDict(extra="allow", frozen=True)

    conditions: list[Condition] = Field(
        default_factory=list, description="Ready: whether the operator can use the spec.",
        json_schema_extra=_x(x_kubernetes_list_type="map", x_kubernetes_list_map_keys=["type"]))
    observedGeneration: int | None = None


class ApiKeyRoleStatus(_Summary):
    keys: int | None = Field(None, description="ApiKeys of the namespace that name the role.")


class ApiKeyPolicyStatus(_Summary):
    keys: int | None = Field(None, description="ApiKeys of the namespace (the policy applies "
                                               "to all of them).")
    violating: int | None = Field(None, description="How many of them break the policy.")


FILTER_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,62}$")


def validate_role_spec(raw: Any) -> ApiKeyRoleSpec:
    """An ApiKeyRole's spec, or SpecError naming the first field that is wrong."""
    spec = _parsed(ApiKeyRoleSpec, raw)
    for index, permission in enumerate(spec.permissions):
        where = f"spec.permissions[{index}]"
        if len(set(permission.actions)) != len(permission.actions):
            raise SpecError(f"{where}.actions", "actions must not repeat")
        for name, value in permission.filter.items():
            if not FILTER_FIELD.fullmatch(name):
                raise SpecError(f"{where}.filter[{name[:64]!r}]", "a filter field must be 1 "
                                "to 63 letters, digits, '_', '.' or '-', starting with a "
                                "letter or '_'")
            if "${" in value and not permissions.REFERENCE.fullmatch(value):
                raise SpecError(f"{where}.filter[{name!r}]", "a reference must be the "
                                "whole value, ${context.<key>} with a context key of 1 to "
                                "63 letters, digits or '-'")
    return spec


def role_permissions(spec: ApiKeyRoleSpec) -> tuple[permissions.Permission, ...]:
    """The role's permissions as core/permissions.py takes them."""
    return tuple(permissions.Permission(p.area, tuple(p.actions), tuple(sorted(p.filter.items())))
                 for p in spec.permissions)


def validate_policy_spec(raw: Any) -> ApiKeyPolicySpec:
    """An ApiKeyPolicy's spec, or SpecError naming the first field that is wrong."""
    spec = _parsed(ApiKeyPolicySpec, raw)
    if spec.nameFormat is not None:
        try:
            re.compile(spec.nameFormat)
        except re.error as exc:
            raise SpecError("spec.nameFormat", f"not a regular expression: {exc}") from None
    if spec.maxRateLimit is not None:
        try:
            durations.parse(spec.maxRateLimit.period)
        except durations.DurationError as exc:
            raise SpecError("spec.maxRateLimit.period", str(exc)) from None
    for where, value in (("spec.maxExpiration", spec.maxExpiration),
                         ("spec.deactivateAfterUnused", spec.deactivateAfterUnused)):
        if value is not None:
            try:
                durations.parse(value)
            except durations.DurationError as exc:
                raise SpecError(where, str(exc)) from None
    return spec


def _parsed(model: type[_Spec], raw: Any) -> _Spec:
    """A spec read by its model, or SpecError naming the first field pydantic refused."""
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise SpecError.from_pydantic(exc) from None


class SpecError(ValueError):
    """A spec field is wrong: `field` is its path, `reason` what is wrong with it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> SpecError:
        first = exc.errors(include_url=False)[0]
        path = "spec" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
        words = WORDS.get((first.get("ctx") or {}).get("pattern", ""))
        if first["type"] == "string_pattern_mismatch" and words:  # words, not the regex
            if first["loc"][0] == "context":  # a context value may be a credential
                return cls(path, words)
            return cls(path, f"{str(first['input'])[:64]!r} {words}")
        return cls(path, first["msg"])

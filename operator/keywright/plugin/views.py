"""What `kubectl apikey` shows and builds, pure: tables as kubectl prints them, times in
words ("in 12d", "3h ago"), the filters of `list`, and the ApiKey a `create` asks for.

Owns: the columns of `list` and their words, relative times, `--expiring` and
`--unused`, and turning `create`'s flags into a manifest (the server checks it: the
CRD's schema and the admission webhook say what is wrong, naming the field).
Must not: do I/O, read the clock (`now` is a parameter), or import pydantic or the
Kubernetes client (the plugin starts in tens of milliseconds).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from keywright.core import durations, names, times

LIST_COLUMNS = ("NAME", "ACTIVE", "PHASE", "KEY", "SCOPES/ROLES", "EXPIRES", "LAST USED",
                "AGE")
RATE = re.compile(r"^([1-9][0-9]*)/([1-9][0-9]*[smhd])$")


class FlagError(ValueError):
    """A flag's value cannot be used; the message names the flag."""


def ago(then: datetime, now: datetime) -> str:
    """kubectl's short age: 45s, 12m, 3h, 5d, 2y (whole units, rounded down)."""
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit == "y" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def expires_words(status: Mapping[str, Any], now: datetime) -> str:
    """EXPIRES: "in 12d", "expired 3h ago", "never", or "-" before the first decision."""
    at = status.get("expiresAt")
    if at:
        when = times.parse(at)
        return f"in {ago(now, when)}" if when > now else f"expired {ago(when, now)} ago"
    return "never" if status.get("createdAt") else "-"


def last_used_words(status: Mapping[str, Any], now: datetime) -> str:
    used = status.get("lastUsedAt")
    return f"{ago(times.parse(used), now)} ago" if used else "never"


def list_row(apikey: Mapping[str, Any], now: datetime, all_namespaces: bool) -> list[str]:
    meta, spec = apikey.get("metadata") or {}, apikey.get("spec") or {}
    status = apikey.get("status") or {}
    granted = [*(spec.get("scopes") or []), *(f"role:{r}" for r in spec.get("roles") or [])]
    active = "false" if spec.get("active") is False else "true"
    row = [str(meta.get("name")), active, str(status.get("phase") or "-"),
           str(status.get("keyPreview") or "-"), ",".join(granted) or "-",
           expires_words(status, now), last_used_words(status, now),
           ago(times.parse(meta["creationTimestamp"]), now)]
    return [str(meta.get("namespace")), *row] if all_namespaces else row


def expiring_within(apikey: Mapping[str, Any], window: timedelta, now: datetime) -> bool:
    """An active key whose expiry falls within `window` from now (not already past)."""
    at = (apikey.get("status") or {}).get("expiresAt")
    return isinstance(at, str) and now < times.parse(at) <= now + window


def unused_for(apikey: Mapping[str, Any], window: timedelta, now: datetime) -> bool:
    """Not used for `window`, counted as the operator counts deactivateAfterUnused: from
    its last use, creation or reactivation, whichever is latest."""
    status, meta = apikey.get("status") or {}, apikey.get("metadata") or {}
    found = [times.parse(t) for t in (status.get("lastUsedAt"), status.get("reactivatedAt"),
                                       meta.get("creationTimestamp")) if isinstance(t, str)]
    return bool(found) and max(found) <= now - window


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, no borders."""
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    lines = ["   ".join(str(cell).ljust(width) for cell, width in zip(r, widths, strict=True))
             .rstrip() for r in (header, *rows)]
    return "\n".join(lines)


def duration_flag(flag: str, value: str) -> timedelta:
    try:
        return durations.parse(value)
    except durations.DurationError as exc:
        raise FlagError(f"{flag}: {value!r}: {exc}") from None


def rate_flag(value: str) -> dict[str, Any]:
    """`--rate 600/1m` as a spec.rateLimit."""
    found = RATE.fullmatch(value.strip())
    if found is None:
        raise FlagError(f"--rate: {value!r} must be <requests>/<period>, for example 600/1m")
    return {"requests": int(found.group(1)), "period": found.group(2)}


def quota_flag(value: str) -> dict[str, Any]:
    """`--quota 10000` or `--quota 10000/30d` (refilled every 30d) as a spec.quota."""
    limit, _, every = value.strip().partition("/")
    if not limit.isdecimal() or int(limit) < 1:
        raise FlagError(f"--quota: {value!r} must be <credits> or <credits>/<refill "
                        "period>, for example 10000/30d")
    quota: dict[str, Any] = {"limit": int(limit)}
    if every:
        duration_flag("--quota", every)
        quota["refill"] = {"every": every}
    return quota


def restart_flag(value: str) -> dict[str, str]:
    """`--restart deployment/NAME` as a rotation restart target."""
    kinds = {"deployment": "Deployment", "deploy": "Deployment", "statefulset": "StatefulSet",
             "sts": "StatefulSet", "daemonset": "DaemonSet", "ds": "DaemonSet"}
    kind, _, name = value.partition("/")
    if kind.lower() not in kinds or not name:
        raise FlagError(f"--restart: {value!r} must be deployment/NAME, statefulset/NAME "
                        "or daemonset/NAME")
    return {"kind": kinds[kind.lower()], "name": name}


def manifest(name: str, namespace: str, *, expiration: str, scopes: Sequence[str] = (),
             roles: Sequence[str] = (), allow: Sequence[str] = (), rate: str | None = None,
             quota: str | None = None, description: str | None = None,
             secret: str | None = None, restart: Sequence[str] = (),
             seal_to: Sequence[str] = (), no_secret: bool = False) -> dict[str, Any]:
    """The ApiKey `create` applies (or prints, with --dry-run=client)."""
    spec: dict[str, Any] = {"expiration": expiration}
    if description:
        spec["description"] = description
    if scopes:
        spec["scopes"] = list(scopes)
    if roles:
        spec["roles"] = list(roles)
    if allow:
        spec["ipAllowlist"] = list(allow)
    if rate:
        spec["rateLimit"] = rate_flag(rate)
    if quota:
        spec["quota"] = quota_flag(quota)
    if secret or no_secret:
        spec["secret"] = {"create": False} if no_secret else {"name": secret}
    if seal_to:
        spec["delivery"] = {"age": {"recipients": list(seal_to)}}
    if restart:
        spec["rotation"] = {"restartTargets": [restart_flag(r) for r in restart]}
    return {"apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def recipients_file(text: str) -> list[str]:
    """The recipients of an age recipients file: one per line, `#` comments ignored."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


IN_USE = timedelta(minutes=2)  # the verifiers record a use at most once a minute


def use_words(used: str | None, now: datetime, current: bool) -> str:
    """A revision's last use in words: in use, or since when it has been quiet."""
    if not used:
        return "never used"
    when = times.parse(used)
    if now - when <= IN_USE:
        return "in use"
    words = f"last used {ago(when, now)} ago"
    return words if current else f"{words} (traffic stopped)"


def consumers(pods: Sequence[Mapping[str, Any]], secret: str) -> list[str]:
    """The Pods that take the Secret: in an env var, in envFrom, or as a volume."""
    found = []
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        uses = any(((var.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret
                   for c in containers for var in c.get("env") or [])
        uses = uses or any((source.get("secretRef") or {}).get("name") == secret
                           for c in containers for source in c.get("envFrom") or [])
        uses = uses or any((volume.get("secret") or {}).get("secretName") == secret
                           for volume in spec.get("volumes") or [])
        if uses:
            found.append(str((pod.get("metadata") or {}).get("name")))
    return sorted(found)


def describe(apikey: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
             pods: Sequence[Mapping[str, Any]] | None, now: datetime) -> dict[str, Any]:
    """What `describe` says of an ApiKey, as data (printed as text, JSON or YAML)."""
    meta, spec = apikey.get("metadata") or {}, apikey.get("spec") or {}
    status = apikey.get("status") or {}
    used = status.get("lastUsedByRevision") or {}
    current = status.get("revision")
    revisions = [{"revision": p.get("revision"), "key": f"{status.get('prefix', 'kw')}_..."
                  f"{p.get('lastCharacters')}", "retiresAt": p.get("retiresAt"),
                  "use": use_words(used.get(str(p.get("revision"))), now, False)}
                 for p in status.get("previous") or []]
    if current:
        revisions.append({"revision": current, "key": status.get("keyPreview"),
                          "retiresAt": None,
                          "use": use_words(used.get(str(current)), now, True)})
    targets = (spec.get("rotation") or {}).get("restartTargets") or []
    rolled = status.get("restartedRevision") or (1 if current == 1 else None)
    secret = status.get("secretName")
    return {
        "name": meta.get("name"), "namespace": meta.get("namespace"),
        "phase": status.get("phase"), "active": spec.get("active", True),
        "scopes": spec.get("scopes") or [], "roles": spec.get("roles") or [],
        "expires": expires_words(status, now), "expiresAt": status.get("expiresAt"),
        "nextRotationAt": status.get("nextRotationAt"),
        "revisions": revisions,
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")}
                       for c in status.get("conditions") or []],
        "restartTargets": [{**t, "rolled": bool(rolled) and rolled == current}
                           for t in targets],
        "secret": secret,
        "sealedTo": (status.get("sealed") or {}).get("recipients"),
        "consumers": consumers(pods, secret) if pods is not None and secret else None,
        "events": [{"type": e.get("type"), "reason": e.get("reason"),
                    "age": ago(times.parse(e["lastTimestamp"]), now)
                    if e.get("lastTimestamp") else "-", "message": e.get("message")}
                   for e in events],
    }


def describe_text(found: Mapping[str, Any]) -> str:
    """`describe` as kubectl prints such things: labelled lines, then tables."""
    grants = [*found["scopes"], *(f"role:{r}" for r in found["roles"])]
    lines = [f"Name:        {found['name']}", f"Namespace:   {found['namespace']}",
             f"Phase:       {found['phase'] or '-'} (active: "
             f"{str(found['active']).lower()})",
             f"Grants:      {', '.join(grants) or '-'}",
             f"Expires:     {found['expires']}"
             + (f" ({found['expiresAt']})" if found["expiresAt"] else ""),
             f"Rotation:    next at {found['nextRotationAt']}" if found["nextRotationAt"]
             else "Rotation:    on request"]
    if found["secret"]:
        lines.append(f"Secret:      {found['secret']}")
    if found["sealedTo"]:
        lines.append(f"Sealed to:   {', '.join(found['sealedTo'])}")
    if found["consumers"] is not None:
        lines.append(f"Used by:     {', '.join(found['consumers']) or 'no Pod'}")
    lines += ["", "Keys:"]
    for rev in found["revisions"]:
        until = f", valid until {rev['retiresAt']}" if rev["retiresAt"] else " (current)"
        lines.append(f"  revision {rev['revision']}: {rev['key']}{until}: {rev['use']}")
    if found["restartTargets"]:
        lines += ["", "Restart targets:"]
        lines += [f"  {t['kind']}/{t['name']}: "
                  f"{'rolled for the current revision' if t['rolled'] else 'not rolled yet'}"
                  for t in found["restartTargets"]]
    lines += ["", "Conditions:"]
    if found["conditions"]:
        lines.append(textwrap_table(("TYPE", "STATUS", "REASON", "MESSAGE"),
                                    [[c["type"], c["status"], c["reason"], c["message"]]
                                     for c in found["conditions"]]))
    lines += ["", "Events:"]
    lines.append(textwrap_table(("TYPE", "REASON", "AGE", "MESSAGE"),
                                [[e["type"], e["reason"], e["age"], e["message"]]
                                 for e in found["events"]]) if found["events"] else "  <none>")
    return "\n".join(lines)


def textwrap_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return "\n".join(f"  {line}" for line in table(header, [[str(c) for c in r]
                                                             for r in rows]).splitlines())


OK, FAILED, UNKNOWN = "ok", "failed", "unknown"
SKEW_LIMIT = timedelta(seconds=5)  # beyond this, "expires at" here and there disagree


def served(discovery: Mapping[str, Any] | None) -> tuple[str, str]:
    """The CRD check from the API group's discovery document (any user may read it)."""
    if discovery is None:
        return FAILED, (f"{names.GROUP}/{names.VERSION} is not served: Keywright's CRDs are "
                        "not installed")
    plurals = {r.get("name") for r in discovery.get("resources") or []}
    wanted = [names.PLURAL, names.ROLE_PLURAL, names.POLICY_PLURAL]
    missing = [p for p in wanted if p not in plurals]
    if missing:
        return FAILED, f"{names.VERSION} lacks {', '.join(missing)}: the CRDs are older"
    return OK, f"{', '.join(wanted)} served at {names.GROUP}/{names.VERSION}"


def deployment_ready(found: Mapping[str, Any] | None, name: str,
                     namespace: str) -> tuple[str, str]:
    if found is None:
        return UNKNOWN, (f"no Deployment {namespace}/{name} (not installed from deploy/, or "
                         "you may not read it)")
    want = int((found.get("spec") or {}).get("replicas") or 0)
    ready = int((found.get("status") or {}).get("readyReplicas") or 0)
    return (OK if want and ready >= want else FAILED), f"{ready}/{want} replicas ready"


def skew(server_date: str | None, now: datetime) -> tuple[str, str]:
    """This machine's clock against the API server's (its Date header, whole seconds)."""
    if not server_date:
        return UNKNOWN, "the API server sent no Date header"
    from email.utils import parsedate_to_datetime

    difference = now - parsedate_to_datetime(server_date)
    seconds = abs(difference.total_seconds())
    words = f"{seconds:.0f}s {'ahead of' if difference.total_seconds() > 0 else 'behind'} " \
            "the API server" if seconds >= 1 else "within a second of the API server"
    return (FAILED if abs(difference) > SKEW_LIMIT else OK), words


def explain(found: Mapping[str, Any], apikey: Mapping[str, Any] | None,
            scopes: Sequence[str], client: str | None) -> tuple[int, str, str]:
    """The verifier's /check answer in words, with what the person may read of the
    ApiKey: (status, code, words). With `client`, the address is judged here, against
    the allowlist (the verifier, asked through the API server, cannot see it)."""
    import ipaddress

    code, status = str(found["code"]), int(found["status"])
    whose = found.get("apikey") or {}
    label = f"key {whose.get('name')}" if whose else "the key"
    spec = (apikey or {}).get("spec") or {}
    state = (apikey or {}).get("status") or {}
    if code == "OK" and client is not None and spec.get("ipAllowlist"):
        address = ipaddress.ip_address(client)
        allowed = [ipaddress.ip_network(n) for n in spec["ipAllowlist"]]
        if not any(address.version == n.version and address in n for n in allowed):
            return 403, "IP_NOT_ALLOWED", (f"{client} is not in "
                                           f"{', '.join(spec['ipAllowlist'])}")
    if code == "OK":
        asked = f" grants {', '.join(scopes)}" if scopes else " is valid"
        where = "" if client is not None or not spec.get("ipAllowlist") else \
            f" (from {', '.join(spec['ipAllowlist'])} only; pass --from to judge an address)"
        return status, code, f"{label} (revision {whose.get('revision')}){asked}{where}"
    if code == "MALFORMED_KEY":
        return status, code, ("what was given is not shaped like a key: a truncated or "
                              "mistyped paste, or two keys at once")
    if code == "INVALID_KEY" and whose.get("retiresAt"):
        retired = datetime.fromtimestamp(float(whose["retiresAt"])).astimezone()
        return status, code, (f"revision {whose.get('revision')} of {label} was replaced "
                              f"and its grace ended at {times.timestamp(retired)}")
    if code == "INVALID_KEY":
        return status, code, ("no ApiKey holds this key (revoked, rotated past its grace, "
                              "deleted, or another namespace's)")
    if code == "EXPIRED":
        return status, code, f"{label} expired at {state.get('expiresAt') or '?'}"
    if code == "INACTIVE":
        why = (state.get("deactivated") or {}).get("message") or (
            "spec.active is false" if spec.get("active") is False else
            f"the ApiKey is {state.get('phase') or 'not usable'}")
        return status, code, f"{label} is not active: {why}"
    if code == "INSUFFICIENT_SCOPE":
        held = ", ".join(spec.get("scopes") or []) or "no scope of its own"
        roles = f" and roles {', '.join(spec['roles'])}" if spec.get("roles") else ""
        return status, code, f"{label} lacks {', '.join(scopes)} (it holds {held}{roles})"
    if code == "INVALID_REQUIREMENT":
        return status, code, (f"{', '.join(scopes)} is a scope no key can hold: a typo in the "
                              "requirement?")
    return status, code, code

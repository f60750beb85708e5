"""The verification decision, pure: headers, peer address, index and time in; answer out.

Owns: finding the key in the headers, the client address behind trusted proxies, and the
order of checks: present -> well formed -> known (current or in grace) -> namespace ->
active -> not expired -> address allowed -> scopes -> rate limit.
Must not: do I/O, or put the key into anything it returns (answers carry the record's
last characters, never the key). Importable for in-process checks without HTTP.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from keywright.core import hashing, models, tokens
from keywright.verifier import index

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
KEY_HEADER = "x-api-key"
MAX_KEY_LENGTH = tokens.MAX_LENGTH  # the longest key the contract allows; longer is garbage

OK = "OK"
MISSING_KEY, MALFORMED_KEY, INVALID_KEY = "MISSING_KEY", "MALFORMED_KEY", "INVALID_KEY"
EXPIRED, INACTIVE = "EXPIRED", "INACTIVE"
INSUFFICIENT_SCOPE, IP_NOT_ALLOWED, RATE_LIMITED = (
    "INSUFFICIENT_SCOPE", "IP_NOT_ALLOWED", "RATE_LIMITED")
NOT_READY = "NOT_READY"  # not a decision: the index is not loaded yet, so none can be made
USAGE_LIMIT_REACHED = "USAGE_LIMIT_REACHED"  # the quota's credits are spent
# the shared limits backend is down and the verifier is told to fail closed: a 429 (the
# caller may try again in a second), never a 5xx
LIMITS_UNAVAILABLE = "LIMITS_UNAVAILABLE"
# The gateway asks for a scope no key can ever have: not a scope at all, or an area no
# ApiKey grants. A 500, not a 403: it is the gateway's configuration that is wrong, not
# the caller's key, and a 5xx shows in every gateway's error rate (auth_request turns it
# into a 500 with an error-log line; ext_authz and forwardAuth pass it on).
INVALID_REQUIREMENT = "INVALID_REQUIREMENT"
STATUS = {OK: 200, MISSING_KEY: 401, MALFORMED_KEY: 401, INVALID_KEY: 401, EXPIRED: 401,
          INACTIVE: 401, INSUFFICIENT_SCOPE: 403, IP_NOT_ALLOWED: 403, RATE_LIMITED: 429,
          USAGE_LIMIT_REACHED: 429, LIMITS_UNAVAILABLE: 429, INVALID_REQUIREMENT: 500,
          NOT_READY: 503}
_SCOPE = re.compile(models.SCOPE)


class Ask(NamedTuple):  # a tuple: built on every request, so cheap to make
    """One request to verify. Header names are lower-case; each maps to all its values
    (raw bytes: a value that is not UTF-8 is a malformed key, not a crash)."""

    headers: Mapping[str, Sequence[bytes]]
    peer: str
    scopes: frozenset[str] = frozenset()
    namespace: str | None = None


class Answer(NamedTuple):  # a tuple: built on every request, so cheap to make
    code: str
    record: index.KeyRecord | None = None
    client: str | None = None
    retry_after: int | None = None

    @property
    def status(self) -> int:
        return STATUS[self.code]


@dataclass(frozen=True)
class Policy:
    key_headers: tuple[str, ...] = (KEY_HEADER,)  # in order of precedence, lower-case
    trusted_proxies: tuple[index.Network, ...] = ()
    # False for /check: asked through the API server's proxy, the peer is the API
    # server, so the address is judged by whoever asks (`kubectl apikey check --from`)
    judge_address: bool = True


RateCheck = Callable[[index.KeyRecord, float], float | None]  # -> seconds to wait, or None


def extract_key(headers: Mapping[str, Sequence[bytes]],
                names: Sequence[str] = (KEY_HEADER,)) -> tuple[bytes | None, str | None]:
    """(key, None), or (None, MISSING_KEY | MALFORMED_KEY). The first header of `names`
    that is present wins; then `Authorization: Bearer <key>` (scheme in any case). A
    header sent twice is ambiguous, hence malformed; an empty one counts as absent. The
    key comes back as the ASCII bytes it was sent as, ready to hash."""
    first = headers.get(names[0]) if names else None
    if first is not None and len(first) == 1 and 0 < len(first[0]) <= MAX_KEY_LENGTH \
            and first[0].isascii() and first[0] == first[0].strip():
        return first[0], None  # the common case, without the loop below
    for name in (*names, "authorization"):
        values = [v.strip() for v in headers.get(name, ()) if v.strip()]
        if name == "authorization":
            values = [v[7:].strip() for v in values
                      if v[:7].lower() == b"bearer " and v[7:].strip()]
        if not values:
            continue
        if len(values) > 1:
            return None, MALFORMED_KEY
        raw = values[0]
        if len(raw) > MAX_KEY_LENGTH or not raw.isascii():
            return None, MALFORMED_KEY
        return raw, None
    return None, MISSING_KEY


def client_address(peer: str, headers: Mapping[str, Sequence[bytes]],
                   trusted: Sequence[index.Network]) -> Address | None:
    """The TCP peer, unless it is a trusted proxy: then the right-most X-Forwarded-For
    address that is not itself trusted (all trusted: the left-most), else X-Real-IP.
    None when what is named cannot be parsed."""
    address = _parse(peer)
    if address is None or not _inside(address, trusted):
        return address
    forwarded = [part.strip() for value in headers.get("x-forwarded-for", ())
                 for part in value.decode("latin-1").split(",") if part.strip()]
    if forwarded:
        chain = [_parse(part) for part in forwarded]
        for hop in reversed(chain):
            if hop is None or not _inside(hop, trusted):
                return hop
        return chain[0]
    real = [v.decode("latin-1").strip() for v in headers.get("x-real-ip", ())]
    return _parse(real[-1]) if real else address


def decide(ask: Ask, keys: index.Index, peppers: hashing.Peppers, now: float,
           policy: Policy = Policy(), rate: RateCheck | None = None) -> Answer:
    raw, problem = extract_key(ask.headers, policy.key_headers)
    if raw is None:
        return Answer(problem or MISSING_KEY)
    if not tokens.well_formed(raw):
        return Answer(MALFORMED_KEY)  # garbage is never hashed
    record = None
    for version, table in keys.tables.items():
        pads = peppers.pads.get(version)
        if pads is not None:  # HMAC from precomputed pads (hashing.Peppers.pads)
            inner, outer = pads[0].copy(), pads[1].copy()
            inner.update(raw)
            outer.update(inner.digest())
            record = table.get(outer.digest())
            if record is not None:
                break
    del raw
    if record is None or (ask.namespace is not None and ask.namespace != record.namespace):
        return Answer(INVALID_KEY)  # another namespace's key is answered as an unknown one
    if record.retires_at is not None and now >= record.retires_at:
        return Answer(INVALID_KEY, record)  # its grace is over: a key like any unknown
    if policy.trusted_proxies or record.allowlist:
        client = client_address(ask.peer, ask.headers, policy.trusted_proxies)
        shown = _text(client) if client is not None else None
    else:  # the peer is the client, and nothing needs it parsed
        client, shown = None, ask.peer
    if not record.usable:
        return Answer(INACTIVE, record, shown)
    if record.expires_at is not None and now >= record.expires_at:
        return Answer(EXPIRED, record, shown)
    if record.allowlist and policy.judge_address and (
            client is None or not _inside(client, record.allowlist)):
        return Answer(IP_NOT_ALLOWED, record, shown)
    granted = keys.effective(record).granted if record.roles else record.granted
    if not ask.scopes <= granted:  # off the OK path: a 403 costs what it needs
        missing = ask.scopes - granted
        # a key naming a role that is missing may lack what that role held: its 403,
        # not the gateway's mistake, even when no other key or role grants the area now
        unknown_roles = bool(record.roles) and bool(keys.effective(record).missing)
        if not_scopes(missing) or (not unknown_roles and
                                   not {area_of(s) for s in missing} <= keys.areas()):
            return Answer(INVALID_REQUIREMENT, record, shown)  # no key could ever pass
        return Answer(INSUFFICIENT_SCOPE, record, shown)
    if rate is not None and record.rate is not None:
        wait = rate(record, now)
        if wait is not None:
            return Answer(RATE_LIMITED, record, shown, retry_after=max(1, int(wait + 0.999)))
    return Answer(OK, record, shown)


@functools.lru_cache(maxsize=1024)  # a gateway sends the same few requirements
def not_scopes(scopes: frozenset[str]) -> tuple[str, ...]:
    """The required scopes that are not scopes at all (`<Area>.<Action>`)."""
    return tuple(sorted(s for s in scopes if _SCOPE.fullmatch(s) is None))


def area_of(scope: str) -> str:
    return scope.rpartition(".")[0]


def _parse(text: str) -> Address | None:
    # no address is longer than this (an IPv6 with an IPv4 tail, in brackets): longer text
    # is refused before it can reach, and fill, the cache
    return _parse_short(text) if len(text) <= 64 else None


@functools.lru_cache(maxsize=4096)  # peers and forwarded addresses repeat a lot
def _parse_short(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=4096)
def _text(address: Address) -> str:
    return str(address)


def _inside(address: Address, networks: Sequence[index.Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)

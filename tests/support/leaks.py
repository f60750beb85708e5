"""Leaked keys for the scanners' tests: keys planted in files of many kinds, at known
lines, and look-alikes that no scanner that checks the checksum may report.

Every key is made when the tests run (`tokens.generate`) and held as a Plaintext, so a
failing assertion never prints one. The look-alikes are built with the contract's own
arithmetic (tests/support/contract.py), not the code under test.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from pathlib import Path

from keywright.core import tokens
from tests.support import contract
from tests.support.k8s import Plaintext

RULE_ID = "keywright-api-key"  # deploy/scanning/gitleaks.toml
SECRET_TYPE = "Keywright API key"  # what the detect-secrets plugin calls its findings


@dataclass(frozen=True)
class Planted:
    path: str  # relative to the tree
    line: int  # from 1
    key: Plaintext
    encoding: str | None = None  # "base64": the file holds the key's base64

    @property
    def written(self) -> Plaintext:
        """The key as the file has it."""
        if self.encoding == "base64":
            return Plaintext(base64.b64encode(self.key.encode()).decode())
        return self.key


# (file, prefix, its lines): `{key}` is where the key goes, or `{base64}` its base64, once
# per file, with that file's own prefix (every allowed length: 2 and 16 characters, digits)
FILES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("notes.txt", "kw", (
        "Rotated on Monday.",
        "",
        "The old one was {key}, do not use it.",
    )),
    ("config/settings.json", "acme", (
        "{",
        '  "service": "billing",',
        '  "timeout": 30,',
        '  "apiKey": "{key}"',
        "}",
    )),
    ("deploy/values.yaml", "a1", (
        "replicas: 2",
        "auth:",
        "  header: X-API-Key",
        "  key: {key}",
    )),
    (".env", "billing2", (
        "DATABASE_URL=postgres://localhost/billing",
        "BILLING_API_KEY={key}",
    )),
    ("src/client.py", "kw", (
        '"""A client for the billing API."""',
        "",
        "import os",
        "",
        'KEY = os.environ.get("BILLING_KEY", "{key}")  # TODO remove',
    )),
    ("src/web/client.js", "abcdefghijklmnop", (
        "// the billing client",
        "export const headers = {",
        "  'Content-Type': 'application/json',",
        "  'X-API-Key': '{key}',",
        "};",
    )),
    ("logs/session.log", "kw", (
        "2026-11-23T10:00:00Z GET /v1/reviews 200",
        "2026-11-23T10:00:01Z debug: curl -H 'Authorization: Bearer {key}' "
        "https://api.example.test/v1/reviews?page=2",
        "2026-11-23T10:00:02Z GET /v1/reviews 200",
    )),
    ("k8s/secret.yaml", "billing", (  # as `kubectl get secret -o yaml` prints one
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        "  name: billing-sync",
        "type: Opaque",
        "data:",
        "  api-key: {base64}",
    )),
)


def plant(root: Path) -> list[Planted]:
    """Writes FILES under `root`, each with a new key; where each key went."""
    planted = []
    for name, prefix, lines in FILES:
        line, text = next((n, text) for n, text in enumerate(lines, 1)
                          if "{key}" in text or "{base64}" in text)
        here = Planted(name, line, Plaintext(tokens.generate(prefix)),
                       "base64" if "{base64}" in text else None)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(
            text.replace("{key}", here.written).replace("{base64}", here.written) + "\n"
            for text in lines))
        planted.append(here)
    return planted


@dataclass(frozen=True)
class NearMiss:
    id: str  # a sentence: what it is
    text: Plaintext
    gitleaks: bool  # the gitleaks rule reports it: it has the key's shape between word
    # boundaries, and is not a placeholder (the rule cannot check the checksum; a scanner
    # that can must not report it)


def _changed(text: str, index: int) -> str:
    """`text` with the character at `index` replaced by another base62 character."""
    other = "B" if text[index] != "B" else "C"
    return text[:index] + other + text[index + 1:]


def _base62(length: int) -> str:
    return "".join(secrets.choice(contract.ALPHABET) for _ in range(length))


def base64_of(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def near_misses() -> list[NearMiss]:
    """Look-alikes of a key made now, and other vendors' tokens: none is a Keywright key."""
    key = tokens.generate("kw")
    body = key[3:-6]
    lookalike = "kw_" + _base62(49)
    while contract.well_formed(lookalike):  # one chance in 2**32
        lookalike = "kw_" + _base62(49)
    misses = [
        ("a key with one character of its body changed", _changed(key, 20), True),
        ("a key with the first character of its body changed", _changed(key, 3), True),
        ("a key with one character of its check changed", _changed(key, len(key) - 2), True),
        ("a key with its check of another key", key[:-6] + tokens.generate("kw")[-6:], True),
        ("random base62 after a prefix, as long as a key", lookalike, True),
        ("a key one character short", key[:-1], False),
        ("a key one character long", key + "0", False),
        ("a 42-character body with its right check", contract.make("kw", body[:-1]), False),
        ("a 44-character body with its right check", contract.make("kw", body + "x"), False),
        ("an upper-case prefix with its right check", contract.make("KW", body), False),
        ("a 17-character prefix with its right check", contract.make("a" * 17, body), False),
        ("a one-character prefix with its right check", contract.make("k", body), False),
        ("a prefix starting with a digit, with its right check",
         contract.make("1kw", body), False),
        ("a dash instead of the underscore", key.replace("_", "-", 1), False),
        ("a key with a letter before it, in one word", f"x{key}", True),
        ("a key with a digit before it, in one word", f"9{key}", False),
        ("a key with a letter after it, in one word", f"{key}x", False),
        ("a key joined to a word before it by an underscore", f"old_{key}", False),
        ("a key joined to a word after it by an underscore", f"{key}_old", False),
        ("base62 as long as a key, with no prefix", _base62(52), False),
        ("a GitHub personal access token", "ghp_" + _base62(36), False),
        ("a GitHub token as long as a Keywright key's tail", "ghp_" + _base62(49), True),
        ("a Stripe live secret key", "sk_live_" + _base62(24), False),
        ("a Stripe live secret key with a 49-character tail", "sk_live_" + _base62(49), False),
        ("a Stripe restricted key", "rk_live_" + _base62(99), False),
        ("a Slack bot token", "xoxb-123456789012-1234567890123-" + _base62(24), False),
        ("an AWS access key id", "AKIA" + "".join(secrets.choice(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16)), False),
        ("a placeholder in documentation (too little entropy for gitleaks)",
         "kw_" + "X" * 49, False),
        ("an all-zero body and check (too little entropy for gitleaks)", "kw_" + "0" * 49, False),
        ("the base64 of a key with one character of its body changed",
         base64_of(_changed(key, 20)), False),
        ("the base64 of a key one character short", base64_of(key[:-1]), False),
        ("the base64 of a key with a letter before it", base64_of(f"x{key}"), False),
    ]
    return [NearMiss(name, Plaintext(text), gitleaks) for name, text, gitleaks in misses]

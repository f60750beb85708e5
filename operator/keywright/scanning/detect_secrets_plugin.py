"""Keywright keys for detect-secrets: a plugin it loads from this file.

Owns: telling detect-secrets (Yelp's, 1.x) what a Keywright key is: the contract's shape
between word boundaries and a CRC32 check that matches (`matching`), so a look-alike
whose check does not match is not reported, written out or in base64 (the secret it
reports is then the base64, as the line has it); and printing this file's path.
Must not: import more of Keywright than the key format: detect-secrets imports this file
by its path, in its own process, and it must stay cheap to load there. It never
"verifies" a key in detect-secrets' sense (asking a live service): `kubectl apikey
identify` does that.

detect-secrets 1.x finds plugins in no package metadata (no entry-point group): only in
files named by `--plugin PATH`, a path it then records in the baseline it writes. The
console script `keywright-detect-secrets-plugin` prints that path:

    detect-secrets scan --plugin "$(keywright-detect-secrets-plugin)" --all-files .
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from detect_secrets.plugins.base import RegexBasedDetector

from keywright.scanning import matching


class KeywrightDetector(RegexBasedDetector):
    """Scans for Keywright API keys: `<prefix>_<body><check>` with a valid CRC32 check."""

    secret_type = "Keywright API key"  # noqa: S105 - a name; baselines key on it
    denylist = (matching.CANDIDATE,)

    def analyze_string(self, string: str) -> Generator[str, None, None]:
        yield from matching.secrets_in(string)


def main() -> None:
    """The `keywright-detect-secrets-plugin` console script: where this file is."""
    print(Path(__file__).resolve())

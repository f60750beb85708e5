"""The gitleaks rule (deploy/scanning/gitleaks.toml) finds every planted key and says
nothing of the look-alikes it can tell apart without the checksum.

Debian (bookworm) packages no gitleaks, so gitleaks itself does not run here: the rule is
read from its TOML as gitleaks reads it, its regex run with RE2 (google-re2, the engine
of gitleaks' release builds; Go's own regexp has the same syntax and `\\b`), and its
entropy threshold applied as gitleaks does (Shannon entropy of the match, in bits per
character; reported when above).
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import re2

from keywright.core import tokens
from tests.support import contract, leaks
from tests.support.k8s import Plaintext

RULES = Path(__file__).resolve().parents[3] / "deploy" / "scanning" / "gitleaks.toml"


def config() -> dict[str, Any]:
    return tomllib.loads(RULES.read_text())


def rule() -> dict[str, Any]:
    return next(r for r in config()["rules"] if r["id"] == leaks.RULE_ID)


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def reported(text: str) -> list[tuple[int, Plaintext]]:
    """(line, match) for each finding of the rule in `text`, as gitleaks decides."""
    found = []
    for match in re2.compile(rule()["regex"]).finditer(text):
        if entropy(match.group()) > rule()["entropy"]:
            found.append((text.count("\n", 0, match.start()) + 1, Plaintext(match.group())))
    return found


def test_the_file_is_one_rule_on_top_of_gitleaks_defaults() -> None:
    read = config()
    assert read["extend"] == {"useDefault": True}
    assert [r["id"] for r in read["rules"]] == [leaks.RULE_ID]
    assert set(rule()) == {"id", "description", "regex", "entropy", "tags"}
    assert "cannot compute the CRC32" in RULES.read_text()


def test_the_regex_is_the_contracts_regex_for_scanners() -> None:
    assert rule()["regex"] == contract.SCANNER_REGEX


def test_every_planted_key_is_found_once_on_its_line(tmp_path: Path) -> None:
    """Those written as they are: gitleaks finds a key in base64 only by decoding it
    first (`--max-decode-depth`), which is gitleaks' own and not run here."""
    for planted in leaks.plant(tmp_path):
        found = reported((tmp_path / planted.path).read_text())
        assert found == ([] if planted.encoding else [(planted.line, planted.key)]), \
            planted.path


@pytest.mark.parametrize("miss", [pytest.param(m, id=m.id) for m in leaks.near_misses()])
def test_a_look_alike_is_reported_only_when_its_shape_is_a_keys(miss: leaks.NearMiss) -> None:
    assert bool(reported(f"token: {miss.text}\n")) == miss.gitleaks


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("kw", id="the default prefix"),
        pytest.param("aaaaaaaaaaaaaaaa", id="sixteen times one letter, the least entropy"),
    ],
)
def test_no_key_falls_near_the_entropy_threshold(prefix: str) -> None:
    lowest = min(entropy(tokens.generate(prefix)) for _ in range(2000))
    assert lowest > rule()["entropy"] + 0.5

"""Leak scanning with the real commands: `keywright scan`, and `detect-secrets` with the
Keywright plugin (found by its file path, as detect-secrets finds plugins), on one tree
of planted keys and look-alikes made when the tests run. No cluster.

The gitleaks rule is tested in tests/unit/scanning/test_gitleaks_rule.py: Debian ships no
gitleaks to run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from keywright.core import tokens
from tests.support import leaks
from tests.support.k8s import Plaintext

BIN = Path(sys.executable).parent  # keywright and detect-secrets are installed beside it
INDIRECT = "detect_secrets.filters.heuristic.is_indirect_reference"


@dataclass(frozen=True)
class Tree:
    root: Path
    planted: list[leaks.Planted]
    keys: list[Plaintext]  # every key anywhere in the tree, reported or not


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    """Planted keys in text, JSON, YAML, .env, Python, JavaScript and a log; every
    look-alike in one file; and keys where no scanner of files should look (.git, a
    binary file)."""
    root = tmp_path_factory.mktemp("leaks")
    planted = leaks.plant(root)
    misses = leaks.near_misses()
    (root / "near-misses.txt").write_text("".join(f"{m.id}: {m.text}\n" for m in misses))
    hidden = [Plaintext(tokens.generate("kw")) for _ in range(2)]
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text(f"[remote]\n  token = {hidden[0]}\n")
    (root / "image.bin").write_bytes(b"\x89PNG\0\0" + hidden[1].encode())
    return Tree(root, planted, [p.key for p in planted] + hidden + [m.text for m in misses])


def run(*command: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=60)


def never_shown(ran: subprocess.CompletedProcess[str], keys: list[Plaintext]) -> None:
    shown = [key for key in keys if key in ran.stdout or key in ran.stderr]
    assert shown == []


def line_of(planted: leaks.Planted, where: str = "") -> str:
    preview = tokens.preview(tokens.prefix_of(planted.key), planted.key[-4:])
    what = "Keywright key in base64" if planted.encoding else "Keywright key"
    return f"{where}{planted.path}:{planted.line}: {preview} ({what}, checksum valid)"


def test_keywright_scan_names_each_planted_key_once_and_exits_1(tree: Tree) -> None:
    ran = run(str(BIN / "keywright"), "scan", ".", cwd=tree.root)
    assert ran.returncode == 1, ran.stderr
    assert sorted(ran.stdout.splitlines()) == sorted(line_of(p, "./") for p in tree.planted)
    assert ran.stderr == (f"keywright scan: {len(tree.planted) + 1} files read (1 binary "
                          f"skipped), {len(tree.planted)} keys found\n")
    never_shown(ran, tree.keys)


def test_keywright_scan_of_look_alikes_alone_finds_nothing_and_exits_0(tree: Tree) -> None:
    ran = run(str(BIN / "keywright"), "scan", "near-misses.txt", cwd=tree.root)
    assert (ran.returncode, ran.stdout) == (0, "")
    never_shown(ran, tree.keys)


def test_keywright_scan_reads_standard_input(tree: Tree) -> None:
    planted = tree.planted[0]
    text = (tree.root / planted.path).read_text()
    ran = run(str(BIN / "keywright"), "scan", "-", "near-misses.txt", cwd=tree.root,
              stdin=text)
    assert ran.returncode == 1
    assert ran.stdout == line_of(leaks.Planted("<stdin>", planted.line, planted.key)) + "\n"
    never_shown(ran, tree.keys)


def test_keywright_scan_of_a_missing_path_names_it_and_exits_2(tree: Tree) -> None:
    ran = run(str(BIN / "keywright"), "scan", "notes.txt", "no-such-dir", cwd=tree.root)
    assert (ran.returncode, ran.stdout) == (2, "")
    assert "argument PATH: no-such-dir: no such file or directory" in ran.stderr


def plugin_path() -> str:
    ran = subprocess.run([str(BIN / "keywright-detect-secrets-plugin")], capture_output=True,
                         text=True, check=True, timeout=30)
    return ran.stdout.strip()


def keywright_findings(baseline: str) -> set[tuple[str, int, str]]:
    """(file, line, SHA-1 of the secret) of each Keywright finding in a baseline."""
    results = json.loads(baseline)["results"]
    return {(name, found["line_number"], found["hashed_secret"])
            for name, items in results.items() for found in items
            if found["type"] == leaks.SECRET_TYPE}


def sha1(key: str) -> str:
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def test_detect_secrets_with_the_plugin_finds_each_planted_key_once(tree: Tree) -> None:
    """Each as written: the key, or the base64 that holds it."""
    ran = run(str(BIN / "detect-secrets"), "scan", "--all-files", "--plugin", plugin_path(),
              "--disable-filter", INDIRECT, "--exclude-files", r"(^|/)\.git/", ".",
              cwd=tree.root)
    assert ran.returncode == 0, ran.stderr
    assert keywright_findings(ran.stdout) == {(p.path, p.line, sha1(p.written))
                                              for p in tree.planted}
    never_shown(ran, tree.keys)


def test_detect_secrets_keeps_the_plugin_in_its_baseline_for_the_hook(
        tree: Tree, tmp_path: Path) -> None:
    """The pre-commit route: a baseline made with `--plugin` names the plugin's file, and
    `detect-secrets-hook --baseline` loads it from there and refuses a new key."""
    (tmp_path / "clean.txt").write_text("nothing here\n")
    made = run(str(BIN / "detect-secrets"), "scan", "--all-files", "--plugin", plugin_path(),
               ".", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert {"name": "KeywrightDetector", "path": f"file://{plugin_path()}"} in json.loads(
        made.stdout)["plugins_used"]
    (tmp_path / ".secrets.baseline").write_text(made.stdout)
    planted = tree.planted[0]
    (tmp_path / "notes.txt").write_text((tree.root / planted.path).read_text())
    hook = run(str(BIN / "detect-secrets-hook"), "--baseline", ".secrets.baseline",
               "clean.txt", "notes.txt", cwd=tmp_path)
    assert hook.returncode == 1
    assert f"Secret Type: {leaks.SECRET_TYPE}\nLocation:    notes.txt:{planted.line}" in \
        hook.stdout
    never_shown(hook, tree.keys)

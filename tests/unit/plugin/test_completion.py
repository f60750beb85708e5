"""Completion of kubectl-apikey run by its own name, in bash and zsh (no cluster: commands
and fixed values), and the script the `completion` command prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def completed(shell: str, words: str, index: int) -> list[str]:
    ran = subprocess.run([str(BIN / "kubectl-apikey")], capture_output=True, text=True,
                         timeout=30, env={**os.environ, "COMP_WORDS": words,
                                          "COMP_CWORD": str(index),
                                          "_KUBECTL_APIKEY_COMPLETE": f"{shell}_complete"})
    assert ran.returncode == 0, ran.stderr
    return ran.stdout.splitlines()


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_commands_and_values_complete_in_both_shells(shell: str) -> None:
    assert any(line.endswith("list") for line in completed(shell, "kubectl-apikey li", 1))
    assert any(line.endswith("yaml") for line in completed(shell, "kubectl-apikey list -o y",
                                                           3))


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_the_completion_command_prints_a_script_that_calls_back(shell: str) -> None:
    script = subprocess.run([str(BIN / "kubectl-apikey"), "completion", shell],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    assert "_KUBECTL_APIKEY_COMPLETE" in script
    if shell == "bash":  # and bash takes it as a script
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)

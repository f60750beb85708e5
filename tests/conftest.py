"""What every test shares: a failed comparison involving a plaintext key never prints it;
and tests/node (a real node, the image built) only in a session of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.k8s import Plaintext


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """pytest explains a failed `==` between strings with a diff of their text, which
    would show a key in full; for a Plaintext only its redacted repr is shown."""
    if isinstance(left, Plaintext) or isinstance(right, Plaintext):
        return [f"{left!r} {op} {right!r}", "(a plaintext key: its value is not shown)"]
    return None


NODE_SUITE = Path(__file__).parent / "node"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """tests/node is collected only when named (`pytest tests/node`, as `make test` runs
    it after the rest): a bare `pytest` never starts a node beside the control plane."""
    if collection_path != NODE_SUITE:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(path == NODE_SUITE or NODE_SUITE in path.parents for path in named)

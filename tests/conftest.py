"""What every test shares: a failed comparison involving a plaintext key never prints it."""

from __future__ import annotations

from typing import Any

from tests.support.k8s import Plaintext


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """pytest explains a failed `==` between strings with a diff of their text, which
    would show a key in full; for a Plaintext only its redacted repr is shown."""
    if isinstance(left, Plaintext) or isinstance(right, Plaintext):
        return [f"{left!r} {op} {right!r}", "(a plaintext key: its value is not shown)"]
    return None

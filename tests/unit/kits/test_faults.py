"""Fault points act only where armed, and the pause point waits for its release file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from keywright.kits import faults


@pytest.mark.parametrize("armed", ["apikey-lookup", "apikey-lookup@pay/billing"],
                         ids=["armed for every subject", "armed for this subject"])
def test_an_armed_fail_point_raises(armed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAIL_ENV, armed)
    with pytest.raises(faults.InjectedFault, match="apikey-lookup@pay/billing"):
        faults.fail_point("apikey-lookup", "pay/billing")


@pytest.mark.parametrize("armed", [None, "other-point", "apikey-lookup@pay/other"],
                         ids=["unset", "another point", "another subject"])
def test_a_fail_point_not_armed_for_it_does_nothing(
    armed: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if armed is None:
        monkeypatch.delenv(faults.FAIL_ENV, raising=False)
    else:
        monkeypatch.setenv(faults.FAIL_ENV, armed)
    faults.fail_point("apikey-lookup", "pay/billing")


def test_a_pause_point_waits_until_its_release_file_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    release = tmp_path / "release"
    monkeypatch.setenv(faults.PAUSE_ENV, "before-secret-patch@pay/billing")
    monkeypatch.setenv(faults.PAUSE_UNTIL_ENV, str(release))
    passed = threading.Event()

    def pause() -> None:
        faults.pause_point("before-secret-patch", "pay/billing")
        passed.set()
    waiter = threading.Thread(target=pause)
    with caplog.at_level("WARNING", logger=faults.__name__):
        waiter.start()
        time.sleep(0.3)  # the window in which it must not pass
        assert not passed.is_set()
        release.touch()
        waiter.join(5)
    assert passed.is_set()
    assert "before-secret-patch@pay/billing: paused until" in caplog.text

    caplog.clear()
    with caplog.at_level("WARNING", logger=faults.__name__):
        faults.pause_point("before-secret-patch", "pay/billing")  # released: passes
    assert caplog.text.count("fault point before-secret-patch@pay/billing reached") == 1
    assert "paused" not in caplog.text


def test_a_pause_point_armed_for_another_subject_passes_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(faults.PAUSE_ENV, "before-secret-patch@pay/other")
    monkeypatch.setenv(faults.PAUSE_UNTIL_ENV, str(tmp_path / "never"))
    started = time.monotonic()
    faults.pause_point("before-secret-patch", "pay/billing")
    assert time.monotonic() - started < 0.1

"""When the reconciler tries a key again after a failure, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from keywright.controller.reconcile import retry_at

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(("failures", "due", "after"), [
    pytest.param(1, None, 1 * S, id="a first failure is tried again in a second"),
    pytest.param(4, None, 8 * S, id="each failure in a row doubles the wait"),
    pytest.param(10, None, 300 * S, id="the wait stops growing at five minutes"),
    pytest.param(10_000, None, 300 * S,
                 id="ten thousand failures in a row still wait five minutes, no overflow"),
    pytest.param(6, NOW + 3 * S, 3 * S, id="an expiry due before the retry is kept"),
    pytest.param(1, NOW + 60 * S, 1 * S, id="an instant after the retry waits its turn"),
    pytest.param(3, NOW - 5 * S, 4 * S,
                 id="an instant already past is what failed: it is not tried again at once"),
    pytest.param(3, NOW, 4 * S, id="nor is one due this very moment"),
])
def test_retry_at(failures: int, due: datetime | None, after: timedelta) -> None:
    assert retry_at(NOW, failures, due) - NOW == after

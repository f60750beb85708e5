"""Crash points, for tests that must kill the operator at an exact step.

`KEYWRIGHT_CRASH_AT=<point>` in the environment makes the process SIGKILL itself when it
reaches that point, as a power cut would: no cleanup, no flush. `<point>@<ns>/<name>`
limits it to one ApiKey. Unset, a crash point is a
dictionary lookup. A real server cannot be made to die between two given API calls on
demand, so this is the one fault the e2e tests inject rather than provoke.
"""

from __future__ import annotations

import os
import signal

ENV = "KEYWRIGHT_CRASH_AT"


def crash_point(name: str, subject: str) -> None:
    wanted = os.environ.get(ENV)
    if wanted is not None and wanted in (name, f"{name}@{subject}"):
        os.kill(os.getpid(), signal.SIGKILL)

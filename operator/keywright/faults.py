"""Crash points, for tests that must kill the operator at an exact step.

`KEYWRIGHT_CRASH_AT=<point>` in the environment makes the process SIGKILL itself when it
reaches that point, as a power cut would: no cleanup, no flush. Unset, a crash point is a
dictionary lookup. A real server cannot be made to die between two given API calls on
demand, so this is the one fault the e2e tests inject rather than provoke.
"""

from __future__ import annotations

import os
import signal

ENV = "KEYWRIGHT_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)

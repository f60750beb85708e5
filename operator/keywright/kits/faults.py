"""Fault points, for tests that must make the operator crash, fail or wait at an exact step.

Owns: three kinds of points, each armed by the environment and each limited to one
subject with `<point>@<subject>` (a subject is `<namespace>/<name>`). Unset, a point is a
dictionary lookup.

- `KEYWRIGHT_CRASH_AT=<point>`: the process SIGKILLs itself there, as a power cut
  would: no cleanup, no flush. Crash points: `before-secret-write` (a key generated,
  not yet written), `after-secret-write` (the Secret written, status not yet patched),
  `after-status-patch` (status patched, its events not yet posted).
- `KEYWRIGHT_FAIL_AT=<point>`: the calling code gets an `InjectedFault` there, as if the
  API call that follows had failed. Fail points: `apikey-lookup` (the Pod injection
  webhook, before it reads the ApiKey named by a Pod; subject: the Pod's namespace and
  that ApiKey's name).
- `KEYWRIGHT_PAUSE_AT=<point>` with `KEYWRIGHT_PAUSE_UNTIL=<file>`: the calling thread
  waits there until the file exists (at most `PAUSE_LIMIT` seconds), so a test can act
  between two API calls. Every arrival is logged (`fault point <point>@<subject>
  reached`), and a wait with `paused until <file> exists`. Pause points:
  `before-secret-patch` (a rotation, before its patch conditional on the Secret's
  resourceVersion), `apikey-lookup` (as the fail point: a slow ApiKey read).

A real server cannot be made, on demand, to die between two given API calls, to fail
or delay one given read, or to hold a reconcile between its read and its write while
someone else writes; these are the faults the e2e tests inject rather than provoke.
Must not: know what an API key is (points and subjects are plain strings), import
anything from Keywright, or act on a point it was not armed for.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

CRASH_ENV = "KEYWRIGHT_CRASH_AT"
FAIL_ENV = "KEYWRIGHT_FAIL_AT"
PAUSE_ENV = "KEYWRIGHT_PAUSE_AT"
PAUSE_UNTIL_ENV = "KEYWRIGHT_PAUSE_UNTIL"
PAUSE_LIMIT = 300.0  # seconds: a forgotten release file never wedges a worker for good

log = logging.getLogger(__name__)


class InjectedFault(RuntimeError):
    """Raised at an armed fail point."""


def _armed(env: str, name: str, subject: str) -> bool:
    wanted = os.environ.get(env)
    return wanted is not None and wanted in (name, f"{name}@{subject}")


def crash_point(name: str, subject: str) -> None:
    if _armed(CRASH_ENV, name, subject):
        if os.getpid() == 1:  # a container's first process: the kernel ignores a SIGKILL
            os._exit(128 + signal.SIGKILL)  # it sends itself; this is as abrupt
        os.kill(os.getpid(), signal.SIGKILL)


def fail_point(name: str, subject: str) -> None:
    if _armed(FAIL_ENV, name, subject):
        raise InjectedFault(f"fault injected at {name}@{subject}")


def pause_point(name: str, subject: str) -> None:
    if not _armed(PAUSE_ENV, name, subject):
        return
    log.warning("fault point %s@%s reached", name, subject)
    until = os.environ.get(PAUSE_UNTIL_ENV)
    if not until or Path(until).exists():
        return
    log.warning("fault point %s@%s: paused until %s exists", name, subject, until)
    deadline = time.monotonic() + PAUSE_LIMIT
    while not Path(until).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    log.warning("fault point %s@%s: resumed", name, subject)

"""One JSON line per decision on logger `keywright.audit`. Never the key.

Owns: the audit record's fields (the contract's list) and its encoding. The caller
decides where the logger goes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from keywright.verifier import decision

log = logging.getLogger("keywright.audit")
URI_HEADERS = ("x-original-uri", "x-forwarded-uri", "x-envoy-original-path")


def line(answer: decision.Answer, scopes: Iterable[str], method: str, uri: str | None,
         now: float) -> str:
    record = answer.record
    return json.dumps({
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
        "code": answer.code,
        "status": answer.status,
        "namespace": record.namespace if record else None,
        "name": record.name if record else None,
        "lastCharacters": record.last_characters if record else None,
        "revision": record.revision if record else None,
        "client": answer.client,
        "scopes": sorted(scopes),
        "method": method,
        "uri": uri,
    }, separators=(",", ":"))


def emit(answer: decision.Answer, scopes: Iterable[str], method: str, uri: str | None,
         now: float) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(line(answer, scopes, method, uri, now))

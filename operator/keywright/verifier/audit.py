"""One JSON line per decision on logger `keywright.audit`. Never the key.

Owns: the audit record's fields (the contract's list) and its encoding. The caller
decides where the logger goes. Built by hand rather than with `json.dumps` of a dict
because it runs on every request: the fixed parts are known-safe text, and everything a
client can influence (scopes, method, URI, client address) goes through JSON's own string
escaping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _quote
from typing import TextIO

from keywright.verifier import decision

log = logging.getLogger("keywright.audit")
URI_HEADERS = ("x-original-uri", "x-forwarded-uri", "x-envoy-original-path")
MAX_SCOPES, MAX_SCOPE = 64, 128  # what a requirement can be (the CRD's limits); a client
# that sends more through a gateway gets its excess left out of the line, not logged
_second: tuple[int, str] = (-1, "")


def line(answer: decision.Answer, scopes: Iterable[str], method: str, uri: str | None,
         now: float) -> str:
    record = answer.record
    if record is None:
        who = '"namespace":null,"name":null,"lastCharacters":null,"revision":null'
    else:
        who = (f'"namespace":{_quote(record.namespace)},"name":{_quote(record.name)},'
               f'"lastCharacters":{_quote(record.last_characters)},'
               f'"revision":{record.revision}')
    client = _quote(answer.client) if answer.client is not None else "null"
    asked = ",".join(_quote(s[:MAX_SCOPE]) for s in sorted(scopes)[:MAX_SCOPES])
    return (f'{{"time":"{_time(now)}","code":"{answer.code}","status":{answer.status},'
            f'{who},"client":{client},"scopes":[{asked}],"method":{_quote(method)},'
            f'"uri":{_quote(uri) if uri is not None else "null"}}}')


def emit(answer: decision.Answer, scopes: Iterable[str], method: str, uri: str | None,
         now: float) -> None:
    if log.isEnabledFor(logging.INFO):
        log.info(line(answer, scopes, method, uri, now))


def _time(now: float) -> str:
    """RFC 3339 in UTC with milliseconds; the part up to the second is made once a second."""
    global _second
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}+00:00"


class BatchedStream(logging.Handler):
    """Writes the records' messages, a line each, to a stream in batches: every
    `interval` seconds and on close, rather than one write and flush per decision. At
    thousands of decisions a second that is most of the audit's cost."""

    def __init__(self, stream: TextIO, interval: float = 0.1) -> None:
        super().__init__()
        self.stream, self.interval = stream, interval
        self._lines: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="audit writer")
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:  # called under self.lock
        self._lines.append(record.getMessage())

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            lines, self._lines = self._lines, []
        if lines:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()

    def close(self) -> None:
        self._stopping.set()
        self.flush()
        super().close()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.flush()
            except (OSError, ValueError):  # stdout gone: nothing to write to
                return

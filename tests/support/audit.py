"""What the API server's audit log says the operator wrote: counted from the log, never
from the operator's own counters."""

from __future__ import annotations

import json
from datetime import datetime

from keywright.dev import controlplane

WRITES = ("create", "update", "patch", "delete")


def operator_writes(control_plane: controlplane.ControlPlane, namespace: str,
                    since: float) -> list[str]:
    """What the operator's ServiceAccount wrote in `namespace` after `since` (epoch
    seconds): `verb resource/subresource name`, in the log's order (a create carries
    no name there: `create secrets/ `)."""
    found = []
    for line in control_plane.audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        when = datetime.fromisoformat(entry["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if (ref.get("namespace") == namespace and when.timestamp() >= since
                and entry["user"]["username"].endswith(":keywright-operator")
                and entry.get("verb") in WRITES):
            found.append(f"{entry['verb']} {ref.get('resource')}/"
                         f"{ref.get('subresource') or ''} {ref.get('name') or ''}")
    return found

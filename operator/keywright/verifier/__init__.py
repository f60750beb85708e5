"""The verification service gateways call: an index of hashes, a pure decision, an HTTP face.

Owns: the in-memory index fed by watches of ApiKeys and the pepper Secret, the decision,
rate limits, the audit line, metrics, usage patches, and the HTTP server.
Must not: import the controller or the dev wing, read a tenant Secret, or write
anything but `status.lastUsedAt` / `status.lastUsedByRevision`.

`keywright.verifier.decision.decide` is importable on its own, for Python services that
check keys in-process without HTTP.
"""

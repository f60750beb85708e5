"""The pure domain: what an API key is and what to do about it.

Owns: the key format, peppers and hashes, durations and times, the ApiKey models and
the CRD generated from them, conditions, the Secret as metadata, rotation and lifecycle
decisions, admission decisions, and `names` (the wire vocabulary).
Must not: do I/O, or import a Kubernetes client, Kopf, an HTTP server, a metrics client
or a crypto library (import-linter checks it). Time is always a parameter.
"""

"""The operator: the only writer of keys.

Owns: the Kopf handlers, the reconciler (observe -> `core.lifecycle.decide` -> act), the
admission webhook server, the pepper Secret (load-or-create at start, then followed
live by name), and the webhook TLS.
Must not: import the verifier or the dev wing, or decide anything that `core` can
decide purely.
"""

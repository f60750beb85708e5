"""The verification service: an index of hashes, a pure decision, an HTTP front.

`keywright.verifier.decision.decide` is importable on its own, for Python services that
check keys in-process without HTTP.
"""

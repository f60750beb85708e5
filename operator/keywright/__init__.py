"""Keywright: API keys on Kubernetes.

The package is five wings over two shared floors (import-linter keeps the order):

- `cli` on top: the `keywright` command;
- `controller` (the operator: Kopf handlers, reconcile, admission webhooks, pepper),
  `verifier` (the HTTP service gateways call), `dev` (the local control plane and
  `keywright dev`), `plugin` (`kubectl apikey`, with its own lean API client so that
  it starts fast) and `scanning` (`keywright scan` and the detect-secrets plugin, which
  take only the key format from the core): independent of one another;
- `kube`: the Kubernetes client the other wings share;
- `core`: the pure domain (key format, hashing, models, decisions, names);
- `kits`: domain-free helpers (scheduler, work queue, child processes, fault points).

docs/architecture.md walks one request and one ApiKey through them.
"""

"""Leak scanning: finding Keywright keys where they must not be (`keywright scan`, and a
plugin for detect-secrets). The gitleaks rule is deploy/scanning/gitleaks.toml."""

"""What tests share: waiting, ApiKey manifests, fixtures for the pure decisions, and the
processes and cluster helpers the end-to-end tests drive. No test module imports
another; they all import from here."""

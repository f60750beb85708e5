"""Development tooling: the local control plane and `keywright dev`.

Owns: Debian package installs, the build and cache of the Kubernetes binaries, the
control plane on loopback, the set-up helpers shared with the benchmarks, and the
`keywright dev` runner.
Must not: be imported by the controller or the verifier: the production image ships
without this wing.
"""

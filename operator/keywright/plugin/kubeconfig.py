"""Which cluster, user and namespace `kubectl apikey` talks to, read as kubectl reads it.

Owns: kubectl's rules for kubeconfig files: `--kubeconfig` (that one file), else every
file of `$KUBECONFIG` merged (the first to name a cluster, user or context wins, and the
first `current-context`), else `~/.kube/config`; `--context` over `current-context`;
`-n` over the context's namespace over `default`; paths relative to the file that holds
them; and a user's credentials: a token or token file, a client certificate, or an exec
plugin (client.authentication.k8s.io), run when asked for.
Must not: talk to the API server (api.py does), or import the Kubernetes client: the
plugin answers in well under a second, and that package alone takes a quarter of one
to import.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(Exception):
    """The kubeconfig cannot give a cluster and a user; the message says what is missing."""


@dataclass(frozen=True)
class Connection:
    server: str
    namespace: str
    context: str
    ca_data: bytes | None = None  # PEM
    insecure: bool = False
    tls_server_name: str | None = None
    token: str | None = None
    token_file: Path | None = None
    cert_data: bytes | None = None  # PEM
    key_data: bytes | None = None  # PEM
    exec_spec: Mapping[str, Any] | None = None
    origin: str = ""  # the file(s) it came from, for messages

    def bearer(self) -> str | None:
        """The token to send, if the user has one (read afresh from a token file)."""
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token


@dataclass(frozen=True)
class Credential:
    """What an exec plugin returned."""

    token: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None


@dataclass
class _Merged:
    clusters: dict[str, tuple[Mapping[str, Any], Path]] = field(default_factory=dict)
    users: dict[str, tuple[Mapping[str, Any], Path]] = field(default_factory=dict)
    contexts: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    current: str | None = None


def paths(explicit: str | None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """The kubeconfig files, in kubectl's order of precedence."""
    env = os.environ if environ is None else environ
    if explicit:
        return [Path(explicit).expanduser()]
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        return listed
    return [Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"]


def load(files: Sequence[Path], context: str | None = None,
         namespace: str | None = None) -> Connection:
    """The connection the files describe for `context` (default: the current one)."""
    merged = _Merged()
    for path in files:
        if not path.exists():
            if len(files) == 1:
                raise ConfigError(f"kubeconfig {path} does not exist")
            continue  # kubectl skips missing files of $KUBECONFIG
        document = yaml.safe_load(path.read_text()) or {}
        if not isinstance(document, dict):
            raise ConfigError(f"{path} is not a kubeconfig")
        for kind, table in (("clusters", merged.clusters), ("users", merged.users)):
            for entry in document.get(kind) or []:
                body = entry.get(kind[:-1]) or {}
                table.setdefault(str(entry.get("name")), (body, path.parent))
        for entry in document.get("contexts") or []:
            merged.contexts.setdefault(str(entry.get("name")), entry.get("context") or {})
        if merged.current is None and document.get("current-context"):
            merged.current = str(document["current-context"])
    where = ", ".join(str(p) for p in files)
    chosen = context or merged.current
    if not chosen:
        raise ConfigError(f"no context chosen: {where} has no current-context; "
                          "pass --context")
    if chosen not in merged.contexts:
        raise ConfigError(f"context {chosen!r} not found in {where}")
    ctx = merged.contexts[chosen]
    cluster_name, user_name = str(ctx.get("cluster")), str(ctx.get("user", ""))
    if cluster_name not in merged.clusters:
        raise ConfigError(f"cluster {cluster_name!r} of context {chosen!r} not found in "
                          f"{where}")
    cluster, cluster_dir = merged.clusters[cluster_name]
    user, user_dir = merged.users.get(user_name, ({}, Path(".")))
    server = str(cluster.get("server") or "")
    if not server:
        raise ConfigError(f"cluster {cluster_name!r} has no server")
    return Connection(
        server=server.rstrip("/"),
        namespace=namespace or str(ctx.get("namespace") or "default"),
        context=chosen,
        ca_data=_data(cluster, "certificate-authority", cluster_dir),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        tls_server_name=cluster.get("tls-server-name"),
        token=user.get("token"),
        token_file=_path(user.get("tokenFile"), user_dir),
        cert_data=_data(user, "client-certificate", user_dir),
        key_data=_data(user, "client-key", user_dir),
        exec_spec=_exec(user.get("exec"), user_dir),
        origin=where)


def run_exec(spec: Mapping[str, Any], server: str) -> Credential:
    """Run an exec credential plugin as kubectl does, and read what it returns."""
    version = str(spec.get("apiVersion") or "client.authentication.k8s.io/v1")
    info: dict[str, Any] = {"apiVersion": version, "kind": "ExecCredential",
                            "spec": {"interactive": False}}
    if spec.get("provideClusterInfo"):
        info["spec"]["cluster"] = {"server": server}
    env = {**os.environ, **{str(e["name"]): str(e["value"]) for e in spec.get("env") or []},
           "KUBERNETES_EXEC_INFO": json.dumps(info)}
    command = [str(spec.get("command")), *[str(a) for a in spec.get("args") or []]]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"the exec credential plugin {command[0]!r} could not run: "
                          f"{exc}") from None
    if done.returncode != 0:
        hint = spec.get("installHint")
        raise ConfigError(f"the exec credential plugin {command[0]!r} failed (exit "
                          f"{done.returncode}){f': {hint}' if hint else ''}")
    try:
        status = json.loads(done.stdout).get("status") or {}
    except ValueError:
        raise ConfigError(f"the exec credential plugin {command[0]!r} printed no "
                          "ExecCredential") from None
    cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
    return Credential(token=status.get("token"),
                      cert_data=cert.encode() if cert else None,
                      key_data=key.encode() if key else None)


def _path(value: Any, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else base / path


def _data(entry: Mapping[str, Any], name: str, base: Path) -> bytes | None:
    """`<name>-data` (base64) or the file `<name>` names."""
    inline = entry.get(f"{name}-data")
    if inline:
        return base64.b64decode(str(inline))
    path = _path(entry.get(name), base)
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {name} {path}: {exc.strerror}") from None


def _exec(spec: Any, base: Path) -> Mapping[str, Any] | None:
    if not spec:
        return None
    command = str(spec.get("command") or "")
    if os.sep in command and not Path(command).is_absolute():
        command = str(base / command)  # relative to the kubeconfig, as kubectl does
    return {**spec, "command": command}

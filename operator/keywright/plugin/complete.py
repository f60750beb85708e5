"""Shell completion for `kubectl apikey`, as kubectl (1.26+) asks a plugin for it.

Owns: `kubectl_complete-apikey` (kubectl runs it with the words after `apikey`, the
last one the word being completed, and reads one candidate a line, `value<TAB>help`,
then `:<directive>`, Cobra's protocol), and the candidates themselves: commands, flags,
their fixed values, ApiKey names from the cluster, namespaces and contexts.
Must not: print anything but candidates (a failed lookup completes nothing), or take
longer than a lookup: it runs on every TAB.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
from click.shell_completion import CompletionItem, ShellComplete

from keywright.core import names
from keywright.plugin import api, kubeconfig

NO_FILE = 4  # Cobra's ShellCompDirectiveNoFileComp
DEFAULT = 0  # let the shell complete file names


def _session(ctx: click.Context) -> api.Client | None:
    params: dict[str, Any] = {}
    node: click.Context | None = ctx
    while node is not None:  # the command's own flags first
        params = {**node.params, **params}
        node = node.parent
    try:
        return api.Client(kubeconfig.load(kubeconfig.paths(params.get("kubeconfig_path")),
                                          params.get("context"), params.get("namespace")))
    except (kubeconfig.ConfigError, api.ApiError, OSError):
        return None


def apikey_names(ctx: click.Context, _param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
    """The ApiKeys of the chosen namespace, with their phase and key preview as help."""
    client = _session(ctx)
    if client is None:
        return []
    path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/" \
           f"{client.connection.namespace}/{names.PLURAL}"
    try:
        items = client.get(path).get("items") or []
    except api.ApiError:
        return []
    return [CompletionItem(i["metadata"]["name"], help=" ".join(
        str((i.get("status") or {}).get(k) or "") for k in ("phase", "keyPreview")).strip())
        for i in items if i["metadata"]["name"].startswith(incomplete)]


def namespaces(ctx: click.Context, _param: click.Parameter,
               incomplete: str) -> list[CompletionItem]:
    client = _session(ctx)
    if client is None:
        return []
    try:
        items = client.get("/api/v1/namespaces").get("items") or []
    except api.ApiError:
        return []
    return [CompletionItem(i["metadata"]["name"]) for i in items
            if i["metadata"]["name"].startswith(incomplete)]


def contexts(ctx: click.Context, _param: click.Parameter,
             incomplete: str) -> list[CompletionItem]:
    import yaml

    found: list[str] = []
    for path in kubeconfig.paths(ctx.params.get("kubeconfig_path")):
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except OSError:
            continue
        found += [str(c.get("name")) for c in document.get("contexts") or []]
    return [CompletionItem(name) for name in dict.fromkeys(found) if name.startswith(incomplete)]


def candidates(cli: click.Command, words: Sequence[str]) -> tuple[list[CompletionItem], int]:
    """What completes the last of `words`, and Cobra's directive for the shell."""
    *done, incomplete = list(words) or [""]
    items = ShellComplete(cli, {}, "kubectl apikey", "").get_completions(done, incomplete)
    if any(item.type in ("file", "dir") for item in items) or (
            done and done[-1] == "--kubeconfig"):
        return [], DEFAULT
    return [i for i in items if str(i.value).startswith(incomplete)], NO_FILE


def main(argv: Sequence[str] | None = None) -> int:
    from keywright.plugin.main import cli

    items, directive = candidates(cli, sys.argv[1:] if argv is None else argv)
    for item in items:
        click.echo(f"{item.value}\t{item.help}" if item.help else str(item.value))
    click.echo(f":{directive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

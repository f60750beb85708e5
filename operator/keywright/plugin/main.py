"""`kubectl apikey`: the commands, their flags (kubectl's where kubectl has one), their
output and exit codes.

Owns: parsing (click; `--kubeconfig`, `--context` and `-n` on every command, since
kubectl hands a plugin its arguments untouched and refuses flags before the plugin's
name), what each command asks the API server, `--wait`, and the exit codes scripts rely
on: 0 done, 1 refused or failed (the API server's words on stderr), 2 a usage error,
124 a `--wait` that ran out of time.
Must not: print a plaintext key unless a command shows one once, on request; or import
the Kubernetes client, Kopf or pydantic (it answers in tens of milliseconds).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml

from keywright.core import names
from keywright.plugin import api, complete, kubeconfig, showing, views

WAIT_TIMED_OUT = 124  # as timeout(1) and cmctl: the condition was not met in time
PRESETS = ("1h", "1d", "7d", "30d", "90d", "180d", "360d", "Never")
POLL = 0.2  # seconds between looks while waiting on one ApiKey
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

F = TypeVar("F", bound=Callable[..., Any])


class Session:
    """The connection the common flags chose, opened on first use."""

    def __init__(self, kubeconfig_path: str | None, context: str | None,
                 namespace: str | None) -> None:
        self._args = (kubeconfig_path, context, namespace)
        self._client: api.Client | None = None

    @property
    def client(self) -> api.Client:
        if self._client is None:
            path, context, namespace = self._args
            self._client = api.Client(kubeconfig.load(kubeconfig.paths(path), context,
                                                      namespace))
        return self._client

    @property
    def namespace(self) -> str:
        return self.client.connection.namespace

    def apikeys(self, namespace: str | None = None) -> str:
        base = f"/apis/{names.GROUP}/{names.VERSION}"
        return f"{base}/namespaces/{namespace}/{names.PLURAL}" if namespace else \
            f"{base}/{names.PLURAL}"

    def apikey(self, name: str) -> str:
        return f"{self.apikeys(self.namespace)}/{name}"


def common(command: F) -> F:
    """kubectl's connection flags, on every command (a plugin gets them after its name)."""
    for option in reversed([
        click.option("--kubeconfig", "kubeconfig_path", metavar="PATH",
                     help="Path to the kubeconfig file to use."),
        click.option("--context", metavar="NAME", help="The kubeconfig context to use.",
                     shell_complete=complete.contexts),
        click.option("-n", "--namespace", metavar="NAME", shell_complete=complete.namespaces,
                     help="The namespace; default: the context's."),
    ]):
        command = option(command)
    return command


def session(kwargs: dict[str, Any]) -> Session:
    return Session(kwargs.pop("kubeconfig_path"), kwargs.pop("context"),
                   kwargs.pop("namespace"))


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def output_option(*choices: str) -> Callable[[F], F]:
    return click.option("-o", "--output", type=click.Choice(choices), default=choices[0],
                        show_default=True, help="Output format.")


def show(data: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Manage Keywright ApiKeys: list, create, rotate, activate, deactivate, delete."""


@cli.command("list")
@common
@click.option("-A", "--all-namespaces", is_flag=True, help="ApiKeys of every namespace.")
@click.option("--expiring", metavar="DURATION",
              help="Only keys that expire within this long, e.g. 14d.")
@click.option("--unused", metavar="DURATION",
              help="Only keys not used for this long (counted from creation if never).")
@output_option("table", "json", "yaml")
def list_(**kwargs: Any) -> None:
    """List ApiKeys: state, key preview, what they grant, expiry and last use."""
    here = session(kwargs)
    everywhere = kwargs["all_namespaces"]
    now = datetime.now(UTC)
    expiring = views.duration_flag("--expiring", kwargs["expiring"]) \
        if kwargs["expiring"] else None
    unused = views.duration_flag("--unused", kwargs["unused"]) if kwargs["unused"] else None
    items = call(lambda: here.client.get(here.apikeys(None if everywhere else here.namespace)))
    found = [item for item in items.get("items") or []
             if (expiring is None or views.expiring_within(item, expiring, now))
             and (unused is None or views.unused_for(item, unused, now))]
    found.sort(key=lambda i: (i["metadata"].get("namespace", ""), i["metadata"]["name"]))
    if kwargs["output"] != "table":
        show({"apiVersion": "v1", "kind": "List", "items": found}, kwargs["output"])
        return
    if not found:
        where = "any namespace" if everywhere else f"{here.namespace} namespace"
        click.echo(f"No ApiKeys found in {where}.", err=True)
        return
    header = (("NAMESPACE",) if everywhere else ()) + views.LIST_COLUMNS
    click.echo(views.table(header, [views.list_row(i, now, everywhere) for i in found]))


@cli.command()
@common
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, metavar="AREA.ACTION",
              help="A scope, e.g. Invoices.Read; repeat for more.")
@click.option("--role", "roles", multiple=True, metavar="NAME",
              help="An ApiKeyRole of the namespace; repeat for more.")
@click.option("--expiration", type=click.Choice(PRESETS), default="90d", show_default=True,
              help="Lifetime from creation, chosen once.")
@click.option("--allow", multiple=True, metavar="CIDR",
              help="An address or CIDR the key may be used from; repeat for more.")
@click.option("--rate", metavar="N/PERIOD", help="Rate limit, e.g. 600/1m.")
@click.option("--quota", metavar="N[/PERIOD]", help="Usage credits, e.g. 10000/30d.")
@click.option("--description", help="What the key is for, who owns it.")
@click.option("--secret", metavar="NAME", help="The Secret to write the key into "
              "(default: the ApiKey's name).")
@click.option("--restart", multiple=True, metavar="KIND/NAME",
              help="A workload to roll after each rotation, e.g. deployment/api.")
@click.option("--seal-to", multiple=True, metavar="AGE1...",
              help="Seal the key to this age recipient, with no Secret (a key for someone "
                   "outside the cluster); repeat for more.")
@click.option("--seal-to-file", type=click.Path(exists=True, dir_okay=False),
              help="Recipients from a file, one per line (as age -R takes them).")
@click.option("--dry-run", type=click.Choice(["none", "client", "server"]), default="none",
              help="client: print the ApiKey and create nothing; server: the API server "
                   "checks it (webhooks included) and stores nothing.")
@output_option("name", "yaml", "json")
@click.option("--wait", is_flag=True, help="Wait until the key is issued, and say where.")
@click.option("--show", is_flag=True,
              help="Show the key once, here, and keep it nowhere: no Secret; it is sealed "
                   "to a throwaway age identity this command holds in memory only.")
@click.option("--timeout", default="60s", show_default=True, help="How long --wait waits.")
def create(**kwargs: Any) -> None:
    """Create an ApiKey; the operator issues its key into a Secret (or seals it)."""
    here = session(kwargs)
    name = kwargs["name"]
    seal_to = list(kwargs["seal_to"])
    if kwargs["seal_to_file"]:
        seal_to += views.recipients_file(Path(kwargs["seal_to_file"]).read_text())
    try:
        made = views.manifest(
            name, here.namespace, expiration=kwargs["expiration"], scopes=kwargs["scopes"],
            roles=kwargs["roles"], allow=kwargs["allow"], rate=kwargs["rate"],
            quota=kwargs["quota"], description=kwargs["description"],
            secret=kwargs["secret"], restart=kwargs["restart"], seal_to=seal_to,
            no_secret=(bool(seal_to) or kwargs["show"]) and not kwargs["secret"])
        timeout = views.duration_flag("--timeout", kwargs["timeout"])
    except views.FlagError as exc:
        fail(str(exc), 2)
    if kwargs["show"] and kwargs["dry_run"] != "none":
        fail("--show creates the key to show it: it cannot be a dry run", 2)
    shown = showing.Throwaway() if kwargs["show"] else None
    if shown is not None:
        made["metadata"]["annotations"] = {names.SEAL_TO_ANNOTATION: shown.recipient}
    if kwargs["dry_run"] == "client":
        show(made, kwargs["output"] if kwargs["output"] != "name" else "yaml")
        return
    query = {"dryRun": "All"} if kwargs["dry_run"] == "server" else None
    created = call(lambda: here.client.request("POST", here.apikeys(here.namespace), made,
                                               query=query))
    suffix = " (server dry run)" if query else ""
    if kwargs["output"] != "name":
        show(created, kwargs["output"])
    else:
        click.echo(f"apikey.{names.GROUP}/{name} created{suffix}")
    if shown is not None:
        reveal(here, name, shown, 1, timeout.total_seconds())
        return
    if kwargs["wait"] and not query:
        status = wait_for(here, name, lambda s: s.get("phase") in ("Active", "Failed"),
                          timeout.total_seconds(), "issued")
        if status.get("phase") == "Failed":
            fail(f"ApiKey {name} is Failed: {ready_message(status)}")
        where = f"in Secret {status['secretName']}" if status.get("secretName") else \
            "sealed to its recipients (status.sealed)"
        click.echo(f"issued key {status.get('keyPreview')} {where}, expires "
                   f"{views.expires_words(status, datetime.now(UTC))}")


@cli.command()
@common
@click.argument("name", shell_complete=complete.apikey_names)
@click.option("--grace", metavar="DURATION",
              help="Keep the previous key valid this long (sets spec.rotation.gracePeriod).")
@click.option("--wait", is_flag=True, help="Wait until the new key is issued.")
@click.option("--show", is_flag=True,
              help="Show the new key once, here (sealed to a throwaway age identity this "
                   "command holds in memory only, in the same patch as the request).")
@click.option("--timeout", default="60s", show_default=True, help="How long --wait waits.")
def rotate(**kwargs: Any) -> None:
    """Issue a new key for an ApiKey now; the previous one stays valid for its grace."""
    here = session(kwargs)
    name = kwargs["name"]
    try:
        timeout = views.duration_flag("--timeout", kwargs["timeout"])
        if kwargs["grace"]:
            views.duration_flag("--grace", kwargs["grace"])
    except views.FlagError as exc:
        fail(str(exc), 2)
    before = call(lambda: here.client.get(here.apikey(name))).get("status") or {}
    request = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    patch: dict[str, Any] = {"metadata": {"annotations": {names.ROTATE_ANNOTATION: request}}}
    shown = showing.Throwaway() if kwargs["show"] else None
    if shown is not None:
        patch["metadata"]["annotations"][names.SEAL_TO_ANNOTATION] = shown.recipient
    if kwargs["grace"]:
        patch["spec"] = {"rotation": {"gracePeriod": kwargs["grace"]}}
    call(lambda: here.client.request("PATCH", here.apikey(name), patch,
                                     content_type="application/merge-patch+json"))
    click.echo(f"apikey.{names.GROUP}/{name} rotation requested")
    revision = int(before.get("revision") or 0)
    if shown is not None:
        reveal(here, name, shown, revision + 1, timeout.total_seconds())
        return
    if not kwargs["wait"]:
        return
    status = wait_for(here, name, lambda s: int(s.get("revision") or 0) > revision
                      or s.get("lastRotateRefused") == request, timeout.total_seconds(),
                      "rotated")
    if status.get("lastRotateRefused") == request:
        fail(f"the rotation was refused: {ready_message(status)}")
    kept = [p for p in status.get("previous") or [] if p.get("revision") == revision]
    after = f"; the previous key is valid until {kept[0]['retiresAt']}" if kept else \
        "; the previous key is invalid from now on"
    click.echo(f"revision {status['revision']}: key {status.get('keyPreview')}{after}")


@cli.command()
@common
@click.argument("name", shell_complete=complete.apikey_names)
@output_option("text", "json", "yaml")
def describe(**kwargs: Any) -> None:
    """An ApiKey's state: its keys and their last use, conditions, events, restart
    targets, its Secret and the Pods that take it."""
    here = session(kwargs)
    name = kwargs["name"]
    found = call(lambda: here.client.get(here.apikey(name)))
    events = call(lambda: here.client.get(
        f"/api/v1/namespaces/{here.namespace}/events",
        {"fieldSelector": f"involvedObject.name={name},involvedObject.kind={names.KIND}"}))
    ordered = sorted(events.get("items") or [],
                     key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    try:  # the Pods that take the key; a person who may not list Pods is told so
        pods: list[dict[str, Any]] | None = here.client.get(
            f"/api/v1/namespaces/{here.namespace}/pods").get("items") or []
    except api.ApiError:
        pods = None
    view = views.describe(found, ordered[-10:], pods, datetime.now(UTC))
    if kwargs["output"] == "text":
        click.echo(views.describe_text(view))
    else:
        show(view, kwargs["output"])


cli.add_command(describe, "status")


def _switch(active: bool) -> Callable[..., None]:
    def run(**kwargs: Any) -> None:
        here = session(kwargs)
        name = kwargs["name"]
        patch: dict[str, Any] = {"spec": {"active": active}}
        if active:  # also back from a deactivation as unused: its clock restarts
            patch["metadata"] = {"annotations": {names.REACTIVATE_ANNOTATION: datetime.now(
                UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
        call(lambda: here.client.request("PATCH", here.apikey(name), patch,
                                         content_type="application/merge-patch+json"))
        click.echo(f"apikey.{names.GROUP}/{name} {'activated' if active else 'deactivated'}")
    return run


NAME = click.argument("name", shell_complete=complete.apikey_names)
cli.command("activate", help="Let an ApiKey's key work again: spec.active: true, and a new "
            f"{names.REACTIVATE_ANNOTATION} value, which restarts its unused clock (a key "
            "deactivated as unused works again).")(common(NAME(_switch(True))))
cli.command("deactivate", help="Stop an ApiKey's key working, history kept "
            "(spec.active: false).")(common(NAME(_switch(False))))


@cli.command()
@common
@click.argument("name", shell_complete=complete.apikey_names)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def delete(**kwargs: Any) -> None:
    """Delete an ApiKey; its Secret goes with it, its key stops working."""
    here = session(kwargs)
    name = kwargs["name"]
    if not kwargs["yes"]:
        if not sys.stdin.isatty():
            fail(f"deleting ApiKey {name} needs --yes when there is no terminal to ask")
        click.confirm(f"Delete ApiKey {here.namespace}/{name}? Its key stops working and "
                      "its Secret is deleted", abort=True)
    call(lambda: here.client.request("DELETE", here.apikey(name)))
    click.echo(f'apikey.{names.GROUP} "{name}" deleted')


@cli.command()
@common
@click.option("--keywright-namespace", default=names.DEFAULT_NAMESPACE, show_default=True,
              help="Where Keywright is installed.")
@click.option("--wait", "wait_", default="0s", show_default=True, metavar="DURATION",
              help="Check again until every check passes, up to this long.")
@output_option("table", "json", "yaml")
def doctor(**kwargs: Any) -> None:
    """Is Keywright working here? Its CRDs, operator, verifiers, admission webhook, pepper,
    and this machine's clock against the API server's."""
    here = session(kwargs)
    try:
        seconds = views.duration_flag("--wait", kwargs["wait_"]).total_seconds()
    except views.FlagError as exc:
        fail(str(exc), 2)
    deadline = time.monotonic() + seconds
    while True:
        checks = diagnose(here, kwargs["keywright_namespace"])
        passed = all(state != views.FAILED for _, state, _ in checks)
        if passed or time.monotonic() >= deadline:
            break
        time.sleep(2)
    if kwargs["output"] == "table":
        click.echo(views.table(("CHECK", "STATUS", "DETAIL"), checks))
    else:
        show([{"check": c, "status": s, "detail": d} for c, s, d in checks], kwargs["output"])
    if not passed:
        sys.exit(WAIT_TIMED_OUT if seconds else 1)


def diagnose(here: Session, system: str) -> list[tuple[str, str, str]]:
    """Each check's (name, ok|failed|unknown, detail)."""
    def optional(path: str) -> dict[str, Any] | None:
        try:
            return here.client.get(path)
        except api.ApiError as exc:
            if exc.status in (403, 404):
                return None
            raise
    checks: list[tuple[str, str, str]] = []
    status, payload, headers = call(lambda: here.client.raw(
        "GET", f"/apis/{names.GROUP}/{names.VERSION}"))
    if status not in (200, 404):
        fail(f"the API server answered {status} to discovery: {payload[:200]!r}")
    checks.append(("API server", views.OK, here.client.connection.server))
    checks.append(("CRDs", *views.served(json.loads(payload) if status == 200 else None)))
    for label, name in (("operator", "keywright-operator"), ("verifiers", "keywright-verifier")):
        found = call(functools.partial(
            optional, f"/apis/apps/v1/namespaces/{system}/deployments/{name}"))
        checks.append((label, *views.deployment_ready(found, name, system)))
    checks.append(("admission webhook", *webhook_answers(here)))
    # its metadata only: the pepper itself never reaches this process
    seen, _, _ = call(lambda: here.client.raw(
        "GET", f"/api/v1/namespaces/{system}/secrets/{names.PEPPER_SECRET}",
        headers={"Accept": METADATA_ONLY}))
    pepper = f"Secret {system}/{names.PEPPER_SECRET}"
    checks.append(("pepper", *((views.OK, f"{pepper} exists") if seen == 200 else
                               (views.FAILED, f"{pepper} is missing: no key can be verified")
                               if seen == 404 else
                               (views.UNKNOWN, f"you may not read it (HTTP {seen})"))))
    checks.append(("clock", *views.skew(headers.get("date"), datetime.now(UTC))))
    return checks


def webhook_answers(here: Session) -> tuple[str, str]:
    """A server-side dry run of an ApiKey with a value only the webhook refuses: refused
    in the webhook's words means it is reachable and working."""
    probe = views.manifest("keywright-doctor", here.namespace, expiration="1d",
                           allow=["10.0.0.1/8"])  # host bits: the schema passes it
    try:
        here.client.request("POST", here.apikeys(here.namespace), probe,
                            query={"dryRun": "All"})
    except api.ApiError as exc:
        if "spec.ipAllowlist[0]" in str(exc):
            return views.OK, "reachable: it refused a bad ApiKey in its own words"
        if "failed calling webhook" in str(exc) or "webhook" in str(exc):
            return views.FAILED, str(exc)
        return views.UNKNOWN, str(exc)
    return views.FAILED, ("an ApiKey the webhook refuses was admitted: the webhook is not "
                          "installed (the operator without --webhook-port?)")


REFUSED = 3  # check and identify: the key is refused, or is no one's


def verifier_options(command: F) -> F:
    for option in reversed([
        click.option("--key-from-env", metavar="VAR",
                     help="Read the key from this environment variable (else from stdin; "
                          "never from the command line, where it would be in the shell's "
                          "history and in ps)."),
        click.option("--verifier", metavar="URL",
                     help="Ask this verifier directly (e.g. http://127.0.0.1:8080 for "
                          "keywright dev); default: keywright-verifier through the API "
                          "server's service proxy."),
        click.option("--keywright-namespace", default=names.DEFAULT_NAMESPACE,
                     show_default=True, help="Where Keywright is installed."),
    ]):
        command = option(command)
    return command


def read_key(variable: str | None) -> str:
    if variable:
        found = os.environ.get(variable, "").strip()
        if not found:
            fail(f"--key-from-env: ${variable} is empty or unset", 2)
        return found
    if sys.stdin.isatty():
        return str(click.prompt("API key", hide_input=True, err=True)).strip()
    found = sys.stdin.read().strip()
    if not found:
        fail("no key on stdin (pipe it in, or use --key-from-env VAR)", 2)
    return found


def ask_verifier(here: Session | None, verifier: str | None, system: str, key: str,
                 scopes: Sequence[str]) -> dict[str, Any]:
    """The verifier's /check answer for this key: directly, or through the API server."""
    query = {"scope": ",".join(scopes)} if scopes else None
    sent = {"X-API-Key": key}
    if verifier:
        direct = api.Client(kubeconfig.Connection(server=verifier, namespace="",
                                                  context="(--verifier)"))
        status, payload, _ = call(lambda: direct.raw("GET", "/check", query=query,
                                                     headers=sent))
    else:
        assert here is not None
        proxy = f"/api/v1/namespaces/{system}/services/http:keywright-verifier:http/proxy/check"
        status, payload, _ = call(lambda: here.client.raw("GET", proxy, query=query,
                                                          headers=sent))
    if status != 200:
        fail(f"the verifier answered {status}: {payload[:200].decode(errors='replace')}")
    found: dict[str, Any] = json.loads(payload)
    return found


def readable(here: Session, found: dict[str, Any]) -> dict[str, Any] | None:
    """The ApiKey the verifier named, if this person may read it."""
    whose = found.get("apikey")
    if not whose:
        return None
    try:
        return here.client.get(f"{here.apikeys(whose['namespace'])}/{whose['name']}")
    except (api.ApiError, kubeconfig.ConfigError):
        return None


@cli.command()
@common
@verifier_options
@click.option("--scope", "scopes", multiple=True, metavar="AREA.ACTION",
              help="A scope the request needs; repeat for more.")
@click.option("--from", "client", metavar="IP",
              help="Judge the IP allowlist as for a request from this address.")
def check(**kwargs: Any) -> None:
    """Would this key be let in? The decision and its reason, in words; nothing spent,
    nothing recorded as use."""
    here = session(kwargs)
    key = read_key(kwargs["key_from_env"])
    found = ask_verifier(None if kwargs["verifier"] else here, kwargs["verifier"],
                         kwargs["keywright_namespace"], key, kwargs["scopes"])
    del key
    status, code, words = views.explain(found, readable(here, found), kwargs["scopes"],
                                        kwargs["client"])
    click.echo(f"{status} {code}: {words}")
    if status != 200:
        sys.exit(REFUSED)


@cli.command()
@common
@verifier_options
def identify(**kwargs: Any) -> None:
    """Which ApiKey and revision is this key (a leaked one found in a log, say)? Never
    printed; rotate it at once if it leaked."""
    here = session(kwargs)
    key = read_key(kwargs["key_from_env"])
    found = ask_verifier(None if kwargs["verifier"] else here, kwargs["verifier"],
                         kwargs["keywright_namespace"], key, ())
    del key
    whose = found.get("apikey")
    if not whose:
        click.echo(f"{found['code']}: no ApiKey holds this key")
        sys.exit(REFUSED)
    state = "current" if whose.get("retiresAt") is None else "a previous revision, in its grace"
    if found["code"] == "INVALID_KEY":
        state = "a previous revision, past its grace: it no longer works"
    click.echo(f"ApiKey {whose['namespace']}/{whose['name']}, revision {whose['revision']} "
               f"(...{whose['lastCharacters']}, {state}). If it leaked: kubectl apikey "
               f"rotate {whose['name']} -n {whose['namespace']} --grace 0s")


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
def completion(shell: str) -> None:
    """Print the completion script for kubectl-apikey run by its own name. Completion of
    `kubectl apikey ...` needs nothing more than kubectl's own (kubectl 1.26+ asks
    kubectl_complete-apikey, installed beside this command)."""
    from click.shell_completion import get_completion_class

    found = get_completion_class(shell)
    assert found is not None
    click.echo(found(cli, {}, "kubectl-apikey", "_KUBECTL_APIKEY_COMPLETE").source())


T = TypeVar("T")


def call(request: Callable[[], T]) -> T:
    """An API call; its refusal (or a kubeconfig that cannot work) ends the command."""
    try:
        return request()
    except kubeconfig.ConfigError as exc:
        fail(str(exc))
    except api.ApiError as exc:
        if exc.status == 404 and not exc.reason:  # the path itself, not an object, is unknown
            fail(f"this cluster does not serve {names.PLURAL}.{names.GROUP}/{names.VERSION}: "
                 "are Keywright's CRDs installed? (kubectl apply -k crds/ from a release)")
        fail(str(exc))


def wait_for(here: Session, name: str, reached: Callable[[dict[str, Any]], bool],
             seconds: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        status: dict[str, Any] = call(lambda: here.client.get(here.apikey(name))).get(
            "status") or {}
        if reached(status):
            return status
        if time.monotonic() > deadline:
            fail(f"ApiKey {name} was not {what} within {seconds:g}s", WAIT_TIMED_OUT)
        time.sleep(POLL)


def reveal(here: Session, name: str, shown: showing.Throwaway, revision: int,
           seconds: float) -> None:
    """Wait for `revision` sealed to the throwaway identity, print its key once, and take
    the identity's recipient off the ApiKey (the identity itself dies with this process)."""
    try:
        status = wait_for(here, name, lambda s: s.get("phase") == "Failed" or (
            (s.get("sealed") or {}).get("revision") == revision
            and shown.recipient in (s.get("sealed") or {}).get("recipients", [])),
            seconds, f"issued (revision {revision})")
        if status.get("phase") == "Failed":
            fail(f"ApiKey {name} is Failed: {ready_message(status)}")
        key = shown.open(status["sealed"]["ciphertext"])
    finally:
        call(lambda: here.client.request(
            "PATCH", here.apikey(name),
            {"metadata": {"annotations": {names.SEAL_TO_ANNOTATION: None}}},
            content_type="application/merge-patch+json"))
    click.echo(f"revision {revision}, key {status.get('keyPreview')}, shown once and kept "
               "nowhere; store it now:", err=True)
    click.echo(key)


def ready_message(status: dict[str, Any]) -> str:
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return str(ready.get("message") or status.get("phase"))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="kubectl apikey",
                 complete_var="_KUBECTL_APIKEY_COMPLETE", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A person at a terminal using `kubectl apikey`, driven through tmux: what only a real
terminal shows (the delete confirmation, the key typed at a hidden prompt), read off the
screen as they would see it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.k8s import Cluster, Operator, Plaintext, Verifier
from tests.support.waiting import eventually

BIN = Path(sys.executable).parent


class Terminal:
    """A tmux pane running bash, on a server of its own (its own socket)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"kw-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.tmux("new-session", "-d", "-x", "160", "-y", "50", "-s", "person",
                  "bash --norc --noprofile")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args],
                              capture_output=True, text=True, check=True, timeout=30,
                              env=self.env).stdout

    def type(self, text: str, enter: bool = True) -> None:
        self.tmux("send-keys", "-t", "person", "-l", text)
        if enter:
            self.tmux("send-keys", "-t", "person", "Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "person", "-S", "-200")

    def shows(self, text: str, timeout: float = 30) -> str:
        return eventually(lambda: self.screen() if text in self.screen() else None,
                          timeout=timeout, what=f"the screen showing {text!r}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30, env=self.env)


@pytest.fixture
def terminal(cluster: Cluster) -> Iterator[Terminal]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PS1": "$ ", "TERM": "xterm"}
    opened = Terminal(env)
    try:
        yield opened
    finally:
        opened.close()


def test_a_person_creates_checks_with_a_hidden_prompt_and_deletes_after_confirming(
    running_operator: Operator, ready: Verifier, cluster: Cluster, namespace: str,
    terminal: Terminal
) -> None:
    terminal.type(f"kubectl apikey create demo -n {namespace} --scope Invoices.Read --wait")
    terminal.shows("issued key kw_...")
    key = Plaintext(cluster.plaintext(namespace, "demo"))

    terminal.type(f"kubectl apikey check -n {namespace} --verifier {ready.url} "
                  "--scope Invoices.Read")
    terminal.shows("API key:")
    terminal.type(key)  # typed at the prompt: not echoed
    screen = terminal.shows("200 OK: key demo (revision 1) grants Invoices.Read")
    assert key not in screen

    terminal.type(f"kubectl apikey delete demo -n {namespace}")
    terminal.shows(f"Delete ApiKey {namespace}/demo? Its key stops working and its Secret "
                   "is deleted [y/N]:")
    terminal.type("y")
    terminal.shows('apikey.keywright.dev "demo" deleted')
    listed = subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n",
                             namespace, "get", "apikeys", "-o", "name"], capture_output=True,
                            text=True, timeout=30, check=True).stdout
    assert listed == ""

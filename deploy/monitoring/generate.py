"""Make prometheusrule.yaml, the PrometheusRule deploy/monitoring installs, from
keywright.rules.yaml, the plain Prometheus rules file.

Owns: the PrometheusRule's header, and putting the rules file under its `spec` as it
is: the text indented, comments and all, so the two cannot say different things.
Must not: change, add or drop a rule, or need anything but Python's standard library
(it runs wherever the two files are copied to).

    python3 deploy/monitoring/generate.py           # write prometheusrule.yaml
    python3 deploy/monitoring/generate.py --check   # exit 1 if it is not up to date
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RULES = HERE / "keywright.rules.yaml"
TARGET = HERE / "prometheusrule.yaml"
HEADER = """\
# Made by generate.py from keywright.rules.yaml, which holds the same rules: edit that
# file, then run `python3 deploy/monitoring/generate.py`.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: keywright
spec:
"""
_TOP_LEVEL_KEY = re.compile(r"[^\s#-][^:]*:")


class RulesError(Exception):
    """The rules file is not one this generator can put under `spec` unchanged."""


def prometheus_rule(rules: str) -> str:
    """The PrometheusRule holding `rules` (a rules file's text) as its spec."""
    lines = rules.splitlines()
    for number, line in enumerate(lines, 1):
        if "\t" in line:
            raise RulesError(f"line {number}: a tab; indent with spaces")
        if line.startswith(("---", "...")):
            raise RulesError(f"line {number}: a second YAML document; one is allowed")
        key = _TOP_LEVEL_KEY.match(line)
        if key and key.group() != "groups:":
            raise RulesError(f"line {number}: top-level {key.group()!r}; a rules file "
                             "has `groups:` only")
    if not any(line.startswith("groups:") for line in lines):
        raise RulesError("no `groups:`")
    return HEADER + "".join(f"  {line}\n" if line else "\n" for line in lines)


def main(argv: list[str]) -> int:
    if argv not in ([], ["--check"]):
        print("usage: generate.py [--check]", file=sys.stderr)
        return 2
    try:
        made = prometheus_rule(RULES.read_text())
    except RulesError as exc:
        print(f"generate.py: {RULES.name}: {exc}", file=sys.stderr)
        return 1
    if argv == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != made:
            print(f"generate.py: {TARGET.name} is not made from {RULES.name} as it is now; "
                  "run python3 deploy/monitoring/generate.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(made)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

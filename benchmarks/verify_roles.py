"""What resolving roles costs `keywright verifier`: keys that hold their scope through an
ApiKeyRole with a row filter, against keys that hold it directly, in one run.

    .venv/bin/python -m benchmarks.verify_roles [--keys 10000] [--seconds 15] [--rounds 2]

Starts a local control plane (verifier_plane.py, shared with verify_http) and writes one
ApiKeyRole `reviewer` (Reviews: Read, filter `team: ${context.team}`) and two sets of N
ApiKeys with their hashes in status: `plain-*` with `scopes: [Reviews.Read]`, and
`roled-*` with no scopes, `roles: [reviewer]` and `context: {team: ...}`. One real
`keywright verifier` on core 0 indexes all 2N; wrk on core 1 drives
/verify?scope=Reviews.Read flat out with 1,000 keys of a set, plain then roled, for
--rounds rounds (so that drift on the machine falls on both alike). A roled answer
carries X-Keywright-Roles and an X-Keywright-Filters with the filter filled in; a plain
one the same headers but for Roles, and no filters.

Target (issue 14): role resolution costs < 10% of throughput, i.e. roled / plain >= 0.9.
Prints figures and the ratio; never passes or fails. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import statistics
import urllib.parse

from benchmarks import wrkload
from benchmarks.verifier_plane import NAMESPACE, Bench
from keywright.core import names

PATH = "/verify?scope=Reviews.Read"
TARGET = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    wrkload.ensure_tools()

    with Bench() as bench:
        bench.admin.create_object(
            f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{NAMESPACE}/{names.ROLE_PLURAL}",
            {"apiVersion": f"{names.GROUP}/{names.VERSION}", "kind": names.ROLE_KIND,
             "metadata": {"name": "reviewer", "namespace": NAMESPACE},
             "spec": {"permissions": [{"area": "Reviews", "actions": ["Read"],
                                       "filter": {"team": "${context.team}"}}]}})
        plain = bench.write_keys(args.keys, name="plain", spec={"scopes": ["Reviews.Read"]})
        roled = bench.write_keys(args.keys, name="roled", spec={
            "scopes": [], "roles": ["reviewer"], "context": {"team": "payments"}})
        verifier = bench.start_verifier()
        verifier.wait_indexed(2 * args.keys)
        show(verifier.url, plain[0], "plain")
        show(verifier.url, roled[0], "roled")

        scripts = {"plain": wrkload.lua(plain[:1000], PATH),
                   "roled": wrkload.lua(roled[:1000], PATH)}
        rates: dict[str, list[float]] = {"plain": [], "roled": []}
        for round_ in range(1, args.rounds + 1):
            for name in ("plain", "roled"):
                wrkload.run(verifier.url + PATH, scripts[name], args.connections, 2)  # warm
                found = wrkload.run(verifier.url + PATH, scripts[name], args.connections,
                                    args.seconds)
                rates[name].append(found.rate)
                print(f"  round {round_}, {name} keys: {found.line()}", flush=True)

    plain_rate, roled_rate = (statistics.fmean(rates[n]) for n in ("plain", "roled"))
    ratio = roled_rate / plain_rate
    print(f"keys with the scope directly: {plain_rate:,.0f}/s (mean of {args.rounds}); "
          f"through a role with a row filter: {roled_rate:,.0f}/s")
    print(f"roled / plain {ratio:.3f}: role resolution costs {1 - ratio:.1%} of throughput "
          f"(target < 10%: ratio to target {ratio / TARGET:.2f})")


def show(url: str, key: str, name: str) -> None:
    """One request: the identity headers a key of the set gets (not the key)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                            timeout=5)
    try:
        connection.request("GET", PATH, headers={"X-API-Key": key})
        answer = connection.getresponse()
        answer.read()
        headers = {k.lower(): v for k, v in answer.getheaders()}
    finally:
        connection.close()
    value = headers.get("x-keywright-filters", "")
    filters = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    print(f"{name} keys: 200, roles {headers.get('x-keywright-roles', '(none)')}, "
          f"permissions {headers.get('x-keywright-permissions')}, filters {filters}")


if __name__ == "__main__":
    main()

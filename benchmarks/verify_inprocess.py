"""The verifier's decision in-process (no HTTP): decisions per second on one core.

    .venv/bin/python benchmarks/verify_inprocess.py [--keys 10000] [--seconds 3]

Indexes N ApiKeys (real HMAC hashes under a 32-byte pepper), then calls
`keywright.verifier.decision.decide` in a loop for: valid keys (cycling through 1,000
different ones), unknown but well-formed keys, and keys with a bad checksum. Prints the
rate of each and its ratio to the 300,000/s target. Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from keywright import hashing, tokens
from keywright.verifier import decision, index

TARGET = 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    peppers = hashing.Peppers.new()
    plaintexts = [tokens.generate("kw") for _ in range(args.keys)]
    objects: list[dict[str, Any]] = [{
        "metadata": {"namespace": "bench", "name": f"key-{i}"},
        "spec": {"expiration": "90d", "scopes": ["Reviews.Write"]},
        "status": {"phase": "Active", "hash": hashing.digest(key, peppers), "revision": 1,
                   "lastCharacters": key[-4:], "expiresAt": "2099-01-01T00:00:00Z"},
    } for i, key in enumerate(plaintexts)]
    keys = index.Index()
    started = time.perf_counter()
    keys.replace_all(objects)
    print(f"indexed {len(keys)} keys in {time.perf_counter() - started:.2f} s")

    def asks(texts: list[str]) -> list[decision.Ask]:
        return [decision.Ask({"x-api-key": [t.encode()]}, "192.0.2.10",
                             frozenset({"Reviews.Read"})) for t in texts]

    unknown = [tokens.generate("kw") for _ in range(1000)]
    broken = [t[:-1] + ("0" if t[-1] != "0" else "1") for t in unknown]
    for label, batch, expected in (("valid", asks(plaintexts[:1000]), "OK"),
                                   ("unknown", asks(unknown), "INVALID_KEY"),
                                   ("bad checksum", asks(broken), "MALFORMED_KEY")):
        assert decision.decide(batch[0], keys, peppers, time.time()).code == expected
        count, now = 0, time.time()
        deadline = time.perf_counter() + args.seconds
        for request in itertools.cycle(batch):
            decision.decide(request, keys, peppers, now)
            count += 1
            if count % 1000 == 0 and time.perf_counter() >= deadline:
                break
        rate = count / (time.perf_counter() - deadline + args.seconds)
        print(f"{label:>12}: {rate:,.0f} decisions/s (target {TARGET:,}, ratio "
              f"{rate / TARGET:.2f})")


if __name__ == "__main__":
    main()

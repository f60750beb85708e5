"""The verifier's decision in-process (no HTTP): decisions per second on one core.

    .venv/bin/python benchmarks/verify_inprocess.py [--keys 10000] [--rounds 7] [--decisions 200000]

Indexes N ApiKeys (real HMAC hashes under a 32-byte pepper), then calls
`keywright.verifier.decision.decide` in a loop for: valid keys (cycling through 1,000
different ones), unknown but well-formed keys, and keys with a bad checksum. Prints the
rate of each and its ratio to the 300,000/s target. Prints figures; never passes or fails.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

from benchmarks import wrkload
from keywright.core import hashing, tokens
from keywright.verifier import decision, index

TARGET = 300_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--decisions", type=int, default=200_000, help="per round")
    args = parser.parse_args()

    peppers = hashing.Peppers.new()
    plaintexts = [tokens.generate("kw") for _ in range(args.keys)]
    objects: list[dict[str, Any]] = [{
        "metadata": {"namespace": "bench", "name": f"key-{i}"},
        "spec": {"expiration": "90d", "scopes": ["Reviews.Write"]},
        "status": {"phase": "Active", "hash": hashing.digest(key, peppers), "revision": 1,
                   "lastCharacters": key[-4:], "expiresAt": "2099-01-01T00:00:00Z"},
    } for i, key in enumerate(plaintexts)]
    keys, decide = index.Index(), decision.decide
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
        now, rates = time.time(), []
        for _ in range(args.rounds):  # the best round: the others lost time to the machine
            started = time.perf_counter()
            for request in itertools.islice(itertools.cycle(batch), args.decisions):
                decide(request, keys, peppers, now)
            rates.append(args.decisions / (time.perf_counter() - started))
        rate = max(rates)
        print(f"{label:>12}: {rate:,.0f} decisions/s, best of {args.rounds} rounds "
              f"(median {statistics.median(rates):,.0f}; target {TARGET:,}, ratio "
              f"{rate / TARGET:.2f})")
    print(wrkload.hmac_line())


if __name__ == "__main__":
    main()

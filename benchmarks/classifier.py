"""CPU cost of the default classifier on hostile 64 KiB error bodies (run by hand).

    PYTHONPATH=. python -m benchmarks.classifier

Prints the worst process-CPU time of one ``classify`` call per body kind (best of 20 runs
each), and the worst over all kinds, which issue 12 bounds at 5 ms.
"""

from __future__ import annotations

import json
import random
import string
import time

from retry_transport._classify import classify
from retry_transport._signatures import RULES
from retry_transport._verdict import Outcome

SIZE = 65536


def bodies() -> dict[str, bytes]:
    """Hostile bodies: runs, random text, near-miss words, deep JSON, every rule's needles."""
    rng = random.Random(12)
    words = "context length rate limit model not found too many tokens per day quota daily "
    words += "exceeded invalid request must be balance throttling overloaded 余额 每日 额度 "
    needles = " ".join(needle for rule in RULES for needle in getattr(rule, "needles", ()))
    return {
        "a-run": b"a" * SIZE,
        "spaces": b" " * SIZE,
        "newlines": b"a\n" * (SIZE // 2),
        "digits": b"9" * SIZE,
        "random-printable": "".join(rng.choice(string.printable) for _ in range(SIZE)).encode(),
        "near-miss-words": " ".join(rng.choice(words.split()) for _ in range(SIZE // 6)).encode()[
            :SIZE
        ],
        "all-needles-repeated": (needles + " ").encode() * (SIZE // (len(needles.encode()) + 1)),
        "json-long-message": json.dumps(
            {"error": {"message": " ".join(rng.choice(words.split()) for _ in range(SIZE // 7))}}
        ).encode()[:SIZE],
        "json-many-fields": json.dumps(
            {"error": [{"message": "x" * 10, "code": "y" * 10} for _ in range(2000)]}
        ).encode()[:SIZE],
        "deep-json": b'{"error": ' * (SIZE // 10),
        "repr-braces": ("{'status': 'x', " * (SIZE // 16)).encode(),
        "key-value-pairs": ('"quotaId": "PerMinute", ' * (SIZE // 24)).encode(),
    }


def measure(body: bytes, status: int = 400, runs: int = 20) -> float:
    outcome = Outcome("POST", "https://upstream.invalid/v1", status=status, body=body)
    best = float("inf")
    for _ in range(runs):
        start = time.process_time()
        classify(outcome)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    worst = 0.0
    for name, body in bodies().items():
        cost = max(measure(body, status) for status in (400, 429, 200, 500))
        worst = max(worst, cost)
        print(f"{name:24s} {cost * 1000:6.2f} ms")
    print(f"{'worst':24s} {worst * 1000:6.2f} ms (bound: 5 ms)")


if __name__ == "__main__":
    main()

"""Subscription cost per call: Webhooks.subscribe and unsubscribe with many endpoints on one environment.

Issue 8 measured 2 s to subscribe and 3.7 s to remove 8,000 endpoints on one environment: each call scanned the
scope's list (and unsubscribe every scope). Each call should cost the same however many endpoints there are.
The baseline is the same calls on a small scope (100 endpoints) in the same run; the printed ratio is the
per-call cost at N over the baseline's (target: at most 2, i.e. flat). The list-based registry the library used
before is measured beside it for comparison.

Run: ``python benchmarks/bench_subscriptions.py [--endpoints N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import gc
import time

from flaghooks import Endpoint, Webhooks
from flaghooks.testing import RecordingTransport


class ListRegistry:
    """The previous algorithm: a list per scope, searched on subscribe, every scope scanned on unsubscribe."""

    def __init__(self) -> None:
        self.scopes: dict[tuple[str, int], list[Endpoint]] = {}

    def subscribe(self, endpoint: Endpoint, *, environment: int) -> None:
        endpoints = self.scopes.setdefault(("environment", environment), [])
        if endpoint not in endpoints:
            endpoints.append(endpoint)

    def unsubscribe(self, endpoint: Endpoint) -> None:
        for scope, endpoints in list(self.scopes.items()):
            if endpoint in endpoints:
                endpoints.remove(endpoint)
            if not endpoints:
                del self.scopes[scope]


def per_call(registry: Webhooks | ListRegistry, endpoints: list[Endpoint]) -> tuple[float, float]:
    """Seconds per subscribe and per unsubscribe, filling one environment with ``endpoints`` and emptying it."""
    gc.collect()
    started = time.perf_counter()
    for endpoint in endpoints:
        registry.subscribe(endpoint, environment=5)
    subscribed = time.perf_counter()
    for endpoint in reversed(endpoints):  # newest first: a list has to be searched to its end
        registry.unsubscribe(endpoint)
    done = time.perf_counter()
    return (subscribed - started) / len(endpoints), (done - subscribed) / len(endpoints)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoints", type=int, default=8000, help="endpoints on one environment (default 8000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, best kept (default 5)")
    args = parser.parse_args()
    many = [Endpoint(f"https://hooks{i}.example.com/flags") for i in range(args.endpoints)]
    few = many[:100]
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.rounds):
        for name, registry_type, endpoints in (
            ("webhooks, 100", Webhooks, few),
            (f"webhooks, {args.endpoints}", Webhooks, many),
            (f"list (before), {args.endpoints}", ListRegistry, many),
        ):
            registry = registry_type(transport=RecordingTransport()) if registry_type is Webhooks else ListRegistry()
            sub, unsub = per_call(registry, endpoints)
            previous = best.get(name, (float("inf"), float("inf")))
            best[name] = (min(previous[0], sub), min(previous[1], unsub))
    for name, (sub, unsub) in best.items():
        print(f"{name:<24} subscribe {sub * 1e6:8.2f} us/call   unsubscribe {unsub * 1e6:8.2f} us/call")
    small, large = best["webhooks, 100"], best[f"webhooks, {args.endpoints}"]
    print(
        f"ratio {args.endpoints} / 100 endpoints (target <= 2): subscribe {large[0] / small[0]:.2f}x, "
        f"unsubscribe {large[1] / small[1]:.2f}x"
    )


if __name__ == "__main__":
    main()

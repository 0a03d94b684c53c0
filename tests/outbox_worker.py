"""A worker process for the outbox tests: ``python outbox_worker.py DB URL [ENDPOINTS] [PER_ENDPOINT]`` runs
OutboxDelivery.run() on DB (no stop event: until SIGTERM) for ENDPOINTS endpoints named r0, r1, ... at URL + their
name, then prints one JSON line: how many deliveries this process ended, and how many of those were delivered."""

from __future__ import annotations

import json
import sys
import threading

from flaghooks import Breaker, DeliveryResult, Endpoint, OutboxDelivery, RetryPolicy, SqliteOutbox, Webhooks
from flaghooks.transports import HttpTransport

ENV = 23
TIMEOUT = 1.0  # each attempt's bound; a lease lasts this plus LEASE_MARGIN
LEASE_MARGIN = 0.5


def main() -> None:
    db, url = sys.argv[1], sys.argv[2]
    endpoints = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    per_endpoint = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    lock = threading.Lock()
    ended = {"ended": 0, "delivered": 0}

    def on_result(result: DeliveryResult) -> None:
        with lock:
            ended["ended"] += 1
            ended["delivered"] += result.ok

    retry = RetryPolicy(attempts=10, backoff=0.05, max_delay=0.2)
    with Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"]), retry=retry, on_result=on_result) as hooks:
        for number in range(endpoints):
            hooks.subscribe(Endpoint(f"{url}r{number}", name=f"r{number}", timeout=TIMEOUT), environment=ENV)
        with SqliteOutbox(db) as outbox:
            delivery = OutboxDelivery(
                hooks,
                outbox,
                workers=4,
                per_endpoint=per_endpoint,
                breaker=Breaker(failures=1_000_000),
                poll_interval=0.05,
                lease_margin=LEASE_MARGIN,
            )
            delivery.run()
    sys.stdout.write(json.dumps(ended) + "\n")


if __name__ == "__main__":
    main()

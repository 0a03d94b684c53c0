"""Encoding cost per event: flaghooks' models + encode + sign against a hand-written sender.

Per event, flaghooks builds two new ``FeatureState`` objects, ``flag_changed`` (which draws a fresh event id:
time, counter and 64 random bits from a bulk ``os.urandom`` pool), ``encode(CLASSIC)`` and ``sign_flagsmith``.
The baseline builds the same payload as a dict literal (the way Flagsmith's sender builds it),
``json.dumps(d, sort_keys=True)`` and one HMAC. Both run in this process, interleaved, best of several
rounds; the printed ratio is flaghooks' time over the baseline's (target: at most 1.5).

Run: ``python benchmarks/bench_encode.py [--events N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from flaghooks import (
    Environment,
    Feature,
    FeatureState,
    PayloadFormat,
    Project,
    encode,
    flag_changed,
    sign_flagsmith,
)

SECRET = "bench-secret"
UTC = UTC
CREATED = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)
PROJECT = Project(12, "Project name", 1)
ENVIRONMENT = Environment(23, "Production")
BEFORE = Feature(id=2411, name="feature_name", project=PROJECT, created_date=CREATED, initial_value="red")
AFTER = Feature(id=2411, name="feature_name", project=PROJECT, created_date=CREATED, initial_value="blue")


def flaghooks_sender(n: int) -> tuple[bytes, str]:
    body, signature = b"", ""
    for i in range(n):
        stamp = datetime(2020, 3, 7, 13, 59, 7, i % 1_000_000, tzinfo=UTC)
        previous = FeatureState(id=10430, feature=BEFORE, environment=ENVIRONMENT, enabled=False, value=i)
        new = FeatureState(id=10430, feature=AFTER, environment=ENVIRONMENT, enabled=True, value=i + 1)
        event = flag_changed(previous, new, changed_by="Some User", timestamp=stamp)
        body = encode(event, PayloadFormat.CLASSIC)
        signature = sign_flagsmith(body, SECRET)
    return body, signature


def _dt(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def hand_written_sender(n: int) -> tuple[bytes, str]:
    key = SECRET.encode()
    body, signature = b"", ""
    for i in range(n):
        stamp = datetime(2020, 3, 7, 13, 59, 7, i % 1_000_000, tzinfo=UTC)
        payload = {
            "data": {
                "changed_by": "Some User",
                "new_state": {
                    "enabled": True,
                    "environment": ENVIRONMENT.id,
                    "feature": {
                        "created_date": _dt(AFTER.created_date),
                        "default_enabled": AFTER.default_enabled,
                        "description": AFTER.description,
                        "id": AFTER.id,
                        "initial_value": AFTER.initial_value,
                        "name": AFTER.name,
                        "project": AFTER.project.id,
                        "type": AFTER.type,
                    },
                    "feature_segment": None,
                    "feature_state_value": i + 1,
                    "id": 10430,
                    "identity": None,
                    "identity_identifier": None,
                },
                "previous_state": {
                    "enabled": False,
                    "environment": ENVIRONMENT.id,
                    "feature": {
                        "created_date": _dt(BEFORE.created_date),
                        "default_enabled": BEFORE.default_enabled,
                        "description": BEFORE.description,
                        "id": BEFORE.id,
                        "initial_value": BEFORE.initial_value,
                        "name": BEFORE.name,
                        "project": BEFORE.project.id,
                        "type": BEFORE.type,
                    },
                    "feature_segment": None,
                    "feature_state_value": i,
                    "id": 10430,
                    "identity": None,
                    "identity_identifier": None,
                },
                "timestamp": stamp.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z",
            },
            "event_type": "FLAG_UPDATED",
        }
        body = json.dumps(payload, sort_keys=True).encode()
        signature = hmac.new(key, body, hashlib.sha256).hexdigest()
    return body, signature


def best_time(fn: Callable[[int], tuple[bytes, str]], n: int) -> float:
    gc.collect()
    start = time.perf_counter()
    fn(n)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Many short rounds: the minimum of many filters out a shared machine's noise better than a few long ones.
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    # The same bytes and signature from both senders, or the comparison means nothing.
    if flaghooks_sender(3) != hand_written_sender(3):
        raise SystemExit("the two senders disagree on the bytes; the benchmark is broken")
    ours, theirs = [], []
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits both alike
        ours.append(best_time(flaghooks_sender, args.events))
        theirs.append(best_time(hand_written_sender, args.events))
    a, b = min(ours), min(theirs)
    per = 1e6 / args.events
    print(f"events per round: {args.events}, rounds: {args.rounds}")
    print(f"flaghooks   (models + flag_changed + encode + sign): {a * per:7.2f} us/event")
    print(f"hand-written (dict literal + json.dumps + hmac):     {b * per:7.2f} us/event")
    print(f"ratio flaghooks / hand-written: {a / b:.2f}x (target <= 1.50x)")


if __name__ == "__main__":
    main()

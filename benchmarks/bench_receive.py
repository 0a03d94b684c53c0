"""Receiving cost: decode, verify + decode + FlagCache.apply, and how apply scales with what the cache holds.

Four measurements, each against a baseline measured in the same run (interleaved rounds, best of each):

1. ``decode(body)`` against ``json.loads(body)`` on the same bytes (target: at most 3x);
2. ``verify_and_decode`` (an ``X-Flagsmith-Signature``) + ``FlagCache.apply`` against a hand-written
   receiver: hex HMAC compared with ``hmac.compare_digest`` + ``json.loads`` + a dict update keyed by target
   (target: at most 3x on every case);
3. ``FlagCache.apply`` of new events (updates of held targets) once the cache holds 10, 1k, 100k and 1M
   targets (target: flat within 2x of the 10-target cost);
4. filling an empty cache with 1M events (target: under 60 s), printed beside a plain dict filled with the same
   1M keys, since absolute times drift between runs.

Cases for 1 and 2: CLASSIC and MODERN bodies of an environment default, an identity override, a segment override,
and a mixed stream over 600 targets (defaults, identity and segment overrides).

Run: ``python benchmarks/bench_receive.py [--quick]`` (``--quick``: fewer events and rounds, and 100k targets at
most, for a run of a few seconds).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from flaghooks import (
    Environment,
    EventType,
    Feature,
    FeatureSegment,
    FeatureState,
    FlagChange,
    Identity,
    PayloadFormat,
    Project,
    Segment,
    WebhookEvent,
    decode,
    encode,
    flag_changed,
    sign_flagsmith,
)
from flaghooks.receiver import FlagCache, verify_and_decode

SECRET = "bench-secret"
T0 = datetime(2024, 3, 7, 13, 59, 7, 40000, tzinfo=UTC)
PROJECT = Project(12, "Checkout", 7)
ENVIRONMENT = Environment(23, "Production")
CREATED = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)
FEATURES = [
    Feature(id=2400 + n, name=f"feature_{n}", project=PROJECT, created_date=CREATED, initial_value="red")
    for n in range(50)
]
SEGMENTS = [FeatureSegment(id=500 + n, segment=Segment(50 + n, f"segment_{n}"), priority=n) for n in range(60)]


# --- events, built cheaply ---------------------------------------------------------------------------------------


def _cloner(cls: type) -> Callable[..., Any]:
    """A constructor for ``cls`` that skips validation: the benchmark builds up to millions of objects from
    values that are valid by construction (checked against the real constructor in ``check_clones``)."""
    defaults = {}
    for field in attrs.fields(cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        defaults[field.name] = default
    new, set_ = object.__new__, object.__setattr__

    def build(**values: Any) -> Any:
        obj = new(cls)
        for name, default in defaults.items():
            set_(obj, name, values.get(name, default))
        return obj

    return build


_identity = _cloner(Identity)
_state = _cloner(FeatureState)
_change = _cloner(FlagChange)
_event = _cloner(WebhookEvent)


def fast_event(event_id: str, when: datetime, feature: Feature, identity: Identity, value: int = 0) -> WebhookEvent:
    state = _state(feature=feature, environment=ENVIRONMENT, enabled=True, value=value, identity=identity)
    change = _change(changed_by="", new_state=state, previous_state=None, timestamp=when)
    return _event(id=event_id, event_type=EventType.FLAG_UPDATED, data=change)


def check_clones() -> None:
    who = Identity(7, "user_7")
    fast = fast_event("evt_x", T0, FEATURES[0], _identity(id=7, identifier="user_7"), 3)
    real = flag_changed(
        None,
        FeatureState(feature=FEATURES[0], environment=ENVIRONMENT, enabled=True, value=3, identity=who),
        changed_by="",
        timestamp=T0,
        event_id="evt_x",
    )
    if fast != real:
        raise SystemExit("the fast event builder disagrees with the real constructors; the benchmark is broken")


def stream(kind: str, n: int) -> list[WebhookEvent]:
    """``n`` FLAG_UPDATED events of one kind, newer one after the other, built with the real constructors."""
    events = []
    for i in range(n):
        override: dict[str, Any] = {}
        feature = FEATURES[i % 40]
        if kind == "identity override" or (kind == "mixed" and i % 3 == 1):
            override["identity"] = Identity(10_000 + i % 500, f"user_{i % 500}")
        elif kind == "segment override" or (kind == "mixed" and i % 3 == 2):
            override["feature_segment"] = SEGMENTS[i % 60]
            feature = FEATURES[40]
        state = FeatureState(id=10_000 + i, feature=feature, environment=ENVIRONMENT, enabled=True, value=i, **override)
        when = T0 + timedelta(microseconds=i)
        events.append(flag_changed(None, state, changed_by="Some User", timestamp=when, event_id=f"evt_{kind[:3]}{i}"))
    return events


# --- 1 and 2: decode, and the whole receiving path ---------------------------------------------------------------


def hand_target(data: dict[str, Any]) -> tuple[Any, ...]:
    """The target a hand-written receiver keys its dict by, read from either payload format."""
    state = data["new_state"] or data["previous_state"]
    environment = state["environment"]
    if type(environment) is dict:
        environment = environment["id"]
    segment = state["feature_segment"]
    if state["identity_identifier"] is not None:
        who: Any = ("identity", state["identity_identifier"])
    elif segment is not None:
        who = ("segment", segment["segment"]["id"] if type(segment) is dict else segment)
    else:
        who = None
    return (environment, state["feature"]["id"], who)


class Case:
    def __init__(self, fmt: PayloadFormat, kind: str, n: int) -> None:
        self.name = f"{fmt.value:7} {kind}"
        self.requests = []
        for event in stream(kind, n):
            body = encode(event, fmt)
            headers = {
                "Content-Type": "application/json",
                "X-Flagsmith-Signature": sign_flagsmith(body, SECRET),
                "webhook-id": event.id,
            }
            self.requests.append((body, headers))
        self.ids = [headers["webhook-id"] for _, headers in self.requests]
        self.decoded = [
            decode(body, event_id=event_id) for (body, _), event_id in zip(self.requests, self.ids, strict=True)
        ]

    def decode(self) -> int:
        return len(
            [decode(body, event_id=event_id) for (body, _), event_id in zip(self.requests, self.ids, strict=True)]
        )

    def json_loads(self) -> int:
        loads = json.loads
        return len([loads(body) for body, _ in self.requests])

    def apply(self) -> int:
        cache = FlagCache()
        for event in self.decoded:
            cache.apply(event)
        return len(cache)

    def flaghooks(self) -> int:
        cache = FlagCache()
        for body, headers in self.requests:
            cache.apply(verify_and_decode(body, headers, secret=SECRET))
        return len(cache)

    def hand_written(self) -> int:
        key, store = SECRET.encode(), {}
        for body, headers in self.requests:
            expected = hmac.new(key, body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, headers["X-Flagsmith-Signature"]):
                raise SystemExit("bad signature")
            data = json.loads(body)["data"]
            store[hand_target(data)] = data
        return len(store)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def receiving(n: int, rounds: int) -> None:
    cases = [
        Case(fmt, kind, n)
        for fmt in (PayloadFormat.CLASSIC, PayloadFormat.MODERN)
        for kind in ("environment default", "identity override", "segment override", "mixed")
    ]
    methods = ("decode", "json_loads", "flaghooks", "hand_written", "apply")
    best = {(case.name, method): float("inf") for case in cases for method in methods}
    for case in cases:  # the two receivers must agree on how many targets the stream touches
        if case.flaghooks() != case.hand_written():
            raise SystemExit(f"{case.name}: the receivers disagree on the targets; the benchmark is broken")
    for _ in range(rounds):
        for case in cases:
            for method in methods:
                elapsed, _ = timed(getattr(case, method))
                best[(case.name, method)] = min(best[(case.name, method)], elapsed)
    per = 1e6 / n
    print(f"events per case: {n} (mixed: 600 targets), rounds: {rounds}; us/event, best round")
    print("decode: decode(body) against json.loads(body); ours: verify_and_decode + FlagCache.apply against the")
    print("hand-written receiver (hand); apply: FlagCache.apply alone (of the decoded events, into a new cache)")
    print(f"{'case':34} {'decode':>7} {'loads':>7} {'ratio':>6}   {'ours':>7} {'hand':>7} {'ratio':>6}   {'apply':>6}")
    worst_decode = worst_receive = 0.0
    for case in cases:
        d, j, o, h, a = (best[(case.name, method)] for method in methods)
        worst_decode, worst_receive = max(worst_decode, d / j), max(worst_receive, o / h)
        print(
            f"{case.name:34} {d * per:7.2f} {j * per:7.2f} {d / j:5.2f}x   {o * per:7.2f} {h * per:7.2f} {o / h:5.2f}x"
            f"   {a * per:6.2f}"
        )
    print(f"worst decode / json.loads: {worst_decode:.2f}x (target <= 3.00x)")
    print(f"worst verify+decode+apply / hand-written: {worst_receive:.2f}x (target <= 3.00x)")


# --- 3 and 4: apply as the cache grows, and filling it ---------------------------------------------------------


def targets(size: int) -> list[tuple[Feature, Identity]]:
    """``size`` identity-override targets over 10 features (size/10 identities each)."""
    people = max(1, size // 10)
    identities = [_identity(id=100_000 + n, identifier=f"user_{n}") for n in range(people)]
    return [(FEATURES[n % 10], identities[n // 10 % people]) for n in range(size)]


def fill_events(where: list[tuple[Feature, Identity]]) -> list[WebhookEvent]:
    return [
        fast_event(f"fill_{n}", T0 + timedelta(microseconds=n), feature, who, n)
        for n, (feature, who) in enumerate(where)
    ]


def held(where: list[tuple[Feature, Identity]], n: int) -> tuple[Feature, Identity]:
    """A held target, spread over the whole cache. Each event of the benchmark carries a new value, so each apply
    changes what the cache shows (as a real update does)."""
    return where[n * 7919 % len(where)]


def plain_fill(events: list[WebhookEvent]) -> float:
    gc.collect()
    start = time.perf_counter()
    store: dict[tuple[int, int, str], FeatureState] = {}
    for event in events:
        state = event.data.new_state  # type: ignore[union-attr]
        store[(state.environment.id, state.feature.id, state.identity.identifier)] = state
    elapsed = time.perf_counter() - start
    if len(store) != len(events):
        raise SystemExit("the plain fill lost keys; the benchmark is broken")
    return elapsed


def plain_update(store: dict[tuple[int, int, str], FeatureState], events: list[WebhookEvent]) -> None:
    for event in events:
        state = event.data.new_state  # type: ignore[union-attr]
        store[(state.environment.id, state.feature.id, state.identity.identifier)] = state


def scaling(sizes: list[int], batch: int, rounds: int) -> None:
    caches, stores, batches = {}, {}, {}
    fill_seconds = dict_seconds = 0.0
    later = T0 + timedelta(days=1)
    for size in sizes:
        where = targets(size)
        events = fill_events(where)
        cache = FlagCache()
        if size == sizes[-1]:
            dict_seconds = plain_fill(events)
        gc.collect()
        start = time.perf_counter()
        for event in events:
            cache.apply(event)
        if size == sizes[-1]:
            fill_seconds = time.perf_counter() - start
            dict_seconds = min(dict_seconds, plain_fill(events))
        if len(cache) != size:
            raise SystemExit(f"the cache holds {len(cache)} targets, not {size}; the benchmark is broken")
        stores[size] = {}
        plain_update(stores[size], events)
        del events
        # Every cache has seen more events than it remembers ids of, so each apply also forgets one, as in a
        # long-running receiver (a small cache fresh from its fill would not).
        for n in range(max(0, 70_000 - size)):
            cache.apply(fast_event(f"warm_{n}", later - timedelta(microseconds=70_000 - n), *held(where, n)))
        caches[size] = cache
        batches[size] = [
            [
                fast_event(
                    f"r{r}_{n}",
                    later + timedelta(seconds=r, microseconds=n),
                    *held(where, n * 31 + r),
                    r * batch + n + 1,
                )
                for n in range(batch)
            ]
            for r in range(rounds)
        ]
    best = {(size, kind): float("inf") for size in sizes for kind in ("apply", "dict")}
    for r in range(rounds):
        for size in sizes:  # interleaved: a round of each size, then the next round
            apply, events = caches[size].apply, batches[size][r]
            gc.collect()
            start = time.perf_counter()
            for event in events:
                apply(event)
            best[(size, "apply")] = min(best[(size, "apply")], time.perf_counter() - start)
            gc.collect()
            start = time.perf_counter()
            plain_update(stores[size], events)
            best[(size, "dict")] = min(best[(size, "dict")], time.perf_counter() - start)
    base, dict_base = best[(sizes[0], "apply")], best[(sizes[0], "dict")]
    print(f"FlagCache.apply of new events (updates of held targets), {batch} per round, {rounds} rounds;")
    print("beside it, a plain dict update of the same targets (what memory alone costs as the index grows):")
    for size in sizes:
        ours, plain = best[(size, "apply")], best[(size, "dict")]
        print(
            f"  {size:>9,} targets: {ours / batch * 1e6:6.2f} us/apply {ours / base:5.2f}x"
            f"   dict {plain / batch * 1e6:5.2f} us {plain / dict_base:5.2f}x"
            f"   apply - dict {(ours - plain) / batch * 1e6:5.2f} us"
        )
    worst = max(best[(size, "apply")] for size in sizes)
    print(f"worst apply / 10 targets: {worst / base:.2f}x (target <= 2.00x)")
    print(
        f"filling an empty cache with {sizes[-1]:,} events: {fill_seconds:.1f} s "
        f"(target < 60 s at 1M); a plain dict with the same keys: {dict_seconds:.2f} s, "
        f"ratio {fill_seconds / dict_seconds:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run: fewer events, 100k targets at most")
    args = parser.parse_args()
    check_clones()
    if args.quick:
        receiving(n=300, rounds=5)
        scaling([10, 1_000, 10_000, 100_000], batch=2_000, rounds=5)
    else:
        receiving(n=1_000, rounds=15)
        scaling([10, 1_000, 100_000, 1_000_000], batch=5_000, rounds=15)


if __name__ == "__main__":
    main()

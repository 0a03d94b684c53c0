"""FlagCache on each store, in one process: reads, applies, and loading a large environment document.

1. reads: ``cache.get(environment, name, identity=identifier)`` returning a ``FeatureState``, cycling through 1,000
   lookups (half of them identities with an override), on the memory store, SQLite with its per-process copy
   (cached; target: at least 100k reads/s), SQLite without it (uncached: every read queries the file), and Redis;
2. applies: new events (updates of held environment defaults and identity overrides, distinct ids) per second;
   target for SQLite with ``synchronous="NORMAL"``: at least 5k applies/s;
3. ``load_environment_document`` of a document with 1,000 features and 10,000 overrides (9,000 identity overrides,
   1,000 segment overrides), built as a plain dict in the shape Flagsmith's API writes, into an empty store, and
   again (nothing changed).

Redis is the one on 127.0.0.1:6379 (skipped with a note when unreachable), under a key prefix of its own, removed
after. Absolute figures drift between runs and machines; the targets are what the issue asks for.

Run: ``python benchmarks/bench_cache.py [--quick]`` (``--quick``: fewer operations, for a run of a few seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flaghooks import Environment, Feature, FeatureState, Identity, Project, WebhookEvent, flag_changed
from flaghooks.cache import FlagCache, RedisFlagStore, SqliteFlagStore

T0 = datetime(2024, 6, 1, tzinfo=UTC)
PROJECT = Project(7, "Shop", organisation=3)
ENVIRONMENT = 21
FEATURES = 1_000
IDENTITIES = 3_000  # x 3 features each: 9,000 identity overrides
SEGMENTS = 50  # x 20 features each: 1,000 segment overrides
REDIS = ("127.0.0.1", 6379)


class UncachedSqliteFlagStore(SqliteFlagStore):
    """SQLite without the per-process copy: every read queries the file."""

    _MEMO_SIZE = 0


def environment_document() -> dict[str, Any]:
    """A 1,000-feature, 10,000-override environment document, as a plain dict."""

    def state(feature: int, value: Any, seed: int, priority: int | None = None) -> dict[str, Any]:
        return {
            "feature": {"id": feature, "name": f"feature_{feature}", "type": "STANDARD"},
            "enabled": seed % 3 != 0,
            "django_id": seed,
            "feature_segment": None if priority is None else {"priority": priority},
            "featurestate_uuid": str(uuid.UUID(int=seed)),
            "feature_state_value": value,
            "multivariate_feature_state_values": [],
        }

    seed = iter(range(1, 10**9))
    segments = [
        {
            "id": 100 + s,
            "name": f"segment_{s}",
            "rules": [],
            "feature_states": [state(f, f"seg{s}", next(seed), priority=s) for f in range(1 + s * 20, 21 + s * 20)],
        }
        for s in range(SEGMENTS)
    ]
    identities = [
        {
            "identifier": f"user_{i}",
            "environment_api_key": "bench-key",
            "identity_features": [state(1 + (i * 7 + k * 13) % FEATURES, f"u{i}", next(seed)) for k in range(3)],
            "identity_traits": [],
            "identity_uuid": str(uuid.UUID(int=10**6 + i)),
            "django_id": i,
        }
        for i in range(IDENTITIES)
    ]
    return {
        "id": ENVIRONMENT,
        "api_key": "bench-key",
        "name": "Production",
        "updated_at": "2024-06-01T12:00:00Z",
        "project": {"id": 7, "name": "Shop", "organisation": {"id": 3, "name": "Acme"}, "segments": segments},
        "feature_states": [state(f, f"default{f}", next(seed)) for f in range(1, FEATURES + 1)],
        "identity_overrides": identities,
    }


def lookups() -> list[tuple[str, str]]:
    """1,000 (feature name, identifier) lookups: half of them hit an identity override."""
    found = []
    for n in range(1_000):
        i = (n * 37) % IDENTITIES
        feature = 1 + (i * 7 + (n % 3) * 13) % FEATURES if n % 2 == 0 else 1 + (n * 11) % FEATURES
        found.append((f"feature_{feature}", f"user_{i}"))
    return found


def updates(count: int, tag: str) -> list[WebhookEvent]:
    """``count`` new events: updates of held defaults and identity overrides, each with its own id."""
    events = []
    for n in range(count):
        feature = Feature(id=1 + n % FEATURES, name=f"feature_{1 + n % FEATURES}", project=PROJECT, created_date=T0)
        identity = Identity(n % IDENTITIES, f"user_{n % IDENTITIES}") if n % 2 else None
        new = FeatureState(
            feature=feature, environment=Environment(ENVIRONMENT), enabled=True, value=n, identity=identity
        )
        events.append(flag_changed(None, new, timestamp=T0 + timedelta(days=1, microseconds=n), event_id=f"{tag}_{n}"))
    return events


def best_rate(rounds: int, count: int, work: Callable[[], None]) -> float:
    """Operations per second of ``work`` (``count`` operations), best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return count / best


def bare_transactions(folder: Path, count: int, rounds: int) -> float:
    """What this disk allows: transactions per second of one INSERT each, in WAL mode with synchronous=NORMAL (an
    apply cannot be faster than this)."""
    with contextlib.closing(sqlite3.connect(folder / "bare.db", isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB)")
        value = b"x" * 400
        keys = iter(range(10**9))

        def work() -> None:
            for _ in range(count):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (str(next(keys)), value))
                conn.execute("COMMIT")

        return best_rate(rounds, count, work)


def redis_reachable() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def stores(folder: Path) -> Iterator[list[tuple[str, Callable[[], FlagCache]]]]:
    """(label, factory of an empty cache) per store; Redis keys removed after."""
    made: list[FlagCache] = []
    prefix = f"flaghooks-bench-{uuid.uuid4().hex[:8]}:"

    def factory(build: Callable[[str], Any]) -> Callable[[], FlagCache]:
        def make() -> FlagCache:
            cache = FlagCache(build(uuid.uuid4().hex[:8]))
            made.append(cache)
            return cache

        return make

    found = [
        ("memory", FlagCache),
        ("sqlite (cached)", factory(lambda tag: SqliteFlagStore(folder / f"{tag}.db"))),
        ("sqlite (uncached)", factory(lambda tag: UncachedSqliteFlagStore(folder / f"{tag}.db"))),
    ]
    if redis_reachable():
        found.append(("redis", factory(lambda tag: RedisFlagStore("redis://127.0.0.1:6379/0", prefix=prefix + tag))))
    try:
        yield found
    finally:
        for cache in made:
            cache.close()
        if redis_reachable():
            import redis

            with contextlib.closing(redis.Redis(host=REDIS[0], port=REDIS[1])) as client:
                keys = list(client.scan_iter(match=prefix + "*", count=1000))
                if keys:
                    client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations, for a run of a few seconds")
    quick = parser.parse_args().quick
    rounds = 2 if quick else 3
    document = environment_document()
    wanted = lookups()
    figures: dict[str, dict[str, float]] = {}
    folder = Path(tempfile.mkdtemp(prefix="flaghooks-bench-cache-"))
    try:
        with stores(folder) as found:
            for label, make in found:
                shared = label != "memory"
                cache = make()
                started = time.perf_counter()
                changed = cache.load_environment_document(document)
                first_load = time.perf_counter() - started
                started = time.perf_counter()
                unchanged = cache.load_environment_document(document)
                second_load = time.perf_counter() - started
                assert changed == FEATURES + IDENTITIES * 3 + SEGMENTS * 20 - _collisions(document), changed
                assert unchanged == 0
                assert isinstance(cache.get(ENVIRONMENT, wanted[0][0], identity=wanted[0][1]), FeatureState)
                reads = len(wanted) * (1 if label in ("redis", "sqlite (uncached)") or quick else 20)

                def read(cache: FlagCache = cache, reads: int = reads) -> None:
                    get = cache.get
                    for n in range(reads):
                        name, who = wanted[n % 1_000]
                        get(ENVIRONMENT, name, identity=who)

                read()  # the copy filled (SQLite), connections open
                read_rate = best_rate(rounds, reads, read)
                count = (2_000 if quick else 5_000) if shared else (20_000 if quick else 100_000)
                batches = [updates(count, f"{label[:6]}{r}") for r in range(rounds)]

                def apply(cache: FlagCache = cache, batches: list[list[WebhookEvent]] = batches) -> None:
                    for event in batches.pop():
                        cache.apply(event)

                apply_rate = best_rate(rounds, count, apply)
                figures[label] = {
                    "reads": read_rate,
                    "applies": apply_rate,
                    "load": first_load,
                    "reload": second_load,
                }
        bare = bare_transactions(folder, 2_000 if quick else 5_000, rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"FlagCache per store, one process; document: {FEATURES:,} features, 10,000 overrides")
    print(f"{'store':<18} {'reads/s':>11} {'applies/s':>11} {'load s':>8} {'reload s':>9}")
    for label, row in figures.items():
        print(f"{label:<18} {row['reads']:>11,.0f} {row['applies']:>11,.0f} {row['load']:>8.2f} {row['reload']:>9.2f}")
    if "redis" not in figures:
        print("redis: not reachable on 127.0.0.1:6379, not measured")
    cached, uncached = figures["sqlite (cached)"], figures["sqlite (uncached)"]
    memory = figures["memory"]
    print(
        f"sqlite reads with the per-process copy: {cached['reads']:,.0f}/s (uncached {uncached['reads']:,.0f}/s, "
        f"memory {memory['reads']:,.0f}/s): {_verdict(cached['reads'] >= 100_000)} (target >= 100,000/s)"
    )
    print(
        f"sqlite applies with synchronous=NORMAL: {cached['applies']:,.0f}/s: "
        f"{_verdict(cached['applies'] >= 5_000)} (target >= 5,000/s); this disk's bare transactions (BEGIN "
        f"IMMEDIATE, one INSERT, COMMIT): {bare:,.0f}/s, applies reach {cached['applies'] / bare:.0%} of them"
    )


def _collisions(document: dict[str, Any]) -> int:
    """Identity overrides the document lists twice for one identity and feature (the later one counts)."""
    seen = set()
    repeated = 0
    for identity in document["identity_overrides"]:
        for state in identity["identity_features"]:
            key = (identity["identifier"], state["feature"]["id"])
            repeated += key in seen
            seen.add(key)
    return repeated


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


if __name__ == "__main__":
    main()

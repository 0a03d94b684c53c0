"""Processes for the shared-store tests: histories, a worker that applies events, and a receiver app for gunicorn.

- ``history(seed, count)``: a random history of flag events (defaults, segment and identity overrides, deletions,
  renames, ties) for environments 10 and 11;
- ``python cache_workers.py apply STORE EVENTS``: applies the pickled events in the file EVENTS to STORE;
- ``cache_workers:app`` (for gunicorn): a ``WebhookReceiver`` on the store named by ``FLAGHOOKS_TEST_STORE``, whose
  ``on_event`` records each event id with the process id in the SQLite file ``FLAGHOOKS_TEST_HANDLED``; a GET
  answers ``{"pid", "states", "answers"}`` from this process's cache (``LOOKUPS``, states encoded).

A store is named ``sqlite:PATH`` or ``redis:PREFIX`` (the Redis on 127.0.0.1:6379).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import sqlite3
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from flaghooks import (
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    Project,
    Segment,
    WebhookEvent,
    flag_changed,
)
from flaghooks.cache import FlagCache, RedisFlagStore, SqliteFlagStore
from flaghooks.cache._codec import encode_state
from flaghooks.receiver import WebhookReceiver

T0 = datetime(2024, 6, 1, tzinfo=UTC)
PROJECT = Project(1, "Shop", organisation=1)
NAMES = ["banner", "search", "checkout", "pay"]
IDENTITIES = [Identity(900 + n, f"user{n}") for n in range(5)]
SEGMENTS = [FeatureSegment(id=50 + n, segment=Segment(5 + n, f"seg{n}"), priority=n) for n in range(2)]
LOOKUPS = [
    (environment, feature, identity)
    for environment in (10, 11)
    for feature in [*NAMES, 1, 2, 3, 4, 5]
    for identity in [None, *(who.identifier for who in IDENTITIES)]
]


def history(seed: int, count: int) -> list[WebhookEvent]:
    """``count`` events drawn with ``random.Random(seed)``: few features, names and instants, so that renames,
    re-used names and equal timestamps happen."""
    rnd = random.Random(seed)
    events = []
    for index in range(count):
        feature = Feature(id=rnd.randint(1, 5), name=rnd.choice(NAMES), project=PROJECT, created_date=T0)
        override: dict[str, Any] = rnd.choice(
            [{}, {}, {}, {"identity": rnd.choice(IDENTITIES)}, {"feature_segment": rnd.choice(SEGMENTS)}]
        )
        target = FeatureState(
            feature=feature,
            environment=Environment(rnd.choice([10, 10, 11])),
            enabled=rnd.random() < 0.5,
            value=rnd.choice([None, "a", "b", 7, True]),
            **override,
        )
        when = T0 + timedelta(seconds=rnd.randint(0, count // 4), milliseconds=rnd.choice([0, 0, 250]))
        event_id = f"e{seed}_{index:05d}"
        if rnd.random() < 0.12:
            events.append(flag_changed(target, None, timestamp=when, event_id=event_id))
        else:
            events.append(flag_changed(None, target, timestamp=when, event_id=event_id))
    return events


def open_store(spec: str) -> Any:
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        return SqliteFlagStore(where)
    return RedisFlagStore("redis://127.0.0.1:6379/0", prefix=where)


def snapshot(cache: FlagCache) -> dict[str, Any]:
    """What this process's cache answers: every state, and every lookup of LOOKUPS (states encoded as text)."""

    def text(state: FeatureState | None) -> str | None:
        return None if state is None else encode_state(state).decode()

    return {
        "states": [text(state) for state in cache.states()],
        "answers": [text(cache.get(env, feature, identity=who)) for env, feature, who in LOOKUPS],
        "len": len(cache),
    }


def fed(events: Iterable[WebhookEvent]) -> FlagCache:
    cache = FlagCache()
    for event in events:
        cache.apply(event)
    return cache


# --- the gunicorn app ------------------------------------------------------------------------------------------


def _make_app() -> Callable[..., Any]:
    cache = FlagCache(open_store(os.environ["FLAGHOOKS_TEST_STORE"]))
    handled_db = os.environ["FLAGHOOKS_TEST_HANDLED"]

    def on_event(event: WebhookEvent) -> None:
        conn = sqlite3.connect(handled_db, timeout=60)
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            with conn:
                conn.execute("INSERT INTO handled VALUES (?, ?)", (event.id, os.getpid()))
        finally:
            conn.close()

    receiver = WebhookReceiver(secret=os.environ["FLAGHOOKS_TEST_SECRET"], cache=cache, on_event=on_event)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["REQUEST_METHOD"] != "GET":
            return receiver(environ, start_response)
        body = json.dumps({"pid": os.getpid(), **snapshot(cache)}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


if "FLAGHOOKS_TEST_STORE" in os.environ:
    app = _make_app()


def main(argv: list[str]) -> int:
    """``apply STORE EVENTS``: apply the pickled events (a list of WebhookEvent) to the store."""
    _, spec, path = argv
    with open(path, "rb") as handle:
        events = pickle.load(handle)  # noqa: S301 - a file this test run wrote
    cache = FlagCache(open_store(spec))
    try:
        for event in events:
            cache.apply(event)
    finally:
        cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

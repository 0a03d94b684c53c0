"""Claims on the shared stores taken over after a lease expired: a late release ends only its own claim."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flaghooks.cache import FlagCache, RedisFlagStore, SqliteFlagStore
from services import redis_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")


@contextlib.contextmanager
def _holders(kind: str, tmp_path: Path, leases: list[float]) -> Iterator[list[FlagCache]]:
    """Caches on one shared store (each a stand-in for another process), one per lease given."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            stores: list[Any] = [SqliteFlagStore(tmp_path / "claims.db", lease=lease) for lease in leases]
        else:
            prefix = stack.enter_context(redis_prefix("flaghooks-review"))
            stores = [RedisFlagStore(REDIS_URL, prefix=prefix, lease=lease) for lease in leases]
        caches = [FlagCache(store) for store in stores]
        for cache in caches:
            stack.callback(cache.close)
        yield caches


def _claim_after_expiry(cache: FlagCache, event_id: str) -> bool | None:
    """Claim ``event_id`` once the claim held elsewhere has expired (polling; None if it never does)."""
    deadline = time.monotonic() + 10
    claimed = cache.claim(event_id)
    while claimed is None and time.monotonic() < deadline:
        time.sleep(0.05)
        claimed = cache.claim(event_id)
    return claimed


@pytest.mark.parametrize("handled", [False, True])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_late_release_leaves_the_claim_that_took_over_alone(kind: str, handled: bool, tmp_path: Path) -> None:
    """A holder slower than its lease: another process claims the event after the lease expired; the slow one's
    release, when it comes, must not end the new holder's claim (freeing it would let a third process run on_event
    while the second still does; marking it handled would lose a retry if the second one fails)."""
    with _holders(kind, tmp_path, [0.2, 60, 60]) as (slow, second, third):
        assert slow.claim("evt_slow") is True
        assert _claim_after_expiry(second, "evt_slow") is True
        slow.release("evt_slow", handled=handled)
        assert third.claim("evt_slow") is None  # the second still holds it
        second.release("evt_slow", handled=False)  # the second one failed: the sender's retry runs it
        assert third.claim("evt_slow") is True


def _in_thread(call: Callable[[], T]) -> T:
    """``call``'s result, called in a thread of its own (a request of a gthread worker, say)."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    thread.join()
    return results[0]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_late_release_in_one_process_leaves_the_new_claim_alone(kind: str, tmp_path: Path) -> None:
    """The same within one process (one store object, threads of one worker): a request slower than the lease
    releases after a retry's request claimed the event again; the slow one's release must not end the retry's
    claim, whose own release then works."""
    with _holders(kind, tmp_path, [1.0]) as (cache,):
        assert cache.claim("evt_slow") is True  # the slow request's thread (this one)
        retried = _in_thread(lambda: _claim_after_expiry(cache, "evt_slow"))
        assert retried is True
        cache.release("evt_slow", handled=False)  # the slow request fails, late
        assert _in_thread(lambda: cache.claim("evt_slow")) is None  # the retry's claim still holds...
        # ... until its lease ends (1 s here); the retry's request is done in time and releases it:
        _in_thread(lambda: cache.release("evt_slow", handled=True))
        assert cache.claim("evt_slow") is False


def test_a_release_from_another_thread_ends_the_only_claim(tmp_path: Path) -> None:
    """Claim and release may come from different threads (claimed in one worker thread, released in another):
    with one claim of the id held, that release ends it."""
    cache = FlagCache(SqliteFlagStore(tmp_path / "threads.db"))
    try:
        assert cache.claim("evt_1") is True
        _in_thread(lambda: cache.release("evt_1", handled=True))
        assert cache.claim("evt_1") is False
    finally:
        cache.close()


def test_a_release_from_a_third_thread_ends_neither_of_two_claims(tmp_path: Path) -> None:
    """Two threads of one store hold claims of one id (the first one's lease expired): a release from a thread that
    made neither cannot tell which to end, so it ends none."""
    with _holders("sqlite", tmp_path, [0.2]) as (cache,):
        assert cache.claim("evt_2") is True
        claimed: list[bool | None] = []
        done = threading.Event()

        def second() -> None:  # alive until the end: a thread's id is reused only once the thread is gone
            claimed.append(_claim_after_expiry(cache, "evt_2"))
            done.wait(30)

        holder = threading.Thread(target=second)
        holder.start()
        try:
            while not claimed:
                time.sleep(0.01)
            assert claimed == [True]
            _in_thread(lambda: cache.release("evt_2", handled=True))
        finally:
            done.set()
            holder.join()
        with contextlib.closing(sqlite3.connect(tmp_path / "claims.db")) as conn:
            rows = conn.execute("SELECT until IS NOT NULL, done_seq FROM claims WHERE event_id = 'evt_2'").fetchall()
        assert rows == [(1, None)]  # the second claim: neither handled nor freed

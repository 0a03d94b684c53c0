"""Fresh FlagCaches on every store, for tests that run the same histories against each of them.

``caches(kind)`` is a context manager yielding a ``make()`` that builds a new, empty ``FlagCache`` on a store of
that kind (memory, a new SQLite file, a new Redis key prefix); everything made is closed and removed after.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flaghooks.cache import FlagCache, SqliteFlagStore

KINDS = ["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)]


@contextlib.contextmanager
def caches(kind: str) -> Iterator[Callable[[], FlagCache]]:
    """A factory of fresh, empty caches on ``kind`` stores, cleaned up after."""
    made: list[FlagCache] = []
    if kind == "memory":
        yield FlagCache
        return
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="flaghooks-stores-"))
        try:

            def make_sqlite() -> FlagCache:
                cache = FlagCache(SqliteFlagStore(folder / f"{uuid.uuid4().hex}.db"))
                made.append(cache)
                return cache

            yield make_sqlite
        finally:
            for cache in made:
                cache.close()
            shutil.rmtree(folder, ignore_errors=True)
        return
    from flaghooks.cache import RedisFlagStore
    from services import redis_prefix

    with redis_prefix("flaghooks-stores") as prefix:
        try:

            def make_redis() -> FlagCache:
                cache = FlagCache(RedisFlagStore("redis://127.0.0.1:6379/0", prefix=f"{prefix}{uuid.uuid4().hex[:8]}:"))
                made.append(cache)
                return cache

            yield make_redis
        finally:
            for cache in made:
                cache.close()

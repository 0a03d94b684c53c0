"""What the outbox tests share: a fast retry policy, a breaker that never trips, the file's bytes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from flaghooks import Breaker, RetryPolicy, SqliteOutbox

FAST = RetryPolicy(attempts=3, backoff=0.01, multiplier=2, max_delay=0.1, jitter=0)
NEVER_TRIPS = Breaker(failures=1_000_000)
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent


def file_bytes(path: Path) -> bytes:
    """Everything SQLite keeps for the database at ``path``: the main file, its WAL and its shared memory."""
    data = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            data += part.read_bytes()
    return data


def wait_until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll ``check`` every 10 ms until it holds (the bound is generous: a test that would hang fails instead)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "waited too long"
        time.sleep(0.01)


def counts(outbox: SqliteOutbox) -> dict[str, int]:
    return outbox.counts()

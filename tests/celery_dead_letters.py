"""A minimal dead-letter store for the Celery tests: the three private hooks ``flaghooks.SqliteOutbox`` offers
for dead letters made elsewhere (``_add_dead``, ``_take_dead``, ``_delete``), on one SQLite file that worker
processes and the test share. It stands in until the outbox's own hooks are merged."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import NamedTuple

from flaghooks import Delivery
from flaghooks.transports import AttemptResult


class DeadRow(NamedTuple):
    id: str
    event_id: str
    event_type: str
    endpoint: str
    body: bytes
    created_at: datetime
    attempts: int
    status: int | None
    error: str


class DeadLetterFile:
    """Dead letters in one SQLite file, safe for several processes (each call is one immediate transaction)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS dead (id TEXT PRIMARY KEY, event_id TEXT, event_type TEXT, "
                "endpoint TEXT, body BLOB, created_at TEXT, attempts INT, status INT, error TEXT)"
            )

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        finally:
            db.close()

    def _add_dead(self, delivery: Delivery, history: Sequence[AttemptResult], error: str) -> None:
        last = history[-1] if history else None
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO dead VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    delivery.id,
                    delivery.event_id,
                    str(delivery.event_type),
                    delivery.endpoint.label,
                    delivery.body,
                    delivery.created_at.isoformat(),
                    len(history),
                    None if last is None else last.status,
                    error,
                ),
            )

    def _take_dead(
        self, ids: Sequence[str] | None = None, *, endpoint: str | None = None, since: datetime | None = None
    ) -> list[DeadRow]:
        return [
            row
            for row in self.rows()
            if (ids is None or row.id in ids) and (endpoint is None or row.endpoint == endpoint) and since is None
        ]

    def _delete(self, ids: Sequence[str]) -> None:
        with self._write() as db:
            db.executemany("DELETE FROM dead WHERE id = ?", [(i,) for i in ids])

    def rows(self) -> list[DeadRow]:
        with self._write() as db:
            found = db.execute("SELECT * FROM dead ORDER BY id").fetchall()
        return [
            DeadRow(i, e, t, k, bytes(b), datetime.fromisoformat(c), a, s, err) for i, e, t, k, b, c, a, s, err in found
        ]

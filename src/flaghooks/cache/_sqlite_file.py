"""The SQLite file behind SqliteFlagStore: its schema, and this process's connections to it.

Two connections per process (one writes, one reads, each under its own lock, so threads can share them), opened
again in a ``fork()``ed child (the parent's are kept but never used there: closing them would release the parent's
locks). Writes run in one ``BEGIN IMMEDIATE`` transaction each; reads are answered from a per-process copy of what
was read while ``PRAGMA data_version`` says the file is unchanged.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..exceptions import StoreError

__all__ = ["SCHEMA_VERSION", "SqliteFile"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE features (
    env INTEGER NOT NULL, feature INTEGER NOT NULL, name TEXT NOT NULL, name_ts TEXT NOT NULL, name_id TEXT NOT NULL,
    tomb_ts TEXT, tomb_id TEXT, floor_ts TEXT, floor_id TEXT,
    PRIMARY KEY (env, feature)
) WITHOUT ROWID;
CREATE INDEX features_by_name ON features (env, name);
CREATE TABLE targets (
    env INTEGER NOT NULL, feature INTEGER NOT NULL, target TEXT NOT NULL, ts TEXT NOT NULL, eid TEXT NOT NULL,
    state BLOB, PRIMARY KEY (env, feature, target)
) WITHOUT ROWID;
CREATE TABLE recent (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, env INTEGER, feature INTEGER, target TEXT
);
CREATE TABLE loads (env INTEGER PRIMARY KEY, ts TEXT NOT NULL, features TEXT NOT NULL);
CREATE TABLE claims (event_id TEXT PRIMARY KEY, until REAL, done_seq INTEGER) WITHOUT ROWID;
CREATE INDEX claims_done ON claims (done_seq);
"""
# Connections a forked child inherited: never used nor closed there (closing one would release the parent's
# locks), only kept from being garbage-collected.
_INHERITED: list[sqlite3.Connection] = []
# How many times this process is a fork()ed child: a store opened in another generation opens its connections
# again (cheaper per read than comparing os.getpid()).
_FORKS = [0]
_MISSING = object()


def _forked() -> None:
    _FORKS[0] += 1


os.register_at_fork(after_in_child=_forked)
T = TypeVar("T")


class SqliteFile:
    """One SQLite flag cache file, as this process uses it."""

    def __init__(self, path: Path, synchronous: str, timeout: float, memo_size: int) -> None:
        self._path = path
        self._synchronous = synchronous
        self._timeout = timeout
        self._memo_size = memo_size
        self._pid = -1
        self._forks = -1
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._version_cursor: sqlite3.Cursor | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._memo: dict[Any, Any] = {}
        self._version = -1
        self._open()

    def _fault(self, exc: BaseException) -> StoreError:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "locked" in text or "busy" in text:
            text = f"locked by another process beyond the busy timeout ({self._timeout:g} s)"
        return StoreError(f"flag cache {self._path}: {text}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        """Open this process's connections; create the tables in a new file, refuse a newer one."""
        if self._writer is not None:
            _INHERITED.extend([self._writer, self._reader])  # type: ignore[list-item]
        self._writer = self._reader = self._version_cursor = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._memo = {}
        self._version = -1
        writer = None
        try:
            writer = self._connect()
            version = writer.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                writer.execute("PRAGMA journal_mode=WAL")
                writer.execute("BEGIN IMMEDIATE")
                try:
                    if writer.execute("PRAGMA user_version").fetchone()[0] == 0:
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                writer.execute(statement)
                        writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    writer.execute("COMMIT")
                except BaseException:
                    writer.execute("ROLLBACK")
                    raise
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"flag cache {self._path} was written by a newer flaghooks (schema {version}, this one knows "
                    f"{SCHEMA_VERSION}): upgrade flaghooks or point the cache at another file"
                )
            self._reader = self._connect()
            self._version_cursor = self._reader.cursor()
        except StoreError:
            if writer is not None:
                writer.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if writer is not None:
                writer.close()
            raise self._fault(exc) from None
        self._writer = writer
        self._pid = os.getpid()
        self._forks = _FORKS[0]

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            for conn in (self._writer, self._reader):
                if conn is not None and self._pid == os.getpid():
                    conn.close()
            self._writer = self._reader = self._version_cursor = None

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction: all of it, or (a fault) none of it and StoreError."""
        if self._forks != _FORKS[0]:
            self._open()
        with self._write_lock:
            conn = self._writer
            if conn is None:
                raise StoreError(f"flag cache {self._path}: the store is closed")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._fault(exc) from None
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._fault(exc) from None
                raise
            return result

    def read(self, memo_key: Any, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work``'s answer, from this process's copy while the file is unchanged (PRAGMA data_version)."""
        if self._forks != _FORKS[0]:
            self._open()
        with self._read_lock:
            conn, version_cursor = self._reader, self._version_cursor
            if conn is None or version_cursor is None:
                raise StoreError(f"flag cache {self._path}: the store is closed")
            try:
                version = version_cursor.execute("PRAGMA data_version").fetchone()[0]
                memo = self._memo
                if version == self._version:
                    answer = memo.get(memo_key, _MISSING)
                    if answer is not _MISSING:
                        return answer  # type: ignore[no-any-return]
                else:
                    memo.clear()
                    self._version = version
                answer = work(conn)
            except sqlite3.Error as exc:
                raise self._fault(exc) from None
            if len(memo) >= self._memo_size:
                memo.clear()
            if self._memo_size:
                memo[memo_key] = answer
            return answer

"""SqliteFlagStore: one SQLite file shared by every process of a host (gunicorn workers, say)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .._models import FeatureState
from ..exceptions import ConfigError, StoreError
from ._codec import decode_state, encode_state
from ._rules import UNCHANGED, UPDATED, Record, load, settle, time_text
from ._store import Entry, FlagStore, Loaded

__all__ = ["SqliteFlagStore"]

SCHEMA_VERSION = 1
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_SCHEMA = """
CREATE TABLE features (
    env INTEGER NOT NULL, feature INTEGER NOT NULL, name TEXT NOT NULL, name_ts TEXT NOT NULL, name_id TEXT NOT NULL,
    tomb_ts TEXT, tomb_id TEXT, floor_ts TEXT, floor_id TEXT, newest_ts TEXT NOT NULL, newest_id TEXT NOT NULL,
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
T = TypeVar("T")


def target_text(identifier: str | None, where: Hashable | None) -> str:
    """A target as the store names it: ``d`` (default), ``s:ID``/``f:ID`` (segment), ``i:IDENTIFIER``."""
    if identifier is not None:
        return "i:" + identifier
    if where is None:
        return "d"
    kind, number = where  # type: ignore[misc]
    return f"{'s' if kind == 'segment' else 'f'}:{number}"  # type: ignore[has-type]


def target_of(text: str) -> tuple[int, Hashable]:
    """The (scope rank, target) a stored target name stands for (as FlagCache.states orders them)."""
    if text == "d":
        return 0, None
    kind, _, rest = text.partition(":")
    if kind == "i":
        return 2, rest
    return 1, ("segment" if kind == "s" else "feature_segment", int(rest))


class _Record(Record):
    """A feature's record read from the file: its meta row and the entries of the targets read."""

    __slots__ = ("_conn", "_scope")

    def __init__(self, conn: sqlite3.Connection, scope: tuple[int, int], row: tuple[Any, ...]) -> None:
        name, name_ts, name_id, tomb_ts, tomb_id, floor_ts, floor_id, newest_ts, newest_id = row
        super().__init__(name, (name_ts, name_id))
        self.tombstone = None if tomb_ts is None else (tomb_ts, tomb_id)
        self.floor = None if floor_ts is None else (floor_ts, floor_id)
        self.newest = (newest_ts, newest_id)
        self._conn = conn
        self._scope = scope

    def put(self, target: str, entry: tuple[str, str, bytes | None]) -> None:
        if target == "d":
            self.default = entry
            return
        rank, where = target_of(target)
        if rank == 2:
            self.identities[where] = entry  # type: ignore[index]
        else:
            self.segments[where] = entry

    def drop_older(self, key: tuple[Any, str]) -> int:
        conn, (env, feature) = self._conn, self._scope
        args: tuple[Any, ...] = (env, feature)
        where = "env = ? AND feature = ?"
        if not self.newest <= key:
            where += " AND (ts < ? OR (ts = ? AND eid < ?))"
            args += (key[0], key[0], key[1])
        counted = conn.execute(f"SELECT count(*) FROM targets WHERE {where} AND state IS NOT NULL", args)  # noqa: S608
        (removed,) = counted.fetchone()
        conn.execute(f"DELETE FROM targets WHERE {where}", args)  # noqa: S608
        super().drop_older(key)  # the same in the entries read
        return int(removed)


class SqliteFlagStore(FlagStore):
    """Flag state in one SQLite file that every process of a host shares (gunicorn workers, several receivers).

    ``path`` is the file (created with its tables when missing). ``synchronous`` is SQLite's ``PRAGMA
    synchronous``: ``NORMAL`` (the default) may lose the last changes on a power cut, never corrupt the file; a
    cache can be re-seeded from the environment document, so that is the right trade for it; ``FULL`` syncs every
    apply. ``timeout`` is how long a write waits for another process's write before :class:`StoreError`.

    The file is in WAL mode: readers never wait for writers. Each event is applied in one ``BEGIN IMMEDIATE``
    transaction (nothing half-applied); claims are rows, so an event is handled once across every process, and a
    claim whose holder died expires after ``lease`` seconds. Connections belong to one process and are opened
    again after ``fork()`` (gunicorn ``--preload``); threads share them under a lock. Reads are answered from a
    per-process copy of what was read, dropped whenever the file changed (``PRAGMA data_version``), so reading an
    unchanged file asks SQLite nothing but that.

    Raises :class:`StoreError` (one line naming the file) when the file cannot be opened, is not a flag cache, or
    was written by a newer flaghooks.
    """

    _MEMO_SIZE = 65536  # decoded answers kept per process; 0 turns the copy off (the benchmark's uncached figure)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        timeout: float = 5.0,
        lease: float = 60.0,
        remembered: int = 65536,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
        if not isinstance(synchronous, str) or synchronous.upper() not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, got {synchronous!r}")
        for label, number in (("timeout", timeout), ("lease", lease), ("remembered", remembered)):
            if isinstance(number, bool) or not isinstance(number, int | float) or not number > 0:
                raise ConfigError(f"{label} must be a positive number, got {number!r}")
        self._path = Path(path)
        self._synchronous = synchronous.upper()
        self._timeout = float(timeout)
        self._lease = float(lease)
        self._remembered = int(remembered)
        self._pid = -1
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._memo: dict[Any, Any] = {}
        self._version = -1
        self._open()

    def __repr__(self) -> str:
        return f"SqliteFlagStore({str(self._path)!r}, synchronous={self._synchronous!r})"

    # --- connections --------------------------------------------------------------------------------------

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
        self._writer = self._reader = None
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

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            for conn in (self._writer, self._reader):
                if conn is not None and self._pid == os.getpid():
                    conn.close()
            self._writer = self._reader = None

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` in one BEGIN IMMEDIATE transaction: all of it, or (a fault) none of it and StoreError."""
        if self._pid != os.getpid():
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

    def _read(self, memo_key: Any, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work``'s answer, from this process's copy while the file is unchanged (PRAGMA data_version)."""
        if self._pid != os.getpid():
            self._open()
        with self._read_lock:
            conn = self._reader
            if conn is None:
                raise StoreError(f"flag cache {self._path}: the store is closed")
            try:
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                memo = self._memo
                if version != self._version:
                    memo.clear()
                    self._version = version
                elif memo_key in memo:
                    return memo[memo_key]  # type: ignore[no-any-return]
                answer = work(conn)
            except sqlite3.Error as exc:
                raise self._fault(exc) from None
            if len(memo) >= self._MEMO_SIZE:
                memo.clear()
            if self._MEMO_SIZE:
                memo[memo_key] = answer
            return answer

    # --- writing ------------------------------------------------------------------------------------------

    def apply(
        self,
        event_id: str,
        when: datetime | None,
        environment: int,
        feature: int,
        name: str,
        identifier: str | None,
        where: Hashable | None,
        new: FeatureState | None,
    ) -> bool:
        ts = time_text(when)
        target = target_text(identifier, where)
        data = None if new is None else encode_state(new)
        whole = identifier is None and where is None and new is None

        def work(conn: sqlite3.Connection) -> bool:
            inserted = conn.execute(
                "INSERT INTO recent (event_id) VALUES (?) ON CONFLICT (event_id) DO NOTHING", (event_id,)
            )
            if inserted.rowcount != 1:
                return False  # applied already
            seq = inserted.lastrowid
            assert seq is not None
            if seq > self._remembered:
                self._forget(conn, seq - self._remembered)
            record = self._record(conn, environment, feature, name, (ts, event_id))
            if not whole:
                row = conn.execute(
                    "SELECT ts, eid, state FROM targets WHERE env = ? AND feature = ? AND target = ?",
                    (environment, feature, target),
                ).fetchone()
                if row is not None:
                    record.put(target, row)
                before = row
            outcome = settle(record, ts, event_id, identifier, where, data)
            _save_meta(conn, environment, feature, record)
            if not whole:
                after = (
                    record.default
                    if target == "d"
                    else (record.identities.get(identifier) if identifier is not None else record.segments.get(where))
                )
                if after is not before:
                    _save_target(conn, environment, feature, target, after)
                if record.buried is not None:
                    conn.execute(
                        "UPDATE recent SET env = ?, feature = ?, target = ? WHERE seq = ?",
                        (environment, feature, target, seq),
                    )
            if outcome == UPDATED:
                return bool(record.replaced != data)
            return outcome != UNCHANGED

        return self._write(work)

    @staticmethod
    def _record(
        conn: sqlite3.Connection, environment: int, feature: int, name: str, key: tuple[str, str] | None
    ) -> _Record:
        """The feature's record (its meta row; created when new), its name following its newest event (``key``
        None: a held feature, its name untouched)."""
        row = conn.execute(
            "SELECT name, name_ts, name_id, tomb_ts, tomb_id, floor_ts, floor_id, newest_ts, newest_id FROM features "
            "WHERE env = ? AND feature = ?",
            (environment, feature),
        ).fetchone()
        if key is None:
            pass
        elif row is None:
            row = (name, key[0], key[1], None, None, None, None, key[0], key[1])
            conn.execute(
                "INSERT INTO features VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?, ?)",
                (environment, feature, name, key[0], key[1], key[0], key[1]),
            )
            record = _Record(conn, (environment, feature), row)
            loaded = conn.execute("SELECT ts, features FROM loads WHERE env = ?", (environment,)).fetchone()
            if loaded is not None and feature not in json.loads(loaded[1]):
                settle(record, loaded[0], "", None, None, None)  # not in the newest load: deleted as of it
            return record
        elif key > (row[1], row[2]):
            row = (name, key[0], key[1], *row[3:])
            conn.execute(
                "UPDATE features SET name = ?, name_ts = ?, name_id = ? WHERE env = ? AND feature = ?",
                (name, key[0], key[1], environment, feature),
            )
        return _Record(conn, (environment, feature), row)

    def _forget(self, conn: sqlite3.Connection, last: int) -> None:
        """Ids up to ``last`` leave the recent ids: an identity-override tombstone among them folds into its
        feature's floor (as the memory store does)."""
        for _, event_id, env, feature, target in conn.execute(
            "SELECT * FROM recent WHERE seq <= ? AND target IS NOT NULL", (last,)
        ).fetchall():
            row = conn.execute(
                "SELECT ts FROM targets WHERE env = ? AND feature = ? AND target = ? AND eid = ? AND state IS NULL",
                (env, feature, target, event_id),
            ).fetchone()
            if row is None:
                continue  # a newer event or a feature deletion replaced it
            conn.execute("DELETE FROM targets WHERE env = ? AND feature = ? AND target = ?", (env, feature, target))
            conn.execute(
                "UPDATE features SET floor_ts = ?, floor_id = ? WHERE env = ? AND feature = ? AND "
                "(floor_ts IS NULL OR floor_ts < ? OR (floor_ts = ? AND floor_id < ?))",
                (row[0], event_id, env, feature, row[0], row[0], event_id),
            )
        conn.execute("DELETE FROM recent WHERE seq <= ?", (last,))

    def load(self, environment: int, features: Loaded, when: datetime) -> int:
        ts = time_text(when)
        key = (ts, "")

        def work(conn: sqlite3.Connection) -> int:
            changed = 0
            conn.execute(
                "INSERT INTO loads VALUES (?, ?, ?) ON CONFLICT (env) DO UPDATE SET ts = excluded.ts, "
                "features = excluded.features WHERE excluded.ts > loads.ts",
                (environment, ts, json.dumps(sorted(features))),
            )
            held = [f for (f,) in conn.execute("SELECT feature FROM features WHERE env = ?", (environment,))]
            for feature in held:
                if feature not in features:
                    record = self._record(conn, environment, feature, "", None)
                    changed -= settle(record, ts, "", None, None, None)
                    _save_meta(conn, environment, feature, record)
            for feature, (name, states) in features.items():
                record = self._record(conn, environment, feature, name, key)
                rows = conn.execute(
                    "SELECT target, ts, eid, state FROM targets WHERE env = ? AND feature = ?", (environment, feature)
                ).fetchall()
                for target, *entry in rows:
                    record.put(target, tuple(entry))
                before = _entries(record)
                changed += load(record, ts, {where: encode_state(state) for where, state in states.items()})
                after = _entries(record)
                for target in before.keys() | after.keys():
                    if before.get(target) is not after.get(target):
                        _save_target(conn, environment, feature, target, after.get(target))
                _save_meta(conn, environment, feature, record)
            return changed

        return self._write(work)

    # --- claims -------------------------------------------------------------------------------------------

    def claim(self, event_id: str) -> bool | None:
        def work(conn: sqlite3.Connection) -> bool | None:
            now = time.time()
            row = conn.execute("SELECT until, done_seq FROM claims WHERE event_id = ?", (event_id,)).fetchone()
            if row is not None:
                if row[1] is not None:
                    return False
                if row[0] > now:
                    return None
            conn.execute(
                "INSERT OR REPLACE INTO claims (event_id, until, done_seq) VALUES (?, ?, NULL)",
                (event_id, now + self._lease),
            )
            return True

        return self._write(work)

    def release(self, event_id: str, handled: bool) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if not handled:
                conn.execute("DELETE FROM claims WHERE event_id = ? AND done_seq IS NULL", (event_id,))
                return
            (top,) = conn.execute("SELECT coalesce(max(done_seq), 0) + 1 FROM claims").fetchone()
            conn.execute("UPDATE claims SET until = NULL, done_seq = ? WHERE event_id = ?", (top, event_id))
            if top > self._remembered:
                conn.execute("DELETE FROM claims WHERE done_seq <= ?", (top - self._remembered,))

        self._write(work)

    # --- reading ------------------------------------------------------------------------------------------

    @staticmethod
    def _feature_id(conn: sqlite3.Connection, environment: int, feature: str | int) -> int | None:
        if type(feature) is int:
            return feature
        row = conn.execute(
            "SELECT feature FROM features WHERE env = ? AND name = ? "
            "ORDER BY name_ts DESC, name_id DESC, feature DESC LIMIT 1",
            (environment, feature),
        ).fetchone()
        return None if row is None else int(row[0])

    def find(self, environment: int, feature: str | int, identifier: str | None) -> FeatureState | None:
        def work(conn: sqlite3.Connection) -> FeatureState | None:
            found = self._feature_id(conn, environment, feature)
            if found is None:
                return None
            rows = dict(
                conn.execute(
                    "SELECT target, state FROM targets WHERE env = ? AND feature = ? AND target IN ('d', ?) "
                    "AND state IS NOT NULL",
                    (environment, found, "d" if identifier is None else "i:" + identifier),
                ).fetchall()
            )
            data = rows.get("d") if identifier is None else rows.get("i:" + identifier, rows.get("d"))
            return None if data is None else decode_state(data)

        return self._read((environment, feature, identifier), work)

    def segments(self, environment: int, feature: str | int) -> list[tuple[Hashable, FeatureState]]:
        def work(conn: sqlite3.Connection) -> list[tuple[Hashable, FeatureState]]:
            found = self._feature_id(conn, environment, feature)
            if found is None:
                return []
            rows = conn.execute(
                "SELECT target, state FROM targets WHERE env = ? AND feature = ? AND (target GLOB 's:*' OR "
                "target GLOB 'f:*') AND state IS NOT NULL",
                (environment, found),
            ).fetchall()
            return [(target_of(target)[1], decode_state(data)) for target, data in rows]

        return list(self._read(("segments", environment, feature), work))

    def entries(self) -> list[Entry]:
        def work(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute("SELECT env, feature, target, state FROM targets WHERE state IS NOT NULL").fetchall()
            return [(env, feature, *target_of(target), decode_state(data)) for env, feature, target, data in rows]

        return list(self._read(("entries",), work))

    def count(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM targets WHERE state IS NOT NULL").fetchone()[0])

        return self._read(("count",), work)


def _entries(record: Record) -> dict[str, Any]:
    """A record's entries by stored target name."""
    found: dict[str, Any] = {}
    if record.default is not None:
        found["d"] = record.default
    for where, entry in record.segments.items():
        found[target_text(None, where)] = entry
    for identifier, entry in record.identities.items():
        found["i:" + identifier] = entry
    return found


def _save_meta(conn: sqlite3.Connection, environment: int, feature: int, record: Record) -> None:
    tomb, floor, newest = record.tombstone, record.floor, record.newest
    conn.execute(
        "UPDATE features SET tomb_ts = ?, tomb_id = ?, floor_ts = ?, floor_id = ?, newest_ts = ?, newest_id = ? "
        "WHERE env = ? AND feature = ?",
        (
            None if tomb is None else tomb[0],
            None if tomb is None else tomb[1],
            None if floor is None else floor[0],
            None if floor is None else floor[1],
            newest[0],
            newest[1],
            environment,
            feature,
        ),
    )


def _save_target(conn: sqlite3.Connection, environment: int, feature: int, target: str, entry: Any) -> None:
    if entry is None:
        conn.execute("DELETE FROM targets WHERE env = ? AND feature = ? AND target = ?", (environment, feature, target))
    else:
        conn.execute("INSERT OR REPLACE INTO targets VALUES (?, ?, ?, ?, ?, ?)", (environment, feature, target, *entry))

"""SqliteFlagStore: one SQLite file shared by every process of a host (gunicorn workers, say)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Hashable
from datetime import datetime
from pathlib import Path
from typing import Any

from .._models import FeatureState
from ..exceptions import ConfigError
from ._codec import decode_state, encode_state
from ._rules import UNCHANGED, UPDATED, Record, load, settle, time_text
from ._sqlite_file import SqliteFile
from ._store import Entry, FlagStore, HeldClaims, Loaded, target_of, target_text

__all__ = ["SqliteFlagStore"]

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
# A feature by name: among those carrying it, the one whose newest event is newest (a tie: the larger id). Not
# correlated (the environment is bound again), so SQLite runs it once and looks the targets up by key.
_BY_NAME = (
    "(SELECT feature FROM features WHERE env = ?1 AND name = ?2 ORDER BY name_ts DESC, name_id DESC, feature DESC "
    "LIMIT 1)"
)
_FIND = (
    "SELECT target, state FROM targets WHERE env = ?1 AND feature = {feature} AND target IN ('d', ?3) "
    "AND state IS NOT NULL"
)
_SEGMENTS = (
    "SELECT target, state FROM targets WHERE env = ?1 AND feature = {feature} "
    "AND (target GLOB 's:*' OR target GLOB 'f:*') AND state IS NOT NULL"
)
_RECORD_AND_TARGET = (
    "SELECT f.name, f.name_ts, f.name_id, f.tomb_ts, f.tomb_id, f.floor_ts, f.floor_id, t.ts, t.eid, t.state "
    "FROM features AS f LEFT JOIN targets AS t ON t.env = f.env AND t.feature = f.feature AND t.target = ? "
    "WHERE f.env = ? AND f.feature = ?"
)


class _Record(Record):
    """A feature's record read from the file: its meta row and the entries of the targets read."""

    __slots__ = ("_conn", "_scope", "saved")

    def __init__(self, conn: sqlite3.Connection, scope: tuple[int, int], row: tuple[Any, ...]) -> None:
        name, name_ts, name_id, tomb_ts, tomb_id, floor_ts, floor_id = row
        super().__init__(name, (name_ts, name_id))
        # The file keeps no "newest" (drop_older asks SQLite for what is older instead): the rules only use it to
        # skip looking at each entry.
        self.tombstone = None if tomb_ts is None else (tomb_ts, tomb_id)
        self.floor = None if floor_ts is None else (floor_ts, floor_id)
        self.saved = (self.tombstone, self.floor)
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
        where = "env = ? AND feature = ? AND (ts < ? OR (ts = ? AND eid < ?))"
        args = (env, feature, key[0], key[0], key[1])
        counted = conn.execute(f"SELECT count(*) FROM targets WHERE {where} AND state IS NOT NULL", args)  # noqa: S608
        (removed,) = counted.fetchone()
        conn.execute(f"DELETE FROM targets WHERE {where}", args)  # noqa: S608
        # The same in the entries read.
        if self.default is not None and (self.default[0], self.default[1]) < key:
            self.default = None
        tables: tuple[dict[Any, Any], ...] = (self.segments, self.identities)
        for table in tables:
            for target in [target for target, entry in table.items() if (entry[0], entry[1]) < key]:
                del table[target]
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
        self._file = SqliteFile(self._path, self._synchronous, self._timeout, self._MEMO_SIZE)
        # The claims this store holds: event id -> the claim's expiry, which tells it apart from a claim another
        # process took over once this one's lease expired (a release only ends the claim it made).
        self._held = HeldClaims()

    def __repr__(self) -> str:
        return f"SqliteFlagStore({str(self._path)!r}, synchronous={self._synchronous!r})"

    def close(self) -> None:
        self._file.close()

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
            if seq > self._remembered and seq % 64 == 0:  # in batches: the window is 0 to 63 ids longer
                self._forget(conn, seq - self._remembered)
            # The feature's record and the one target the event touches, in one query.
            row = conn.execute(_RECORD_AND_TARGET, (target, environment, feature)).fetchone()
            record = self._record_of(conn, environment, feature, name, (ts, event_id), row and row[:7])
            before = None
            if not whole and row is not None and row[7] is not None:
                before = (row[7], row[8], row[9])
                record.put(target, before)
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

        return self._file.write(work)

    @classmethod
    def _record(
        cls, conn: sqlite3.Connection, environment: int, feature: int, name: str, key: tuple[str, str] | None
    ) -> _Record:
        """The feature's record (its meta row; created when new), its name following its newest event (``key``
        None: a held feature, its name untouched)."""
        row = conn.execute(
            "SELECT name, name_ts, name_id, tomb_ts, tomb_id, floor_ts, floor_id FROM features "
            "WHERE env = ? AND feature = ?",
            (environment, feature),
        ).fetchone()
        return cls._record_of(conn, environment, feature, name, key, row)

    @staticmethod
    def _record_of(
        conn: sqlite3.Connection,
        environment: int,
        feature: int,
        name: str,
        key: tuple[str, str] | None,
        row: tuple[Any, ...] | None,
    ) -> _Record:
        """The record of a meta ``row`` read (None: a new feature, created here; ``key`` None: the feature is
        held)."""
        if row is None:
            assert key is not None
            row = (name, key[0], key[1], None, None, None, None)
            conn.execute(
                "INSERT INTO features VALUES (?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",
                (environment, feature, name, key[0], key[1]),
            )
            record = _Record(conn, (environment, feature), row)
            loaded = conn.execute("SELECT ts, features FROM loads WHERE env = ?", (environment,)).fetchone()
            if loaded is not None and feature not in json.loads(loaded[1]):
                settle(record, loaded[0], "", None, None, None)  # not in the newest load: deleted as of it
            return record
        if key is not None and key > (row[1], row[2]):
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

        return self._file.write(work)

    # --- claims -------------------------------------------------------------------------------------------

    def claim(self, event_id: str) -> bool | None:
        def work(conn: sqlite3.Connection) -> float | bool | None:
            now = time.time()
            row = conn.execute("SELECT until, done_seq FROM claims WHERE event_id = ?", (event_id,)).fetchone()
            if row is not None:
                if row[1] is not None:
                    return False
                if row[0] > now:
                    return None
            until = now + self._lease
            conn.execute(
                "INSERT OR REPLACE INTO claims (event_id, until, done_seq) VALUES (?, ?, NULL)", (event_id, until)
            )
            return until

        claimed = self._file.write(work)
        if claimed is None or claimed is False:
            return claimed
        self._held.add(event_id, claimed)
        return True

    def release(self, event_id: str, handled: bool) -> None:
        until = self._held.pop(event_id)
        if until is None:
            return  # not claimed here: left alone

        def work(conn: sqlite3.Connection) -> None:
            # Only the claim this store made (its expiry is its token): once its lease expired, another process
            # may hold the event now, and that claim is not this one's to end.
            if not handled:
                conn.execute(
                    "DELETE FROM claims WHERE event_id = ? AND until = ? AND done_seq IS NULL", (event_id, until)
                )
                return
            (top,) = conn.execute("SELECT coalesce(max(done_seq), 0) + 1 FROM claims").fetchone()
            marked = conn.execute(
                "UPDATE claims SET until = NULL, done_seq = ? WHERE event_id = ? AND until = ? AND done_seq IS NULL",
                (top, event_id, until),
            )
            if marked.rowcount and top > self._remembered:
                conn.execute("DELETE FROM claims WHERE done_seq <= ?", (top - self._remembered,))

        self._file.write(work)

    # --- reading ------------------------------------------------------------------------------------------

    def find(self, environment: int, feature: str | int, identifier: str | None) -> FeatureState | None:
        chosen = "i:" + identifier if identifier is not None else "d"

        def work(conn: sqlite3.Connection) -> FeatureState | None:
            # One statement, so one snapshot of the file: the feature found by its name and its states.
            statement = _FIND.format(feature=_BY_NAME if type(feature) is str else "?2")
            rows = dict(conn.execute(statement, (environment, feature, chosen)).fetchall())
            data = rows.get(chosen, rows.get("d"))
            return None if data is None else decode_state(data)

        return self._file.read((environment, feature, identifier), work)

    def segments(self, environment: int, feature: str | int) -> list[tuple[Hashable, FeatureState]]:
        def work(conn: sqlite3.Connection) -> list[tuple[Hashable, FeatureState]]:
            statement = _SEGMENTS.format(feature=_BY_NAME if type(feature) is str else "?2")
            rows = conn.execute(statement, (environment, feature)).fetchall()
            return [(target_of(target)[1], decode_state(data)) for target, data in rows]

        return list(self._file.read(("segments", environment, feature), work))

    def entries(self) -> list[Entry]:
        def work(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute("SELECT env, feature, target, state FROM targets WHERE state IS NOT NULL").fetchall()
            return [(env, feature, *target_of(target), decode_state(data)) for env, feature, target, data in rows]

        return list(self._file.read(("entries",), work))

    def count(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM targets WHERE state IS NOT NULL").fetchone()[0])

        return self._file.read(("count",), work)


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


def _save_meta(conn: sqlite3.Connection, environment: int, feature: int, record: _Record) -> None:
    """Write the record's tombstone and floor back, when the rules changed them (rarely: most events don't)."""
    tomb, floor = record.tombstone, record.floor
    if (tomb, floor) == record.saved:
        return
    conn.execute(
        "UPDATE features SET tomb_ts = ?, tomb_id = ?, floor_ts = ?, floor_id = ? WHERE env = ? AND feature = ?",
        (
            None if tomb is None else tomb[0],
            None if tomb is None else tomb[1],
            None if floor is None else floor[0],
            None if floor is None else floor[1],
            environment,
            feature,
        ),
    )
    record.saved = (tomb, floor)


def _save_target(conn: sqlite3.Connection, environment: int, feature: int, target: str, entry: Any) -> None:
    if entry is None:
        conn.execute("DELETE FROM targets WHERE env = ? AND feature = ? AND target = ?", (environment, feature, target))
    else:
        conn.execute("INSERT OR REPLACE INTO targets VALUES (?, ?, ?, ?, ?, ?)", (environment, feature, target, *entry))

"""SqliteOutbox: the durable file: publishing into it, inspecting it, replaying and pruning.

Workers (:class:`~flaghooks.OutboxDelivery`) claim and finish deliveries through ``_outbox_lease``; everything
here is what any process holding the file may do with it, workers running or not.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from ._breaker import seconds
from ._delivery import Delivery
from ._endpoints import Endpoint
from ._outbox_records import AttemptRecord, DeliveryRecord, cutoff, key_of, record, scrub
from ._outbox_schema import (
    ATTEMPTS,
    DEAD,
    DELIVERED,
    DELIVERIES,
    ENDED,
    ENDPOINTS,
    STATES,
    fault,
    migrate,
    open_connection,
)
from .exceptions import ConfigError, OutboxError
from .transports import AttemptResult

__all__ = ["PRUNE_BATCH", "SqliteOutbox", "prune_rows"]

_MOST = 2**63 - 1  # SQLite's largest integer
_MOVED = 0.001  # seconds a dead letter's updated_at moves on, at least, when it is dead again (records keep µs)
_BATCH = 500  # rows per statement or transaction in bulk work (replay by ids, prune)
PRUNE_BATCH = _BATCH  # the rows one prune transaction deletes
# A forked child's copies of its parent's connections: never used again, and never closed.
_inherited: list[sqlite3.Connection] = []

_INSERT = (
    f"INSERT INTO {DELIVERIES} (id, event_id, event_type, endpoint, body, state, due, round_at, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"
)
_KEY = f"INSERT OR IGNORE INTO {ENDPOINTS} (key) VALUES (?)"
_COLUMNS = "id, event_id, event_type, endpoint, state, attempts, due, last_status, last_error, created_at, updated_at"


def prune_rows(conn: sqlite3.Connection, before: float, states: Sequence[str], batches: int | None = None) -> int:
    """Delete ended deliveries (and their attempts) last updated before ``before``, one batch per transaction;
    at most ``batches`` batches (``None``: until none is left)."""
    marks = ", ".join("?" for _ in states)
    select = f"SELECT seq FROM {DELIVERIES} WHERE {ENDED} AND state IN ({marks}) AND updated_at < ? LIMIT {_BATCH}"
    total = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            seqs = [(row[0],) for row in conn.execute(select, (*states, before))]
            conn.executemany(f"DELETE FROM {ATTEMPTS} WHERE delivery = ?", seqs)
            conn.executemany(f"DELETE FROM {DELIVERIES} WHERE seq = ?", seqs)
            conn.execute("COMMIT")
        except BaseException:  # pragma: no cover - a fault mid-batch (a full disk): that batch is undone
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        total += len(seqs)
        if batches is not None:
            batches -= 1
        if len(seqs) < _BATCH or batches == 0:
            return total


class SqliteOutbox:
    """A durable outbox in one SQLite file, shared by every thread and process on the host that opens it.

    ``SqliteOutbox(path, *, synchronous="FULL", keep_delivered=None)`` opens the file, creating it and its tables
    (all named ``flaghooks_outbox_*``, so the file may be the application's own database) when needed.

    - WAL journaling. ``synchronous="FULL"`` (default): a publish that returned survives a power loss;
      ``"NORMAL"``: it survives a process crash, not a power loss (faster).
    - The schema has a version and is migrated forward when opened; a file written by a newer flaghooks raises
      :class:`~flaghooks.OutboxError`.
    - It never stores a secret: endpoints are stored by key (:attr:`Endpoint.label <flaghooks.Endpoint.label>`),
      never their secrets, header values or URL user information, and response bodies are kept with those
      blanked out.
    - ``keep_delivered`` (a ``timedelta`` or seconds): workers delete delivered deliveries older than that.

    :class:`~flaghooks.OutboxDelivery` publishes into it and runs the workers; here are inspection and repair:
    :meth:`get`, :meth:`deliveries`, :meth:`attempts`, :meth:`counts`, :meth:`replay`, :meth:`prune`,
    :meth:`enable`, :meth:`disabled`. A missing directory, a file that is not a SQLite database, a lock held
    beyond the busy timeout or a full disk raise ``OutboxError`` with one line naming the file.
    Thread-safe; after ``os.fork()`` the child opens its own connection.
    """

    _busy_timeout = 5.0  # seconds a publish or an inspection waits for another connection's lock

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        keep_delivered: timedelta | float | None = None,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise ConfigError(f"SqliteOutbox.path must be a str or a path, got {type(path).__name__}")
        self.path = os.fspath(path)
        if not isinstance(synchronous, str) or synchronous.upper() not in ("FULL", "NORMAL"):
            raise ConfigError(f"SqliteOutbox.synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}")
        self.synchronous = synchronous.upper()
        self.keep_delivered = (
            None if keep_delivered is None else seconds("SqliteOutbox", "keep_delivered", keep_delivered)
        )
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._known: set[str] = set()  # endpoint keys this process has seen committed in the file
        self._closed = False
        self._db = self._connect()
        try:
            migrate(self._db, self.path)
        except sqlite3.Error as exc:
            self._db.close()
            raise fault(self.path, exc, self._busy_timeout) from None
        except BaseException:
            self._db.close()
            raise
        self._real = os.path.realpath(self.path)

    def _connect(self, synchronous: str | None = None, busy_timeout: float | None = None) -> sqlite3.Connection:
        """A new connection of this process's own (workers keep one each)."""
        return open_connection(
            self.path,
            synchronous or self.synchronous,
            self._busy_timeout if busy_timeout is None else busy_timeout,
            shared=synchronous is None,
        )

    def _shared(self) -> tuple[threading.Lock, sqlite3.Connection]:
        """The connection publishers and inspections share (under the lock); a forked child opens its own."""
        if self._closed:
            raise OutboxError(f"the outbox {self.path} is closed")
        if self._pid != os.getpid():  # pragma: no cover - runs in forked children (tests/test_outbox_processes.py)
            _inherited.append(self._db)  # the parent's: closing it here could disturb the parent's locks
            self._lock = threading.Lock()
            self._pid = os.getpid()
            self._db = self._connect()
        return self._lock, self._db

    def _write(self, work: Any, *args: Any) -> Any:
        """Run ``work(conn, *args)`` in one BEGIN IMMEDIATE transaction on the shared connection."""
        lock, conn = self._shared()
        with lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = work(conn, *args)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise fault(self.path, exc, self._busy_timeout) from None
        return result

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        lock, conn = self._shared()
        with lock:
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:  # pragma: no cover - reads in WAL mode wait for no lock
                raise fault(self.path, exc, self._busy_timeout) from None

    # --- publishing (OutboxDelivery.publish) ---------------------------------------------------------

    def _insert(self, deliveries: Sequence[Delivery], connection: sqlite3.Connection | None = None) -> None:
        """Store ``deliveries`` (one event's) as pending, all or none: committed on return, or, with the
        application's ``connection``, written into its open transaction for its commit to decide."""
        now = time.time()
        rows = []
        keys: dict[str, None] = {}
        for delivery in deliveries:
            key = delivery.endpoint.label
            keys[key] = None
            created = delivery.created_at.timestamp()
            rows.append(
                (
                    delivery.id,
                    delivery.event_id,
                    str(delivery.event_type),
                    key,
                    delivery.body,
                    created,
                    created,
                    created,
                    now,
                )
            )
        if connection is not None:
            self._insert_into(connection, rows, [(key,) for key in keys])
            return
        fresh = [(key,) for key in keys if key not in self._known]

        def insert(conn: sqlite3.Connection) -> None:
            if fresh:
                conn.executemany(_KEY, fresh)
            conn.executemany(_INSERT, rows)

        self._write(insert)
        self._known.update(keys)

    def _insert_into(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], keys: list[tuple[str]]) -> None:
        if not isinstance(conn, sqlite3.Connection):
            raise ConfigError(f"connection must be a sqlite3.Connection, got {type(conn).__name__}")
        try:
            files = [row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"]
            if not files or not files[0] or os.path.realpath(files[0]) != self._real:
                raise ConfigError(f"connection must be open on the outbox's file {self.path}")
            if not conn.in_transaction:
                if conn.isolation_level is None or getattr(conn, "autocommit", False) is True:
                    raise ConfigError(
                        "publish(connection=...) needs an open transaction on that connection (BEGIN first): "
                        "in autocommit mode nothing could wait for your commit"
                    )
                conn.execute("BEGIN")  # what sqlite3 would do before the first INSERT: the commit stays yours
            conn.execute("SAVEPOINT flaghooks_outbox")
            try:
                conn.executemany(_KEY, keys)
                conn.executemany(_INSERT, rows)
                conn.execute("RELEASE flaghooks_outbox")
            except BaseException:
                if (
                    conn.in_transaction
                ):  # pragma: no branch - undo ours only: the application's own writes stay in its transaction
                    conn.execute("ROLLBACK TO flaghooks_outbox")
                    conn.execute("RELEASE flaghooks_outbox")
                raise
        except sqlite3.Error as exc:
            raise fault(self.path, exc) from None

    # --- inspection ----------------------------------------------------------------------------------

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """The delivery ``delivery_id`` (a :class:`~flaghooks.Delivery`'s ``id``), or ``None``."""
        rows = self._read(f"SELECT {_COLUMNS} FROM {DELIVERIES} WHERE id = ?", (delivery_id,))
        return record(rows[0]) if rows else None

    def deliveries(
        self,
        state: str | None = None,
        endpoint: str | Endpoint | None = None,
        since: datetime | timedelta | None = None,
        limit: int | None = 100,
    ) -> list[DeliveryRecord]:
        """Deliveries, newest first: those in ``state`` (``"pending"``, ``"in_flight"``, ``"delivered"``,
        ``"dead"``), for ``endpoint`` (a key or an :class:`~flaghooks.Endpoint`), created at or after ``since``
        (a datetime, or a timedelta back from now); at most ``limit`` (``None``: all)."""
        where, args = self._filters(state, endpoint, since)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"limit must be an int >= 1 or None, got {limit!r}")
        sql = f"SELECT {_COLUMNS} FROM {DELIVERIES} WHERE {where} ORDER BY seq DESC"
        if limit is not None:
            sql += f" LIMIT {min(limit, _MOST)}"  # a larger literal is no integer to SQLite: "datatype mismatch"
        return [record(row) for row in self._read(sql, args)]

    @staticmethod
    def _filters(state: object, endpoint: object, since: object) -> tuple[str, list[Any]]:
        where: list[str] = ["1"]
        args: list[Any] = []
        if state is not None:
            if state not in STATES:
                raise ConfigError(f"state must be one of {', '.join(STATES)}, got {state!r}")
            where.append("state = ?")
            args.append(state)
        if endpoint is not None:
            where.append("endpoint = ?")
            args.append(key_of(endpoint))
        if since is not None:
            where.append("created_at >= ?")
            args.append(cutoff("since", since))
        return " AND ".join(where), args

    def attempts(self, delivery_id: str) -> list[AttemptRecord]:
        """Every recorded attempt at ``delivery_id``, oldest first (``[]`` for an unknown id)."""
        rows = self._read(
            f"SELECT a.number, a.at, a.status, a.error, a.elapsed, a.response_body FROM {ATTEMPTS} a "
            f"JOIN {DELIVERIES} d ON d.seq = a.delivery WHERE d.id = ? ORDER BY a.number",
            (delivery_id,),
        )
        return [
            AttemptRecord(
                delivery_id=delivery_id,
                number=number,
                at=datetime.fromtimestamp(at, UTC),
                status=status,
                error=error,
                elapsed=elapsed,
                response_body=bytes(body),
            )
            for number, at, status, error, elapsed, body in rows
        ]

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each state: ``pending``, ``in_flight``, ``delivered``, ``dead``."""
        counts = dict.fromkeys(STATES, 0)
        for state, count in self._read(f"SELECT state, count(*) FROM {DELIVERIES} GROUP BY state"):
            counts[state] = count
        return counts

    def disabled(self) -> dict[str, str]:
        """The endpoints disabled in the file (a 410, or the breaker's ``disable_after``): key -> reason."""
        return dict(self._read(f"SELECT key, disabled FROM {ENDPOINTS} WHERE disabled IS NOT NULL ORDER BY key"))

    # --- repair --------------------------------------------------------------------------------------

    def replay(
        self,
        ids: Iterable[str] | None = None,
        *,
        endpoint: str | Endpoint | None = None,
        since: datetime | timedelta | None = None,
    ) -> int:
        """Put deliveries back to pending, with the same delivery id and the same ``webhook-id`` (receivers can
        de-duplicate), and a fresh count of attempts; returns how many.

        ``ids`` names deliveries (dead or delivered ones are replayed; pending and in-flight ones are left
        alone); without ``ids``, every dead delivery is, or those for ``endpoint`` (a key or an
        :class:`~flaghooks.Endpoint`) and created at or after ``since``. A delivery for an endpoint disabled in
        the file goes dead again: :meth:`enable` it first."""
        now = time.time()
        reset = (
            f"UPDATE {DELIVERIES} SET state = 'pending', attempts = 0, due = ?, round_start = lease, round_at = ?, "
            "updated_at = ?"
        )
        if ids is not None:
            if isinstance(ids, str):
                raise ConfigError("replay's ids must be an iterable of delivery ids, not one str")
            chosen = list(dict.fromkeys(ids))
            where, args = self._filters(None, endpoint, since)

            def by_id(conn: sqlite3.Connection) -> int:
                total = 0
                for start in range(0, len(chosen), _BATCH):
                    part = chosen[start : start + _BATCH]
                    marks = ", ".join("?" for _ in part)
                    sql = f"{reset} WHERE {ENDED} AND id IN ({marks}) AND {where}"
                    total += conn.execute(sql, (now, now, now, *part, *args)).rowcount
                return total

            return int(self._write(by_id))
        where, args = self._filters(DEAD, endpoint, since)
        return int(self._write(lambda conn: conn.execute(f"{reset} WHERE {where}", (now, now, now, *args)).rowcount))

    def prune(self, older_than: datetime | timedelta, *, states: Sequence[str] = (DELIVERED,)) -> int:
        """Delete ended deliveries (and their attempt records) last updated before ``older_than`` (a datetime,
        or a timedelta back from now) whose state is in ``states`` (``"delivered"``, ``"dead"``), in batches
        of 500 per transaction so that workers are never held up for long; returns how many."""
        before = cutoff("older_than", older_than)
        if isinstance(states, str) or not states or any(state not in (DELIVERED, DEAD) for state in states):
            raise ConfigError(f"prune's states must name 'delivered' and/or 'dead', got {states!r}")
        total = 0
        while True:  # the shared connection is let go between batches: this process's publishers wait for one
            lock, conn = self._shared()
            with lock:
                try:
                    pruned = prune_rows(conn, before, tuple(states), batches=1)
                except sqlite3.Error as exc:  # pragma: no cover - as any write: locked or full
                    raise fault(self.path, exc, self._busy_timeout) from None
            total += pruned
            if pruned < _BATCH:
                return total

    def enable(self, key: str | Endpoint) -> bool:
        """Lift the durable disabling of an endpoint (by key or :class:`~flaghooks.Endpoint`) and reset its
        breaker; true when it was disabled. Deliveries that went dead meanwhile stay dead: :meth:`replay` them."""
        sql = (
            f"UPDATE {ENDPOINTS} SET disabled = NULL, disabled_at = NULL, failures = 0, failing_since = NULL, "
            "cooldown = 0, paused_until = NULL, half_open = 0, probe = NULL WHERE key = ? AND disabled IS NOT NULL"
        )
        name = key_of(key)
        return bool(self._write(lambda conn: conn.execute(sql, (name,)).rowcount))

    # --- hooks for executors that keep their dead letters here (contrib.celery) -----------------------

    def _add_dead(self, delivery: Delivery, history: Sequence[AttemptResult], error: str) -> None:
        """Store ``delivery`` as dead, with its attempts. A dead delivery with its id already here is rewritten
        (the same run repeated after a lost worker writes the same; a replayed one that failed again, its new
        round) and its ``updated_at`` moves on, so that :meth:`_delete_taken` leaves it alone."""
        now = time.time()
        key = delivery.endpoint.label
        last = history[-1] if history else None
        created = delivery.created_at.timestamp()
        row = (
            delivery.id,
            delivery.event_id,
            str(delivery.event_type),
            key,
            delivery.body,
            len(history),
            len(history),
            created,
            None if last is None else last.status,
            error,
            created,
            now,
        )
        attempts = [
            (number, now, result.status, result.error, result.elapsed, scrub(result.response_body, delivery.endpoint))
            for number, result in enumerate(history, 1)
        ]

        def add(conn: sqlite3.Connection) -> None:
            conn.execute(_KEY, (key,))
            conn.execute(
                f"INSERT INTO {DELIVERIES} (id, event_id, event_type, endpoint, body, state, attempts, "
                "lease, round_at, last_status, last_error, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'dead', ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts, last_status = excluded.last_status, "
                f"last_error = excluded.last_error, updated_at = max(excluded.updated_at, updated_at + {_MOVED}) "
                "WHERE state = 'dead'",
                row,
            )
            found = conn.execute(f"SELECT seq FROM {DELIVERIES} WHERE id = ? AND state = 'dead'", (delivery.id,))
            seq = found.fetchone()
            if seq is not None:  # pragma: no branch - only a live delivery with that id (not one of ours) stays
                conn.execute(f"DELETE FROM {ATTEMPTS} WHERE delivery = ?", seq)
                conn.executemany(
                    f"INSERT INTO {ATTEMPTS} (delivery, number, at, status, error, elapsed, response_body) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(seq[0], *attempt) for attempt in attempts],
                )

        self._write(add)

    def _take_dead(
        self,
        ids: Sequence[str] | None = None,
        *,
        endpoint: str | Endpoint | None = None,
        since: datetime | timedelta | None = None,
    ) -> list[tuple[DeliveryRecord, bytes]]:
        """Dead deliveries (those named by ``ids``, or all, for ``endpoint``, created since ``since``), oldest
        first, each with its body; nothing is changed (:meth:`_delete` them once re-queued elsewhere)."""
        where, args = self._filters(DEAD, endpoint, since)
        if ids is not None:
            chosen = list(ids)
            if not chosen:
                return []
            where += f" AND id IN ({', '.join('?' for _ in chosen)})"
            args += chosen
        rows = self._read(f"SELECT {_COLUMNS}, body FROM {DELIVERIES} WHERE {where} ORDER BY seq", args)
        return [(record(row), bytes(row[-1])) for row in rows]

    def _delete(self, ids: Sequence[str]) -> int:
        """Delete the deliveries ``ids`` (any state) and their attempts; returns how many."""
        chosen = list(ids)

        def delete(conn: sqlite3.Connection) -> int:
            total = 0
            for start in range(0, len(chosen), _BATCH):
                part = chosen[start : start + _BATCH]
                marks = ", ".join("?" for _ in part)
                conn.execute(
                    f"DELETE FROM {ATTEMPTS} WHERE delivery IN (SELECT seq FROM {DELIVERIES} WHERE id IN ({marks}))",
                    part,
                )
                total += conn.execute(f"DELETE FROM {DELIVERIES} WHERE id IN ({marks})", part).rowcount
            return total

        return int(self._write(delete))

    def _delete_taken(self, taken: Sequence[DeliveryRecord]) -> int:
        """Delete the dead deliveries ``taken`` (records from :meth:`_take_dead`) that are unchanged since: one
        dead again meanwhile (:meth:`_add_dead` moved its ``updated_at`` on) stays. Returns how many."""
        rows = [(record.id, record.updated_at.timestamp() + _MOVED / 2) for record in taken]

        def delete(conn: sqlite3.Connection) -> int:
            total = 0
            for delivery_id, before in rows:
                where = "id = ? AND state = 'dead' AND updated_at < ?"
                conn.execute(
                    f"DELETE FROM {ATTEMPTS} WHERE delivery IN (SELECT seq FROM {DELIVERIES} WHERE {where})",
                    (delivery_id, before),
                )
                total += conn.execute(f"DELETE FROM {DELIVERIES} WHERE {where}", (delivery_id, before)).rowcount
            return total

        return int(self._write(delete)) if rows else 0

    # --- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close this process's shared connection (workers close their own when they stop)."""
        if self._pid != os.getpid():  # pragma: no cover - runs in forked children (tests/test_outbox_processes.py)
            # A forked child that never used the outbox: the lock and the connection are its parent's (the lock
            # may have been held by a thread that does not exist here).
            _inherited.append(self._db)
            self._closed = True
            return
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> SqliteOutbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SqliteOutbox {self.path!r}{' closed' if self._closed else ''}>"

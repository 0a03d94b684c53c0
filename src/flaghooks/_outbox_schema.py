"""The outbox's SQLite file: opening it, its schema and forward migrations, and what a fault means.

Every table is prefixed ``flaghooks_outbox_`` so that the outbox can live in the application's own database
file (``publish(..., connection=conn)`` writes in the application's transaction). Times are Unix seconds (REAL):
several processes share the file, so only the wall clock means the same thing to all of them.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime

from .exceptions import OutboxError

__all__ = ["SCHEMA_VERSION", "fault", "is_busy", "open_connection", "to_datetime"]

DELIVERIES = "flaghooks_outbox_deliveries"
ATTEMPTS = "flaghooks_outbox_attempts"
ENDPOINTS = "flaghooks_outbox_endpoints"
SCHEMA = "flaghooks_outbox_schema"

# A delivery's states. A row is "live" (pending or in flight) until it ends delivered or dead.
PENDING, IN_FLIGHT, DELIVERED, DEAD = "pending", "in_flight", "delivered", "dead"
STATES = (PENDING, IN_FLIGHT, DELIVERED, DEAD)
LIVE = "state IN ('pending', 'in_flight')"  # the partial index's predicate, repeated verbatim in its queries
ENDED = "state IN ('delivered', 'dead')"

_V1 = f"""
CREATE TABLE {DELIVERIES} (
    seq INTEGER PRIMARY KEY,                -- publish order
    id TEXT NOT NULL UNIQUE,                -- the Delivery's id
    event_id TEXT NOT NULL,                 -- sent as webhook-id on every attempt and replay
    event_type TEXT NOT NULL,
    endpoint TEXT NOT NULL,                 -- the endpoint's key (its name, else its URL without user information)
    body BLOB NOT NULL,                     -- the exact bytes signed and sent
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,    -- attempts claimed since published or replayed
    due REAL,                               -- pending: the next attempt is due, in_flight: the lease expires
    lease INTEGER NOT NULL DEFAULT 0,       -- claims ever made: the fencing token, and attempt records' numbers
    round_start INTEGER NOT NULL DEFAULT 0, -- lease when published or last replayed
    round_at REAL NOT NULL,                 -- when published or last replayed
    last_status INTEGER,
    last_error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX {DELIVERIES}_live ON {DELIVERIES} (state, endpoint, due) WHERE {LIVE};
CREATE INDEX {DELIVERIES}_ended ON {DELIVERIES} (updated_at) WHERE {ENDED};
CREATE TABLE {ATTEMPTS} (
    delivery INTEGER NOT NULL,              -- the delivery's seq
    number INTEGER NOT NULL,                -- the delivery's lease when the attempt was claimed
    at REAL NOT NULL,
    status INTEGER,
    error TEXT,
    elapsed REAL NOT NULL,
    response_body BLOB NOT NULL,
    PRIMARY KEY (delivery, number)
) WITHOUT ROWID;
CREATE TABLE {ENDPOINTS} (
    key TEXT PRIMARY KEY,
    disabled TEXT,                          -- why, while disabled: only SqliteOutbox.enable() clears it
    disabled_at REAL,
    failures INTEGER NOT NULL DEFAULT 0,    -- the breaker, shared by every worker on the file
    failing_since REAL,
    cooldown REAL NOT NULL DEFAULT 0,
    paused_until REAL,
    half_open INTEGER NOT NULL DEFAULT 0,
    probe INTEGER                           -- the seq of the probe attempt in flight
) WITHOUT ROWID;
"""

# MIGRATIONS[n] takes a file from schema version n to n + 1 (version 0: a file without the outbox's tables).
MIGRATIONS: tuple[str, ...] = (_V1,)
SCHEMA_VERSION = len(MIGRATIONS)


def to_datetime(value: float | None) -> datetime | None:
    """A stored time as a UTC datetime."""
    return None if value is None else datetime.fromtimestamp(value, UTC)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLITE_BUSY (or SQLITE_LOCKED): another connection holds the lock; try again later."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)  # pragma: no cover - sqlite_errorcode exists on 3.11+


def fault(path: str, exc: sqlite3.Error, busy_timeout: float = 0.0) -> OutboxError:
    """The one-line OutboxError for a SQLite fault on the outbox at ``path``."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if is_busy(exc):
        return OutboxError(f"the outbox {path} is locked by another connection (waited {busy_timeout:g} s): {text}")
    if code == sqlite3.SQLITE_NOTADB or "not a database" in text:
        return OutboxError(f"the outbox {path} is not a SQLite database: {text}")
    if code == sqlite3.SQLITE_FULL:
        return OutboxError(f"the outbox {path} is full (disk or size limit); nothing was written: {text}")
    return OutboxError(f"the outbox {path} failed: {type(exc).__name__}: {text}")


def open_connection(path: str, synchronous: str, busy_timeout: float, *, shared: bool = False) -> sqlite3.Connection:
    """A new connection to the outbox at ``path``: autocommit (every transaction is an explicit BEGIN), WAL,
    ``synchronous``, ``busy_timeout`` seconds of waiting for a lock. ``shared`` allows use from several threads
    (the caller serializes). OutboxError naming the file when it cannot be opened."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutboxError(f"cannot open the outbox {path}: the directory {directory} does not exist")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=not shared, timeout=busy_timeout)
    except sqlite3.Error as exc:
        raise fault(path, exc, busy_timeout) from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - a file on disk always can
            raise OutboxError(f"the outbox {path} cannot use WAL journaling (journal_mode is {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except sqlite3.Error as exc:
        conn.close()
        raise fault(path, exc, busy_timeout) from None
    except OutboxError:  # pragma: no cover - see above
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file's schema to SCHEMA_VERSION in one BEGIN IMMEDIATE transaction; OutboxError for a file
    written by a newer flaghooks."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA,)).fetchone()
        version = 0
        if exists:
            row = conn.execute(f"SELECT max(version) FROM {SCHEMA}").fetchone()
            version = int(row[0] or 0)
        else:
            conn.execute(f"CREATE TABLE {SCHEMA} (version INTEGER NOT NULL)")
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"the outbox {path} has schema version {version}, written by a newer flaghooks "
                f"(this one knows up to {SCHEMA_VERSION}): upgrade flaghooks to use it"
            )
        for step in MIGRATIONS[version:]:
            for statement in step.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"DELETE FROM {SCHEMA}")
            conn.execute(f"INSERT INTO {SCHEMA} (version) VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

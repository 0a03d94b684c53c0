"""The outbox's workers' side of the file: claiming deliveries as leases and finishing them, fenced.

One :meth:`Ledger.cycle` is one ``BEGIN IMMEDIATE`` transaction that records the attempts that came back and
claims the next due deliveries, so that each delivery costs a share of a transaction rather than two of its own.
A claim raises the delivery's ``lease`` (the fencing token) and counts the attempt; a finish applies only while
the row still holds the lease it was claimed with. The breaker (pause, probe, disable) is kept per endpoint in
the file, so every worker of every process applies it alike.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ._breaker import Breaker, BreakerState, HealthChange, HealthState, breaker_step
from ._delivery import Delivery
from ._dispatch import Webhooks
from ._endpoints import Endpoint
from ._outbox_records import event_type_of, scrub
from ._outbox_schema import ATTEMPTS, DEAD, DELIVERED, DELIVERIES, ENDPOINTS, IN_FLIGHT, LIVE, PENDING
from ._retry import Outcome
from .transports import AttemptResult

__all__ = ["Claim", "Ending", "Ledger"]

logger = logging.getLogger("flaghooks")

SWEEP = 200  # deliveries ended at most per endpoint and cycle without an attempt (disabled, not subscribed)
LOST = "the worker stopped before the attempt's outcome was recorded (its lease expired)"

_COLUMNS = "seq, id, event_id, event_type, body, created_at, attempts, lease, round_start, round_at, state"
_DUE_PENDING = (
    f"SELECT {_COLUMNS} FROM {DELIVERIES} WHERE {LIVE} AND state = 'pending' AND endpoint = ? AND due <= ? "
    "ORDER BY due LIMIT ?"
)
_DUE_EXPIRED = (
    f"SELECT {_COLUMNS} FROM {DELIVERIES} WHERE {LIVE} AND state = 'in_flight' AND endpoint = ? AND due <= ? "
    "ORDER BY due LIMIT ?"
)
_ALL_LIVE = (
    f"SELECT {_COLUMNS} FROM {DELIVERIES} WHERE {LIVE} AND endpoint = ? AND (state = 'pending' OR due <= ?) LIMIT ?"
)
# Per endpoint: attempts in flight under a live lease, and leases that expired (their workers died).
_IN_FLIGHT = (
    f"SELECT endpoint, sum(due > ?), sum(due <= ?) FROM {DELIVERIES} WHERE {LIVE} AND state = 'in_flight' "
    "GROUP BY endpoint"
)
_CLAIM = (
    f"UPDATE {DELIVERIES} SET state = 'in_flight', attempts = attempts + 1, lease = lease + 1, due = ?, "
    "updated_at = ? WHERE seq = ?"
)
_HOLDS = f"SELECT 1 FROM {DELIVERIES} WHERE seq = ? AND lease = ? AND state = 'in_flight'"
_RELEASE = (
    f"UPDATE {DELIVERIES} SET state = 'pending', attempts = attempts - 1, due = ?, updated_at = ? "
    "WHERE seq = ? AND lease = ? AND state = 'in_flight'"
)
_SETTLE = f"UPDATE {DELIVERIES} SET state = ?, due = ?, last_status = ?, last_error = ?, updated_at = ? WHERE seq = ?"
_ATTEMPT = (
    f"INSERT OR REPLACE INTO {ATTEMPTS} (delivery, number, at, status, error, elapsed, response_body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_HISTORY = (
    f"SELECT status, error, elapsed, response_body FROM {ATTEMPTS} WHERE delivery = ? AND number > ? ORDER BY number"
)
_ENDPOINTS = f"SELECT key, disabled, failures, failing_since, cooldown, paused_until, half_open, probe FROM {ENDPOINTS}"
_SAVE_ENDPOINT = (
    f"UPDATE {ENDPOINTS} SET disabled = ?, disabled_at = ?, failures = ?, failing_since = ?, cooldown = ?, "
    "paused_until = ?, half_open = ?, probe = ? WHERE key = ?"
)


class Claim:
    """A delivery claimed by this process: what a worker needs for the attempt, and the lease that fences it."""

    __slots__ = ("delivery", "lease", "lease_until", "number", "round_at", "round_start", "seq")

    def __init__(
        self,
        seq: int,
        delivery: Delivery,
        number: int,
        lease: int,
        lease_until: float,
        round_start: int,
        round_at: float,
    ) -> None:
        self.seq = seq
        self.delivery = delivery
        self.number = number  # the attempt's number since published or replayed
        self.lease = lease
        self.lease_until = lease_until
        self.round_start = round_start
        self.round_at = round_at


# (delivery, history, outcome, elapsed, error, disabled): what Webhooks._finish is called with once committed.
Ending = tuple[Delivery, tuple[AttemptResult, ...], Outcome | None, float, str | None, bool]
# (claim, result, outcome): an attempt that came back; a result of None releases a claim never attempted.
Done = tuple[Claim, AttemptResult | None, Outcome | None]


class EndpointRow(BreakerState):
    """An endpoint's row in the file, read at the start of a cycle and written back when changed."""

    __slots__ = ("dirty", "disabled", "key", "probe")

    def __init__(self, row: Sequence[Any]) -> None:
        super().__init__()
        self.key: str = row[0]
        self.disabled: str | None = row[1]
        self.failures, self.failing_since, self.cooldown, self.paused_until = row[2], row[3], row[4], row[5]
        self.half_open = bool(row[6])
        self.probe: int | None = row[7]
        self.dirty = False


def _history(conn: sqlite3.Connection, seq: int, round_start: int) -> tuple[AttemptResult, ...]:
    """A delivery's attempts since it was published or replayed, as results (a lost attempt has no status)."""
    return tuple(
        AttemptResult(status, error or (None if status is not None else LOST), elapsed, response_body=bytes(body))
        for status, error, elapsed, body in conn.execute(_HISTORY, (seq, round_start))
    )


def _delivery(
    delivery_id: str, event_id: str, event_type: str, endpoint: Endpoint, body: bytes, created: float
) -> Delivery:
    return Delivery(
        delivery_id, event_id, event_type_of(event_type), endpoint, bytes(body), datetime.fromtimestamp(created, UTC)
    )


def stand_in(key: str) -> Endpoint:
    """An Endpoint to report a delivery whose key no subscribed endpoint has (its results need one)."""
    return Endpoint("http://unsubscribed.invalid/", name=key)


class Ledger:
    """One process's worker bookkeeping on the file (used by one thread, the pump, on its own connection)."""

    def __init__(self, webhooks: Webhooks, breaker: Breaker, per_endpoint: int, lease_margin: float) -> None:
        self.webhooks = webhooks
        self.breaker = breaker
        self.per_endpoint = per_endpoint
        self.lease_margin = lease_margin
        self.turn = 0  # rotates which endpoint is served first, so that a batch limit favours none
        self.disabled_here: set[str] = set()  # keys this process has disabled in its Webhooks
        self.soonest = math.inf  # the earliest retry or end of a pause this process scheduled

    def cycle(
        self, conn: sqlite3.Connection, done: Sequence[Done], want: int
    ) -> tuple[list[Claim], list[Ending], list[HealthChange]]:
        """Record ``done`` and claim up to ``want`` due deliveries, in one BEGIN IMMEDIATE transaction. What
        is returned happened only once this returns (an exception rolls everything back)."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            rows = {row[0]: EndpointRow(row) for row in conn.execute(_ENDPOINTS)}
            endings: list[Ending] = []
            health: list[HealthChange] = []
            for item in done:
                self._settle(conn, rows, item, now, endings, health)
            claims = self._claim(conn, rows, want, now, endings) if want > 0 else []
            for row in rows.values():
                if row.dirty:
                    conn.execute(
                        _SAVE_ENDPOINT,
                        (
                            row.disabled,
                            now if row.disabled is not None else None,
                            row.failures,
                            row.failing_since,
                            row.cooldown,
                            row.paused_until,
                            int(row.half_open),
                            row.probe,
                            row.key,
                        ),
                    )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return claims, endings, health

    def _endpoint(self, key: str) -> Endpoint | None:
        return self.webhooks._endpoint_for(key)

    def _health(self, key: str, state: HealthState, reason: str, health: list[HealthChange]) -> None:
        endpoint = self._endpoint(key) or stand_in(key)
        health.append(HealthChange(endpoint, state, reason, datetime.now(UTC)))

    def _disable(self, row: EndpointRow, reason: str, health: list[HealthChange]) -> None:
        row.disabled = reason
        row.paused_until, row.half_open, row.probe = None, False, None
        row.dirty = True
        endpoint = self._endpoint(row.key)
        if endpoint is not None:
            self.webhooks._disable(endpoint, reason)
            self.disabled_here.add(row.key)
        self._health(row.key, "disabled", reason, health)

    # --- finishing -----------------------------------------------------------------------------------

    def _settle(
        self,
        conn: sqlite3.Connection,
        rows: dict[str, EndpointRow],
        item: Done,
        now: float,
        endings: list[Ending],
        health: list[HealthChange],
    ) -> None:
        claim, result, outcome = item
        delivery = claim.delivery
        key = delivery.endpoint.label
        row = rows.get(key)
        if result is None or outcome is None:  # claimed, never attempted (shutdown, or too little lease left)
            conn.execute(_RELEASE, (now, now, claim.seq, claim.lease))
            if row is not None and row.probe == claim.seq:
                row.probe, row.dirty = None, True
            return
        if conn.execute(_HOLDS, (claim.seq, claim.lease)).fetchone() is None:
            # Its lease expired and another worker took the delivery over: the newer claim owns the outcome.
            logger.info("outcome of %s attempt %d not recorded: its lease was taken over", delivery.id, claim.number)
            return
        conn.execute(
            _ATTEMPT,
            (
                claim.seq,
                claim.lease,
                now,
                result.status,
                result.error,
                result.elapsed,
                scrub(result.response_body, delivery.endpoint),
            ),
        )
        error: str | None = None
        final: Outcome | None = outcome
        disabled = False
        if row is None:  # pragma: no cover - every key gets a row when published
            row = rows[key] = EndpointRow((key, None, 0, None, 0.0, None, 0, None))
        was_probe = row.probe == claim.seq
        if was_probe:
            row.probe, row.dirty = None, True
        if row.disabled is not None:
            disabled = True
            if outcome is Outcome.RETRY:
                final, error = None, f"endpoint disabled: {row.disabled}"
        else:
            before = (row.failures, row.failing_since, row.cooldown, row.paused_until, row.half_open)
            step = breaker_step(row, self.breaker, outcome, now, was_probe)
            if (row.failures, row.failing_since, row.cooldown, row.paused_until, row.half_open) != before:
                row.dirty = True
            if step.recovered is not None:
                self._health(key, "recovered", step.recovered, health)
                logger.info("endpoint %s recovered", key)
            if step.paused and row.paused_until is not None:
                self.soonest = min(self.soonest, row.paused_until)
            if step.failing is not None:
                self._health(key, "failing", step.failing, health)
                logger.warning("endpoint %s failing: %s", key, step.failing)
            if step.disable is not None:
                self._disable(row, step.disable, health)
                disabled = True
                if outcome is not Outcome.GONE:
                    final, error = None, f"endpoint disabled: {step.disable}"
        policy = self.webhooks._retry
        if final is Outcome.RETRY and claim.number < policy.attempts:
            wait = policy.wait(claim.number, result.status, result.retry_after, self.webhooks._random)
            self.soonest = min(self.soonest, now + wait)
            conn.execute(_SETTLE, (PENDING, now + wait, result.status, result.error, now, claim.seq))
            return
        state = DELIVERED if final is Outcome.DELIVERED else DEAD
        last_error = None if state == DELIVERED else error or result.error or f"HTTP {result.status}"
        conn.execute(_SETTLE, (state, None, result.status, last_error, now, claim.seq))
        history: tuple[AttemptResult, ...] = (result,)
        if claim.number > 1 or claim.lease > claim.round_start + 1:
            history = _history(conn, claim.seq, claim.round_start)
        endings.append((delivery, history, final, now - claim.round_at, error, disabled))

    # --- claiming ------------------------------------------------------------------------------------

    def _claim(
        self, conn: sqlite3.Connection, rows: dict[str, EndpointRow], want: int, now: float, endings: list[Ending]
    ) -> list[Claim]:
        busy: dict[str, int] = {}
        expired: set[str] = set()
        for key, live, dead in conn.execute(_IN_FLIGHT, (now, now)):
            busy[key] = live
            if dead:
                expired.add(key)
        keys = list(rows)
        if keys:
            self.turn = (self.turn + 1) % len(keys)
            keys = keys[self.turn :] + keys[: self.turn]
        claims: list[Claim] = []
        for key in keys:
            if want <= 0:
                break
            row = rows[key]
            endpoint = self._endpoint(key)
            if row.disabled is not None or endpoint is None:
                self._sweep(conn, row, endpoint, now, endings)
                continue
            if key in self.disabled_here:  # enabled in the file since (SqliteOutbox.enable): route to it again
                self.webhooks._enable(endpoint)
                self.disabled_here.discard(key)
            if row.paused_until is not None:
                if row.paused_until > now:
                    continue
                row.paused_until, row.half_open, row.dirty = None, True, True
            if row.probe is not None:
                if conn.execute(
                    f"SELECT 1 FROM {DELIVERIES} WHERE seq = ? AND state = 'in_flight' AND due > ?", (row.probe, now)
                ).fetchone():
                    continue
                row.probe, row.dirty = None, True  # the probe's worker died: another probe may go
            room = self.per_endpoint - busy.get(key, 0)
            if row.half_open:
                room = min(room, 1)
            if room <= 0:
                continue
            taken = self._take(conn, key, endpoint, min(room, want), now, endings, key in expired)
            if taken and row.half_open:
                row.probe, row.dirty = taken[0].seq, True
            claims += taken
            want -= len(taken)
        return claims

    def _take(
        self,
        conn: sqlite3.Connection,
        key: str,
        endpoint: Endpoint,
        limit: int,
        now: float,
        endings: list[Ending],
        expired: bool,
    ) -> list[Claim]:
        found = conn.execute(_DUE_EXPIRED, (key, now, limit)).fetchall() if expired else []
        if len(found) < limit:
            found += conn.execute(_DUE_PENDING, (key, now, limit - len(found))).fetchall()
        lease_until = now + endpoint.timeout + self.lease_margin
        attempts = self.webhooks._retry.attempts
        claims: list[Claim] = []
        updates = []
        for seq, delivery_id, event_id, event_type, body, created, tried, lease, round_start, round_at, state in found:
            delivery = Delivery(
                delivery_id,
                event_id,
                event_type_of(event_type),
                endpoint,
                bytes(body),
                datetime.fromtimestamp(created, UTC),
            )
            if state == IN_FLIGHT:  # a lease that expired: the attempt under it is lost (its worker died)
                conn.execute(
                    f"INSERT OR IGNORE INTO {ATTEMPTS} (delivery, number, at, status, error, elapsed, response_body) "
                    "VALUES (?, ?, ?, NULL, ?, ?, x'')",
                    (seq, lease, now, LOST, max(0.0, now - round_at)),
                )
                if tried >= attempts:  # that was its last attempt: it ends, even if it crashes its worker every time
                    conn.execute(_SETTLE, (DEAD, None, None, LOST, now, seq))
                    history = _history(conn, seq, round_start)
                    endings.append((delivery, history, None, now - round_at, LOST, False))
                    continue
            updates.append((lease_until, now, seq))
            claims.append(Claim(seq, delivery, tried + 1, lease + 1, lease_until, round_start, round_at))
        conn.executemany(_CLAIM, updates)
        return claims

    def _sweep(
        self, conn: sqlite3.Connection, row: EndpointRow, endpoint: Endpoint | None, now: float, endings: list[Ending]
    ) -> None:
        """End, without an attempt, the due deliveries of an endpoint disabled in the file or not subscribed."""
        if row.disabled is not None:
            error, disabled = f"endpoint disabled: {row.disabled}", True
            if endpoint is not None and row.key not in self.disabled_here:
                self.webhooks._disable(endpoint, row.disabled)  # route nothing more to it from this process
                self.disabled_here.add(row.key)
        else:
            error, disabled = f"endpoint {row.key!r} is not subscribed in this worker's Webhooks", False
        found = conn.execute(_ALL_LIVE, (row.key, now, SWEEP)).fetchall()
        if not found:
            return
        shown = endpoint or stand_in(row.key)
        for seq, delivery_id, event_id, event_type, body, created, tried, _, round_start, round_at, _ in found:
            conn.execute(_SETTLE, (DEAD, None, None, error, now, seq))
            delivery = Delivery(
                delivery_id,
                event_id,
                event_type_of(event_type),
                shown,
                bytes(body),
                datetime.fromtimestamp(created, UTC),
            )
            history = _history(conn, seq, round_start) if tried else ()
            endings.append((delivery, history, None, now - round_at, error, disabled))

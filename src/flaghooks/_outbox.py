"""OutboxDelivery: publishing into a SqliteOutbox, and the workers that deliver from it.

A process's workers are one pump thread and ``workers`` attempt threads. The pump alone touches the file: each
of its cycles is one ``BEGIN IMMEDIATE`` transaction that records the attempts that came back and claims the
next due deliveries as leases (``_outbox_lease.Ledger``); the attempt threads only make attempts, outside any
transaction, through the ``Webhooks``' own seam (signing, the transport, the outcome table). Every delivery that
ends (delivered or dead) is reported through ``Webhooks._finish``, after the transaction that ended it committed.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import queue
import random
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from types import FrameType, TracebackType
from typing import Any

from ._breaker import Breaker, HealthChange, seconds
from ._delivery import Delivery
from ._dispatch import Webhooks, log_attempt
from ._events import WebhookEvent, audit_log_created, flag_changed, version_published
from ._models import AuditLogEntry, FeatureState
from ._outbox_lease import Claim, Done, Ending, Ledger
from ._outbox_schema import is_busy
from ._outbox_store import PRUNE_BATCH, SqliteOutbox, prune_rows
from ._retry import classify
from ._versions import VersionPublished
from .exceptions import ConfigError

__all__ = ["OutboxDelivery"]

logger = logging.getLogger("flaghooks")

_PRUNE_EVERY = 60.0  # seconds between the workers' prunes when the outbox has keep_delivered
_PRUNE_BATCHES = 4  # batches per turn of the pump: a backlog is pruned over several turns, outcomes between them
_RUN_TICK = 0.25  # how often run() looks at its stop event while nothing else wakes it


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"OutboxDelivery.{name} must be an int >= 1, got {value!r}")
    return value


class OutboxDelivery:
    """Delivers a :class:`~flaghooks.Webhooks`' events through a :class:`~flaghooks.SqliteOutbox`: what was
    published survives crashes and restarts, and is delivered at least once.

    ``OutboxDelivery(webhooks, outbox, *, workers=4, per_endpoint=1, breaker=Breaker(), on_health=None,
    poll_interval=1.0, lease_margin=30.0)``, a context manager.

    - :meth:`publish`, :meth:`feature_state_changed`, :meth:`audit_log_created`, :meth:`version_published`
      plan the event and store its deliveries, all or none, committed when they return. With
      ``connection=conn`` (the application's ``sqlite3.Connection`` on the outbox's file) they are written in
      the application's open transaction instead: its commit makes them deliverable, its rollback means they
      never existed.
    - :meth:`start` runs the workers as threads of this process; :meth:`run` runs them in the calling thread
      (a worker process); several processes may run workers on one file. Publishing needs no workers here.
    - A worker claims a delivery as a lease (in a ``BEGIN IMMEDIATE`` transaction; the attempt is counted
      then) lasting the endpoint's ``timeout`` plus ``lease_margin`` seconds, makes the attempt outside any
      transaction, and records the outcome only while it still holds the lease (a worker that died leaves
      its deliveries to be claimed again when their leases expire). At most ``per_endpoint`` attempts per
      endpoint are in flight at once, across every process on the file.
    - Endpoints are stored by key (:attr:`Endpoint.label <flaghooks.Endpoint.label>`) and resolved in this
      ``Webhooks`` at each attempt: a rotated secret or a changed URL applies to queued deliveries; a key no
      subscribed endpoint has ends its deliveries dead, with that reason.
    - Retries wait in the file (``next_attempt_at``), by the ``Webhooks``' :class:`~flaghooks.RetryPolicy`.
      The ``breaker`` pauses, probes and disables endpoints as in :class:`~flaghooks.BackgroundDelivery`,
      with its state in the file: a disabled endpoint stays disabled until
      :meth:`SqliteOutbox.enable <flaghooks.SqliteOutbox.enable>`. ``on_health`` gets each
      :class:`~flaghooks.HealthChange`.
    - Every delivery that ends, delivered or dead, is passed to the ``Webhooks``' ``on_result`` by the worker
      that ended it. New deliveries are looked for every ``poll_interval`` seconds (at once when published in
      this process).

    Bad arguments raise :class:`~flaghooks.ConfigError` naming them; faults of the file raise
    :class:`~flaghooks.OutboxError` (workers log them and go on; they back off while the file is locked).
    """

    _busy_timeout = 1.0  # seconds a worker's transaction waits for a lock before backing off

    def __init__(
        self,
        webhooks: Webhooks,
        outbox: SqliteOutbox,
        *,
        workers: int = 4,
        per_endpoint: int = 1,
        breaker: Breaker | None = None,
        on_health: Callable[[HealthChange], None] | None = None,
        poll_interval: float | timedelta = 1.0,
        lease_margin: float | timedelta = 30.0,
    ) -> None:
        if not isinstance(webhooks, Webhooks):
            raise ConfigError(f"OutboxDelivery.webhooks must be a Webhooks, got {type(webhooks).__name__}")
        if not isinstance(outbox, SqliteOutbox):
            raise ConfigError(f"OutboxDelivery.outbox must be a SqliteOutbox, got {type(outbox).__name__}")
        self._webhooks = webhooks
        self._outbox = outbox
        self._workers = _positive_int("workers", workers)
        self._per_endpoint = _positive_int("per_endpoint", per_endpoint)
        if breaker is None:
            breaker = Breaker()
        elif not isinstance(breaker, Breaker):
            raise ConfigError(f"OutboxDelivery.breaker must be a Breaker, got {type(breaker).__name__}")
        self._breaker = breaker
        if on_health is not None and not callable(on_health):
            raise ConfigError("OutboxDelivery.on_health must be callable or None")
        self._on_health = on_health
        self._poll = seconds("OutboxDelivery", "poll_interval", poll_interval)
        # > 0: a claimed delivery waits a moment for a free worker, and must still have its whole timeout left
        self._lease_margin = seconds("OutboxDelivery", "lease_margin", lease_margin)
        self._fresh()
        _live.add(self)

    def _fresh(self) -> None:
        """Everything a forked child must not share with its parent: the lock, the threads, what is claimed."""
        self._cond = threading.Condition(threading.Lock())
        self._jobs: queue.SimpleQueue[Claim | None] = queue.SimpleQueue()
        self._done: list[Done] = []
        self._wanted = False  # something was published here: look for due deliveries now
        self._stopping = False
        self._deadline: float | None = None
        self._stop_event: threading.Event | None = None  # run()'s
        self._pump: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._generation = getattr(self, "_generation", 0) + 1

    # --- publishing ----------------------------------------------------------------------------------

    def publish(
        self,
        event: WebhookEvent,
        *,
        environment: int | None = None,
        organisation: int | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> list[Delivery]:
        """Plan ``event`` (routing as :meth:`Webhooks.publish <flaghooks.Webhooks.publish>`) and store its
        deliveries, all or none; returns them. Committed on return, or, with ``connection`` (a
        ``sqlite3.Connection`` on the outbox's file), written in that connection's open transaction for the
        application's commit or rollback to decide. :class:`~flaghooks.OutboxError` when the file cannot take
        them (nothing is stored then)."""
        deliveries = self._webhooks.plan(event, environment=environment, organisation=organisation)
        if deliveries:
            self._outbox._insert(deliveries, connection)
            if self._pump is not None:
                with self._cond:
                    self._wanted = True
                    self._cond.notify_all()
        return deliveries

    def feature_state_changed(
        self,
        previous: FeatureState | None,
        new: FeatureState | None,
        *,
        changed_by: str = "",
        timestamp: datetime | None = None,
        connection: sqlite3.Connection | None = None,
    ) -> list[Delivery]:
        """Build the event for a state change and publish it; a no-op update stores nothing and returns ``[]``,
        unless the ``Webhooks`` has ``send_noop``."""
        event = flag_changed(previous, new, changed_by=changed_by, timestamp=timestamp)
        if self._webhooks._noop_suppressed(event):
            return []
        return self.publish(event, connection=connection)

    def audit_log_created(
        self, entry: AuditLogEntry, *, organisation: int | None = None, connection: sqlite3.Connection | None = None
    ) -> list[Delivery]:
        """Publish an audit-log entry to its organisation's endpoints (``organisation`` overrides the entry's)."""
        return self.publish(audit_log_created(entry), organisation=organisation, connection=connection)

    def version_published(
        self, version: VersionPublished, *, environment: int, connection: sqlite3.Connection | None = None
    ) -> list[Delivery]:
        """Publish a NEW_VERSION_PUBLISHED event to ``environment``'s endpoints."""
        return self.publish(version_published(version), environment=environment, connection=connection)

    # --- running the workers -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers as threads of this process and return (:meth:`close` stops them)."""
        with self._cond:
            if self._pump is not None:
                return
            self._stopping, self._deadline, self._stop_event = False, None, None
            self._start_attempts()
            self._pump = threading.Thread(
                target=self._pump_loop, args=(None,), name="flaghooks-outbox-pump", daemon=True
            )
            self._pump.start()

    def run(self, stop: threading.Event | None = None) -> None:
        """Run the workers in the calling thread until ``stop`` is set, then stop them as :meth:`close` does.
        Without ``stop``, until SIGTERM or SIGINT (handled only when called in the main thread) or
        :meth:`close` from another thread. For a dedicated worker process."""
        if stop is not None and not isinstance(stop, threading.Event):
            raise ConfigError(f"OutboxDelivery.run's stop must be a threading.Event or None, got {type(stop).__name__}")
        event = stop if stop is not None else threading.Event()
        with self._cond:
            if self._pump is not None:
                raise ConfigError("OutboxDelivery is running already (start() or run())")
            self._stopping, self._deadline = False, None
            self._pump = threading.current_thread()
            self._stop_event = event
            self._start_attempts()
        previous: dict[signal.Signals, Any] = {}
        if stop is None and threading.current_thread() is threading.main_thread():

            def handle(signum: int, frame: FrameType | None) -> None:
                event.set()

            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, handle)
        try:
            self._pump_loop(event)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            with self._cond:
                self._pump = None

    def close(self, timeout: float | timedelta = 5.0) -> None:
        """Stop the workers: claim nothing more, wait up to ``timeout`` seconds for the attempts in flight and
        record them. Attempts still in flight then keep their leases, which expire (another worker attempts
        them again). Claimed deliveries not yet attempted are released at once. Publishing still works."""
        limit = seconds("OutboxDelivery.close", "timeout", timeout, zero=True)
        with self._cond:
            pump = self._pump
            self._stopping = True
            self._deadline = time.monotonic() + limit
            self._cond.notify_all()
        if pump is not None and pump is not threading.current_thread():
            pump.join(limit + 1.0)
        with self._cond:
            if self._pump is pump and (pump is None or not pump.is_alive()):
                self._pump = None

    def _start_attempts(self) -> None:
        generation = self._generation
        self._threads = []
        for number in range(self._workers):
            thread = threading.Thread(
                target=self._attempt_loop, args=(generation,), name=f"flaghooks-outbox-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _stop_attempts(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads = []

    # --- the attempt threads -------------------------------------------------------------------------

    def _attempt_loop(self, generation: int) -> None:
        webhooks, jobs, cond = self._webhooks, self._jobs, self._cond
        while True:
            claim = jobs.get()
            if claim is None or self._generation != generation:
                return
            delivery = claim.delivery
            item: Done
            stop = self._stop_event
            if (
                self._stopping
                or (stop is not None and stop.is_set())
                or time.time() + delivery.endpoint.timeout > claim.lease_until
            ):
                item = (claim, None, None)  # released: never attempted, so it cannot outlive its lease
            else:
                signer = webhooks._signer(delivery.endpoint)
                result = webhooks._attempt(delivery, claim.number, signer, signer.flagsmith(delivery.body))
                if logger.isEnabledFor(logging.DEBUG):
                    log_attempt(delivery, claim.number, webhooks._retry.attempts, result)
                item = (claim, result, classify(result))
            with cond:
                # The pump records every outcome that came back while it was busy in its next transaction.
                self._done.append(item)
                cond.notify_all()

    # --- the pump: the only thread that touches the file ---------------------------------------------

    def _pump_loop(self, stop: threading.Event | None) -> None:
        generation = self._generation
        outbox = self._outbox
        ledger = Ledger(self._webhooks, self._breaker, self._per_endpoint, self._lease_margin)
        conn = outbox._connect("NORMAL", self._busy_timeout)
        # Claimed and not yet recorded: enough that the workers find the next claims queued while the pump records
        # outcomes (a claim waits at most a few attempts for a worker: its lease has lease_margin to spare).
        capacity = 4 * self._workers
        held = 0
        backoff = 0.0
        next_prune = time.monotonic()
        final: list[Done] = []  # at the stop: what came back since the last cycle, and the claims still queued
        try:
            while self._generation == generation:
                with self._cond:
                    if stop is not None and stop.is_set():
                        self._stopping = True
                        if self._deadline is None:
                            self._deadline = time.monotonic() + 5.0
                    stopping = self._stopping
                    if stopping and (held <= 0 or time.monotonic() >= (self._deadline or 0.0)):
                        final, self._done = self._done, []
                        break
                    done, self._done = self._done, []
                    self._wanted = False
                if stopping:
                    done += self._unqueue()
                want = 0 if stopping else capacity - held
                if done or want:
                    try:
                        claims, endings, health = ledger.cycle(conn, done, want)
                    except sqlite3.Error as exc:
                        with self._cond:
                            self._done[:0] = done
                        backoff = min(self._poll, max(0.01, backoff * 2))
                        if is_busy(exc):
                            logger.info("outbox %s is locked; workers back off %.2f s", outbox.path, backoff)
                        else:
                            logger.error("outbox %s: %s: %s; workers back off", outbox.path, type(exc).__name__, exc)
                        time.sleep(backoff * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not cryptography
                        continue
                    backoff = 0.0
                    held += len(claims) - len(done)
                    for claim in claims:
                        self._jobs.put(claim)
                    self._report(endings, health)
                    if want and len(claims) == want:
                        continue  # more may be due: claim again as soon as workers free up
                if outbox.keep_delivered is not None and not stopping and time.monotonic() >= next_prune:
                    # A bounded turn: the pump also records outcomes, and a long prune would let leases end.
                    more = self._prune(conn)
                    next_prune = time.monotonic() + (0.0 if more else _PRUNE_EVERY)
                wait = self._poll if stop is None else min(self._poll, _RUN_TICK)
                soonest = ledger.soonest - time.time()
                if soonest <= 0:
                    ledger.soonest = math.inf
                elif want:  # a retry or a pause this process scheduled ends before the next poll
                    wait = min(wait, soonest)
                with self._cond:
                    if stopping:  # wait for the attempts in flight to come back, or for the deadline
                        if held > 0 and not self._done:
                            self._cond.wait(max(0.0, (self._deadline or 0.0) - time.monotonic()))
                    elif not (self._done or self._wanted or self._stopping):
                        self._cond.wait(wait)
            if self._generation == generation:
                self._record_at_stop(ledger, conn, final + self._unqueue())
        finally:
            conn.close()
            if self._generation == generation:
                self._stop_attempts()
                with self._cond:
                    if self._pump is threading.current_thread() and stop is None:
                        self._pump = None

    def _record_at_stop(self, ledger: Ledger, conn: sqlite3.Connection, final: list[Done]) -> None:
        """One last cycle, claiming nothing: release the claims never attempted and record what came back (even
        with a timeout of 0). If the file stays locked, their leases expire instead."""
        if not final:
            return
        try:
            _, endings, health = ledger.cycle(conn, final, 0)
        except sqlite3.Error as exc:
            logger.warning(
                "outbox %s: %d claim(s) not released at the stop (%s); their leases expire",
                self._outbox.path,
                len(final),
                exc,
            )
            return
        self._report(endings, health)

    def _unqueue(self) -> list[Done]:
        """Stopping: the claims still queued for a worker, taken back to be released at once (every worker may be
        busy with an attempt that outlives close()'s timeout)."""
        released: list[Done] = []
        sentinels = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # pragma: no cover - a stop sentinel left over from an earlier close(): keep it
                sentinels += 1
            else:
                released.append((job, None, None))
        for _ in range(sentinels):  # pragma: no cover - see above
            self._jobs.put(None)
        return released

    def _prune(self, conn: sqlite3.Connection) -> bool:
        """One bounded turn of pruning delivered deliveries older than ``keep_delivered``; True when more may be
        left (the pump comes back at once, after recording what came back meanwhile)."""
        keep = self._outbox.keep_delivered
        assert keep is not None
        try:
            pruned = prune_rows(conn, time.time() - keep, ("delivered",), batches=_PRUNE_BATCHES)
        except sqlite3.Error as exc:
            logger.warning("outbox %s: pruning delivered deliveries failed: %s", self._outbox.path, exc)
            return False
        if pruned:
            logger.info("outbox %s: pruned %d delivered delivery(ies)", self._outbox.path, pruned)
        return pruned >= _PRUNE_BATCHES * PRUNE_BATCH

    def _report(self, endings: list[Ending], health: list[HealthChange]) -> None:
        """Announce health changes and end deliveries, once their transaction committed (callbacks may publish)."""
        for change in health:
            if self._on_health is not None:
                try:
                    self._on_health(change)
                except Exception:
                    logger.exception("on_health callback raised for %s", change.endpoint.label)
        webhooks = self._webhooks
        for delivery, history, outcome, elapsed, error, disabled in endings:
            webhooks._finish(delivery, history, outcome, elapsed, error=error, may_disable=False, disabled=disabled)

    # --- context manager -----------------------------------------------------------------------------

    def __enter__(self) -> OutboxDelivery:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self._pump is not None else "stopped"
        return f"<OutboxDelivery {state}, {self._workers} workers, {self._outbox.path!r}>"


_live: weakref.WeakSet[OutboxDelivery] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs in forked children (tests/test_outbox_fork.py)
    # The parent's threads did not survive the fork and its claims are the parent's: the child starts with none
    # (its workers run only if it calls start() or run()), and its connections are its own.
    for instance in list(_live):
        instance._fresh()


def _close_all() -> None:  # pragma: no cover - runs at interpreter exit
    # At interpreter exit, let attempts in flight record their outcomes (fewer duplicates after a restart).
    for instance in list(_live):
        if instance._pump is not None:
            instance.close()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent where there is no fork (Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)

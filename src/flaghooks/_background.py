"""BackgroundDelivery: worker threads, one FIFO lane per endpoint, one timer heap for retries, a breaker.

Only *when* each attempt happens is decided here. Planning, the attempt itself (signing, the transport), the
outcome table and how a delivery ends (its result, ``on_result``, a 410 disabling its endpoint) are the
``Webhooks``' own, so this executor is the same three steps as the inline loop, scheduled differently.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Literal

from ._breaker import Breaker, HealthChange, seconds
from ._delivery import Delivery
from ._dispatch import Webhooks, log_attempt
from ._events import WebhookEvent, audit_log_created, flag_changed, version_published
from ._lanes import ABANDONED, Report, Scheduler
from ._models import AuditLogEntry, FeatureState
from ._retry import classify
from ._versions import VersionPublished
from .exceptions import ConfigError

__all__ = ["BackgroundDelivery"]

logger = logging.getLogger("flaghooks")

QUEUE_FULL = "queue full"


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"BackgroundDelivery.{name} must be an int >= 1, got {value!r}")
    return value


class BackgroundDelivery:
    """Delivers a :class:`~flaghooks.Webhooks`' events from worker threads: publishing never waits on I/O.

    ``BackgroundDelivery(webhooks, *, workers=4, queue_size=10_000, per_endpoint=1, on_full="drop",
    block_timeout=1.0, shutdown_timeout=5.0, breaker=Breaker(), on_health=None)``, a context manager.

    - :meth:`publish`, :meth:`feature_state_changed`, :meth:`audit_log_created` plan the event (routing and
      encoding, in the caller's thread) and return its deliveries as soon as they are queued.
    - Each endpoint has a FIFO lane: at most ``per_endpoint`` attempts to it are in flight at once, so a hung
      endpoint holds at most that many of the ``workers`` threads. First attempts go out in publish order; a
      retry waits in a timer (never on a worker) and does not hold up its lane.
    - ``queue_size`` bounds the deliveries held (queued, in flight or waiting for a retry). When it is full,
      ``on_full="drop"`` drops new deliveries at once and ``"block"`` waits up to ``block_timeout`` seconds
      for room first; a dropped delivery gets a failed result with the error ``queue full``.
    - The ``breaker`` (:class:`~flaghooks.Breaker`) pauses an endpoint that keeps failing, probes it, and
      disables it; ``on_health`` is called with each :class:`~flaghooks.HealthChange`.
    - Retries follow the ``Webhooks``' :class:`~flaghooks.RetryPolicy` and the outcome table, as inline.
    - Every delivery :meth:`publish` returned ends in exactly one :class:`~flaghooks.DeliveryResult`, passed to
      the ``Webhooks``' ``on_result`` from a worker thread: delivered, failed, dropped or abandoned at
      shutdown. What is queued dies with the process.
    - :meth:`close` (also at interpreter exit, with ``shutdown_timeout``) stops taking deliveries and finishes
      what it can; after ``os.fork()`` the child starts its own workers and never sends the parent's deliveries.

    Bad arguments raise :class:`~flaghooks.ConfigError` naming them. Thread-safe.
    """

    def __init__(
        self,
        webhooks: Webhooks,
        *,
        workers: int = 4,
        queue_size: int = 10_000,
        per_endpoint: int = 1,
        on_full: Literal["drop", "block"] = "drop",
        block_timeout: float | timedelta = 1.0,
        shutdown_timeout: float | timedelta = 5.0,
        breaker: Breaker | None = None,
        on_health: Callable[[HealthChange], None] | None = None,
    ) -> None:
        if not isinstance(webhooks, Webhooks):
            raise ConfigError(f"BackgroundDelivery.webhooks must be a Webhooks, got {type(webhooks).__name__}")
        self._webhooks = webhooks
        self._workers = _positive_int("workers", workers)
        self._queue_size = _positive_int("queue_size", queue_size)
        self._per_endpoint = _positive_int("per_endpoint", per_endpoint)
        if on_full not in ("drop", "block"):
            raise ConfigError(f"BackgroundDelivery.on_full must be 'drop' or 'block', got {on_full!r}")
        self._block = on_full == "block"
        self._block_timeout = seconds("BackgroundDelivery", "block_timeout", block_timeout, zero=True)
        self._shutdown_timeout = seconds("BackgroundDelivery", "shutdown_timeout", shutdown_timeout, zero=True)
        if breaker is None:
            breaker = Breaker()
        elif not isinstance(breaker, Breaker):
            raise ConfigError(f"BackgroundDelivery.breaker must be a Breaker, got {type(breaker).__name__}")
        self._breaker = breaker
        if on_health is not None and not callable(on_health):
            raise ConfigError("BackgroundDelivery.on_health must be callable or None")
        self._on_health = on_health
        self._closed = False
        self._fresh()
        _live.add(self)

    def _fresh(self) -> None:
        """Everything a forked child must not share with its parent: the lock, the threads, what is queued."""
        self._cond = threading.Condition(threading.Lock())
        self._scheduler = Scheduler(self._webhooks, self._per_endpoint, self._breaker, self._wake)
        self._threads: list[threading.Thread] = []
        self._generation = getattr(self, "_generation", 0) + 1
        self._idle = 0  # workers waiting for work
        self._waiters = 0  # flush, close or a blocked publish waiting for deliveries to end
        self._unfinished = 0  # held here and not yet reported
        self._counts = {"delivered": 0, "failed": 0, "dropped": 0, "abandoned": 0}

    # --- publishing ----------------------------------------------------------------------------------

    def publish(
        self, event: WebhookEvent, *, environment: int | None = None, organisation: int | None = None
    ) -> list[Delivery]:
        """Plan ``event`` (:meth:`Webhooks.plan <flaghooks.Webhooks.plan>`: routing and the arguments are
        :meth:`Webhooks.publish <flaghooks.Webhooks.publish>`'s) and queue its deliveries; returns them all,
        dropped ones included, without waiting on any endpoint. ``ConfigError`` once closed."""
        if self._closed:
            raise ConfigError("BackgroundDelivery is closed: it takes no more deliveries")
        deliveries = self._webhooks.plan(event, environment=environment, organisation=organisation)
        if deliveries:
            self._enqueue(deliveries)
        return deliveries

    def feature_state_changed(
        self,
        previous: FeatureState | None,
        new: FeatureState | None,
        *,
        changed_by: str = "",
        timestamp: datetime | None = None,
    ) -> list[Delivery]:
        """Build the event for a state change and publish it; a no-op update sends nothing and returns ``[]``,
        unless the ``Webhooks`` has ``send_noop``."""
        event = flag_changed(previous, new, changed_by=changed_by, timestamp=timestamp)
        if self._webhooks._noop_suppressed(event):
            return []
        return self.publish(event)

    def audit_log_created(self, entry: AuditLogEntry, *, organisation: int | None = None) -> list[Delivery]:
        """Publish an audit-log entry to its organisation's endpoints (``organisation`` overrides the entry's)."""
        return self.publish(audit_log_created(entry), organisation=organisation)

    def version_published(self, version: VersionPublished, *, environment: int) -> list[Delivery]:
        """Publish a NEW_VERSION_PUBLISHED event to ``environment``'s endpoints."""
        return self.publish(version_published(version), environment=environment)

    def _enqueue(self, deliveries: list[Delivery]) -> None:
        dropped: list[Delivery] = []
        now = time.monotonic()
        with self._cond:
            if self._closed:
                raise ConfigError("BackgroundDelivery is closed: it takes no more deliveries")
            if not self._threads:
                self._start_workers()
            scheduler = self._scheduler
            for delivery in deliveries:
                if self._unfinished >= self._queue_size and not self._room():
                    dropped.append(delivery)
                    continue
                scheduler.add(delivery, now)
                self._unfinished += 1
            if dropped:
                self._counts["dropped"] += len(dropped)
        for delivery in dropped:
            self._webhooks._finish(delivery, (), None, 0.0, error=QUEUE_FULL)

    def _room(self) -> bool:
        """With the lock held and the queue full: wait for room when blocking; true when there is room."""
        if not self._block or self._block_timeout == 0:
            return False
        deadline = time.monotonic() + self._block_timeout
        self._waiters += 1
        try:
            while self._unfinished >= self._queue_size and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        finally:
            self._waiters -= 1
        return not self._closed

    # --- scheduling (every method here runs with the lock held) --------------------------------------

    def _start_workers(self) -> None:
        generation = self._generation
        for number in range(self._workers):
            thread = threading.Thread(
                target=self._work, args=(generation,), name=f"flaghooks-background-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    # --- workers -------------------------------------------------------------------------------------

    def _work(self, generation: int) -> None:
        reports: list[Report] = []
        webhooks = self._webhooks
        while True:
            cond, scheduler = self._cond, self._scheduler
            with cond:
                job = None
                while self._generation == generation:
                    now = time.monotonic()
                    due = scheduler.next_due()
                    if due is not None and due <= now:
                        scheduler.fire_timers(now)
                    job = scheduler.take()
                    if job is not None:
                        break
                    due = scheduler.next_due()
                    self._idle += 1
                    cond.wait(None if due is None else due - now)
                    self._idle -= 1
                if job is None:
                    return  # closed, or a forked child's copy of the parent's worker
            delivery = job.delivery
            number = len(job.history) + 1
            signer = webhooks._signer(delivery.endpoint)
            result = webhooks._attempt(delivery, number, signer, signer.flagsmith(delivery.body))
            outcome = classify(result)
            if logger.isEnabledFor(logging.DEBUG):
                log_attempt(delivery, number, webhooks._retry.attempts, result)
            with cond:
                scheduler.settle(job, result, outcome, reports)
            if reports:
                self._report(reports)

    def _report(self, reports: list[Report]) -> None:
        """End deliveries and announce health changes, outside the lock (callbacks may publish)."""
        webhooks = self._webhooks
        for item in reports:
            if isinstance(item, HealthChange):
                if self._on_health is not None:
                    try:
                        self._on_health(item)
                    except Exception:
                        logger.exception("on_health callback raised for %s", item.endpoint.label)
                continue
            job, outcome, error, disabled = item
            result = webhooks._finish(
                job.delivery,
                job.history,
                outcome,
                time.monotonic() - job.started,
                error=error,
                may_disable=False,
                disabled=disabled,
            )
            with self._cond:
                key = "abandoned" if error == ABANDONED else "delivered" if result.ok else "failed"
                self._counts[key] += 1
                self._unfinished -= 1
                self._scheduler.reporting -= 1
                if self._waiters:
                    self._cond.notify_all()
        reports.clear()

    # --- waiting, closing, inspecting ----------------------------------------------------------------

    def flush(self, timeout: float | timedelta | None = None) -> bool:
        """Wait until every delivery queued, in flight or waiting for a retry has ended and its result has been
        passed to ``on_result``; ``False`` if ``timeout`` seconds pass first."""
        limit = None if timeout is None else seconds("BackgroundDelivery.flush", "timeout", timeout, zero=True)
        deadline = None if limit is None else time.monotonic() + limit
        with self._cond:
            self._waiters += 1
            try:
                while self._unfinished:
                    if deadline is None:
                        self._cond.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._waiters -= 1
        return True

    def close(self, timeout: float | timedelta | None = None) -> int:
        """Stop taking deliveries (a later :meth:`publish` raises ``ConfigError``), deliver what can be delivered
        within ``timeout`` seconds (default ``shutdown_timeout``), then abandon the rest: each abandoned
        delivery, in flight ones included, gets one failed result (error ``abandoned at shutdown``), and a late
        outcome of an abandoned attempt is never reported. Returns how many were abandoned."""
        if timeout is None:
            limit = self._shutdown_timeout
        else:
            limit = seconds("BackgroundDelivery.close", "timeout", timeout, zero=True)
        deadline = time.monotonic() + limit
        reports: list[Report] = []
        with self._cond:
            self._closed = True
            self._waiters += 1
            try:
                while self._unfinished:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._scheduler.may_progress(deadline):
                        break
                    self._cond.wait(min(remaining, self._next_timer(remaining)))
            finally:
                self._waiters -= 1
            abandoned = self._scheduler.abandon(reports)
            self._generation += 1  # the workers end (one in a hung attempt ends when it comes back)
            self._threads = []
            self._cond.notify_all()
        self._report(reports)
        _live.discard(self)
        if abandoned:
            logger.warning("BackgroundDelivery closed: %d delivery(ies) abandoned", abandoned)
        return abandoned

    def _next_timer(self, remaining: float) -> float:
        due = self._scheduler.next_due()
        return remaining if due is None else max(0.0, due - time.monotonic())

    def _wake(self) -> None:
        """A lane became ready (the lock is held): wake one idle worker, if any."""
        if self._idle:
            self._cond.notify()

    def stats(self) -> dict[str, int]:
        """Counts now: ``queued``, ``in_flight``, ``waiting_to_retry``, ``paused_lanes``; and since the start:
        ``delivered``, ``failed``, ``dropped`` (queue full), ``abandoned`` (at shutdown)."""
        with self._cond:
            scheduler = self._scheduler
            return {
                "queued": scheduler.queued,
                "in_flight": len(scheduler.running),
                "waiting_to_retry": scheduler.waiting,
                "paused_lanes": sum(lane.paused_until is not None for lane in scheduler.lanes.values()),
                **self._counts,
            }

    def __enter__(self) -> BackgroundDelivery:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<BackgroundDelivery {state}, {self._workers} workers, {len(self._scheduler.lanes)} lanes>"


_live: weakref.WeakSet[BackgroundDelivery] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs in forked children (tests/test_background_fork.py)
    # The parent's workers did not survive the fork and its queue is the parent's to deliver: the child's
    # instances start empty, with a new lock, and start their own workers on first use.
    for instance in list(_live):
        instance._fresh()


def _close_all() -> None:
    for instance in list(_live):
        instance.close()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent where there is no fork (Windows)
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)

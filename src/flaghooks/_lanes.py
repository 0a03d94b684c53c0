"""BackgroundDelivery's scheduling core: a FIFO lane per endpoint, one timer heap, the breaker's states.

Every method runs with BackgroundDelivery's lock held, does no I/O and calls no user code: what must happen
outside the lock (ending a delivery through ``Webhooks._finish``, announcing a health change) is appended to
``reports`` for the caller to carry out once the lock is released.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from ._breaker import Breaker, HealthChange, HealthState, judge
from ._delivery import Delivery
from ._dispatch import Webhooks
from ._endpoints import Endpoint
from ._retry import Outcome
from .transports import AttemptResult

__all__ = ["ABANDONED", "Job", "Lane", "Report", "Scheduler"]

logger = logging.getLogger("flaghooks")

ABANDONED = "abandoned at shutdown"


class Job:
    """One delivery while it is held here: from publish until its result has been reported."""

    __slots__ = ("delivery", "done", "history", "lane", "started")

    def __init__(self, delivery: Delivery, lane: Lane, started: float) -> None:
        self.delivery = delivery
        self.lane = lane
        self.started = started
        self.history: list[AttemptResult] = []
        self.done = False  # its end is decided (a result is being, or has been, reported)


class Lane:
    """One endpoint's deliveries and breaker state."""

    __slots__ = (
        "cooldown",
        "disabled",
        "due",
        "endpoint",
        "failing_since",
        "failures",
        "half_open",
        "in_flight",
        "in_ready",
        "paused_until",
        "probe",
        "queue",
        "waiting",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.queue: deque[Job] = deque()  # first attempts, in publish order
        self.due: deque[Job] = deque()  # retries whose wait is over: they go before the queue
        self.waiting: set[Job] = set()  # retries in the timer heap
        self.in_flight = 0
        self.in_ready = False
        self.failures = 0  # consecutive failed attempts
        self.failing_since: float | None = None
        self.cooldown = 0.0  # the last pause's length; 0 while the breaker is closed
        self.paused_until: float | None = None
        self.half_open = False  # the pause is over: one probe decides
        self.probe: Job | None = None
        self.disabled: str | None = None  # why, once disabled

    def idle(self) -> bool:
        return not (self.in_flight or self.queue or self.due or self.waiting or self.failures or self.paused_until)


# (job, outcome, error, disabled): a delivery to end, outside the lock; or a health change to announce.
End = tuple[Job, Outcome | None, str | None, bool]
Report = End | HealthChange


class Scheduler:
    """Which attempt goes next: lanes, the ready queue, the timer heap, the breaker; and what is held where."""

    def __init__(self, webhooks: Webhooks, per_endpoint: int, breaker: Breaker, wake: Callable[[], None]) -> None:
        self.webhooks = webhooks
        self.per_endpoint = per_endpoint
        self.breaker = breaker
        self.wake = wake  # tells an idle worker that a lane is ready
        self.lanes: dict[Endpoint, Lane] = {}
        self.ready: deque[Lane] = deque()
        self.timers: list[tuple[float, int, Job | Lane]] = []
        self.order = itertools.count()
        self.running: set[Job] = set()
        self.queued = 0  # first attempts and due retries, waiting for a worker
        self.waiting = 0  # retries in the timer heap
        self.reporting = 0  # ended, result not yet reported

    def add(self, delivery: Delivery, now: float) -> None:
        """Queue a first attempt at the end of its endpoint's lane."""
        endpoint = delivery.endpoint
        lane = self.lanes.get(endpoint)
        if lane is None:
            lane = self.lanes[endpoint] = Lane(endpoint)
        lane.queue.append(Job(delivery, lane, now))
        self.queued += 1
        if not lane.in_ready:
            self.maybe_ready(lane)

    def next_due(self) -> float | None:
        return self.timers[0][0] if self.timers else None

    def can_start(self, lane: Lane) -> bool:
        return (
            lane.paused_until is None
            and lane.probe is None
            and lane.in_flight < self.per_endpoint
            and bool(lane.due or lane.queue)
        )

    def maybe_ready(self, lane: Lane) -> None:
        if not lane.in_ready and self.can_start(lane):
            lane.in_ready = True
            self.ready.append(lane)
            self.wake()

    def take(self) -> Job | None:
        ready = self.ready
        while ready:
            lane = ready.popleft()
            lane.in_ready = False
            if not self.can_start(lane):  # pragma: no cover - paused or filled since it was made ready (a race)
                continue
            job = lane.due.popleft() if lane.due else lane.queue.popleft()
            self.queued -= 1
            lane.in_flight += 1
            self.running.add(job)
            if lane.half_open:
                lane.probe = job
            self.maybe_ready(lane)
            return job
        return None

    def fire_timers(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, item = heapq.heappop(timers)
            if type(item) is Job:
                if item.done:
                    continue
                lane = item.lane
                lane.waiting.discard(item)
                self.waiting -= 1
                lane.due.append(item)
                self.queued += 1
                self.maybe_ready(lane)
            else:
                assert isinstance(item, Lane)
                if item.paused_until is not None and item.paused_until <= now:
                    item.paused_until = None
                    item.half_open = True
                    self.maybe_ready(item)

    def end(self, job: Job, reports: list[Report], outcome: Outcome | None, error: str | None = None) -> None:
        job.done = True
        self.reporting += 1
        reports.append((job, outcome, error, job.lane.disabled is not None))

    def health(self, lane: Lane, state: HealthState, reason: str, reports: list[Report]) -> None:
        reports.append(HealthChange(lane.endpoint, state, reason, datetime.now(UTC)))

    def settle(self, job: Job, result: AttemptResult, outcome: Outcome, reports: list[Report]) -> None:
        """An attempt came back: update the breaker, then end the delivery or schedule its retry."""
        lane = job.lane
        lane.in_flight -= 1
        self.running.discard(job)
        was_probe = lane.probe is job
        if was_probe:
            lane.probe = None
        if job.done:  # abandoned at shutdown while in flight: its late outcome is not reported again
            return
        job.history.append(result)
        now = time.monotonic()
        if lane.disabled is not None:
            if outcome is Outcome.RETRY:
                self.end(job, reports, None, f"endpoint disabled: {lane.disabled}")
            else:
                self.end(job, reports, outcome)
            return
        verdict = judge(
            self.breaker,
            lane.failures,
            lane.failing_since,
            lane.cooldown,
            outcome,
            now,
            was_probe or lane.paused_until is None,
        )
        lane.failures, lane.failing_since, lane.cooldown = verdict.failures, verdict.failing_since, verdict.cooldown
        if outcome is Outcome.DELIVERED:
            if verdict.change is not None:
                self.health(lane, verdict.change, verdict.reason, reports)
                logger.info("endpoint %s recovered", lane.endpoint.label)
            lane.paused_until, lane.half_open = None, False
            self.end(job, reports, outcome)
        else:
            if verdict.disabled is not None:
                self.disable(lane, verdict.disabled, reports)
                if outcome is Outcome.GONE:
                    self.end(job, reports, outcome)
                else:
                    self.end(job, reports, None, f"endpoint disabled: {verdict.disabled}")
                return
            if verdict.pause is not None:
                if verdict.change is not None:
                    self.health(lane, verdict.change, verdict.reason, reports)
                    logger.warning("endpoint %s failing: %s", lane.endpoint.label, verdict.reason)
                lane.paused_until = now + verdict.pause
                lane.half_open = False
                heapq.heappush(self.timers, (lane.paused_until, next(self.order), lane))
            policy = self.webhooks._retry
            attempts = len(job.history)
            if outcome is Outcome.RETRY and attempts < policy.attempts:
                wait = policy.wait(attempts, result.status, result.retry_after, self.webhooks._random)
                lane.waiting.add(job)
                self.waiting += 1
                heapq.heappush(self.timers, (now + wait, next(self.order), job))
            else:
                self.end(job, reports, outcome)
        self.maybe_ready(lane)
        if lane.idle() and self.lanes.get(lane.endpoint) is lane:
            del self.lanes[lane.endpoint]

    def disable(self, lane: Lane, reason: str, reports: list[Report]) -> None:
        """Disable the lane's endpoint in its Webhooks and end everything queued for it."""
        self.webhooks._disable(lane.endpoint, reason)
        lane.disabled = reason
        error = f"endpoint disabled: {reason}"
        for job in (*lane.due, *lane.queue):
            self.queued -= 1
            self.end(job, reports, None, error)
        for job in lane.waiting:
            self.waiting -= 1
            self.end(job, reports, None, error)
        lane.due.clear()
        lane.queue.clear()
        lane.waiting.clear()
        lane.paused_until = None
        self.health(lane, "disabled", reason, reports)
        # A lane with an attempt in flight is never idle, so it is still this endpoint's: remove it, and an
        # endpoint subscribed again starts with a fresh lane.
        self.lanes.pop(lane.endpoint, None)

    def may_progress(self, deadline: float) -> bool:
        """Whether anything can still end before ``deadline`` (with the lock held)."""
        due = self.timers[0][0] if self.timers else None
        return bool(self.running or self.ready or self.reporting or (due is not None and due < deadline))

    def abandon(self, reports: list[Report]) -> int:
        jobs = [*self.running]
        for lane in self.lanes.values():
            jobs += (*lane.due, *lane.queue, *lane.waiting)
            lane.due.clear()
            lane.queue.clear()
            lane.waiting.clear()
        for job in jobs:  # none has ended: an ended job is in no lane and not running
            self.end(job, reports, None, ABANDONED)
        self.queued = self.waiting = 0
        self.ready.clear()
        self.timers.clear()
        return len(jobs)

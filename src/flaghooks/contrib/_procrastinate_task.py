"""The procrastinate delivery task's body: one attempt through the ``Webhooks``, the breaker in PostgreSQL, the
attempt count kept by flaghooks, and the exceptions the retry strategy turns into procrastinate's decisions.

The task is async so that its database work uses the worker's own pool; the attempt itself (blocking HTTP) and
how a delivery ends (``on_result``, user code) run in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
from procrastinate.jobs import Job

from .._breaker import Breaker, HealthChange, judge
from .._delivery import Delivery
from .._dispatch import Webhooks, log_attempt
from .._endpoints import Endpoint
from .._events import EventType
from .._retry import Outcome, classify
from ..exceptions import ConfigError
from ..transports import AttemptResult
from . import _pg

__all__ = ["DeliveryRetryStrategy"]

logger = logging.getLogger("flaghooks")

LOCK = "flaghooks:"  # per_endpoint=1: first attempts of an endpoint hold this lock, followed by its key
RETRY_LOCK = "flaghooks-retry:"  # ... and its retries this one (see docs/scale-out.md for why)
PROBE_MARGIN = 5.0  # seconds a probe's claim outlives the endpoint's timeout
DATABASE_RETRIES = 10  # runs of one job that may end in a database error before it is a dead letter


class Paused(Exception):
    """The endpoint's breaker is open: the job runs again at ``until`` (epoch seconds); no attempt was made."""

    def __init__(self, key: str, until: float) -> None:
        super().__init__(f"endpoint {key} is paused by its breaker")
        self.until = until


class EndpointDisabled(Exception):
    """The endpoint is disabled (a 410, or failing for ``disable_after``): the job fails, a dead letter."""


class AttemptFailed(Exception):
    """One attempt did not deliver: ``retry`` says whether the policy and the outcome table want another."""

    def __init__(self, number: int, result: AttemptResult, outcome: Outcome, retry: bool) -> None:
        what = result.status if result.status is not None else result.error
        super().__init__(f"attempt {number}: {what} ({outcome.value}{', retried' if retry else ''})")
        self.number = number
        self.result = result
        self.outcome = outcome
        self.retry = retry


class DeliveryRetryStrategy(procrastinate.BaseRetryStrategy):
    """procrastinate's retry decision for flaghooks' delivery task: the ``Webhooks``' :class:`~flaghooks.RetryPolicy`
    and the outcome table decide, ``Retry-After`` included; the attempt count is flaghooks' own (``job.attempts``
    also grows when a stalled job is recovered or a dead letter replayed).

    A retryable outcome with attempts left returns ``RetryDecision(retry_at=...)``; an endpoint paused by the
    breaker returns the end of the pause (no attempt was made); a database error in flaghooks' bookkeeping is
    retried with the policy's backoff (up to 10 runs of the job); anything else returns ``None`` and the job
    fails, a dead letter. With ``per_endpoint=1`` a retry moves from the endpoint's lock to its retry lock, so that a
    retry waiting for its time never holds up the endpoint's first attempts (procrastinate's locks are FIFO).
    """

    def __init__(self, webhooks: Webhooks) -> None:
        self._webhooks = webhooks
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> procrastinate.RetryDecision | None:
        if isinstance(exception, Paused):
            return procrastinate.RetryDecision(retry_at=datetime.fromtimestamp(exception.until, UTC))
        if isinstance(exception, procrastinate.exceptions.ConnectorException) and job.attempts < DATABASE_RETRIES:
            # flaghooks' bookkeeping met a database error (a failover, a restart): not the endpoint's fault, so
            # neither a dead letter nor one of the delivery's attempts; the policy's backoff spaces the runs.
            wait = self._webhooks._retry.computed_wait(job.attempts + 1, self._random)
            return procrastinate.RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=wait))
        if not isinstance(exception, AttemptFailed) or not exception.retry:
            return None
        result = exception.result
        wait = self._webhooks._retry.wait(exception.number, result.status, result.retry_after, self._random)
        key = job.task_kwargs.get("endpoint")
        lock = f"{RETRY_LOCK}{key}" if job.lock is not None and job.lock == f"{LOCK}{key}" else None
        return procrastinate.RetryDecision(retry_at=datetime.now(UTC) + timedelta(seconds=wait), lock=lock)


def job_args(delivery: Delivery) -> dict[str, Any]:
    """A delivery as a job's JSON arguments: ids, the endpoint's key, the body; never a secret. The body is UTF-8
    text when it is (PostgreSQL's jsonb cannot hold a NUL character, so a body with one goes as base64)."""
    body = delivery.body
    try:
        text, encoding = body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = "", "base64"
    if encoding == "base64" or "\x00" in text:
        text, encoding = base64.b64encode(body).decode("ascii"), "base64"
    return {
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": str(delivery.event_type),
        "endpoint": delivery.endpoint.label,
        "body": text,
        "encoding": encoding,
        "created_at": delivery.created_at.isoformat(),
    }


def event_type(name: str) -> EventType | str:
    try:
        return EventType(name)
    except ValueError:
        return name


class Deliverer:
    """What one run of the delivery task does (its state is the worker's ``Webhooks`` and breaker settings)."""

    def __init__(self, webhooks: Webhooks, breaker: Breaker, on_health: Callable[[HealthChange], None] | None) -> None:
        self.webhooks = webhooks
        self.breaker = breaker
        self.on_health = on_health

    async def run(self, context: procrastinate.JobContext, args: dict[str, Any]) -> None:
        webhooks = self.webhooks
        job = context.job
        connector: Any = context.app.connector
        key = args["endpoint"]
        endpoint = webhooks._endpoint_for(key)
        if endpoint is None:
            reason = f"no endpoint with the key {key!r} is subscribed in this worker's Webhooks"
            await self.give_up(connector, job, args["delivery_id"], reason)
            raise ConfigError(reason)
        raw = args["body"]
        body = base64.b64decode(raw) if args["encoding"] == "base64" else raw.encode("utf-8")
        delivery = Delivery(
            args["delivery_id"],
            args["event_id"],
            event_type(args["event_type"]),
            endpoint,
            body,
            datetime.fromisoformat(args["created_at"]),
        )
        gate = await connector.execute_query_one_async(
            _pg.GATE, ran=job.attempts > 0, delivery_id=delivery.id, endpoint=key
        )
        history = _pg.history_from_json(gate["attempts"])
        probe = False
        if gate["has_row"]:
            reason = gate["disabled_reason"]
            if reason is not None:
                error = f"endpoint disabled: {reason}"
                await self.give_up(connector, job, delivery.id, error, history)
                await asyncio.to_thread(self.end, delivery, history, None, error, True)
                raise EndpointDisabled(error)
            paused_until = gate["paused_until"]
            if paused_until is not None:
                if paused_until > gate["now"]:
                    raise Paused(key, paused_until)
                window = endpoint.timeout + PROBE_MARGIN
                claimed = await connector.execute_query_all_async(_pg.CLAIM_PROBE, window=window, endpoint=key)
                if not claimed:  # another worker's attempt is the probe
                    raise Paused(key, gate["now"] + window)
                probe = True
        number = len(history) + 1
        signer = webhooks._signer(endpoint)
        result = await asyncio.to_thread(webhooks._attempt, delivery, number, signer, signer.flagsmith(body))
        outcome = classify(result)
        history.append(result)
        if logger.isEnabledFor(logging.DEBUG):
            log_attempt(delivery, number, webhooks._retry.attempts, result)
        disabled: str | None = None
        change: HealthChange | None = None
        if outcome is not Outcome.DELIVERED or gate["has_row"]:
            disabled, change = await self.settle(connector, endpoint, outcome, probe)
        retry = outcome is Outcome.RETRY and number < webhooks._retry.attempts and disabled is None
        if outcome is Outcome.DELIVERED:
            if job.attempts > 0:
                await connector.execute_query_async(_pg.FORGET_HISTORY, delivery_ids=[delivery.id])
        else:
            await connector.execute_query_async(
                _pg.SAVE_HISTORY,
                delivery_id=delivery.id,
                job_id=job.id,
                attempts=_pg.history_to_json(history),
                reason=None,
            )
        if change is not None and self.on_health is not None:
            await asyncio.to_thread(self.announce, change)
        if not retry:
            if disabled is not None and outcome is Outcome.RETRY:
                await asyncio.to_thread(self.end, delivery, history, None, f"endpoint disabled: {disabled}", True)
            else:
                await asyncio.to_thread(self.end, delivery, history, outcome, None, disabled is not None)
        if outcome is not Outcome.DELIVERED:
            raise AttemptFailed(number, result, outcome, retry)

    async def give_up(
        self, connector: Any, job: Job, delivery_id: str, reason: str, history: list[AttemptResult] | None = None
    ) -> None:
        """Record why the job fails without an attempt, for its dead letter."""
        attempts = _pg.history_to_json(history or [])
        await connector.execute_query_async(
            _pg.SAVE_HISTORY, delivery_id=delivery_id, job_id=job.id, attempts=attempts, reason=reason
        )

    async def settle(
        self, connector: Any, endpoint: Endpoint, outcome: Outcome, probe: bool
    ) -> tuple[str | None, HealthChange | None]:
        """Record the outcome in the endpoint's health row; returns why it is disabled (or ``None``) and the health
        change to announce. Optimistic: a write that lost to another worker's is redone on the new row."""
        key = endpoint.label
        while True:
            await connector.execute_query_async(_pg.ENSURE_HEALTH, endpoint=key)
            row = await connector.execute_query_one_async(_pg.READ_HEALTH, endpoint=key)
            if row["disabled_reason"] is not None:  # disabled by another worker meanwhile
                return row["disabled_reason"], None
            verdict = judge(
                self.breaker,
                row["failures"],
                row["failing_since"],
                row["cooldown"],
                outcome,
                row["now"],
                probe or row["unpaused"],
            )
            common = {"endpoint": key, "version": row["version"]}
            if outcome is Outcome.DELIVERED:
                done = await connector.execute_query_all_async(_pg.RECOVER, **common)
            elif verdict.disabled is not None:
                done = await connector.execute_query_all_async(
                    _pg.DISABLE,
                    failures=verdict.failures,
                    failing_since=verdict.failing_since,
                    reason=verdict.disabled,
                    **common,
                )
            else:
                done = await connector.execute_query_all_async(
                    _pg.FAIL,
                    failures=verdict.failures,
                    failing_since=verdict.failing_since,
                    cooldown=verdict.cooldown,
                    pause=verdict.pause,
                    **common,
                )
            if done:
                break
        if verdict.disabled is not None:
            self.webhooks._disable(endpoint, verdict.disabled)
        if verdict.change is None:
            return verdict.disabled, None
        if verdict.change == "recovered":
            logger.info("endpoint %s recovered", key)
        elif verdict.change == "failing":
            logger.warning("endpoint %s failing: %s", key, verdict.reason)
        return verdict.disabled, HealthChange(endpoint, verdict.change, verdict.reason, datetime.now(UTC))

    def end(
        self,
        delivery: Delivery,
        history: list[AttemptResult],
        outcome: Outcome | None,
        error: str | None,
        disabled: bool,
    ) -> None:
        elapsed = max(0.0, (datetime.now(UTC) - delivery.created_at).total_seconds())
        self.webhooks._finish(delivery, history, outcome, elapsed, error=error, may_disable=False, disabled=disabled)

    def announce(self, change: HealthChange) -> None:
        assert self.on_health is not None
        try:
            self.on_health(change)
        except Exception:
            logger.exception("on_health callback raised for %s", change.endpoint.label)

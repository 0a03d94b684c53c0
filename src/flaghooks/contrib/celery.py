"""Deliver web hooks on Celery: one delivery attempt per task run, on your Celery workers, on any host.

``register(celery_app, webhooks)`` adds the delivery task (``flaghooks.deliver``) to your Celery app and returns
a :class:`CeleryDelivery` whose ``publish`` plans an event (routing and encoding, in the caller) and queues one
Celery message per delivery. A worker's run of the task makes **one attempt** through its own ``Webhooks`` (the
endpoint, its secret and its signing are resolved by key in the worker, never carried in the message) and then
either ends the delivery or queues the next attempt with a countdown from the ``RetryPolicy``. docs/scale-out.md
explains every setting; in short:

- ``acks_late`` and ``reject_on_worker_lost``: a message is acknowledged after its run, so a worker that dies
  mid-attempt leaves it to the broker, which delivers it again (at least once; receivers de-duplicate on
  ``webhook-id``, which is the event id on every attempt, retry and replay).
- A delivery whose run keeps killing its worker ends: the broker marks a message it delivers again as
  *redelivered*; a run that starts on such a message (with its attempt due) makes no attempt but queues the
  delivery again with its count of lost runs raised by one, and past ``worker_lost_limit`` the delivery ends,
  dead.
- The task id of every message of a delivery is the delivery id. Celery does not de-duplicate on it.
- Waits longer than ``max_hop`` are taken in hops: a countdown message is held unacknowledged by the worker that
  fetched it, and a broker gives it to another worker after its redelivery window (Redis' ``visibility_timeout``,
  RabbitMQ's ``consumer_timeout``), so no countdown may be longer than that window.
- A delivery that ends without being delivered is kept in ``dead_letters`` (a ``flaghooks.SqliteOutbox``) and
  :meth:`CeleryDelivery.replay` queues it again, with the same delivery id and ``webhook-id``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

try:
    from celery.app.defaults import DEFAULTS as _CELERY_SETTINGS  # type: ignore[import-untyped]
    from celery.exceptions import Reject  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError("flaghooks.contrib.celery needs Celery: pip install 'flaghooks[celery]'") from exc

from .._breaker import seconds
from .._delivery import Delivery
from .._dispatch import Webhooks, log_attempt
from .._endpoints import Endpoint
from .._events import WebhookEvent, audit_log_created, flag_changed, version_published
from .._models import AuditLogEntry, FeatureState
from .._outbox_store import SqliteOutbox
from .._retry import Outcome, classify
from .._versions import VersionPublished
from ..exceptions import ConfigError, PayloadError
from ..transports import AttemptResult
from ._celery_message import Message, add_dead, delete_dead, take_dead

__all__ = ["TASK_NAME", "CeleryDelivery", "configure_app", "register"]

logger = logging.getLogger("flaghooks")

TASK_NAME = "flaghooks.deliver"
_EARLY = 0.01  # a run this close to its due time makes the attempt rather than one more tiny hop
# Both brokers' default redelivery windows: Redis' visibility_timeout (1 h) and RabbitMQ's consumer_timeout
# (30 min). The default hop stays well below both, with room for the attempt itself.
_REDIS_VISIBILITY_TIMEOUT = 3600.0
_DEFAULT_MAX_HOP = 600.0
_registered: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def configure_app(celery_app: Any, *, eta_task_limit: int = 1000) -> None:
    """Set the worker settings a flaghooks delivery worker should run with, on ``celery_app``.

    - ``worker_prefetch_multiplier = 1``: a worker reserves one message per pool process beyond those it runs.
      A prefetched message waits behind the runs ahead of it while its broker's redelivery window runs (and,
      on Redis, is given to another worker once ``visibility_timeout`` passes); a dead worker takes its
      prefetched messages with it until the broker redelivers them.
    - ``worker_eta_task_limit = eta_task_limit``: a countdown message (a retry waiting) is fetched at once and
      held, unacknowledged, in the worker's memory until it is due, and each one raises the prefetch count by
      one, so without a limit a worker may hold every waiting retry of a failing endpoint. With the limit, a
      worker holding that many stops fetching until some are due.

    These are worker-wide settings: run the ``flaghooks`` queue on workers of its own (``celery -A app worker
    -Q flaghooks``) if your other tasks want different ones. ``ConfigError`` for a bad ``eta_task_limit``.
    """
    if isinstance(eta_task_limit, bool) or not isinstance(eta_task_limit, int) or eta_task_limit < 1:
        raise ConfigError(f"configure_app: eta_task_limit must be an int >= 1, got {eta_task_limit!r}")
    celery_app.conf.worker_prefetch_multiplier = 1
    celery_app.conf.worker_eta_task_limit = eta_task_limit
    if "worker_eta_task_limit" not in _CELERY_SETTINGS:
        logger.warning(
            "this Celery has no worker_eta_task_limit setting: a worker may hold any number of waiting retries; "
            "upgrade Celery to bound them"
        )


def register(
    celery_app: Any,
    webhooks: Webhooks,
    *,
    queue: str = "flaghooks",
    dead_letters: SqliteOutbox | None = None,
    max_hop: float | timedelta = _DEFAULT_MAX_HOP,
    worker_lost_limit: int = 3,
) -> CeleryDelivery:
    """Add the delivery task ``flaghooks.deliver`` to ``celery_app``, delivering with ``webhooks``; returns the
    :class:`CeleryDelivery` that queues deliveries to it.

    Call it where both the publishing process and the workers import it (the module that makes the Celery app),
    with a ``Webhooks`` that has the same endpoints subscribed in both: a worker finds each delivery's endpoint
    by its key (:attr:`~flaghooks.Endpoint.label`), and an endpoint the worker does not know ends the delivery.

    - ``queue``: the queue every delivery message goes to; run workers on it (``-Q flaghooks``).
    - ``dead_letters``: a ``flaghooks.SqliteOutbox`` keeping the deliveries that end without being delivered
      (failed, gone, attempts exhausted, worker lost too often), for :meth:`CeleryDelivery.replay` and
      ``flaghooks outbox list --db PATH``. Without it, such a delivery is only logged and passed to
      ``on_result``. A SQLite file is per host: give each host's workers the same path only on one host.
    - ``max_hop``: the longest countdown one message waits (seconds or a ``timedelta``, default 10 min); a
      longer wait is taken in hops. Keep it below the broker's redelivery window (Redis' ``visibility_timeout``,
      1 h by default; RabbitMQ's ``consumer_timeout``, 30 min) minus the endpoint's ``timeout``.
    - ``worker_lost_limit``: how many times a delivery's message may come back from a worker that died (or
      shut down, or lost its broker connection) before it had acknowledged it; past that the delivery ends.

    ``ConfigError`` for a bad argument, a ``max_hop`` not below a Redis broker's ``visibility_timeout``, or a
    second registration on the same app.
    """
    if not (hasattr(celery_app, "task") and hasattr(celery_app, "conf")):
        raise ConfigError(f"register: celery_app must be a Celery app, got {type(celery_app).__name__}")
    if not isinstance(webhooks, Webhooks):
        raise ConfigError(f"register: webhooks must be a Webhooks, got {type(webhooks).__name__}")
    if not isinstance(queue, str) or not queue:
        raise ConfigError(f"register: queue must be a non-empty str, got {queue!r}")
    if dead_letters is not None and not isinstance(dead_letters, SqliteOutbox):
        raise ConfigError(f"register: dead_letters must be a flaghooks.SqliteOutbox, got {type(dead_letters).__name__}")
    hop = seconds("register", "max_hop", max_hop)
    if isinstance(worker_lost_limit, bool) or not isinstance(worker_lost_limit, int) or worker_lost_limit < 1:
        raise ConfigError(f"register: worker_lost_limit must be an int >= 1, got {worker_lost_limit!r}")
    window = _redis_visibility_timeout(celery_app)
    if window is not None and hop >= window:
        raise ConfigError(
            f"register: max_hop ({hop:g} s) must be below the Redis broker's visibility_timeout ({window:g} s), "
            "or a waiting retry is delivered twice"
        )
    if celery_app in _registered:
        raise ConfigError(
            f"register: {TASK_NAME} is registered on this Celery app already (queue {_registered[celery_app]!r})"
        )
    runner = _Runner(webhooks, dead_letters, hop, worker_lost_limit)

    def deliver(task: Any, message: object) -> None:
        info = task.request.delivery_info or {}
        try:
            runner.run(message, bool(info.get("redelivered")))
        except Exception as exc:
            # Acknowledging would lose the delivery (its next step was not queued, or its dead letter not
            # kept): hand the message back. It comes back marked redelivered, so this cannot loop for ever.
            logger.exception("flaghooks delivery task failed; its message goes back to the queue")
            raise Reject(f"{type(exc).__name__} in {TASK_NAME}", requeue=True) from exc

    task = celery_app.task(
        name=TASK_NAME,
        bind=True,
        shared=False,
        acks_late=True,  # acknowledged after the run: a dead worker's message is delivered again
        reject_on_worker_lost=True,  # a pool process that died mid-run: the message goes back, marked redelivered
        ignore_result=True,  # the result is the DeliveryResult (on_result); every message shares its task id
        serializer="json",  # the message is JSON whatever the app's default (never pickle)
    )(deliver)
    _registered[celery_app] = queue
    delivery = CeleryDelivery(webhooks, task, queue, dead_letters, celery_app)
    runner.send = delivery._send_one
    delivery._runner = runner
    return delivery


def _redis_visibility_timeout(celery_app: Any) -> float | None:
    """The app's Redis broker's ``visibility_timeout``, or ``None`` when its broker is not Redis."""
    conf = celery_app.conf
    url = conf.broker_url
    first = url[0] if isinstance(url, list | tuple) and url else url
    if not isinstance(first, str) or not first.startswith(("redis:", "rediss:", "redis+socket:", "sentinel:")):
        return None
    options = conf.broker_transport_options or {}
    return float(options.get("visibility_timeout", _REDIS_VISIBILITY_TIMEOUT))


class CeleryDelivery:
    """Queues a ``Webhooks``' deliveries on Celery; made by :func:`register`.

    :meth:`publish`, :meth:`feature_state_changed`, :meth:`audit_log_created` and :meth:`version_published`
    are :class:`~flaghooks.BackgroundDelivery`'s: they plan the event in the calling process and return its
    deliveries once their messages are sent to the broker (a broker error propagates from Celery: the
    deliveries sent before it are delivered, the rest are not). Results reach the workers' ``on_result``.
    """

    def __init__(
        self, webhooks: Webhooks, task: Any, queue: str, dead_letters: SqliteOutbox | None, celery_app: Any
    ) -> None:
        self._webhooks = webhooks
        self._task = task
        self._queue = queue
        self._dead = dead_letters
        self._app = celery_app
        self._runner: _Runner | None = None  # the worker side, set by register

    @property
    def task(self) -> Any:
        """The registered Celery task (``flaghooks.deliver``)."""
        return self._task

    @property
    def queue(self) -> str:
        """The queue its messages go to."""
        return self._queue

    def publish(
        self, event: WebhookEvent, *, environment: int | None = None, organisation: int | None = None
    ) -> list[Delivery]:
        """Plan ``event`` (routing as :meth:`Webhooks.publish <flaghooks.Webhooks.publish>`) and queue one
        message per delivery, each with the delivery id as its task id; returns the deliveries."""
        deliveries = self._webhooks.plan(event, environment=environment, organisation=organisation)
        self._send([Message.first(d) for d in deliveries])
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

    def replay(
        self,
        ids: Sequence[str] | None = None,
        *,
        endpoint: str | None = None,
        since: datetime | timedelta | None = None,
    ) -> list[str]:
        """Queue dead letters again: those with the delivery ids ``ids`` (default: all), of the endpoint with the
        key ``endpoint``, planned at or after ``since`` (a datetime, or a timedelta back from now). Each starts
        again from its first attempt, with the same delivery id (its task id) and the same ``webhook-id``, and
        leaves the dead letters once queued.
        Returns the delivery ids queued. ``ConfigError`` without ``dead_letters``."""
        if self._dead is None:
            raise ConfigError("CeleryDelivery.replay needs dead_letters= given to register()")
        if isinstance(ids, str):
            raise ConfigError("CeleryDelivery.replay: ids must be a sequence of delivery ids, not one str")
        taken = take_dead(self._dead, ids, endpoint, since)
        self._send([message for message, _ in taken])
        delete_dead(self._dead, [record for _, record in taken])
        return [message.delivery_id for message, _ in taken]

    def _send(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        with self._app.producer_or_acquire() as producer:
            # kombu >= 5.7 groups a batch's messages into one round trip where the transport can (a Redis
            # pipeline); elsewhere they are published one by one, as without it.
            batch = producer.batch() if hasattr(producer, "batch") else contextlib.nullcontext()
            with batch:
                for message in messages:
                    self._send_one(message, 0.0, producer)

    def _send_one(self, message: Message, countdown: float, producer: Any = None) -> None:
        if countdown > 0 and self._app.conf.task_always_eager:
            # Eager mode (tests) runs the next message at once, ignoring its countdown: wait here instead, or a
            # long wait would be taken as a storm of immediate hops.
            time.sleep(countdown)
        self._task.apply_async(
            args=[message.to_json()],
            task_id=message.delivery_id,
            queue=self._queue,
            countdown=countdown if countdown > 0 else None,
            producer=producer,
            # What logs, events and Flower show of the message: the ids, not the body (Celery's default repr of
            # the arguments would show the body and costs more than the rest of the publish).
            argsrepr=f"[{message.delivery_id} attempt {message.attempt} to {message.endpoint}]",
            kwargsrepr="{}",
        )

    def __repr__(self) -> str:
        store = "with" if self._dead is not None else "without"
        return f"<CeleryDelivery queue={self._queue!r}, {store} dead letters>"


class _Runner:
    """One run of the delivery task: at most one attempt, then the delivery's next message or its end."""

    def __init__(self, webhooks: Webhooks, dead: SqliteOutbox | None, max_hop: float, lost_limit: int) -> None:
        self._webhooks = webhooks
        self._dead = dead
        self._max_hop = max_hop
        self._lost_limit = lost_limit
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self.send: Any = None  # (message, countdown) -> None, set by register

    def run(self, data: object, redelivered: bool) -> None:
        try:
            message = Message.from_json(data)
        except PayloadError as exc:
            # Nobody can deliver it; a requeue would only bring it back. Acknowledged, and said loudly.
            logger.error("flaghooks delivery task dropped a message it cannot read: %s", exc)
            return
        webhooks = self._webhooks
        endpoint = webhooks._endpoint_for(message.endpoint)
        delivery = message.delivery(endpoint if endpoint is not None else _unknown(message.endpoint))
        early = message.due is not None and message.due - time.time() > _EARLY
        if redelivered and not early:
            # The broker gave this message out before and it was never acknowledged: its worker died (maybe in
            # this very attempt), shut down, or lost its connection. Count that in a new message before any
            # attempt, so a delivery that kills its worker every time ends after worker_lost_limit runs. (A
            # message whose attempt is not due yet is not counted: no run of it can have made the attempt.)
            lost = message.lost + 1
            if lost > self._lost_limit:
                self._end(
                    delivery,
                    message.history,
                    None,
                    f"its message came back from a lost worker {lost} times (worker_lost_limit {self._lost_limit})",
                )
                return
            self.send(attrs.evolve(message, lost=lost), self._countdown(message.due))
            return
        if endpoint is None:
            self._end(delivery, message.history, None, f"no endpoint with the key {message.endpoint!r} is subscribed")
            return
        if not endpoint.enabled or endpoint in webhooks._gone:
            self._end(delivery, message.history, None, "endpoint disabled", disabled=True)
            return
        if early:
            self.send(message, self._countdown(message.due))  # one more hop of a long wait
            return
        number = message.attempt
        result = webhooks.attempt(delivery, number)
        outcome = classify(result)
        policy = webhooks._retry
        if logger.isEnabledFor(logging.DEBUG):
            log_attempt(delivery, number, policy.attempts, result)
        history = (*message.history, result)
        if outcome is Outcome.RETRY and number < policy.attempts:
            wait = policy.wait(number, result.status, result.retry_after, self._random)
            due = time.time() + wait
            self.send(attrs.evolve(message, attempt=number + 1, due=due, history=history), min(wait, self._max_hop))
            return
        self._end(delivery, history, outcome)

    def _countdown(self, due: float | None) -> float:
        return 0.0 if due is None else min(max(0.0, due - time.time()), self._max_hop)

    def _end(
        self,
        delivery: Delivery,
        history: Sequence[AttemptResult],
        outcome: Outcome | None,
        error: str | None = None,
        disabled: bool = False,
    ) -> None:
        """Keep a dead letter first (if this raises, the message goes back and nothing was reported), then end
        the delivery the way every executor does."""
        if outcome is not Outcome.DELIVERED and self._dead is not None:
            last = history[-1] if history else None
            reason = error
            if reason is None:
                assert last is not None  # an outcome comes from an attempt
                reason = last.error if last.error is not None else f"HTTP {last.status}"
            add_dead(self._dead, delivery, history, reason)
        elapsed = max(0.0, time.time() - delivery.created_at.timestamp())
        self._webhooks._finish(delivery, history, outcome, elapsed, error=error, disabled=disabled)


def _unknown(key: str) -> Endpoint:
    """A stand-in for an endpoint the worker does not have, so its delivery can end (named by its key)."""
    return Endpoint("https://unsubscribed.invalid/", name=key, enabled=False)

"""Deliver web hooks on procrastinate: jobs in PostgreSQL, any number of worker processes on any number of hosts.

Needs the extra: ``pip install 'flaghooks[procrastinate]'``. docs/scale-out.md shows the whole setup.

- :func:`blueprint` makes the tasks a worker runs (register it with ``app.add_tasks_from(bp, namespace="flaghooks")``):
  ``flaghooks:deliver`` (one attempt per run), and two periodic tasks, ``flaghooks:recover_stalled`` (jobs of a
  worker that died go back to the queue) and ``flaghooks:prune`` (finished jobs are deleted after a while).
- :class:`ProcrastinateDelivery` publishes: it plans an event and defers one job per delivery, on the app's own
  connection inside its transaction when given one (``connection=``).
- :func:`apply_schema` creates flaghooks' two tables beside procrastinate's own schema: endpoint health (the
  breaker, shared by every worker, and the durable disabled state) and the attempt history of deliveries that
  needed more than one run.
- Failed jobs are the dead letters: :meth:`ProcrastinateDelivery.dead_letters` lists them and
  :meth:`ProcrastinateDelivery.replay` queues the same jobs again (the same delivery id and ``webhook-id``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

try:
    import procrastinate
    from procrastinate.jobs import Job
except ImportError as exc:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError(
        "flaghooks.contrib.procrastinate needs procrastinate: pip install 'flaghooks[procrastinate]'"
    ) from exc

from .._breaker import Breaker, HealthChange, seconds
from .._delivery import Delivery
from .._dispatch import Webhooks
from .._events import EventType, WebhookEvent, audit_log_created, flag_changed, version_published
from .._models import AuditLogEntry, FeatureState
from .._versions import VersionPublished
from ..exceptions import ConfigError
from ..transports import AttemptResult
from . import _pg
from ._procrastinate_task import LOCK, Deliverer, DeliveryRetryStrategy, event_type, job_args

__all__ = ["DeadLetter", "DeliveryRetryStrategy", "ProcrastinateDelivery", "apply_schema", "blueprint"]

logger = logging.getLogger("flaghooks")

DEFAULT_TASK = "flaghooks:deliver"  # the delivery task's name when the blueprint is added with namespace="flaghooks"


def apply_schema(connection: Any) -> None:
    """Create flaghooks' tables (idempotent: ``CREATE ... IF NOT EXISTS``) on ``connection``, a
    ``psycopg.Connection``: ``flaghooks_endpoint_health`` and ``flaghooks_delivery_attempts``.

    Run it once per database, like procrastinate's own schema (``procrastinate schema --apply``, or
    ``app.schema_manager.apply_schema()`` on a fresh database), before the first worker starts. It runs in a
    transaction of its own (or a savepoint inside the caller's).
    """
    with connection.transaction():
        connection.execute(_pg.SCHEMA)


def _check_cron(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"blueprint {name} must be a cron string, got {value!r}")
    return value


def blueprint(
    webhooks: Webhooks,
    *,
    queue: str = "flaghooks",
    breaker: Breaker | None = None,
    on_health: Callable[[HealthChange], None] | None = None,
    stalled_after: float = 30.0,
    recover_cron: str = "* * * * *",
    prune_cron: str = "17 * * * *",
    keep_hours: int = 24,
) -> procrastinate.Blueprint:
    """A new :class:`procrastinate.Blueprint` with flaghooks' tasks, bound to ``webhooks`` by closure (a worker's
    ``Webhooks`` holds the endpoints and their secrets; job arguments never do).

    Register it on the worker's app: ``app.add_tasks_from(blueprint(webhooks), namespace="flaghooks")``. The tasks:

    - ``deliver``: one attempt at one delivery (signing, the transport, the outcome table: the ``Webhooks``'
      own), retried by :class:`DeliveryRetryStrategy`. The ``breaker`` (default ``Breaker()``) pauses an endpoint
      for every worker at once and disables it durably; ``on_health`` is called with each
      :class:`~flaghooks.HealthChange` this worker decides.
    - ``recover_stalled`` (periodic, ``recover_cron``, every minute by default): delivery jobs whose worker sent
      no heartbeat for ``stalled_after`` seconds (procrastinate's workers beat every 10 s by default, and are
      stalled after 30 s) go back to the queue.
    - ``prune`` (periodic, ``prune_cron``, hourly by default): succeeded jobs of ``queue`` older than
      ``keep_hours`` hours are deleted; failed ones (the dead letters) are kept. Never run workers with
      ``delete_jobs="always"``: it deletes the dead letters.

    Periodic jobs go to ``queue``, so workers started with ``--queue flaghooks`` run them. A blueprint binds to
    one app: call this once per app. Bad arguments raise :class:`~flaghooks.ConfigError`.
    """
    if not isinstance(webhooks, Webhooks):
        raise ConfigError(f"blueprint webhooks must be a Webhooks, got {type(webhooks).__name__}")
    if not isinstance(queue, str) or not queue:
        raise ConfigError(f"blueprint queue must be a non-empty str, got {queue!r}")
    if breaker is None:
        breaker = Breaker()
    elif not isinstance(breaker, Breaker):
        raise ConfigError(f"blueprint breaker must be a Breaker, got {type(breaker).__name__}")
    if on_health is not None and not callable(on_health):
        raise ConfigError("blueprint on_health must be callable or None")
    stalled = seconds("blueprint", "stalled_after", stalled_after)
    recover_cron = _check_cron("recover_cron", recover_cron)
    prune_cron = _check_cron("prune_cron", prune_cron)
    if isinstance(keep_hours, bool) or not isinstance(keep_hours, int) or keep_hours < 0:
        raise ConfigError(f"blueprint keep_hours must be an int >= 0, got {keep_hours!r}")

    bp = procrastinate.Blueprint()
    deliverer = Deliverer(webhooks, breaker, on_health)

    @bp.task(name="deliver", pass_context=True, queue=queue, retry=DeliveryRetryStrategy(webhooks))
    async def deliver(context: procrastinate.JobContext, /, **args: Any) -> None:
        # Any keyword arguments: a job deferred by a newer publisher (a rolling deploy) may carry more.
        await deliverer.run(context, args)

    async def recover_stalled(context: procrastinate.JobContext, timestamp: int) -> int:
        manager = context.app.job_manager
        # Delivery jobs in whatever queue they were deferred to, and every job of this queue: a periodic task
        # that died holding the recovery lock must be recovered too, or no recovery would run again.
        stalled_jobs = {
            job.id: job
            for found in (
                await manager.get_stalled_jobs(task_name=deliver.name, seconds_since_heartbeat=stalled),
                await manager.get_stalled_jobs(queue=queue, seconds_since_heartbeat=stalled),
            )
            for job in found
        }
        recovered = 0
        for job in stalled_jobs.values():
            try:
                await manager.retry_job(job)
            except procrastinate.exceptions.ConnectorException:  # finished or recovered meanwhile
                continue
            recovered += 1
        if recovered:
            logger.warning("recovered %d delivery job(s) of stalled procrastinate workers", recovered)
        return recovered

    async def prune(context: procrastinate.JobContext, timestamp: int) -> None:
        await context.app.job_manager.delete_old_jobs(nb_hours=keep_hours, queue=queue)
        await context.app.connector.execute_query_async(_pg.PRUNE_HISTORY)

    # One recovery at a time: two runs reading the stalled jobs at once would both retry a job, and the second
    # retry would take it back from the worker that has started it again (it would be delivered twice).
    lock = f"flaghooks-recover:{queue}"
    recover_task: Any = bp.task(name="recover_stalled", pass_context=True, queue=queue, lock=lock)(recover_stalled)
    bp.periodic(cron=recover_cron, periodic_id="recover_stalled", queue=queue, lock=lock)(recover_task)
    prune_task: Any = bp.task(name="prune", pass_context=True, queue=queue)(prune)
    bp.periodic(cron=prune_cron, periodic_id="prune", queue=queue)(prune_task)
    return bp


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A failed delivery job: its procrastinate ``job_id``, the delivery's ids, the endpoint's key, how many
    attempts it made since it was queued or last replayed, the last attempt's ``status``, and ``error``: why it
    failed without an attempt (``endpoint disabled: ...``, an endpoint the worker does not have), else the last
    attempt's error (``HTTP 400``, a connection error); ``None`` when the job failed otherwise (see the log)."""

    job_id: int
    delivery_id: str
    event_id: str
    event_type: EventType | str
    endpoint: str
    attempts: int
    status: int | None
    error: str | None


def _last_error(last: AttemptResult | None) -> str | None:
    if last is None:
        return None
    return last.error if last.error is not None else f"HTTP {last.status}"


def _task_name(app: procrastinate.App) -> str:
    for name, task in app.tasks.items():
        if isinstance(task.retry_strategy, DeliveryRetryStrategy) and task.name == name:
            return name
    return DEFAULT_TASK


class ProcrastinateDelivery:
    """Publishes a :class:`~flaghooks.Webhooks`' events as procrastinate jobs, one job per delivery.

    ``ProcrastinateDelivery(webhooks, app, *, queue="flaghooks", per_endpoint=None)``. ``app`` is the
    :class:`procrastinate.App` the jobs go to (open it: ``app.open()``); the delivery task's name is read from it
    when the app has :func:`blueprint`'s tasks, else it is ``flaghooks:deliver``. Workers listen on ``queue``.

    - :meth:`publish`, :meth:`feature_state_changed`, :meth:`audit_log_created` and :meth:`version_published`
      plan the event (routing, encoding) and defer its deliveries in one statement; they return the deliveries.
      With ``connection=`` (a ``psycopg.Connection`` of the app's own), the jobs are inserted in that connection's
      transaction: a rollback sends nothing, a commit sends everything. A database error propagates (it is
      procrastinate's), and nothing was deferred.
    - ``per_endpoint=1`` gives every first attempt of an endpoint procrastinate's ``lock`` named after the
      endpoint's key: one at a time, in publish order. Retries move to a lock of their own (see
      :class:`DeliveryRetryStrategy`). ``None`` (the default): no lock, as many at once as workers take.
    - :meth:`dead_letters`, :meth:`replay` and :meth:`enable` operate on the failed jobs and the endpoints'
      health.

    Bad arguments raise :class:`~flaghooks.ConfigError`.
    """

    def __init__(
        self,
        webhooks: Webhooks,
        app: procrastinate.App,
        *,
        queue: str = "flaghooks",
        per_endpoint: int | None = None,
    ) -> None:
        if not isinstance(webhooks, Webhooks):
            raise ConfigError(f"ProcrastinateDelivery.webhooks must be a Webhooks, got {type(webhooks).__name__}")
        if not isinstance(app, procrastinate.App):
            raise ConfigError(f"ProcrastinateDelivery.app must be a procrastinate.App, got {type(app).__name__}")
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"ProcrastinateDelivery.queue must be a non-empty str, got {queue!r}")
        if per_endpoint is not None and (type(per_endpoint) is not int or per_endpoint != 1):
            raise ConfigError(f"ProcrastinateDelivery.per_endpoint must be None or 1, got {per_endpoint!r}")
        self._webhooks = webhooks
        self._app = app
        self._queue = queue
        self._lock = per_endpoint is not None
        self._task = _task_name(app)

    # --- publishing ----------------------------------------------------------------------------------

    def publish(
        self,
        event: WebhookEvent,
        *,
        environment: int | None = None,
        organisation: int | None = None,
        connection: Any = None,
    ) -> list[Delivery]:
        """Plan ``event`` (routing as :meth:`Webhooks.publish <flaghooks.Webhooks.publish>`) and defer one job per
        delivery, on ``connection`` when given (inside its transaction; committing is the caller's)."""
        deliveries = self._webhooks.plan(event, environment=environment, organisation=organisation)
        if deliveries:
            self._defer(deliveries, connection)
        return deliveries

    def feature_state_changed(
        self,
        previous: FeatureState | None,
        new: FeatureState | None,
        *,
        changed_by: str = "",
        timestamp: datetime | None = None,
        connection: Any = None,
    ) -> list[Delivery]:
        """Build the event for a state change and publish it; a no-op update sends nothing and returns ``[]``,
        unless the ``Webhooks`` has ``send_noop``."""
        event = flag_changed(previous, new, changed_by=changed_by, timestamp=timestamp)
        if self._webhooks._noop_suppressed(event):
            return []
        return self.publish(event, connection=connection)

    def audit_log_created(
        self, entry: AuditLogEntry, *, organisation: int | None = None, connection: Any = None
    ) -> list[Delivery]:
        """Publish an audit-log entry to its organisation's endpoints (``organisation`` overrides the entry's)."""
        return self.publish(audit_log_created(entry), organisation=organisation, connection=connection)

    def version_published(
        self, version: VersionPublished, *, environment: int, connection: Any = None
    ) -> list[Delivery]:
        """Publish a NEW_VERSION_PUBLISHED event to ``environment``'s endpoints."""
        return self.publish(version_published(version), environment=environment, connection=connection)

    def _defer(self, deliveries: list[Delivery], connection: Any) -> None:
        jobs = [
            Job(
                id=None,
                queue=self._queue,
                lock=f"{LOCK}{delivery.endpoint.label}" if self._lock else None,
                queueing_lock=None,
                task_name=self._task,
                task_kwargs=job_args(delivery),
            )
            for delivery in deliveries
        ]
        self._app.job_manager.batch_defer_jobs(jobs, connection=connection)

    # --- dead letters, replay, endpoints -------------------------------------------------------------

    def _letters(self, ids: Sequence[int] | None, endpoint: str | None) -> list[DeadLetter]:
        rows = self._app.connector.get_sync_connector().execute_query_all(
            _pg.DEAD_LETTERS,
            task_name=self._task,
            queue=self._queue,
            endpoint=endpoint,
            ids=None if ids is None else list(ids),
        )
        letters = []
        for row in rows:
            args = row["args"]
            history = _pg.history_from_json(row["attempts"])
            last = history[-1] if history else None
            letters.append(
                DeadLetter(
                    job_id=row["id"],
                    delivery_id=args["delivery_id"],
                    event_id=args["event_id"],
                    event_type=event_type(args["event_type"]),
                    endpoint=args["endpoint"],
                    attempts=len(history),
                    status=None if last is None else last.status,
                    error=row["reason"] or _last_error(last),
                )
            )
        return letters

    def dead_letters(self, *, endpoint: str | None = None) -> list[DeadLetter]:
        """The failed delivery jobs of this queue (of one endpoint's key, when given), oldest first."""
        return self._letters(None, endpoint)

    def replay(self, job_ids: Sequence[int] | None = None, *, endpoint: str | None = None) -> list[DeadLetter]:
        """Queue failed delivery jobs again: those of ``job_ids`` (every one when ``None``), of one endpoint's key
        when given. Each is the same job with the same delivery id, sent with the same ``webhook-id``, and gets a
        fresh set of attempts. Returns the dead letters replayed. An endpoint that is disabled fails them again:
        :meth:`enable` it first."""
        if job_ids is not None:
            job_ids = list(job_ids)
            if any(isinstance(i, bool) or not isinstance(i, int) for i in job_ids):
                raise ConfigError("replay job_ids must be ints (procrastinate job ids)")
        letters = self._letters(job_ids, endpoint)
        if letters:
            self._app.connector.get_sync_connector().execute_query(
                _pg.FORGET_HISTORY, delivery_ids=[letter.delivery_id for letter in letters]
            )
        manager = self._app.job_manager
        for letter in letters:
            manager.retry_job_by_id(letter.job_id, retry_at=datetime.now(UTC))
        return letters

    def enable(self, key: str) -> bool:
        """Lift the durable disabled state of the endpoint whose key is ``key`` (and reset its breaker); returns
        whether it was disabled. Its dead letters stay failed: :meth:`replay` them."""
        if not isinstance(key, str):
            raise ConfigError(f"enable key must be an endpoint's key (str), got {type(key).__name__}")
        rows = self._app.connector.get_sync_connector().execute_query_all(_pg.ENABLE, endpoint=key)
        return any(row["disabled_reason"] is not None for row in rows)

    def __repr__(self) -> str:
        lock = ", per_endpoint=1" if self._lock else ""
        return f"<ProcrastinateDelivery queue={self._queue!r}, task={self._task!r}{lock}>"

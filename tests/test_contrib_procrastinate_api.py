"""flaghooks.contrib.procrastinate without a database: argument checks, the job arguments (JSON, no secret, exact
body bytes), and the retry strategy's decisions from the policy, the outcome table and Retry-After."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import attrs
import procrastinate
import pytest
from procrastinate.jobs import Job

from background_helpers import ENV, event
from flaghooks import Breaker, ConfigError, Delivery, Endpoint, EventType, RetryPolicy, Webhooks
from flaghooks._retry import Outcome
from flaghooks._samples import sample_event
from flaghooks.contrib import _pg
from flaghooks.contrib._procrastinate_task import (
    DATABASE_RETRIES,
    PROBE_MARGIN,
    AttemptFailed,
    Deliverer,
    Paused,
    event_type,
    job_args,
)
from flaghooks.contrib.procrastinate import DeliveryRetryStrategy, ProcrastinateDelivery, _last_error, blueprint
from flaghooks.testing import RecordingTransport
from flaghooks.transports import AttemptResult


def app() -> procrastinate.App:
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo="postgresql://nowhere/none"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue": ""}, "blueprint queue"),
        ({"breaker": object()}, "blueprint breaker"),
        ({"on_health": 3}, "blueprint on_health"),
        ({"stalled_after": 0}, "blueprint.stalled_after"),
        ({"recover_cron": " "}, "blueprint recover_cron"),
        ({"prune_cron": None}, "blueprint prune_cron"),
        ({"keep_hours": -1}, "blueprint keep_hours"),
        ({"keep_hours": True}, "blueprint keep_hours"),
    ],
)
def test_blueprint_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    """Each bad argument is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        blueprint(Webhooks(), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="blueprint webhooks"):
        blueprint(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((object(), None), {}, "ProcrastinateDelivery.webhooks"),
        ((Webhooks(), object()), {}, "ProcrastinateDelivery.app"),
        ((Webhooks(), None), {"queue": ""}, "ProcrastinateDelivery.queue"),
        ((Webhooks(), None), {"per_endpoint": 2}, "ProcrastinateDelivery.per_endpoint"),
        ((Webhooks(), None), {"per_endpoint": True}, "ProcrastinateDelivery.per_endpoint"),
    ],
)
def test_procrastinate_delivery_rejects_bad_arguments(
    args: tuple[object, object], kwargs: dict[str, object], message: str
) -> None:
    """Each bad argument is a ConfigError naming it."""
    webhooks, application = args
    with pytest.raises(ConfigError, match=message):
        ProcrastinateDelivery(webhooks, app() if application is None else application, **kwargs)  # type: ignore[arg-type]


def test_replay_and_enable_reject_bad_arguments() -> None:
    """replay takes procrastinate job ids (ints), enable an endpoint's key (a str)."""
    delivery = ProcrastinateDelivery(Webhooks(), app())
    with pytest.raises(ConfigError, match="replay job_ids"):
        delivery.replay(["1"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="enable key"):
        delivery.enable(3)  # type: ignore[arg-type]


def test_the_delivery_task_name_comes_from_the_app() -> None:
    """With the blueprint registered under another namespace, the publisher defers to that task's name; an app
    without it defers to flaghooks:deliver by name (a web process need not register the worker's tasks)."""
    webhooks = Webhooks()
    with_tasks = app()
    with_tasks.add_tasks_from(blueprint(webhooks), namespace="hooks")
    assert "task='hooks:deliver'" in repr(ProcrastinateDelivery(webhooks, with_tasks, per_endpoint=1))
    assert "task='flaghooks:deliver'" in repr(ProcrastinateDelivery(webhooks, app()))


def delivery_with(body: bytes) -> Delivery:
    endpoint = Endpoint(
        "https://hooks.example.com/in", secret="s3cret-value-0123", headers={"Authorization": "Bearer tok-1"}
    )
    return Delivery("dlv_1", "evt_1", "CUSTOM_TYPE", endpoint, body, datetime(2026, 1, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    ("body", "encoding"), [(b'{"a": "\xc3\xa9"}', "utf-8"), (b"\xff\xfe", "base64"), (b'"\x00"', "base64")]
)
def test_job_arguments_are_json_without_secrets_and_keep_the_body_exact(body: bytes, encoding: str) -> None:
    """A job's arguments are JSON: ids, the endpoint's key, the body as UTF-8 text (base64 when it is not UTF-8 or
    holds a NUL, which PostgreSQL's jsonb refuses); neither the secret nor a header value is in them."""
    args = job_args(delivery_with(body))
    text = json.dumps(args)
    assert "s3cret" not in text and "tok-1" not in text
    assert args["encoding"] == encoding and args["endpoint"] == "https://hooks.example.com/in"
    assert args["event_type"] == "CUSTOM_TYPE" and event_type(args["event_type"]) == "CUSTOM_TYPE"
    assert event_type("FLAG_UPDATED").name == "FLAG_UPDATED"  # type: ignore[union-attr]
    import base64

    decoded = base64.b64decode(args["body"]) if encoding == "base64" else args["body"].encode()
    assert decoded == body


def job(lock: str | None = None, endpoint: str = "a") -> Job:
    return Job(
        id=1,
        queue="flaghooks",
        lock=lock,
        queueing_lock=None,
        task_name="flaghooks:deliver",
        task_kwargs={"endpoint": endpoint},
    )


def test_the_retry_strategy_follows_the_policy_and_retry_after() -> None:
    """A retryable attempt with attempts left is retried after the policy's wait, stretched by a 503's Retry-After;
    an attempt that may not be retried, or any other exception, fails the job; a pause retries at its end."""
    strategy = DeliveryRetryStrategy(Webhooks(retry=RetryPolicy(backoff=1, jitter=0, max_delay=60)))
    before = datetime.now(UTC)
    decision = strategy.get_retry_decision(
        exception=AttemptFailed(1, AttemptResult(500), Outcome.RETRY, True), job=job()
    )
    assert decision is not None and decision.retry_at is not None and decision.lock is None
    assert before + timedelta(seconds=1) <= decision.retry_at <= datetime.now(UTC) + timedelta(seconds=1)
    stretched = strategy.get_retry_decision(
        exception=AttemptFailed(1, AttemptResult(503, retry_after=20.0), Outcome.RETRY, True), job=job()
    )
    assert stretched is not None and stretched.retry_at is not None
    assert stretched.retry_at >= before + timedelta(seconds=20)
    refused = AttemptFailed(3, AttemptResult(None, "ConnectionRefusedError"), Outcome.RETRY, False)
    assert strategy.get_retry_decision(exception=refused, job=job()) is None
    assert strategy.get_retry_decision(exception=ValueError("x"), job=job()) is None
    paused = strategy.get_retry_decision(exception=Paused("a", 2_000_000_000.0), job=job())
    assert paused is not None and paused.retry_at == datetime.fromtimestamp(2_000_000_000.0, UTC)


def test_a_database_error_is_retried_a_bounded_number_of_times() -> None:
    """A database error in flaghooks' bookkeeping (a failover) is retried with the policy's backoff, not counted
    as an attempt; after 10 runs of the job it is a dead letter like any other failure."""
    strategy = DeliveryRetryStrategy(Webhooks(retry=RetryPolicy(backoff=1, jitter=0)))
    error = procrastinate.exceptions.ConnectorException("the database went away")
    decision = strategy.get_retry_decision(exception=error, job=job())
    assert decision is not None and decision.retry_at is not None
    assert decision.retry_at >= datetime.now(UTC) + timedelta(seconds=0.5)
    assert strategy.get_retry_decision(exception=error, job=attrs.evolve(job(), attempts=DATABASE_RETRIES)) is None


def test_a_retry_leaves_the_endpoint_lock_for_the_retry_lock() -> None:
    """With per_endpoint=1 a job holds "flaghooks:<key>"; its retry takes "flaghooks-retry:<key>"; a job under a
    lock of the app's own choosing keeps it."""
    strategy = DeliveryRetryStrategy(Webhooks(retry=RetryPolicy(backoff=0.01)))
    failed = AttemptFailed(1, AttemptResult(502), Outcome.RETRY, True)
    moved = strategy.get_retry_decision(exception=failed, job=job("flaghooks:a"))
    kept = strategy.get_retry_decision(exception=failed, job=job("custom"))
    assert moved is not None and moved.lock == "flaghooks-retry:a"
    assert kept is not None and kept.lock is None


def test_webhooks_unaffected_by_the_blueprint() -> None:
    """Building a blueprint sends nothing and leaves the Webhooks usable inline."""
    transport = RecordingTransport()
    webhooks = Webhooks(transport=transport)
    webhooks.subscribe(Endpoint("https://hooks.example.com/in"), environment=ENV)
    blueprint(webhooks)
    assert transport.requests == []
    assert [r.ok for r in webhooks.publish(event(1))] == [True]


def test_publishing_with_nothing_to_deliver_defers_nothing() -> None:
    """Each publishing method plans first: no endpoint for the event, or a no-op update, means no job and no
    database (the app here points nowhere)."""
    delivery = ProcrastinateDelivery(Webhooks(), app())
    state = event(1).data.new_state  # type: ignore[union-attr]
    assert delivery.publish(event(1)) == []
    assert delivery.feature_state_changed(state, state) == []
    assert delivery.audit_log_created(sample_event(EventType.AUDIT_LOG_CREATED).data, organisation=7) == []  # type: ignore[arg-type]
    version = sample_event(EventType.NEW_VERSION_PUBLISHED).data
    assert delivery.version_published(version, environment=ENV) == []  # type: ignore[arg-type]


class FakeConnector:
    """Answers the task's statements from a script: a list of answers per statement, taken in order."""

    def __init__(self, **answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def _answer(self, query: str) -> Any:
        name = next(name for name in self.answers if getattr(_pg, name) == query)
        self.calls.append(name)
        return self.answers[name].pop(0)

    async def execute_query_async(self, query: str, **arguments: Any) -> None:
        self.calls.append(next((n for n in ("ENSURE_HEALTH", "SAVE_HISTORY") if getattr(_pg, n) == query), "?"))

    async def execute_query_one_async(self, query: str, **arguments: Any) -> dict[str, Any]:
        return self._answer(query)  # type: ignore[no-any-return]

    async def execute_query_all_async(self, query: str, **arguments: Any) -> list[dict[str, Any]]:
        return self._answer(query)  # type: ignore[no-any-return]


def health(version: int, disabled: str | None = None) -> dict[str, Any]:
    return {
        "failures": 0,
        "failing_since": None,
        "cooldown": 0.0,
        "unpaused": True,
        "disabled_reason": disabled,
        "version": version,
        "now": 1000.0,
    }


def test_a_breaker_write_that_loses_to_another_worker_is_redone() -> None:
    """The health row changed between the read and the write (another worker's outcome): the write finds no row
    of that version and the decision is made again on the new row."""
    deliverer = Deliverer(Webhooks(), Breaker(failures=1), None)
    connector = FakeConnector(READ_HEALTH=[health(1), health(2)], FAIL=[[], [{"done": 1}]])
    disabled, change = asyncio.run(deliverer.settle(connector, Endpoint("https://a.example/"), Outcome.RETRY, False))
    assert (disabled, change is not None and change.state) == (None, "failing")
    assert connector.calls == ["ENSURE_HEALTH", "READ_HEALTH", "FAIL", "ENSURE_HEALTH", "READ_HEALTH", "FAIL"]


def test_an_endpoint_disabled_by_another_worker_meanwhile_stays_disabled() -> None:
    """Another worker disabled the endpoint while this attempt was in flight: nothing is written, the reason is
    returned (the delivery ends as disabled) and no health change is announced twice."""
    deliverer = Deliverer(Webhooks(), Breaker(), None)
    connector = FakeConnector(READ_HEALTH=[health(3, "it answered 410 Gone")])
    result = asyncio.run(deliverer.settle(connector, Endpoint("https://a.example/"), Outcome.RETRY, False))
    assert result == ("it answered 410 Gone", None)


def test_a_worker_that_loses_the_probe_waits_without_an_attempt() -> None:
    """The pause is over and another worker claimed the probe first: this job is put back until the probe's window
    ends, and nothing is sent."""
    transport = RecordingTransport()
    webhooks = Webhooks(transport=transport)
    endpoint = Endpoint("https://a.example/", name="a", timeout=2)
    webhooks.subscribe(endpoint, environment=ENV)
    args = job_args(delivery_with(b"{}"))
    args["endpoint"] = "a"
    gate = {"now": 1000.0, "has_row": True, "paused_until": 999.0, "cooldown": 30.0, "disabled_reason": None}
    connector = FakeConnector(GATE=[{**gate, "attempts": None}], CLAIM_PROBE=[[]])
    context = SimpleNamespace(job=job(), app=SimpleNamespace(connector=connector))
    with pytest.raises(Paused) as raised:
        asyncio.run(Deliverer(webhooks, Breaker(), None).run(context, args))  # type: ignore[arg-type]
    assert raised.value.until == 1000.0 + 2 + PROBE_MARGIN
    assert transport.requests == []


def test_recovery_skips_a_job_that_finished_meanwhile(caplog: pytest.LogCaptureFixture) -> None:
    """A stalled job that finished (or was recovered) between the listing and its retry is skipped: procrastinate
    refuses the retry, and the run goes on."""
    application = app()
    application.add_tasks_from(blueprint(Webhooks()), namespace="flaghooks")
    recover = application.tasks["flaghooks:recover_stalled"]

    class Manager:
        async def get_stalled_jobs(self, **filters: Any) -> list[Job]:
            return [job()]

        async def retry_job(self, stalled: Job) -> None:
            raise procrastinate.exceptions.ConnectorException("Job was not found or has an invalid status")

    context = SimpleNamespace(app=SimpleNamespace(job_manager=Manager()))
    assert asyncio.run(recover.func(context, timestamp=0)) == 0


def test_a_dead_letter_error_reads_the_last_attempt() -> None:
    """A dead letter's error is the last attempt's error, else its status; with no attempt and no recorded reason
    (a job that failed for another reason, in procrastinate's log) it is None."""
    assert _last_error(AttemptResult(None, "ConnectionRefusedError: refused")) == "ConnectionRefusedError: refused"
    assert _last_error(AttemptResult(400)) == "HTTP 400"
    assert _last_error(None) is None

"""flaghooks.contrib.procrastinate without a database: argument checks, the job arguments (JSON, no secret, exact
body bytes), and the retry strategy's decisions from the policy, the outcome table and Retry-After."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import procrastinate
import pytest
from procrastinate.jobs import Job

from background_helpers import ENV, event
from flaghooks import ConfigError, Delivery, Endpoint, RetryPolicy, Webhooks
from flaghooks._retry import Outcome
from flaghooks.contrib._procrastinate_task import AttemptFailed, Paused, event_type, job_args
from flaghooks.contrib.procrastinate import DeliveryRetryStrategy, ProcrastinateDelivery, blueprint
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

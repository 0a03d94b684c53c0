"""flaghooks.contrib.celery in one process: the message layout, register's checks, and each step of a task run
(attempt, retry, hop, lost worker, unknown or disabled endpoint, dead letters) on Celery's eager mode against a
real loopback HTTP server. The broker and worker processes are tests/test_contrib_celery_workers.py's."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery  # type: ignore[import-untyped]

from background_helpers import ENV, event, local
from cases import banner_state
from flaghooks import (
    AuditLogEntry,
    ConfigError,
    DeliveryRecord,
    DeliveryResult,
    Endpoint,
    PayloadError,
    RetryPolicy,
    SqliteOutbox,
    VersionFeature,
    VersionPublished,
    Webhooks,
)
from flaghooks.contrib._celery_message import Message
from flaghooks.contrib.celery import TASK_NAME, CeleryDelivery, configure_app, register
from flaghooks.transports import AttemptResult
from httpserver import HttpServer, Received, Reply, free_port


def eager_app(**conf: Any) -> Celery:
    """A Celery app that runs each task at once in the caller (no broker, no worker)."""
    app = Celery("flaghooks_unit", broker="memory://", set_as_current=False)
    app.conf.update(task_always_eager=True, **conf)
    return app


@pytest.fixture
def app() -> Iterator[Celery]:
    celery_app = eager_app()
    yield celery_app
    celery_app.close()


class Setup:
    """A Webhooks on a loopback server (scripted per path), registered on an eager app with its dead letters in
    a SQLite outbox (closed with the test)."""

    def __init__(self, app: Celery, server: HttpServer, dead_path: Path, **register_args: Any) -> None:
        self.results: list[DeliveryResult] = []
        self.webhooks = Webhooks(
            transport=local(),
            retry=RetryPolicy(attempts=3, backoff=0.0, jitter=0.0),
            on_result=self.results.append,
        )
        self.dead = SqliteOutbox(dead_path)
        _opened.append(self.dead)
        self.delivery = register(app, self.webhooks, dead_letters=self.dead, **register_args)
        self.server = server

    def subscribe(self, *names: str) -> None:
        for name in names:
            self.webhooks.subscribe(Endpoint(self.server.url(f"/{name}"), name=name), environment=ENV)

    def by_endpoint(self) -> dict[str, DeliveryResult]:
        return {r.endpoint.label: r for r in self.results}

    def dead_letters(self) -> list[DeliveryRecord]:
        return self.dead.deliveries(state="dead", limit=None)


_opened: list[SqliteOutbox] = []


@pytest.fixture(autouse=True)
def _close_outboxes() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


REPLIES = {"/bad": Reply(400), "/gone": Reply(410), "/busy": Reply(503)}


def script(request: Received, count: int) -> Reply:
    """``/busy`` answers 503 once, then 200; ``/bad`` 400 and ``/gone`` 410 always; anything else 200."""
    reply = REPLIES.get(request.path, Reply(200))
    return Reply(200) if request.path == "/busy" and count > 1 else reply


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with HttpServer(script) as running:
        yield running


class TestTaskRuns:
    """What one run of the task does, in eager mode (each next message runs at once in the caller)."""

    def test_outcome_table_on_the_task(self, app: Celery, server: HttpServer, tmp_path: Path) -> None:
        """A 200 is delivered; a 503 is retried (the next attempt is a new message) and delivered; a 400 and a
        410 end at once and are kept as dead letters with their error; a refused connection is retried until
        the attempts run out."""
        setup = Setup(app, server, tmp_path / "dead.sqlite")
        setup.subscribe("ok", "busy", "bad", "gone")
        setup.webhooks.subscribe(Endpoint(f"http://127.0.0.1:{free_port()}/", name="refused"), environment=ENV)
        planned = setup.delivery.publish(event(1), environment=ENV)
        assert [d.endpoint.label for d in planned] == ["ok", "busy", "bad", "gone", "refused"]
        ended = setup.by_endpoint()
        assert ended["ok"].ok and ended["ok"].attempts == 1 and ended["ok"].delivery_id == planned[0].id
        assert ended["busy"].ok and [a.status for a in ended["busy"].history] == [503, 200]
        assert (ended["bad"].ok, ended["bad"].attempts, ended["bad"].status) == (False, 1, 400)
        assert ended["gone"].endpoint_disabled and ended["gone"].attempts == 1
        assert not ended["refused"].ok and ended["refused"].attempts == 3 and ended["refused"].status is None
        rows = {row.endpoint_key: row for row in setup.dead_letters()}
        assert sorted(rows) == ["bad", "gone", "refused"]
        assert (rows["bad"].last_error, rows["gone"].last_status, rows["refused"].attempts) == ("HTTP 400", 410, 3)
        assert [a.status for a in setup.dead.attempts(rows["bad"].id)] == [400]

    def test_replay_sends_the_dead_letter_again(self, app: Celery, server: HttpServer, tmp_path: Path) -> None:
        """replay() queues a dead letter again from its first attempt with the same delivery id and
        webhook-id, and takes it out of the dead letters; replaying nothing queues nothing."""
        setup = Setup(app, server, tmp_path / "dead.sqlite")
        setup.subscribe("bad")
        [planned] = setup.delivery.publish(event(7), environment=ENV)
        REPLIES["/bad"] = Reply(200)
        try:
            assert setup.delivery.replay() == [planned.id]
        finally:
            REPLIES["/bad"] = Reply(400)
        assert [r.headers["webhook-id"] for r in server.received] == ["evt_7", "evt_7"]
        assert setup.results[-1].ok and setup.results[-1].delivery_id == planned.id
        assert setup.results[-1].attempts == 1
        assert setup.dead_letters() == []
        assert setup.delivery.replay(["dlv_none"]) == []

    def test_a_replayed_dead_letter_that_fails_again_stays_a_dead_letter(
        self, app: Celery, server: HttpServer, tmp_path: Path
    ) -> None:
        """A worker may end a replayed delivery before replay() has taken it out of the dead letters (eager mode
        runs it inside the send): when it fails again it is a dead letter again, with the new round's attempt,
        rather than lost between the worker's add and the replay's delete."""
        setup = Setup(app, server, tmp_path / "dead.sqlite")
        setup.subscribe("bad")
        [planned] = setup.delivery.publish(event(9), environment=ENV)
        assert [row.id for row in setup.dead_letters()] == [planned.id]
        assert setup.delivery.replay() == [planned.id]
        assert len(server.received) == 2 and not setup.results[-1].ok
        [row] = setup.dead_letters()
        assert (row.id, row.event_id, row.last_error) == (planned.id, planned.event_id, "HTTP 400")
        assert [a.status for a in setup.dead.attempts(planned.id)] == [400]
        assert setup.delivery.replay() == [planned.id] and len(setup.dead_letters()) == 1

    def test_disabled_endpoint_ends_its_queued_deliveries(
        self, app: Celery, server: HttpServer, tmp_path: Path
    ) -> None:
        """A message for an endpoint this worker disabled (a 410 earlier) ends without a request."""
        setup = Setup(app, server, tmp_path / "dead.sqlite")
        setup.subscribe("ok")
        [planned] = setup.webhooks.plan(event(2), environment=ENV)
        setup.webhooks._disable(planned.endpoint, "test")
        setup.delivery.task.apply_async(args=[Message.first(planned).to_json()], task_id=planned.id)
        [result] = setup.results
        assert (result.ok, result.attempts, result.error, result.endpoint_disabled) == (
            False,
            0,
            "endpoint disabled",
            True,
        )
        assert server.received == []

    def test_unknown_endpoint_ends_the_delivery(self, app: Celery, server: HttpServer, tmp_path: Path) -> None:
        """A message for an endpoint key the worker's Webhooks does not have ends, named by its key."""
        setup = Setup(app, server, tmp_path / "dead.sqlite")
        setup.subscribe("ok")
        [planned] = setup.webhooks.plan(event(3), environment=ENV)
        setup.webhooks.unsubscribe(planned.endpoint)
        setup.delivery.task.apply_async(args=[Message.first(planned).to_json()], task_id=planned.id)
        [result] = setup.results
        assert result.endpoint.label == "ok" and "no endpoint with the key 'ok'" in (result.error or "")
        assert [row.endpoint_key for row in setup.dead_letters()] == ["ok"]

    def test_eager_mode_waits_instead_of_hopping(self, server: HttpServer, tmp_path: Path) -> None:
        """In eager mode the countdown of a retry is slept in the caller (Celery would run it at once), so a
        wait longer than max_hop is a few hops, not a storm of them."""
        app = eager_app()
        try:
            setup = Setup(app, server, tmp_path / "dead.sqlite", max_hop=0.05)
            setup.webhooks._retry = RetryPolicy(attempts=2, backoff=0.2, jitter=0.0)
            setup.subscribe("busy")
            setup.delivery.publish(event(4), environment=ENV)
            [result] = setup.results
            assert result.ok and result.attempts == 2
            times = [r.at for r in server.received]
            assert times[1] - times[0] >= 0.19  # the wait, give or take the 10 ms a run may be early
        finally:
            app.close()

    def test_a_failing_step_hands_the_message_back(self, app: Celery, server: HttpServer, tmp_path: Path) -> None:
        """When the run cannot finish its step (here the dead-letter store fails), the task raises Celery's
        Reject with requeue: the message goes back to the broker instead of being acknowledged and lost."""
        setup = Setup(app, server, tmp_path / "dead.sqlite")
        setup.subscribe("bad")

        def broken(*args: object) -> None:
            raise OSError("disk full")

        setup.dead._add_dead = broken  # type: ignore[method-assign]
        [planned] = setup.webhooks.plan(event(5), environment=ENV)
        outcome = setup.delivery.task.apply_async(args=[Message.first(planned).to_json()], task_id=planned.id)
        assert outcome.state == "REJECTED"
        assert setup.results == []  # nothing was reported: the delivery has not ended


class TestRunnerSteps:
    """The steps that need a broker's redelivery or a clock: driven on the runner, with its sends recorded."""

    @pytest.fixture
    def setup(self, app: Celery, server: HttpServer, tmp_path: Path) -> Setup:
        made = Setup(app, server, tmp_path / "dead.sqlite", max_hop=30.0, worker_lost_limit=2)
        made.subscribe("ok")
        return made

    @staticmethod
    def sends(setup: Setup) -> list[tuple[Message, float]]:
        sent: list[tuple[Message, float]] = []
        runner = setup.delivery._runner
        assert runner is not None
        runner.send = lambda message, countdown: sent.append((message, countdown))
        return sent

    def test_redelivered_message_is_counted_not_attempted(self, setup: Setup, server: HttpServer) -> None:
        """A run on a message the broker redelivered makes no attempt: it queues the delivery again with its
        lost count raised; one whose attempt is not due yet (a hop of a long wait: no run of it can have made
        the attempt) only hops on, uncounted; past worker_lost_limit the delivery ends, dead."""
        sent = self.sends(setup)
        runner = setup.delivery._runner
        assert runner is not None
        [planned] = setup.webhooks.plan(event(6), environment=ENV)
        runner.run(Message.first(planned).to_json(), True)
        assert [(m.lost, c) for m, c in sent] == [(1, 0.0)]
        waiting = Message.first(planned).to_json() | {"lost": 2, "due": time.time() + 1000}
        runner.run(waiting, True)
        assert sent[-1][1] == 30.0 and sent[-1][0].lost == 2  # one more hop of max_hop, not counted
        runner.run(waiting | {"due": time.time() - 1}, True)
        [result] = setup.results
        assert not result.ok and "came back from a lost worker 3 times (worker_lost_limit 2)" in (result.error or "")
        assert server.received == [] and [row.id for row in setup.dead_letters()] == [planned.id]

    def test_a_retry_carries_its_history(
        self, setup: Setup, server: HttpServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A retried attempt queues the next one with the attempt number, the due time and the history; the
        run that ends the delivery reports every attempt, whichever run made it. Each attempt is logged at
        DEBUG with its number out of the policy's attempts."""
        setup.subscribe("busy")
        sent = self.sends(setup)
        runner = setup.delivery._runner
        assert runner is not None
        busy = setup.webhooks.plan(event(8), environment=ENV)[1]
        with caplog.at_level(logging.DEBUG, logger="flaghooks"):
            runner.run(Message.first(busy).to_json(), False)
        assert "attempt 1/3 of FLAG_UPDATED evt_8 to busy: 503" in caplog.text
        [(second, countdown)] = sent
        assert (second.attempt, [a.status for a in second.history], countdown) == (2, [503], 0.0)
        runner.run(second.to_json(), False)
        [result] = setup.results
        assert result.ok and [a.status for a in result.history] == [503, 200] and result.delivery_id == busy.id

    def test_unreadable_message_is_dropped_loudly(self, setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
        """A message that is not a flaghooks message is logged as an error and acknowledged (a requeue would
        only bring it back)."""
        runner = setup.delivery._runner
        assert runner is not None
        with caplog.at_level(logging.ERROR, logger="flaghooks"):
            runner.run({"v": 99}, False)
        assert "cannot read" in caplog.text and "layout 99" in caplog.text


BODY = '{"a": "é"}'.encode()


def message(**changes: Any) -> dict[str, Any]:
    data = Message(
        delivery_id="dlv_1",
        event_id="evt_1",
        event_type="FLAG_UPDATED",
        endpoint="ep",
        body=BODY,
        created_at=datetime(2026, 1, 2, tzinfo=UTC),
        attempt=2,
        due=12.5,
        lost=1,
        history=(AttemptResult(503, None, 0.5, 1.0), AttemptResult(None, "ConnectionRefusedError: no", 0.1)),
    ).to_json()
    data.update(changes)
    return data


class TestMessage:
    """The message layout: JSON, the body as text or base64, every field checked when read."""

    def test_round_trip(self) -> None:
        """A message read back equals the one written, UTF-8 bodies as text and others as base64."""
        data = message()
        assert data["body"] == BODY.decode() and "body_b64" not in data
        back = Message.from_json(data)
        assert back.to_json() == data and back.history[1].error == "ConnectionRefusedError: no"
        raw = Message(
            delivery_id="d", event_id="e", event_type="X_NEW", endpoint="k", body=b"\xff", created_at=back.created_at
        )
        encoded = raw.to_json()
        assert encoded["body_b64"] == "/w==" and Message.from_json(encoded) == raw
        assert raw.delivery(Endpoint("https://a.example/")).event_type == "X_NEW"

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            ([], "is a JSON object"),
            (message(v=2), "layout 2"),
            ({"v": 1}, "lacks"),
            (message(delivery_id=5), "delivery_id must be a string"),
            (message(attempt=0), "attempt must be an int >= 1"),
            (message(lost=True), "lost must be an int >= 0"),
            (message(due="soon"), "due must be a number"),
            (message(due=float("inf")), "due must be a finite number"),  # it would hop for ever
            (message(due=float("nan")), "due must be a finite number"),
            (message(history=[[1, 2]]), "history items"),
            (message(created_at="yesterday"), "malformed"),
            ({**{k: v for k, v in message().items() if k != "body"}, "body_b64": "!!"}, "malformed"),
        ],
    )
    def test_bad_messages(self, data: object, error: str) -> None:
        """Each malformed message raises PayloadError naming what is wrong."""
        with pytest.raises(PayloadError, match=error):
            Message.from_json(data)


class TestRegister:
    """register() and configure_app() check what they are given."""

    def test_settings_and_repr(self, app: Celery) -> None:
        """configure_app sets prefetch 1 and the ETA limit; the task is registered under its explicit name."""
        configure_app(app, eta_task_limit=50)
        assert (app.conf.worker_prefetch_multiplier, app.conf.worker_eta_task_limit) == (1, 50)
        delivery = register(app, Webhooks(transport=local()), queue="hooks")
        assert isinstance(delivery, CeleryDelivery) and delivery.task.name == TASK_NAME == "flaghooks.deliver"
        assert delivery.queue == "hooks" and repr(delivery) == "<CeleryDelivery queue='hooks', without dead letters>"
        with pytest.raises(ConfigError, match="registered on this Celery app already"):
            register(app, Webhooks(transport=local()))
        with pytest.raises(ConfigError, match="needs dead_letters"):
            delivery.replay()

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            ({"celery_app": object()}, "must be a Celery app"),
            ({"webhooks": object()}, "must be a Webhooks"),
            ({"queue": ""}, "queue must be a non-empty str"),
            ({"dead_letters": object()}, "must be a flaghooks.SqliteOutbox"),
            ({"max_hop": 0}, "max_hop must be a finite number"),
            ({"worker_lost_limit": 0}, "worker_lost_limit must be an int >= 1"),
        ],
    )
    def test_bad_arguments(self, app: Celery, args: dict[str, Any], error: str) -> None:
        """Each bad argument raises ConfigError naming it."""
        given: dict[str, Any] = {"celery_app": app, "webhooks": Webhooks(transport=local()), **args}
        with pytest.raises(ConfigError, match=error):
            register(given.pop("celery_app"), given.pop("webhooks"), **given)

    def test_hop_must_fit_the_redis_visibility_timeout(self) -> None:
        """On a Redis broker, max_hop must be below visibility_timeout (1 h unless set), or a waiting retry would
        be given to a second worker; other brokers are not checked here."""
        for url in ("redis://127.0.0.1:6379/0", ["rediss://h/0", "redis://h2/0"]):
            app = eager_app(broker_url=url, broker_transport_options={"visibility_timeout": 60})
            with pytest.raises(ConfigError, match=r"max_hop \(60 s\) must be below .* visibility_timeout \(60 s\)"):
                register(app, Webhooks(transport=local()), max_hop=timedelta(minutes=1))
            assert register(app, Webhooks(transport=local()), max_hop=59).queue == "flaghooks"
            app.close()
        app = eager_app(broker_url="redis://127.0.0.1:6379/0")
        with pytest.raises(ConfigError, match="visibility_timeout \\(3600 s\\)"):
            register(app, Webhooks(transport=local()), max_hop=3600)
        app.close()
        app = eager_app(broker_url="amqp://guest@127.0.0.1//")
        assert register(app, Webhooks(transport=local()), max_hop=3600).queue == "flaghooks"
        app.close()

    def test_configure_app_warns_on_a_celery_without_the_eta_limit(
        self, app: Celery, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """On a Celery that has no worker_eta_task_limit (older releases ignore it), configure_app says so."""
        import flaghooks.contrib.celery as module

        monkeypatch.setattr(module, "_CELERY_SETTINGS", {})
        with caplog.at_level(logging.WARNING, logger="flaghooks"):
            configure_app(app)
        assert "no worker_eta_task_limit setting" in caplog.text

    def test_bad_settings_and_replay_arguments(self, app: Celery, tmp_path: Path) -> None:
        """configure_app refuses a bad ETA limit; replay refuses one id given as a str."""
        with pytest.raises(ConfigError, match="eta_task_limit must be an int >= 1"):
            configure_app(app, eta_task_limit=0)
        with SqliteOutbox(tmp_path / "dead.sqlite") as outbox:
            delivery = register(app, Webhooks(transport=local()), dead_letters=outbox)
            with pytest.raises(ConfigError, match="not one str"):
                delivery.replay("dlv_1")


def test_publishing_api(app: Celery, server: HttpServer, tmp_path: Path) -> None:
    """feature_state_changed (a no-op sends nothing), audit_log_created and version_published publish as
    BackgroundDelivery's do."""
    setup = Setup(app, server, tmp_path / "dead.sqlite")
    setup.subscribe("ok")
    setup.webhooks.subscribe(Endpoint(server.url("/org"), name="org"), organisation=7)
    delivery = setup.delivery
    assert delivery.feature_state_changed(banner_state(), banner_state()) == []
    assert [d.endpoint.label for d in delivery.feature_state_changed(None, banner_state())] == ["ok", "org"]
    entry = AuditLogEntry(created_date=datetime(2026, 1, 1, tzinfo=UTC), log="changed", related_object_type=None)
    assert [d.endpoint.label for d in delivery.audit_log_created(entry, organisation=7)] == ["org"]
    version = VersionPublished(uuid="u1", feature=VersionFeature(1, "checkout"))
    assert [d.endpoint.label for d in delivery.version_published(version, environment=ENV)] == ["ok"]
    assert all(r.ok for r in setup.results) and len(setup.results) == 4

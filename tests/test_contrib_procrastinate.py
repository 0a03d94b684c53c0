"""flaghooks on procrastinate, against the real PostgreSQL: deferring in the app's transaction, the retry rows
(503 with Retry-After, 410, 400, a refused connection), dead letters and their replay with the same webhook-id, the
breaker shared through PostgreSQL, the per-endpoint lock, and stalled-job recovery. Workers run in this process
here; tests/test_contrib_procrastinate_scale.py runs them as real processes and kills one."""

from __future__ import annotations

import asyncio
import logging

import procrastinate
import psycopg
import pytest

from background_helpers import ENV, Results, event, local
from flaghooks import Breaker, Endpoint, HealthChange, RetryPolicy, Webhooks
from flaghooks.contrib._procrastinate_task import job_args
from flaghooks.contrib.procrastinate import ProcrastinateDelivery
from httpserver import HttpServer, Received, Reply, free_port
from procrastinate_helpers import database, statuses, work, worker_app

pytestmark = pytest.mark.postgres

QUICK = RetryPolicy(attempts=3, backoff=0.05, jitter=0, max_delay=5)


def webhooks_for(
    server: HttpServer, *paths: str, retry: RetryPolicy = QUICK, results: Results | None = None
) -> Webhooks:
    webhooks = Webhooks(transport=local(), retry=retry, on_result=results)
    for path in paths:
        webhooks.subscribe(Endpoint(server.url(f"/{path}"), name=path, secret="s3cret-value-0123"), environment=ENV)
    return webhooks


def test_transactional_defer_rollback_sends_nothing_commit_sends_everything() -> None:
    """Deliveries deferred on the app's own connection exist only if its transaction commits: after a rollback the
    worker finds no job and nothing is sent; after a commit every delivery arrives."""
    with database() as (url, app), HttpServer() as server:
        webhooks = webhooks_for(server, "a", "b")
        delivery = ProcrastinateDelivery(webhooks, app)
        with psycopg.connect(url) as connection:
            rolled_back = delivery.publish(event(1), connection=connection)
            connection.execute("SELECT 1")  # the app's own work in the same transaction
            connection.rollback()
            committed = [
                *delivery.publish(event(2), connection=connection),
                *delivery.feature_state_changed(None, event(3).data.new_state, connection=connection),  # type: ignore[union-attr]
            ]
            connection.commit()
        assert len(rolled_back) == 2 and len(committed) == 4
        work(worker_app(url, webhooks), app)
        assert statuses(app) == ["succeeded"] * 4
        received = sorted((r.path, r.headers["webhook-id"]) for r in server.received)
        expected = sorted((f"/{d.endpoint.name}", d.event_id) for d in committed)
        assert received == expected
        assert all(r.headers["webhook-id"] != "evt_1" for r in server.received)


def test_a_503_with_retry_after_is_retried_no_sooner_than_it_asks(caplog: pytest.LogCaptureFixture) -> None:
    """A 503 with Retry-After: 1 is retried (same webhook-id) once the second has passed, and then delivered; the
    job ends succeeded and the result counts both attempts (each attempt logged at DEBUG, as inline)."""
    caplog.set_level(logging.DEBUG, logger="flaghooks")
    results = Results()

    def script(request: Received, count: int) -> Reply:
        return Reply(503, headers={"Retry-After": "1"}) if count == 1 else Reply(200)

    with database() as (url, app), HttpServer(script) as server:
        webhooks = webhooks_for(server, "a", results=results)
        ProcrastinateDelivery(webhooks, app).publish(event(1))
        work(worker_app(url, webhooks), app)
        first, second = server.received
        assert first.headers["webhook-id"] == second.headers["webhook-id"] == "evt_1"
        assert second.at - first.at >= 0.9  # the server's clock: the wait asked for, not a speed claim
        assert statuses(app) == ["succeeded"]
        (result,) = results.results
        assert result.ok and result.attempts == 2 and [a.status for a in result.history] == [503, 200]
        assert "attempt 1/3 of FLAG_UPDATED evt_1 to a: 503" in caplog.text


def test_a_410_is_not_retried_disables_the_endpoint_and_enable_lifts_it() -> None:
    """A 410 fails the job at once (a dead letter) and disables the endpoint in PostgreSQL: a later delivery to it
    fails without a request, in any worker. enable() lifts it, and replaying both dead letters delivers them."""
    results = Results()

    def script(request: Received, count: int) -> Reply:
        return Reply(410) if count == 1 else Reply(200)

    with database() as (url, app), HttpServer(script) as server:
        webhooks = webhooks_for(server, "gone", results=results)
        delivery = ProcrastinateDelivery(webhooks_for(server, "gone"), app)  # the web process's own Webhooks
        delivery.publish(event(1))
        work(worker_app(url, webhooks), app)
        delivery.publish(event(2))
        work(worker_app(url, webhooks_for(server, "gone", results=results)), app)  # another worker process
        assert len(server.received) == 1
        assert statuses(app) == ["failed", "failed"]
        first, second = results.results
        assert first.status == 410 and first.attempts == 1 and first.endpoint_disabled
        assert second.attempts == 0 and second.error == "endpoint disabled: it answered 410 Gone"
        assert [(d.attempts, d.error) for d in delivery.dead_letters()] == [
            (1, "HTTP 410"),
            (0, "endpoint disabled: it answered 410 Gone"),
        ]
        assert delivery.enable("gone") is True
        assert delivery.enable("gone") is False
        replayed = delivery.replay()
        assert [letter.event_id for letter in replayed] == ["evt_1", "evt_2"]
        work(worker_app(url, webhooks), app)
        assert statuses(app) == ["succeeded", "succeeded"]
        assert [r.headers["webhook-id"] for r in server.received] == ["evt_1", "evt_1", "evt_2"]
        assert delivery.dead_letters() == []


def test_a_400_is_not_retried_and_its_replay_sends_the_same_webhook_id() -> None:
    """A 400 fails after one attempt; the dead letter says so; replaying it (by job id) re-runs the same job, which
    sends the same webhook-id and the same body, and a replay gets a fresh set of attempts."""

    def script(request: Received, count: int) -> Reply:
        return Reply(400) if request.path == "/bad" and count == 1 else Reply(200)

    with database() as (url, app), HttpServer(script) as server:
        webhooks = webhooks_for(server, "bad", "good")
        delivery = ProcrastinateDelivery(webhooks, app)
        delivery.publish(event(1))
        work(worker_app(url, webhooks), app)
        (letter,) = delivery.dead_letters()
        assert (letter.endpoint, letter.attempts, letter.status, letter.error) == ("bad", 1, 400, "HTTP 400")
        assert delivery.dead_letters(endpoint="good") == []
        assert delivery.replay([letter.job_id]) == [letter]
        assert delivery.replay([letter.job_id]) == []  # queued already: not a dead letter any more
        work(worker_app(url, webhooks), app)
        bad = [r for r in server.received if r.path == "/bad"]
        assert [r.headers["webhook-id"] for r in bad] == ["evt_1", "evt_1"]
        assert bad[0].body == bad[1].body
        assert bad[0].headers["x-flagsmith-signature"] == bad[1].headers["x-flagsmith-signature"]
        assert statuses(app) == ["succeeded", "succeeded"]


def test_a_refused_connection_is_retried_until_the_policy_ends() -> None:
    """Nothing listens: each attempt is refused, retried by the policy (3 attempts), then the job fails; the dead
    letter counts the 3 attempts and keeps the error."""
    with database() as (url, app):
        webhooks = Webhooks(transport=local(), retry=QUICK)
        webhooks.subscribe(Endpoint(f"http://127.0.0.1:{free_port()}/x", name="refused"), environment=ENV)
        delivery = ProcrastinateDelivery(webhooks, app)
        delivery.publish(event(1))
        work(worker_app(url, webhooks), app)
        (letter,) = delivery.dead_letters(endpoint="refused")
        assert letter.attempts == 3 and letter.status is None and letter.error
        assert statuses(app) == ["failed"]


def test_disable_after_ends_a_retrying_delivery_as_disabled(caplog: pytest.LogCaptureFixture) -> None:
    """An endpoint failing for longer than disable_after is disabled even while its delivery has retries left: the
    delivery ends failed with the reason, the endpoint stays disabled in PostgreSQL. An on_health that raises is
    logged, and changes nothing."""
    results = Results()

    def broken(change: HealthChange) -> None:
        raise RuntimeError("a bug in the callback")

    with database() as (url, app), HttpServer(lambda request, count: Reply(500)) as server:
        webhooks = webhooks_for(server, "down", results=results)
        ProcrastinateDelivery(webhooks, app).publish(event(1))
        work(worker_app(url, webhooks, breaker=Breaker(failures=10, disable_after=0.01), on_health=broken), app)
        assert len(server.received) == 2
        (result,) = results.results
        assert result.error is not None and result.error.startswith("endpoint disabled: failing for over")
        assert result.endpoint_disabled and result.attempts == 2
        assert "on_health callback raised for down" in caplog.text
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT disabled_reason FROM flaghooks_endpoint_health").fetchone()
        assert row is not None and row[0].startswith("failing for over 0.01 s")


def test_a_job_for_an_endpoint_the_worker_does_not_have_is_a_dead_letter() -> None:
    """The worker's Webhooks has no endpoint with the job's key (a configuration drift between processes): the job
    fails without an attempt, a dead letter to replay once the worker knows the endpoint."""
    with database() as (url, app), HttpServer() as server:
        delivery = ProcrastinateDelivery(webhooks_for(server, "a"), app)
        delivery.publish(event(1))
        work(worker_app(url, webhooks_for(server, "b")), app)
        (letter,) = delivery.dead_letters()
        assert (letter.endpoint, letter.attempts) == ("a", 0)
        assert letter.error == "no endpoint with the key 'a' is subscribed in this worker's Webhooks"
        assert server.received == []
        delivery.replay()
        work(worker_app(url, webhooks_for(server, "a")), app)
        assert [r.path for r in server.received] == ["/a"]


def test_the_breaker_pauses_an_endpoint_for_every_worker_and_a_probe_closes_it() -> None:
    """Two failures trip the breaker: the jobs after them wait for the cooldown without an attempt (in whichever
    worker takes them), then one probe succeeds and the rest follow; on_health hears failing, then recovered."""
    results = Results()

    def script(request: Received, count: int) -> Reply:
        return Reply(500) if count <= 2 else Reply(200)

    with database() as (url, app), HttpServer(script) as server:
        webhooks = webhooks_for(server, "flaky", retry=RetryPolicy.never(), results=results)
        delivery = ProcrastinateDelivery(webhooks, app)
        for n in range(5):
            delivery.publish(event(n))
        breaker = Breaker(failures=2, cooldown=1, max_cooldown=1)
        work(worker_app(url, webhooks, breaker=breaker, on_health=results.on_health), app)
        received = server.received
        assert len(received) == 5
        assert received[2].at - received[1].at >= 0.9  # paused for the cooldown: no attempt meanwhile
        assert [change.state for change in results.health] == ["failing", "recovered"]
        assert sorted(statuses(app)) == ["failed", "failed", "succeeded", "succeeded", "succeeded"]


def test_per_endpoint_lock_retries_move_to_their_own_lock() -> None:
    """per_endpoint=1 defers each first attempt under the endpoint's lock; a retry waiting 30 s (Retry-After)
    moves to the endpoint's retry lock, so a later first attempt to the same endpoint is not held behind it."""

    def script(request: Received, count: int) -> Reply:
        return Reply(503, headers={"Retry-After": "30"}) if count == 1 else Reply(200)

    with database() as (url, app), HttpServer(script) as server:
        webhooks = webhooks_for(server, "a", retry=RetryPolicy(attempts=3, max_delay=60))
        delivery = ProcrastinateDelivery(webhooks, app, per_endpoint=1)
        delivery.publish(event(1))
        assert [job.lock for job in app.job_manager.list_jobs()] == ["flaghooks:a"]
        worker = worker_app(url, webhooks)
        run_once(worker)
        delivery.publish(event(2))
        run_once(worker)
        assert [r.headers["webhook-id"] for r in server.received] == ["evt_1", "evt_2"]
        first, second = app.job_manager.list_jobs(task="flaghooks:deliver")
        assert (first.status, first.lock) == ("todo", "flaghooks-retry:a")
        assert (second.status, second.lock) == ("succeeded", "flaghooks:a")


def run_once(app: procrastinate.App) -> None:
    """Run a worker until it has caught up (a retry scheduled later stays queued)."""

    async def run() -> None:
        async with app.open_async():
            await app.run_worker_async(queues=["flaghooks"], wait=False, install_signal_handlers=False)

    asyncio.run(run())


def test_stalled_jobs_go_back_to_the_queue_and_are_delivered(caplog: pytest.LogCaptureFixture) -> None:
    """A delivery job left "doing" by a worker whose heartbeat stopped is put back by the recover_stalled task and
    delivered; a job of a live worker is left alone."""
    with database() as (url, app), HttpServer() as server:
        webhooks = webhooks_for(server, "a")
        ProcrastinateDelivery(webhooks, app).publish(event(1))
        with psycopg.connect(url, autocommit=True) as connection:
            (dead,) = connection.execute(
                "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '1 hour') RETURNING id"
            ).fetchone()  # type: ignore[misc]
            connection.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", (dead,))
        app.configure_task("flaghooks:recover_stalled", queue="flaghooks").defer(timestamp=0)
        with caplog.at_level(logging.WARNING, logger="flaghooks"):
            work(worker_app(url, webhooks, stalled_after=60), app)
        assert [r.headers["webhook-id"] for r in server.received] == ["evt_1"]
        assert "recovered 1 delivery job(s)" in caplog.text
        assert app.job_manager.list_jobs(task="flaghooks:deliver")[0].attempts == 2  # a run and a recovery


def test_prune_deletes_old_succeeded_jobs_and_keeps_dead_letters() -> None:
    """The prune task deletes succeeded jobs older than keep_hours (0 here) and the attempt history of jobs that
    are gone; failed jobs, the dead letters, stay."""
    with database() as (url, app), HttpServer(lambda request, count: Reply(200 if count == 1 else 400)) as server:
        webhooks = webhooks_for(server, "a", retry=RetryPolicy.never())
        delivery = ProcrastinateDelivery(webhooks, app)
        delivery.publish(event(1))
        delivery.publish(event(2))
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO flaghooks_delivery_attempts (delivery_id, job_id, attempts) VALUES ('x', -1, '[]')"
            )
        worker = worker_app(url, webhooks, keep_hours=0)
        work(worker, app)
        app.configure_task("flaghooks:prune", queue="flaghooks").defer(timestamp=0)
        work(worker, app)
        assert statuses(app) == ["failed"]
        with psycopg.connect(url) as connection:
            rows = connection.execute("SELECT delivery_id FROM flaghooks_delivery_attempts").fetchall()
        assert [row[0] for row in rows] == [delivery.dead_letters()[0].delivery_id]


def test_a_job_with_arguments_this_worker_does_not_know_is_still_delivered() -> None:
    """A job deferred by a newer publisher (during a rolling deploy) may carry arguments an older worker does not
    know: they are ignored, and the delivery goes out."""
    with database() as (url, app), HttpServer() as server:
        webhooks = webhooks_for(server, "a")
        (planned,) = webhooks.plan(event(1))
        app.configure_task("flaghooks:deliver", queue="flaghooks").defer(**job_args(planned), priority_hint=3)
        work(worker_app(url, webhooks), app)
        assert [(r.path, r.body) for r in server.received] == [("/a", planned.body)]

"""Celery delivery with real worker processes on the real Redis and RabbitMQ: nothing lost when a worker is
killed, the retry rows of the outcome table, dead letters and their replay, and a delivery that kills its worker
every time ending after worker_lost_limit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from background_helpers import ENV, event
from celery_helpers import Workers, broker, results, wait_for
from flaghooks import DeliveryRecord, SqliteOutbox, verify_flagsmith
from flaghooks.contrib.celery import CeleryDelivery
from flaghooks_celery_app import SECRET, build
from httpserver import HttpServer, Received, Reply, free_port

BROKERS = [
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
    pytest.param("rabbitmq", marks=pytest.mark.rabbitmq, id="rabbitmq"),
]


@pytest.fixture(params=BROKERS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A broker and queue of this test's own, a dead-letter file and a results file."""
    with broker(request.param) as chosen:
        yield {**chosen, "dead": str(tmp_path / "dead.sqlite"), "results": str(tmp_path / "results.jsonl")}


@contextlib.contextmanager
def publisher(settings: dict[str, Any]) -> Iterator[tuple[CeleryDelivery, SqliteOutbox]]:
    """The test's side of the app: the same endpoints and dead letters, publishing; closed after."""
    app, _, delivery, outbox = build(settings)
    assert outbox is not None
    try:
        yield delivery, outbox
    finally:
        app.close()
        outbox.close()


def dead_letters(outbox: SqliteOutbox) -> list[DeliveryRecord]:
    return outbox.deliveries(state="dead", limit=None)


def test_two_workers_one_killed(settings: dict[str, Any], tmp_path: Path) -> None:
    """2 worker processes deliver 2,000 deliveries (100 events to 20 endpoints) to a loopback receiver; one is
    SIGKILLed mid-run; the killed worker's unacknowledged messages come back to the other, and every delivery
    reaches the receiver at least once, signed with the workers' secret, and ends delivered.

    On RabbitMQ nothing is lost. kombu's Redis transport takes a message off the queue (BRPOP) before it records
    it as unacknowledged: a worker killed between the two loses that message (seen in about 1 run in 7 here), so
    on Redis one delivery per kill may be missing (docs/scale-out.md states this limit)."""
    lost_per_kill = 1 if settings["broker"].startswith("redis") else 0
    with HttpServer() as receiver:
        settings["endpoints"] = {f"ep{i}": receiver.url(f"/ep{i}") for i in range(20)}
        with publisher(settings) as (delivery, _), Workers(settings, tmp_path) as workers:
            doomed = workers.start()
            workers.start()
            planned = []
            for n in range(100):
                planned += delivery.publish(event(n), environment=ENV)
            assert len(planned) == 2_000
            wait_for(lambda: len(receiver.received) >= 300, 30, "the first 300 deliveries", workers)
            workers.kill(doomed)
            expected = {(f"/{d.endpoint.name}", d.event_id) for d in planned}

            def arrived() -> set[tuple[str, str]]:
                return {(r.path, r.headers["webhook-id"]) for r in receiver.received}

            wait_for(lambda: len(expected - arrived()) <= lost_per_kill, 45, "every delivery after the kill", workers)
            ids = {d.id for d in planned}
            results_file = Path(settings["results"])

            def delivered() -> set[str]:
                return {r["delivery_id"] for r in results(results_file) if r["ok"]}

            wait_for(lambda: len(ids - delivered()) <= lost_per_kill, 30, "every delivery's result", workers)
            assert any(doomed.pid in (r["pid"], r["ppid"]) for r in results(results_file))  # at work when killed
        some = receiver.received[-1]
        verify_flagsmith(some.body, some.headers["x-flagsmith-signature"], SECRET)  # raises unless it matches


def test_retry_rows_dead_letters_and_replay(settings: dict[str, Any], tmp_path: Path) -> None:
    """The outcome table's rows on Celery: a 503 with Retry-After is retried after the wait (taken in hops of
    max_hop), a 410 ends at once and disables the endpoint in the worker, a 400 ends at once, a refused
    connection is retried until the attempts run out. The failed ones are dead letters; replaying the 400 one
    sends it again with the same webhook-id and the same delivery id."""
    replies = {"/busy": [Reply(503, headers={"Retry-After": "1"})], "/gone": [Reply(410)], "/bad": [Reply(400)]}

    def script(request: Received, count: int) -> Reply:
        scripted = replies.get(request.path, [])
        return scripted[count - 1] if count <= len(scripted) else Reply(200)

    with HttpServer(script) as receiver:
        settings["endpoints"] = {
            "busy": receiver.url("/busy"),
            "gone": receiver.url("/gone"),
            "bad": receiver.url("/bad"),
            "refused": f"http://127.0.0.1:{free_port()}/refused",
        }
        settings["max_hop"] = 0.4
        results_file = Path(settings["results"])
        with publisher(settings) as (delivery, outbox), Workers(settings, tmp_path) as workers:
            workers.start()
            first = {d.endpoint.name: d for d in delivery.publish(event(1), environment=ENV)}
            wait_for(lambda: len(results(results_file)) == 4, 30, "4 results", workers)
            ended = {r["endpoint"]: r for r in results(results_file)}
            assert ended["busy"]["ok"] and ended["busy"]["attempts"] == 2
            busy = [r.at for r in receiver.received if r.path == "/busy"]
            assert busy[1] - busy[0] >= 0.9  # the Retry-After was honoured, across hops of 0.4 s
            assert not ended["gone"]["ok"] and ended["gone"]["attempts"] == 1 and ended["gone"]["disabled"]
            assert (ended["bad"]["ok"], ended["bad"]["attempts"], ended["bad"]["status"]) == (False, 1, 400)
            assert not ended["refused"]["ok"] and ended["refused"]["attempts"] == 3
            assert ended["refused"]["status"] is None
            rows = {row.endpoint_key: row for row in dead_letters(outbox)}
            assert sorted(rows) == ["bad", "gone", "refused"]
            assert rows["bad"].id == first["bad"].id and rows["bad"].last_error == "HTTP 400"

            # The gone endpoint stays disabled in the worker: a later event to it makes no request.
            later = {d.endpoint.name: d for d in delivery.publish(event(2), environment=ENV)}
            wait_for(lambda: len(results(results_file)) == 8, 30, "4 more results", workers)
            assert [r.path for r in receiver.received].count("/gone") == 1
            assert {row.id for row in dead_letters(outbox)} >= {later["gone"].id}

            assert delivery.replay([first["bad"].id]) == [first["bad"].id]
            assert first["bad"].id not in {row.id for row in dead_letters(outbox)}
            wait_for(lambda: len(results(results_file)) == 9, 30, "the replayed delivery", workers)
            replayed = results(results_file)[-1]
            assert (replayed["delivery_id"], replayed["ok"]) == (first["bad"].id, True)
            bad = [r for r in receiver.received if r.path == "/bad" and r.headers["webhook-id"] == "evt_1"]
            assert len(bad) == 2


def test_delivery_that_kills_its_worker_every_time_ends(settings: dict[str, Any], tmp_path: Path) -> None:
    """A delivery whose attempt kills the worker's pool process every time comes back marked redelivered
    (acks_late, reject_on_worker_lost), is counted, and ends as a dead letter after worker_lost_limit; the
    worker goes on delivering the rest."""
    with HttpServer() as receiver:
        settings["endpoints"] = {"poison": receiver.url("/poison"), "fine": receiver.url("/fine")}
        settings["lost_limit"] = 1  # each death takes the prefork pool about 5 s to notice
        results_file = Path(settings["results"])
        with publisher(settings) as (delivery, outbox), Workers(settings, tmp_path) as workers:
            workers.start(pool="prefork", concurrency=1)
            planned = {d.endpoint.name: d for d in delivery.publish(event(1), environment=ENV)}
            wait_for(lambda: len(results(results_file)) == 2, 45, "both deliveries to end", workers)
            rows = dead_letters(outbox)
        ended = {r["endpoint"]: r for r in results(results_file)}
        assert ended["fine"]["ok"]
        assert not ended["poison"]["ok"] and ended["poison"]["attempts"] == 0
        assert "2 times (worker_lost_limit 1)" in ended["poison"]["error"]
        assert [row.id for row in rows] == [planned["poison"].id]
        assert [r.path for r in receiver.received] == ["/fine"]

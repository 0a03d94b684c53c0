"""OutboxDelivery's workers against real servers on 127.0.0.1: dead letters and replay, secret rotation and unsubscribed
endpoints, nothing secret in the file, the breaker and durable disabling, per-endpoint limits across workers on one
file, leases (expiry, fencing, a delivery that kills its worker every time), backing off on a locked file, stopping."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from background_helpers import ENV, Gate, Results, event, local
from flaghooks import (
    Breaker,
    ConfigError,
    Endpoint,
    OutboxDelivery,
    RetryPolicy,
    Signing,
    SqliteOutbox,
    Webhooks,
    generate_secret,
    verify_standard,
)
from flaghooks._outbox_lease import LOST, Ledger
from flaghooks._retry import Outcome
from flaghooks.transports import AttemptResult, DeliveryRequest, Transport
from httpserver import HttpServer, Received, Reply
from outbox_helpers import FAST, NEVER_TRIPS, file_bytes, wait_until


def hooks(results: Results, transport: Transport | None = None, retry: RetryPolicy = FAST) -> Webhooks:
    return Webhooks(transport=transport or local(), retry=retry, on_result=results)


class TestDeadLettersAndReplay:
    def test_dead_after_the_policys_attempts_then_replay_delivers_with_the_original_webhook_id(
        self, tmp_path: Path
    ) -> None:
        """Acceptance 4: a receiver answering 500 makes every delivery dead after the policy's 3 attempts, each
        attempt recorded with the start of the response body; once it answers 200, replay(endpoint=...) delivers
        them all, with their delivery ids and their original webhook-id."""
        healthy = threading.Event()
        answered: list[tuple[str, int]] = []

        def answer(request: Received, count: int) -> Reply:
            reply = Reply(200) if healthy.is_set() else Reply(500, body=b"broken right now")
            answered.append((request.headers["webhook-id"], reply.status))
            return reply

        results = Results()
        with HttpServer(answer) as server, SqliteOutbox(tmp_path / "outbox.db") as outbox:
            endpoint = Endpoint(server.url("/hook"), name="flaky")
            with hooks(results) as webhooks:
                webhooks.subscribe(endpoint, environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, breaker=NEVER_TRIPS, poll_interval=0.05)
                published = [d for n in range(5) for d in delivery.publish(event(n))]
                delivery.start()
                results.wait_for(lambda: len(results.results) == 5)
                assert outbox.counts()["dead"] == 5
                assert all(not r.ok and r.attempts == 3 and r.status == 500 for r in results.results)
                dead = outbox.get(published[0].id)
                assert dead is not None and (dead.state, dead.attempts, dead.last_status) == ("dead", 3, 500)
                assert dead.next_attempt_at is None and dead.last_error == "HTTP 500"
                attempts = outbox.attempts(published[0].id)
                assert [(a.number, a.status, a.response_body) for a in attempts] == [
                    (n, 500, b"broken right now") for n in (1, 2, 3)
                ]
                healthy.set()
                assert outbox.replay(endpoint=endpoint) == 5
                results.wait_for(lambda: len(results.results) == 10)
                delivery.close()
            replayed = results.results[5:]
            assert all(r.ok and r.attempts == 1 for r in replayed)
            assert sorted(r.delivery_id or "" for r in replayed) == sorted(d.id for d in published)
            assert outbox.counts()["delivered"] == 5
            assert [a.number for a in outbox.attempts(published[0].id)] == [1, 2, 3, 4]
        assert sorted(event_id for event_id, status in answered if status == 200) == sorted(
            d.event_id for d in published
        )
        assert len(answered) == 20


class TestEndpointsByKey:
    def test_rotation_applies_to_queued_deliveries_unsubscribed_ones_die_and_no_secret_is_stored(
        self, tmp_path: Path
    ) -> None:
        """Acceptance 5: deliveries queued under an endpoint's old secret are signed with the new one at their
        attempt; an endpoint no longer subscribed ends its deliveries dead, with the reason; and the file's bytes
        (main, WAL, shared memory) never hold a signing secret, a header value or URL user information, even
        when the receiver echoes the request's headers in its response body."""
        old, new = generate_secret(), generate_secret()
        token, user, password = "authTOKEN5e2a9c", "hookUSER7b1d", "urlPASSWORD3c8f"

        def echo(request: Received, count: int) -> Reply:
            return Reply(200, body=repr(request.headers).encode())

        results = Results()
        path = tmp_path / "outbox.db"
        with HttpServer(echo) as server, SqliteOutbox(path) as outbox:
            url = server.url("/rotating").replace("://", f"://{user}:{password}@")
            before = Endpoint(url, secret=old, signing=Signing.STANDARD, headers={"Authorization": f"Bearer {token}"})
            after = Endpoint(url, secret=new, signing=Signing.STANDARD, headers={"Authorization": f"Bearer {token}"})
            leaving = Endpoint(server.url("/leaving"), name="leaving", secret="flagsmithSECRET9d")
            with hooks(results) as webhooks:
                webhooks.subscribe(before, environment=ENV)
                webhooks.subscribe(leaving, environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.05)
                published = [d for n in range(3) for d in delivery.publish(event(n))]
                webhooks.unsubscribe(before)
                webhooks.unsubscribe(leaving)
                webhooks.subscribe(after, environment=ENV)
                delivery.start()
                results.wait_for(lambda: len(results.results) == 6)
                delivery.close()
            received = server.received
            gone = [r for r in results.results if r.endpoint.label == "leaving"]
            dead = [outbox.get(d.id) for d in published if d.endpoint.label == "leaving"]
            echoed = [a for d in published if d.endpoint == before for a in outbox.attempts(d.id)]
            stored = file_bytes(path)
        stored += file_bytes(path)
        assert len(received) == 3 and all(r.path == "/rotating" for r in received)
        for request in received:
            verify_standard(request.body, request.headers, new)  # raises if signed with anything else
        assert len(gone) == 3 and all(not r.ok and r.attempts == 0 for r in gone)
        assert all("'leaving' is not subscribed" in (r.error or "") for r in gone)
        assert [r.state if r is not None else None for r in dead] == ["dead"] * 3
        assert len(echoed) == 3 and all(b"webhook-signature" in a.response_body for a in echoed)
        planted = [old, new, old.removeprefix("whsec_"), new.removeprefix("whsec_"), token, user, password]
        planted.append("flagsmithSECRET9d")
        assert [secret for secret in planted if secret.encode() in stored] == []

    def test_no_part_of_a_secret_is_kept_from_a_response_body(self, tmp_path: Path) -> None:
        """A receiver may quote a secret anywhere in its answer: one straddling the 1024th byte (where the kept
        start of the body is cut) leaves no prefix of it in the file, and a token quoted without the scheme
        word of its header value ("Bearer ...") is blanked out too, as the transport withholds it from errors."""
        token, secret = "authTOKEN5e2a9cf0d1", "flagsmithSECRET9d0c4b7a"

        def answer(request: Received, count: int) -> Reply:
            if request.path == "/edge":
                return Reply(500, body=b"x" * 1010 + secret.encode() + b" rest")
            return Reply(500, body=b'{"error": "token ' + token.encode() + b' expired"}')

        results = Results()
        path = tmp_path / "outbox.db"
        with HttpServer(answer) as server, SqliteOutbox(path) as outbox:
            edge = Endpoint(server.url("/edge"), name="edge", secret=secret)
            bearer = Endpoint(server.url("/bearer"), name="bearer", headers={"Authorization": f"Bearer {token}"})
            with hooks(results, retry=RetryPolicy(attempts=1)) as webhooks:
                webhooks.subscribe(edge, environment=ENV)
                webhooks.subscribe(bearer, environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, breaker=NEVER_TRIPS, poll_interval=0.05)
                published = delivery.publish(event(1))
                delivery.start()
                results.wait_for(lambda: len(results.results) == 2)
                delivery.close()
            kept = [a.response_body for d in published for a in outbox.attempts(d.id)]
            stored = file_bytes(path)
        assert len(kept) == 2 and all(len(body) <= 1024 for body in kept)
        assert secret[:12].encode() not in stored
        assert token.encode() not in stored


class TestBreakerInTheFile:
    def test_a_410_disables_the_endpoint_in_the_file_until_enable(self, tmp_path: Path) -> None:
        """A 410 disables the endpoint durably: the deliveries queued for it end dead, a worker that subscribes
        it again (a restart) still does not send to it, and only outbox.enable() lets deliveries through."""
        gone = threading.Event()
        gone.set()

        def answer(request: Received, count: int) -> Reply:
            return Reply(410) if gone.is_set() else Reply(204)

        results = Results()
        with HttpServer(answer) as server, SqliteOutbox(tmp_path / "outbox.db") as outbox:
            endpoint = Endpoint(server.url("/gone"), name="gone")
            with hooks(results) as webhooks:
                webhooks.subscribe(endpoint, environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.05, on_health=results.on_health)
                for n in range(3):
                    delivery.publish(event(n))
                delivery.start()
                results.wait_for(lambda: len(results.results) == 3)
                delivery.close()
            assert len(server.received) == 1
            assert outbox.disabled() == {"gone": "it answered 410 Gone"}
            assert [h.state for h in results.health] == ["disabled"]
            errors = sorted(r.error or "" for r in results.results)
            assert errors == [
                "HTTP 410",
                "endpoint disabled: it answered 410 Gone",
                "endpoint disabled: it answered 410 Gone",
            ]
            assert all(r.endpoint_disabled for r in results.results)
            gone.clear()
            with hooks(results) as restarted:  # a restarted worker subscribes its endpoints again
                restarted.subscribe(endpoint, environment=ENV)
                again = OutboxDelivery(restarted, outbox, poll_interval=0.05)
                again.publish(event(10))
                again.start()
                results.wait_for(lambda: len(results.results) == 4)
                assert len(server.received) == 1 and not results.results[-1].ok
                assert outbox.enable("gone")
                # This process disabled it in its Webhooks too: its workers route to it again once they see the
                # file enabled it (at their next poll); until then the event routes nowhere.
                wait_until(lambda: again.publish(event(11)) != [])
                results.wait_for(lambda: len(results.results) == 5)
                again.close()
            assert results.results[-1].ok and len(server.received) == 2

    def test_the_breaker_pauses_probes_and_recovers(self, tmp_path: Path) -> None:
        """After `failures` consecutive failed attempts the endpoint pauses (a "failing" health change), one probe
        goes out when the pause ends, and its success closes the breaker ("recovered")."""

        def answer(request: Received, count: int) -> Reply:
            return Reply(503) if count <= 2 else Reply(200)

        results = Results()
        retry = RetryPolicy(attempts=5, backoff=0.01, multiplier=1, max_delay=0.01, jitter=0)
        with HttpServer(answer) as server, SqliteOutbox(tmp_path / "outbox.db") as outbox:
            with hooks(results, retry=retry) as webhooks:
                webhooks.subscribe(Endpoint(server.url("/flaky"), name="flaky"), environment=ENV)
                delivery = OutboxDelivery(
                    webhooks,
                    outbox,
                    breaker=Breaker(failures=2, cooldown=0.2),
                    on_health=results.on_health,
                    poll_interval=0.05,
                )
                delivery.publish(event(1))
                delivery.start()
                results.wait_for(lambda: len(results.results) == 1)
                delivery.close()
            assert results.results[0].ok and results.results[0].attempts == 3
            assert [h.state for h in results.health] == ["failing", "recovered"]
            assert len(server.received) == 3


class Concurrency(Transport):
    """Answers 200 after a short wait and records the most attempts in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.sent = 0

    def send(self, request: DeliveryRequest) -> AttemptResult:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.005)
        with self.lock:
            self.now -= 1
            self.sent += 1
        return AttemptResult(200)


def test_per_endpoint_holds_across_every_worker_on_the_file(tmp_path: Path) -> None:
    """Two OutboxDelivery instances on one file (as two processes would be), 4 workers each, per_endpoint=2:
    never more than 2 attempts to the endpoint in flight at once, counted across both."""
    transport = Concurrency()
    results = Results()
    with SqliteOutbox(tmp_path / "outbox.db") as outbox:
        instances = []
        for _ in range(2):
            webhooks = Webhooks(transport=transport, on_result=results)
            webhooks.subscribe(Endpoint("https://receiver.example/hook", name="one"), environment=ENV)
            instances.append(OutboxDelivery(webhooks, outbox, per_endpoint=2, poll_interval=0.02))
        for n in range(60):
            instances[0].publish(event(n))
        for instance in instances:
            instance.start()
        results.wait_for(lambda: len(results.results) == 60)
        for instance in instances:
            instance.close()
        assert outbox.counts()["delivered"] == 60
    assert transport.sent == 60 and transport.most <= 2


class TestLeases:
    def setup(self, tmp_path: Path, attempts: int = 3) -> tuple[SqliteOutbox, Webhooks, str]:
        outbox = SqliteOutbox(tmp_path / "outbox.db")
        webhooks = Webhooks(transport=local(), retry=RetryPolicy(attempts=attempts, backoff=0.01, jitter=0))
        webhooks.subscribe(Endpoint("http://127.0.0.1:9/", name="slow", timeout=0.3), environment=ENV)
        (delivery,) = OutboxDelivery(webhooks, outbox).publish(event(1))
        return outbox, webhooks, delivery.id

    def test_a_worker_whose_lease_was_taken_over_cannot_overwrite(self, tmp_path: Path) -> None:
        """Worker A's lease expires, worker B claims the delivery again (attempt 2) and delivers it; A's late
        outcome (a failure) is then refused: the record stays delivered, and A's lost attempt is recorded as
        such."""
        outbox, webhooks, delivery_id = self.setup(tmp_path)
        a, b = (Ledger(webhooks, NEVER_TRIPS, 1, 0.0) for _ in range(2))
        conn_a, conn_b = outbox._connect("NORMAL", 1.0), outbox._connect("NORMAL", 1.0)
        (claim_a,), _, _ = a.cycle(conn_a, [], 4)
        assert b.cycle(conn_b, [], 4)[0] == []  # A's lease holds: nothing to claim
        wait_until(lambda: time.time() > claim_a.lease_until)
        (claim_b,), _, _ = b.cycle(conn_b, [], 4)
        assert (claim_a.seq, claim_a.number, claim_b.number) == (claim_b.seq, 1, 2)
        _, ended, _ = b.cycle(conn_b, [(claim_b, AttemptResult(200), Outcome.DELIVERED)], 0)
        assert [outcome for _, _, outcome, _, _, _ in ended] == [Outcome.DELIVERED]
        _, late, _ = a.cycle(conn_a, [(claim_a, AttemptResult(500), Outcome.RETRY)], 0)
        conn_a.close()
        conn_b.close()
        assert late == []
        record = outbox.get(delivery_id)
        assert record is not None and (record.state, record.attempts, record.last_status) == ("delivered", 2, 200)
        assert [(x.number, x.status, x.error) for x in outbox.attempts(delivery_id)] == [
            (1, None, LOST),
            (2, 200, None),
        ]
        outbox.close()
        webhooks.close()

    def test_a_delivery_that_kills_its_worker_every_time_still_ends(self, tmp_path: Path) -> None:
        """Every claim counts an attempt: a delivery whose worker dies during each of the policy's 3 attempts
        goes dead at the next claim after the third lease expires, with the reason, never claimed a fourth
        time."""
        outbox, webhooks, delivery_id = self.setup(tmp_path)
        ledger = Ledger(webhooks, NEVER_TRIPS, 1, 0.0)
        conn = outbox._connect("NORMAL", 1.0)
        for number in (1, 2, 3):
            (claim,), _, _ = ledger.cycle(conn, [], 1)
            assert claim.number == number
            wait_until(lambda claim=claim: time.time() > claim.lease_until)  # type: ignore[misc]
        claims, ended, _ = ledger.cycle(conn, [], 1)
        conn.close()
        assert claims == [] and [(e[2], e[4], len(e[1])) for e in ended] == [(None, LOST, 3)]
        record = outbox.get(delivery_id)
        assert record is not None and (record.state, record.attempts, record.last_error) == ("dead", 3, LOST)
        outbox.close()
        webhooks.close()

    def test_an_expired_lease_is_claimed_again_and_the_stale_outcome_is_ignored(self, tmp_path: Path) -> None:
        """A worker holding an attempt past its lease (its transport hangs) loses the delivery to another worker
        on the file, which delivers it; when the hung attempt returns, its outcome is not recorded and no second
        result is reported."""
        results = Results()
        with HttpServer() as server, SqliteOutbox(tmp_path / "outbox.db") as outbox:
            endpoint = Endpoint(server.url("/hook"), name="hook", timeout=0.2)
            gate = Gate(local())
            hung = Webhooks(transport=gate, retry=FAST, on_result=results)
            fine = Webhooks(transport=local(), retry=FAST, on_result=results)
            for webhooks in (hung, fine):
                webhooks.subscribe(endpoint, environment=ENV)
            # The first looks for work only when its attempt comes back (a long poll); the second's own lease is long.
            first = OutboxDelivery(hung, outbox, workers=1, lease_margin=0.2, poll_interval=30)
            (published,) = first.publish(event(1))
            first.start()
            wait_until(lambda: len(gate.started) == 1)
            second = OutboxDelivery(fine, outbox, workers=1, lease_margin=5, poll_interval=0.02)
            second.start()
            results.wait_for(lambda: len(results.results) == 1)
            gate.open.set()
            wait_until(lambda: len(server.received) == 2)
            first.close()
            second.close()
            hung.close()
            fine.close()
            record = outbox.get(published.id)
            assert record is not None and (record.state, record.attempts) == ("delivered", 2)
            assert [(a.number, a.status) for a in outbox.attempts(published.id)] == [(1, None), (2, 200)]
        assert len(results.results) == 1 and results.results[0].ok


class _CountingCondition(threading.Condition):
    """A Condition that counts how often it is entered (how many turns the pump's loop takes)."""

    entered = 0

    def __enter__(self) -> bool:
        self.entered += 1
        return super().__enter__()


def test_close_waits_for_attempts_in_flight_without_spinning(tmp_path: Path) -> None:
    """While close() waits for an attempt in flight, the pump sleeps on its condition until an outcome comes
    back or the timeout passes: it does not loop (a busy loop took a core, and the GIL from the attempts)."""
    results = Results()
    gate = Gate(local())
    with HttpServer() as server, SqliteOutbox(tmp_path / "outbox.db") as outbox, hooks(results, gate) as webhooks:
        webhooks.subscribe(Endpoint(server.url("/hook")), environment=ENV)
        delivery = OutboxDelivery(webhooks, outbox, workers=1, poll_interval=0.05)
        counting = _CountingCondition(threading.Lock())
        delivery._cond = counting
        delivery.start()
        delivery.publish(event(1))
        wait_until(lambda: len(gate.started) == 1)
        closer = threading.Thread(target=delivery.close, args=(30.0,))
        closer.start()
        wait_until(lambda: delivery._stopping)
        before = counting.entered
        time.sleep(0.3)  # the pump's chance to spin, if it would
        turns = counting.entered - before
        gate.open.set()
        closer.join(30)
        assert not closer.is_alive()
        assert turns < 20
        assert outbox.counts()["delivered"] == 1 and results.results[0].ok


def test_workers_back_off_while_the_file_is_locked_and_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another connection holds the write lock past the workers' busy timeout, they log that they back off
    and raise nothing; once it is released, the delivery goes out."""
    monkeypatch.setattr(OutboxDelivery, "_busy_timeout", 0.02)
    caplog.set_level(logging.INFO, logger="flaghooks")
    results = Results()
    path = tmp_path / "outbox.db"
    with HttpServer() as server, SqliteOutbox(path) as outbox, hooks(results) as webhooks:
        webhooks.subscribe(Endpoint(server.url("/hook")), environment=ENV)
        delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.05)
        delivery.publish(event(1))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        delivery.start()
        wait_until(lambda: sum("back off" in r.getMessage() for r in caplog.records) >= 3)
        holder.execute("ROLLBACK")
        holder.close()
        results.wait_for(lambda: len(results.results) == 1)
        delivery.close()
        assert results.results[0].ok and outbox.counts()["delivered"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


class TestRunning:
    def test_run_returns_when_stop_is_set_and_close_releases_unattempted_claims(self, tmp_path: Path) -> None:
        """run(stop) works in the calling thread until stop is set; deliveries it claimed but never attempted
        are put back to pending, their attempt uncounted."""
        results = Results()
        with SqliteOutbox(tmp_path / "outbox.db") as outbox:
            gate = Gate(local())
            with hooks(results, transport=gate) as webhooks:
                webhooks.subscribe(Endpoint("http://127.0.0.1:9/", name="held"), environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, workers=1, per_endpoint=2, poll_interval=0.02)
                for n in range(2):
                    delivery.publish(event(n))
                stop = threading.Event()
                runner = threading.Thread(target=delivery.run, args=(stop,))
                runner.start()
                wait_until(lambda: len(gate.started) == 1)
                with pytest.raises(ConfigError, match="running already"):
                    delivery.run(stop)
                stop.set()
                gate.open.set()
                runner.join(10)
                assert not runner.is_alive()
            counts = outbox.counts()
            assert counts["in_flight"] == 0 and counts["pending"] + counts["dead"] == 2 and counts["pending"] >= 1
            assert sum(r.attempts for r in (outbox.get(d.id) for d in outbox.deliveries()) if r is not None) <= 1

    @pytest.mark.parametrize("timeout", [0.1, 0.0])
    def test_close_releases_queued_claims_while_every_worker_is_busy(self, tmp_path: Path, timeout: float) -> None:
        """Claims queued behind an attempt that outlives close()'s timeout (even a timeout of 0) are released at
        once (pending, their attempt uncounted), not left in flight until their leases expire; the attempt in
        flight keeps its lease."""
        results = Results()
        with SqliteOutbox(tmp_path / "outbox.db") as outbox:
            gate = Gate(local())
            with hooks(results, transport=gate) as webhooks:
                webhooks.subscribe(Endpoint("http://127.0.0.1:9/", name="held"), environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, workers=1, per_endpoint=3, poll_interval=0.02)
                for n in range(3):
                    delivery.publish(event(n))
                delivery.start()
                wait_until(lambda: len(gate.started) == 1 and outbox.counts()["in_flight"] == 3)
                delivery.close(timeout=timeout)
                counts = outbox.counts()
                gate.open.set()
            assert (counts["in_flight"], counts["pending"]) == (1, 2)
            assert sorted(r.attempts for r in outbox.deliveries()) == [0, 0, 1]

    def test_claims_left_at_a_stop_on_a_locked_file_keep_their_leases(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the file stays locked at the stop, the claims not released are logged and keep their leases (which
        expire): close() neither raises nor waits beyond the pump's busy timeout."""
        monkeypatch.setattr(OutboxDelivery, "_busy_timeout", 0.02)
        results = Results()
        path = tmp_path / "outbox.db"
        with SqliteOutbox(path) as outbox:
            gate = Gate(local())
            with hooks(results, transport=gate) as webhooks:
                webhooks.subscribe(Endpoint("http://127.0.0.1:9/", name="held"), environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, workers=1, per_endpoint=3, poll_interval=0.02)
                for n in range(3):
                    delivery.publish(event(n))
                delivery.start()
                wait_until(lambda: len(gate.started) == 1 and outbox.counts()["in_flight"] == 3)
                holder = sqlite3.connect(path, isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")
                delivery.close(timeout=0)
                holder.execute("ROLLBACK")
                holder.close()
                gate.open.set()
            assert outbox.counts()["in_flight"] == 3
        assert "2 claim(s) not released at the stop" in caplog.text

    def test_keep_delivered_prunes_on_its_own(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With keep_delivered, workers delete delivered deliveries older than that, by themselves."""
        monkeypatch.setattr("flaghooks._outbox._PRUNE_EVERY", 0.02)
        results = Results()
        outbox = SqliteOutbox(tmp_path / "outbox.db", keep_delivered=0.01)
        with outbox, hooks(results, transport=Concurrency()) as webhooks:
            webhooks.subscribe(Endpoint("https://receiver.example/", name="r"), environment=ENV)
            delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.02)
            (published,) = delivery.publish(event(1))
            delivery.start()
            results.wait_for(lambda: len(results.results) == 1)
            wait_until(lambda: outbox.get(published.id) is None)
            delivery.close()

    def test_the_workers_prune_a_backlog_in_bounded_turns(self, tmp_path: Path) -> None:
        """A backlog of delivered deliveries is pruned a few batches per turn of the pump (which also records
        outcomes and must not let leases run out meanwhile), and the turn says whether more are left."""
        import sqlite3

        from flaghooks._outbox import _PRUNE_BATCHES
        from flaghooks._outbox_store import PRUNE_BATCH

        results = Results()
        backlog = _PRUNE_BATCHES * PRUNE_BATCH + 7
        outbox = SqliteOutbox(tmp_path / "outbox.db", synchronous="NORMAL", keep_delivered=60)
        with outbox, hooks(results, transport=Concurrency()) as webhooks:
            webhooks.subscribe(Endpoint("https://receiver.example/", name="r"), environment=ENV)
            delivery = OutboxDelivery(webhooks, outbox)
            for n in range(backlog):
                delivery.publish(event(n))
            conn = sqlite3.connect(outbox.path, isolation_level=None)
            try:
                conn.execute("UPDATE flaghooks_outbox_deliveries SET state = 'delivered', updated_at = 0")
                assert delivery._prune(conn) is True
                assert outbox.counts()["delivered"] == 7
                assert delivery._prune(conn) is False
                assert outbox.counts()["delivered"] == 0
            finally:
                conn.close()

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"workers": 0}, "workers"),
            ({"per_endpoint": True}, "per_endpoint"),
            ({"breaker": "no"}, "breaker"),
            ({"on_health": 3}, "on_health"),
            ({"poll_interval": 0}, "poll_interval"),
            ({"lease_margin": 0}, "lease_margin"),
        ],
    )
    def test_bad_arguments_are_config_errors(self, tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
        """Bad arguments raise ConfigError naming them."""
        with SqliteOutbox(tmp_path / "outbox.db") as outbox, Webhooks() as webhooks:
            with pytest.raises(ConfigError, match=match):
                OutboxDelivery(webhooks, outbox, **kwargs)
            with pytest.raises(ConfigError, match="webhooks"):
                OutboxDelivery("hooks", outbox)  # type: ignore[arg-type]
            with pytest.raises(ConfigError, match="outbox"):
                OutboxDelivery(webhooks, "outbox.db")  # type: ignore[arg-type]
            delivery = OutboxDelivery(webhooks, outbox)
            with pytest.raises(ConfigError, match="stop"):
                delivery.run(stop=True)  # type: ignore[arg-type]
            assert "stopped" in repr(delivery)


class TestMore:
    def test_disable_after_disables_in_the_file(self, tmp_path: Path) -> None:
        """An endpoint failing for longer than the breaker's disable_after is disabled in the file: the delivery
        ends dead with that reason, and on_health hears of it (an on_health that raises is logged, not raised)."""
        changes: list[str] = []

        def on_health(change: Any) -> None:
            changes.append(change.state)
            raise RuntimeError("a bug in the callback")

        results = Results()
        with HttpServer(lambda request, count: Reply(500)) as server, SqliteOutbox(tmp_path / "o.db") as outbox:
            with hooks(results) as webhooks:
                webhooks.subscribe(Endpoint(server.url("/down"), name="down"), environment=ENV)
                breaker = Breaker(failures=1000, disable_after=0.005)
                with OutboxDelivery(webhooks, outbox, breaker=breaker, on_health=on_health, poll_interval=0.02) as d:
                    d.publish(event(1))
                    d.start()
                    d.start()  # running already: nothing more happens
                    assert "running" in repr(d)
                    results.wait_for(lambda: len(results.results) == 1)
            assert outbox.disabled() == {"down": "failing for over 0.005 s without a success"}
        (result,) = results.results
        assert result.error == "endpoint disabled: failing for over 0.005 s without a success"
        assert result.endpoint_disabled and result.attempts == 2 and changes == ["disabled"]

    def test_an_attempt_in_flight_when_its_endpoint_is_disabled_is_not_retried(self, tmp_path: Path) -> None:
        """Two attempts in flight to one endpoint: the first answers 410 and disables it; the second, answering
        500 a moment later, is not retried: it ends dead because its endpoint is disabled."""

        def answer(request: Received, count: int) -> Reply:
            return Reply(410) if count == 1 else Reply(500, mode="silent", delay=0.3)

        results = Results()
        with HttpServer(answer) as server, SqliteOutbox(tmp_path / "o.db") as outbox:
            with hooks(results) as webhooks:
                webhooks.subscribe(Endpoint(server.url("/x"), name="x"), environment=ENV)
                delivery = OutboxDelivery(webhooks, outbox, per_endpoint=2, poll_interval=0.02)
                for n in range(2):
                    delivery.publish(event(n))
                delivery.start()
                results.wait_for(lambda: len(results.results) == 2)
                delivery.close()
            assert len(server.received) == 2
        errors = sorted(r.error or "" for r in results.results)
        assert errors == ["HTTP 410", "endpoint disabled: it answered 410 Gone"]

    def test_a_fault_of_the_file_is_logged_and_the_workers_go_on(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected SQLite error in a worker's transaction is rolled back and logged; the workers try again
        and deliver. Attempts are logged at DEBUG."""
        caplog.set_level(logging.DEBUG, logger="flaghooks")
        faults = [sqlite3.OperationalError("disk I/O error")]
        claim = Ledger._claim

        def flaky(self: Ledger, *args: Any) -> Any:
            if faults:
                raise faults.pop()
            return claim(self, *args)

        monkeypatch.setattr(Ledger, "_claim", flaky)
        results = Results()
        with HttpServer() as server, SqliteOutbox(tmp_path / "o.db") as outbox, hooks(results) as webhooks:
            webhooks.subscribe(Endpoint(server.url("/x"), name="x"), environment=ENV)
            delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.02)
            delivery.publish(event(1))
            delivery.start()
            results.wait_for(lambda: len(results.results) == 1)
            delivery.close()
        assert results.results[0].ok
        assert any("disk I/O error" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
        assert any(r.getMessage().startswith("attempt 1/3") for r in caplog.records)

    def test_a_failed_prune_is_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """When the workers' own prune fails, they log it and go on delivering."""

        def broken(*args: Any, **kwargs: Any) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr("flaghooks._outbox.prune_rows", broken)
        results = Results()
        with SqliteOutbox(tmp_path / "o.db", keep_delivered=60) as outbox, hooks(results, Concurrency()) as webhooks:
            webhooks.subscribe(Endpoint("https://receiver.example/", name="r"), environment=ENV)
            delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.02)
            delivery.publish(event(1))
            delivery.start()
            results.wait_for(lambda: len(results.results) == 1)
            delivery.close()
        assert any("pruning delivered deliveries failed" in r.getMessage() for r in caplog.records)

"""BackgroundDelivery against real servers on 127.0.0.1: publishing never waits, lanes keep a hung endpoint from
costing the others anything, retries wait in a timer, the breaker pauses, probes and disables, shutdown abandons
what it must and reports it, and every delivery ends in exactly one result."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest

from background_helpers import ENV, Gate, Results, Timed, event, local
from cases import banner_state
from flaghooks import (
    BackgroundDelivery,
    Breaker,
    ConfigError,
    Endpoint,
    RetryPolicy,
    Webhooks,
    audit_log_created,
)
from flaghooks.testing import RecordingTransport
from httpserver import HttpServer, Listener, Received, Reply

SERVER = r"""
import http.server, socketserver, threading

answered, lock = set(), threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 204
        if self.path == "/busy":  # 503 with Retry-After: 1 to each delivery's first attempt
            with lock:
                first = self.headers["webhook-id"] not in answered
                answered.add(self.headers["webhook-id"])
            status = 503 if first else 204
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""
FAST = RetryPolicy(attempts=3, backoff=0.01, multiplier=2, max_delay=2, jitter=0)
NEVER_TRIPS = Breaker(failures=1_000_000)


def hooks(transport: Any, results: Results, retry: RetryPolicy = FAST) -> Webhooks:
    return Webhooks(transport=transport, retry=retry, on_result=results)


def value_of(request: Received) -> str:
    return str(json.loads(request.body)["data"]["new_state"]["feature_state_value"])


class TestConfiguration:
    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"workers": 0}, "BackgroundDelivery.workers must be an int >= 1"),
            ({"workers": True}, "BackgroundDelivery.workers"),
            ({"queue_size": 0}, "BackgroundDelivery.queue_size"),
            ({"per_endpoint": 1.5}, "BackgroundDelivery.per_endpoint"),
            ({"on_full": "wait"}, "BackgroundDelivery.on_full must be 'drop' or 'block'"),
            ({"block_timeout": -1}, "BackgroundDelivery.block_timeout must be a finite number of seconds >= 0"),
            ({"block_timeout": "1"}, "BackgroundDelivery.block_timeout must be a number of seconds or a timedelta"),
            ({"shutdown_timeout": float("inf")}, "BackgroundDelivery.shutdown_timeout"),
            ({"breaker": object()}, "BackgroundDelivery.breaker must be a Breaker"),
            ({"on_health": 3}, "BackgroundDelivery.on_health must be callable"),
        ],
    )
    def test_bad_arguments_are_named(self, kwargs: dict[str, Any], words: str) -> None:
        """Every bad constructor argument is a ConfigError naming it."""
        with pytest.raises(ConfigError, match=words):
            BackgroundDelivery(Webhooks(transport=RecordingTransport()), **kwargs)

    def test_webhooks_is_required(self) -> None:
        """The first argument must be a Webhooks."""
        with pytest.raises(ConfigError, match=r"BackgroundDelivery\.webhooks must be a Webhooks"):
            BackgroundDelivery(object())  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"failures": 0}, "Breaker.failures must be an int >= 1"),
            ({"cooldown": 0}, "Breaker.cooldown must be a finite number of seconds > 0"),
            ({"max_cooldown": None}, "Breaker.max_cooldown must be a number of seconds or a timedelta"),
            ({"disable_after": float("nan")}, "Breaker.disable_after"),
            ({"cooldown": 10, "max_cooldown": 5}, "Breaker.max_cooldown must be >= cooldown"),
        ],
    )
    def test_bad_breaker_values_are_named(self, kwargs: dict[str, Any], words: str) -> None:
        """A bad Breaker value is a ConfigError naming the field."""
        with pytest.raises(ConfigError, match=words):
            Breaker(**kwargs)

    def test_breaker_defaults_and_timedeltas(self) -> None:
        """The defaults are the issue's (5 failures, 30 s doubling to 10 min, 5 days); a timedelta is seconds."""
        assert Breaker() == Breaker(5, 30.0, 600.0, 432_000.0)
        assert Breaker(cooldown=timedelta(minutes=1), disable_after=timedelta(days=1)) == Breaker(
            cooldown=60, disable_after=86_400
        )
        close = BackgroundDelivery(Webhooks(transport=RecordingTransport()), shutdown_timeout=timedelta(0))
        assert close.close() == 0 and "closed" in repr(close)


class TestPublishing:
    def test_every_delivery_ends_in_one_result(self) -> None:
        """publish returns every planned delivery at once; each ends in exactly one result, with its id."""
        results = Results()
        with HttpServer() as server:
            webhooks = hooks(local(), results)
            for path in ("/a", "/b", "/c"):
                webhooks.subscribe(Endpoint(server.url(path)), environment=ENV)
            with BackgroundDelivery(webhooks) as background:
                deliveries = [d for n in range(20) for d in background.publish(event(n))]
                assert background.flush(60)
                stats = background.stats()
        assert len(deliveries) == 60
        seen = results.by_delivery()
        assert sorted(seen, key=str) == sorted(d.id for d in deliveries)
        assert all(len(ended) == 1 and ended[0].ok for ended in seen.values())
        assert stats == {
            "queued": 0,
            "in_flight": 0,
            "waiting_to_retry": 0,
            "paused_lanes": 0,
            "delivered": 60,
            "failed": 0,
            "dropped": 0,
            "abandoned": 0,
        }
        assert {r.headers["webhook-id"] for r in server.received} == {f"evt_{n}" for n in range(20)}

    def test_first_attempts_go_out_in_publish_order(self) -> None:
        """One endpoint's first attempts reach it in the order the events were published."""
        results = Results()
        with HttpServer() as server:
            webhooks = hooks(local(), results)
            webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
            with BackgroundDelivery(webhooks, workers=4) as background:
                for n in range(30):
                    background.publish(event(n))
                assert background.flush(60)
            assert [value_of(r) for r in server.received] == [f"v{n}" for n in range(30)]

    def test_helpers_publish_like_webhooks(self) -> None:
        """feature_state_changed suppresses no-ops as Webhooks does; audit_log_created goes to the organisation."""
        results = Results()
        transport = RecordingTransport()
        webhooks = hooks(transport, results)
        webhooks.subscribe(Endpoint("https://env.example/"), environment=ENV)
        webhooks.subscribe(Endpoint("https://org.example/"), organisation=7)
        with BackgroundDelivery(webhooks) as background:
            state = banner_state()
            assert background.feature_state_changed(state, state) == []
            changed = background.feature_state_changed(state, banner_state(enabled=True), changed_by="ada")
            assert [d.endpoint.url for d in changed] == ["https://env.example/", "https://org.example/"]
            from cases import documented_audit_entry

            [audit] = background.audit_log_created(documented_audit_entry(), organisation=7)
            assert audit.endpoint.url == "https://org.example/"
            from flaghooks import VersionFeature, VersionPublished

            [version] = background.version_published(
                VersionPublished(uuid="u", feature=VersionFeature(1, "f")), environment=ENV
            )
            assert version.event_type == "NEW_VERSION_PUBLISHED"
            assert background.flush(60)
        assert len(results.results) == 4 and all(r.ok for r in results.results)
        assert audit_log_created  # the module-level builder is what the helper uses

    def test_nothing_to_deliver_starts_nothing(self) -> None:
        """An event that routes nowhere queues nothing and starts no worker; flush() without a timeout returns."""
        background = BackgroundDelivery(Webhooks(transport=RecordingTransport()))
        assert background.publish(event(1)) == [] and background._threads == []
        assert background.flush() is True
        background.close()

    def test_closed_while_planning(self) -> None:
        """A close() that lands while publish is planning (here from on_result, which plan calls for an event a
        format cannot express) makes that publish raise ConfigError; nothing is queued."""
        from cases import BETA
        from flaghooks import FeatureSegment, PayloadFormat, flag_changed

        background: BackgroundDelivery | None = None

        def close_now(result: object) -> None:
            assert background is not None
            background.close()

        webhooks = Webhooks(transport=RecordingTransport(), on_result=close_now)
        webhooks.subscribe(Endpoint("https://classic.example/"), environment=ENV)
        webhooks.subscribe(Endpoint("https://modern.example/", format=PayloadFormat.MODERN), environment=ENV)
        background = BackgroundDelivery(webhooks)
        segment = banner_state(feature_segment=FeatureSegment(segment=BETA))
        with pytest.raises(ConfigError, match="closed"):
            background.publish(flag_changed(None, segment))
        assert background.stats()["queued"] == 0

    def test_publish_after_close_is_refused(self) -> None:
        """A closed BackgroundDelivery takes nothing: publish raises ConfigError."""
        webhooks = Webhooks(transport=RecordingTransport())
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        background = BackgroundDelivery(webhooks)
        background.close()
        with pytest.raises(ConfigError, match="closed"):
            background.publish(event(1))
        assert background.flush(0)

    def test_callbacks_that_raise_are_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """An exception in on_result or on_health is logged; the worker goes on and every result still ends."""

        def broken(result: object) -> None:
            raise RuntimeError("callback bug")

        def broken_health(change: object) -> None:
            raise RuntimeError("health bug")

        webhooks = Webhooks(transport=RecordingTransport([410, 200]), retry=FAST, on_result=broken)
        webhooks.subscribe(Endpoint("https://gone.example/"), environment=ENV)
        with BackgroundDelivery(webhooks, on_health=broken_health) as background:
            background.publish(event(1))
            assert background.flush(60)
            assert background.stats()["failed"] == 1
        assert "on_result callback raised" in caplog.text and "on_health callback raised" in caplog.text


class TestQueueFull:
    def test_drop(self) -> None:
        """With the queue full, new deliveries are dropped at once: a failed result 'queue full', counted."""
        results = Results()
        with HttpServer() as server:
            gate = Gate(local())
            webhooks = hooks(gate, results)
            webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
            background = BackgroundDelivery(webhooks, queue_size=2, workers=1)
            kept = background.publish(event(1)) + background.publish(event(2))
            dropped = background.publish(event(3)) + background.publish(event(4))
            assert len(kept) == len(dropped) == 2  # dropped deliveries are returned too
            assert [r.delivery_id for r in results.results] == [d.id for d in dropped]
            assert all(r.error == "queue full" and r.attempts == 0 and not r.ok for r in results.results)
            assert background.stats()["dropped"] == 2
            gate.open.set()
            assert background.flush(60)
            background.close()
        assert sorted(value_of(r) for r in server.received) == ["v1", "v2"]

    def test_block_waits_for_room(self) -> None:
        """on_full="block" waits for room: once the held attempt ends, the blocked publish queues its delivery."""
        results = Results()
        gate = Gate(RecordingTransport())
        webhooks = hooks(gate, results)
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        with BackgroundDelivery(webhooks, queue_size=1, on_full="block", block_timeout=60) as background:
            background.publish(event(1))
            threading.Timer(0.05, gate.open.set).start()
            background.publish(event(2))  # blocks until event 1's delivery has ended
            assert background.flush(60)
            assert background.stats()["dropped"] == 0
        assert [r.ok for r in results.results] == [True, True]

    def test_block_gives_up_after_block_timeout(self) -> None:
        """on_full="block" drops after block_timeout when no room comes."""
        results = Results()
        gate = Gate(RecordingTransport())
        webhooks = hooks(gate, results)
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        background = BackgroundDelivery(webhooks, queue_size=1, on_full="block", block_timeout=0.05)
        background.publish(event(1))
        [dropped] = background.publish(event(2))
        assert [r.delivery_id for r in results.results] == [dropped.id] and results.results[0].error == "queue full"
        gate.open.set()
        background.close()
        zero = BackgroundDelivery(webhooks, queue_size=1, on_full="block", block_timeout=0)
        gate.open.clear()
        zero.publish(event(3))
        zero.publish(event(4))
        assert zero.stats()["dropped"] == 1
        gate.open.set()
        zero.close()


class TestLanes:
    def test_hung_endpoint_costs_the_others_nothing(self) -> None:
        """Acceptance 2: 200 events to 10 endpoints, one never answering (timeout=30), one answering 503 with
        Retry-After: 1 once per delivery. Every healthy delivery completes while the hung endpoint's first attempt
        is still in flight, holding one worker (its lane's limit); the 503 endpoint's deliveries are retried per
        policy and then succeed; every returned Delivery gets exactly one result (the hung endpoint's are
        abandoned at close). No clock is compared: the hung attempt cannot end before its 30 s timeout."""
        results = Results()
        hung = Listener()
        # The answering endpoints live in a process of their own, as real receivers do: the test measures the
        # client's lanes, not a server sharing its interpreter.
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
            transport = Timed(local())
            webhooks = hooks(transport, results)
            healthy = [Endpoint(f"{base}/ok{n}") for n in range(8)]
            busy = Endpoint(f"{base}/busy")
            dead = Endpoint(f"http://127.0.0.1:{hung.port}/hook", timeout=30)
            for endpoint in [*healthy[:4], dead, busy, *healthy[4:]]:
                webhooks.subscribe(endpoint, environment=ENV)
            background = BackgroundDelivery(webhooks, workers=4, breaker=NEVER_TRIPS)
            deliveries = [d for n in range(200) for d in background.publish(event(n))]
            assert len(deliveries) == 2000
            alive = sum(d.endpoint != dead for d in deliveries)
            results.wait_for(lambda: len(results.results) >= alive)
            # Everything else is done and the hung attempt has not ended: it holds one worker, no more.
            assert not any(url == dead.url for url, _, _ in list(transport.ended))
            assert background.stats()["in_flight"] == 1
            abandoned = background.close(timeout=0)
            seen = results.by_delivery()
            assert sorted(seen, key=str) == sorted(d.id for d in deliveries)
            assert all(len(ended) == 1 for ended in seen.values())
            healthy_done = [r for r in results.results if r.endpoint in healthy and r.ok]
            assert len(healthy_done) == 1600
            busy_results = [r for r in results.results if r.endpoint == busy]
            assert len(busy_results) == 200
            assert all(r.ok and [a.status for a in r.history] == [503, 204] for r in busy_results)
            assert all(r.history[0].retry_after == 1.0 for r in busy_results)
            dead_results = [r for r in results.results if r.endpoint == dead]
            assert abandoned == len(dead_results) == 200
            assert all(r.error == "abandoned at shutdown" for r in dead_results)
        finally:
            server.terminate()
            server.communicate(timeout=10)
            hung.close()

    def test_per_endpoint_bounds_attempts_in_flight(self) -> None:
        """At most per_endpoint attempts to one endpoint are in flight; the rest of its lane waits queued."""
        results = Results()
        gate = Gate(RecordingTransport())
        webhooks = hooks(gate, results)
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        background = BackgroundDelivery(webhooks, workers=4, per_endpoint=2)
        for n in range(5):
            background.publish(event(n))
        results.wait_for(lambda: len(gate.started) == 2)
        assert background.flush(0.05) is False  # nothing can end while the two attempts are held
        stats = background.stats()
        assert (stats["in_flight"], stats["queued"], len(gate.started)) == (2, 3, 2)
        gate.open.set()
        assert background.flush(60)
        background.close()
        assert len(gate.started) == 5


class TestRetries:
    def test_retry_waits_in_the_timer_without_holding_its_lane(self) -> None:
        """A delivery waiting for its retry does not hold up the lane: later deliveries go first."""
        results = Results()
        with HttpServer(lambda r, count: Reply(503, headers={"Retry-After": "1"}) if count == 1 else Reply(200)) as srv:
            webhooks = hooks(local(), results)
            webhooks.subscribe(Endpoint(srv.url("/a")), environment=ENV)
            with BackgroundDelivery(webhooks, workers=1, breaker=NEVER_TRIPS) as background:
                for n in range(3):
                    background.publish(event(n))
                results.wait_for(lambda: len(results.results) == 2)
                assert background.stats()["waiting_to_retry"] == 1
                assert background.flush(60)
            assert [value_of(r) for r in srv.received] == ["v0", "v1", "v2", "v0"]
        assert [r.history[-1].status for r in results.results] == [200, 200, 200]
        assert [r.attempts for r in results.results] == [1, 1, 2]

    def test_retries_follow_the_policy_then_fail(self) -> None:
        """The policy's attempts are made, then the delivery fails with the last attempt's status."""
        results = Results()
        with HttpServer(lambda r, count: Reply(500)) as server:
            webhooks = hooks(local(), results, RetryPolicy(attempts=3, backoff=0.01, jitter=0))
            webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
            with BackgroundDelivery(webhooks, breaker=NEVER_TRIPS) as background:
                background.publish(event(1))
                assert background.flush(60)
            [result] = results.results
            assert (result.ok, result.attempts, result.status, result.error) == (False, 3, 500, "HTTP 500")
            assert len(server.received) == 3


class TestShutdown:
    def test_close_abandons_a_retry_far_in_the_future(self) -> None:
        """Acceptance 4: close() with a delivery waiting for a retry an hour away returns within its timeout and
        reports it abandoned, once."""
        results = Results()
        far = RetryPolicy(attempts=2, backoff=0.01, max_delay=3600, jitter=0)
        with HttpServer(lambda r, count: Reply(503, headers={"Retry-After": "3600"})) as server:
            webhooks = hooks(local(), results, far)
            webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
            background = BackgroundDelivery(webhooks, shutdown_timeout=30)
            [delivery] = background.publish(event(1))
            results.wait_for(lambda: background.stats()["waiting_to_retry"] == 1)
            assert background.close() == 1
        [result] = results.results
        assert result.delivery_id == delivery.id and result.error == "abandoned at shutdown"
        assert result.attempts == 1 and result.status == 503
        assert background.stats()["abandoned"] == 1 and background.close() == 0

    def test_flush_false_at_timeout_and_late_outcome_not_reported(self) -> None:
        """flush() returns False at its timeout; close() abandons an attempt in flight, and its late outcome is
        not reported a second time."""
        results = Results()
        gate = Gate(RecordingTransport())
        webhooks = hooks(gate, results)
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        background = BackgroundDelivery(webhooks)
        [delivery] = background.publish(event(1))
        results.wait_for(lambda: len(gate.started) == 1)
        assert background.flush(timeout=0.01) is False
        workers = list(background._threads)
        assert background.close(timeout=0.01) == 1
        gate.open.set()  # the held attempt now ends, after it was abandoned
        for worker in workers:
            worker.join(10)
        assert len(gate.ended) == 1 and gate.ended[0][2].status == 200
        assert [(r.delivery_id, r.error) for r in results.results] == [(delivery.id, "abandoned at shutdown")]

    def test_close_delivers_what_it_can_in_time(self) -> None:
        """close() first delivers what is queued, within its timeout; nothing is abandoned then."""
        results = Results()
        with HttpServer() as server:
            webhooks = hooks(local(), results)
            webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
            background = BackgroundDelivery(webhooks)
            for n in range(10):
                background.publish(event(n))
            assert background.close(timeout=60) == 0
        assert len(results.results) == 10 and all(r.ok for r in results.results)

    def test_atexit_closes_live_instances(self, tmp_path: Any) -> None:
        """A process that exits without close() still delivers what it queued (the atexit hook closes it)."""
        import subprocess
        import sys

        from cases import ROOT

        with HttpServer() as server:
            code = (
                "import sys; sys.path[:0] = [sys.argv[2], sys.argv[3]]\n"
                "from background_helpers import ENV, event, local\n"
                "from flaghooks import BackgroundDelivery, Endpoint, Webhooks\n"
                "webhooks = Webhooks(transport=local())\n"
                "webhooks.subscribe(Endpoint(sys.argv[1]), environment=ENV)\n"
                "background = BackgroundDelivery(webhooks, shutdown_timeout=30)\n"
                "for n in range(5):\n"
                "    background.publish(event(n))\n"
            )
            subprocess.run(
                [sys.executable, "-c", code, server.url("/a"), str(ROOT / "src"), str(ROOT / "tests")],
                check=True,
                timeout=60,
                cwd=tmp_path,
            )
            assert sorted(value_of(r) for r in server.received) == [f"v{n}" for n in range(5)]


class TestConcurrency:
    def test_publishing_threads_and_subscription_changes(self) -> None:
        """Acceptance 5: 8 threads publish while another subscribes and unsubscribes: no exception, and every
        returned delivery ends in exactly one result."""
        results = Results()
        webhooks = hooks(RecordingTransport(), results)
        stable = [Endpoint(f"https://stable{n}.example/") for n in range(3)]
        for endpoint in stable:
            webhooks.subscribe(endpoint, environment=ENV)
        churn = [Endpoint(f"https://churn{n}.example/") for n in range(5)]
        stop = threading.Event()
        errors: list[BaseException] = []
        returned: list[list[str]] = [[] for _ in range(8)]
        background = BackgroundDelivery(webhooks, workers=4, queue_size=100_000)

        def publisher(index: int) -> None:
            try:
                for n in range(100):
                    returned[index] += [d.id for d in background.publish(event(index * 1000 + n))]
            except BaseException as exc:
                errors.append(exc)

        def subscriber() -> None:
            try:
                while not stop.is_set():
                    for endpoint in churn:
                        webhooks.subscribe(endpoint, environment=ENV)
                    for endpoint in churn:
                        webhooks.unsubscribe(endpoint)
            except BaseException as exc:
                errors.append(exc)

        changer = threading.Thread(target=subscriber)
        changer.start()
        threads = [threading.Thread(target=publisher, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        stop.set()
        changer.join(60)
        assert background.flush(120)
        background.close()
        assert errors == []
        ids = [delivery_id for ids in returned for delivery_id in ids]
        assert len(ids) == len(set(ids)) >= 8 * 100 * len(stable)
        seen = results.by_delivery()
        assert sorted(seen, key=str) == sorted(ids) and all(len(ended) == 1 for ended in seen.values())
        assert background.stats()["delivered"] == len(ids)


def test_debug_log_names_each_attempt(caplog: pytest.LogCaptureFixture) -> None:
    """With DEBUG on, each background attempt is logged as inline ones are."""
    caplog.set_level(logging.DEBUG, logger="flaghooks")
    webhooks = Webhooks(transport=RecordingTransport())
    webhooks.subscribe(Endpoint("https://a.example/", name="a"), environment=ENV)
    with BackgroundDelivery(webhooks) as background:
        background.publish(event(7))
        assert background.flush(60)
    assert "attempt 1/3 of FLAG_UPDATED evt_7 to a: 200" in caplog.text


def test_imports_where_the_platform_has_no_fork() -> None:
    """Without os.register_at_fork (Windows), the delivery ids and BackgroundDelivery's module load and work (the
    package imports first, then both modules are loaded again without it)."""
    code = (
        "import importlib, os\n"
        "import flaghooks._background as background, flaghooks._delivery as delivery\n"
        "del os.register_at_fork\n"
        "delivery = importlib.reload(delivery)\n"
        "background = importlib.reload(background)\n"
        "print(delivery.new_delivery_id(1000)[:4], background.BackgroundDelivery.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "dlv_ BackgroundDelivery", done.stderr

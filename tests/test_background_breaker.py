"""The breaker with small test values, against real servers: pauses burn no attempts, a probe closes it, cooldowns
double up to their maximum, disable_after and a 410 disable the endpoint and end what was queued for it."""

from __future__ import annotations

import threading

import pytest

from background_helpers import ENV, Results, event, local
from flaghooks import BackgroundDelivery, Breaker, Endpoint, RetryPolicy, Webhooks
from flaghooks.testing import RecordingTransport
from flaghooks.transports import DeliveryRequest
from httpserver import HttpServer, Received, Reply

ONCE = RetryPolicy(attempts=1)


def scripted(*statuses: int) -> object:
    """The n-th request gets statuses[n - 1]; later ones get 200."""

    def script(request: Received, count: int) -> Reply:
        return Reply(statuses[count - 1] if count <= len(statuses) else 200)

    return script


def test_failing_recovered_disabled_in_order() -> None:
    """Two failures trip the breaker (failing); after the cooldown one probe succeeds (recovered); a 410 then
    disables the endpoint at once (disabled), and what was queued behind it fails without an attempt."""
    results = Results()
    with HttpServer(scripted(500, 500, 200, 410)) as server:  # type: ignore[arg-type]
        webhooks = Webhooks(transport=local(), retry=ONCE, on_result=results)
        endpoint = Endpoint(server.url("/a"))
        webhooks.subscribe(endpoint, environment=ENV)
        breaker = Breaker(failures=2, cooldown=0.05, max_cooldown=0.1)
        with BackgroundDelivery(webhooks, breaker=breaker, on_health=results.on_health) as background:
            deliveries = [d for n in range(6) for d in background.publish(event(n))]
            assert background.flush(60)
        assert len(server.received) == 4
    assert [change.state for change in results.health] == ["failing", "recovered", "disabled"]
    assert all(change.endpoint == endpoint for change in results.health)
    assert "2 consecutive failed attempts" in results.health[0].reason
    assert results.health[2].reason == "it answered 410 Gone"
    by_id = {r.delivery_id: r for r in results.results}
    assert len(by_id) == len(results.results) == 6
    ends = [by_id[d.id] for d in deliveries]
    assert [r.status for r in ends[:4]] == [500, 500, 200, 410]
    assert ends[3].endpoint_disabled and not ends[3].ok
    for queued in ends[4:]:
        assert (queued.attempts, queued.error, queued.endpoint_disabled) == (
            0,
            "endpoint disabled: it answered 410 Gone",
            True,
        )
    assert webhooks.plan(event(9)) == []  # disabled in its Webhooks
    webhooks.subscribe(endpoint, environment=ENV)  # subscribing again enables it
    assert [d.endpoint for d in webhooks.plan(event(9))] == [endpoint]


def test_no_attempts_while_paused() -> None:
    """While the lane is paused, its queued deliveries wait without an attempt; stats count the paused lane."""
    results = Results()
    with HttpServer(lambda request, count: Reply(500)) as server:
        webhooks = Webhooks(transport=local(), retry=ONCE, on_result=results)
        webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
        background = BackgroundDelivery(webhooks, breaker=Breaker(failures=2, cooldown=3600, max_cooldown=3600))
        for n in range(5):
            background.publish(event(n))
        results.wait_for(lambda: len(results.results) == 2)
        assert background.flush(timeout=0.1) is False
        stats = background.stats()
        assert (stats["paused_lanes"], stats["queued"], stats["failed"]) == (1, 3, 2)
        assert len(server.received) == 2
        assert background.close(timeout=0) == 3
    assert len(results.results) == 5


def test_cooldown_doubles_up_to_its_maximum() -> None:
    """Each failed probe doubles the pause, up to max_cooldown: the lane's cooldown at each attempt reads
    0 (closed), then 0.01, 0.02, 0.04, 0.04."""
    seen: list[float] = []
    background: BackgroundDelivery | None = None

    def answer(request: DeliveryRequest) -> int:
        assert background is not None
        lane = background._scheduler.lanes[request.endpoint]
        seen.append(lane.cooldown)
        return 503

    webhooks = Webhooks(transport=RecordingTransport(answer), retry=ONCE)
    webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
    breaker = Breaker(failures=1, cooldown=0.01, max_cooldown=0.04)
    background = BackgroundDelivery(webhooks, breaker=breaker)
    for n in range(5):
        background.publish(event(n))
    assert background.flush(60)
    background.close()
    assert seen == [0.0, 0.01, 0.02, 0.04, 0.04]


def test_disable_after_ends_everything_queued() -> None:
    """After disable_after seconds of failing without a success (503s count), the endpoint is disabled: each
    delivery still queued, or waiting for a retry, ends once with that reason, and far fewer attempts are made
    than the policy alone would make."""
    results = Results()
    retry = RetryPolicy(attempts=3, backoff=0.01, jitter=0)
    with HttpServer(lambda request, count: Reply(503)) as server:
        webhooks = Webhooks(transport=local(), retry=retry, on_result=results)
        webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
        breaker = Breaker(failures=1, cooldown=0.01, max_cooldown=0.02, disable_after=0.1)
        with BackgroundDelivery(webhooks, breaker=breaker, on_health=results.on_health) as background:
            deliveries = [d for n in range(30) for d in background.publish(event(n))]
            assert background.flush(60)
        attempts = len(server.received)
    assert [change.state for change in results.health] == ["failing", "disabled"]
    reason = "failing for over 0.1 s without a success"
    assert results.health[1].reason == reason
    by_id = {r.delivery_id: r for r in results.results}
    assert sorted(by_id, key=str) == sorted(d.id for d in deliveries) and len(results.results) == 30
    disabled = [r for r in results.results if r.error == f"endpoint disabled: {reason}"]
    assert disabled and all(r.endpoint_disabled for r in disabled)
    assert attempts < 30 * retry.attempts
    assert webhooks.plan(event(99)) == []


def test_a_success_resets_the_count() -> None:
    """Failures must be consecutive: a success in between resets the count, and nothing trips."""
    results = Results()
    webhooks = Webhooks(transport=RecordingTransport([500, 200, 500, 200]), retry=ONCE, on_result=results)
    webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
    with BackgroundDelivery(webhooks, breaker=Breaker(failures=2), on_health=results.on_health) as background:
        for n in range(4):
            background.publish(event(n))
        assert background.flush(60)
        assert background.stats()["paused_lanes"] == 0
    # Results are reported outside the lane's lock, so two workers may report in either order: by event.
    by_event = sorted(results.results, key=lambda r: r.event_id)
    assert results.health == [] and [r.ok for r in by_event] == [False, True, False, True]


@pytest.mark.parametrize(("other", "error"), [(503, "endpoint disabled: it answered 410 Gone"), (400, "HTTP 400")])
def test_in_flight_attempts_of_a_disabled_endpoint_end_once(other: int, error: str) -> None:
    """With two attempts in flight, a 410 on one disables the endpoint; the other's outcome then ends its
    delivery: a retryable one with the disabling reason (no retry to a disabled endpoint), a final one as is."""
    results = Results()
    both_started = threading.Barrier(2)

    def answer(request: DeliveryRequest) -> int:
        both_started.wait(10)
        if request.event.id == "evt_0":
            return 410
        results.wait_for(lambda: any(r.status == 410 for r in results.results))
        return other

    webhooks = Webhooks(transport=RecordingTransport(answer), on_result=results)
    webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
    with BackgroundDelivery(webhooks, per_endpoint=2, on_health=results.on_health) as background:
        background.publish(event(0))
        background.publish(event(1))
        assert background.flush(60)
    ends = {r.event_id: r for r in results.results}
    assert ends["evt_0"].status == 410 and ends["evt_0"].endpoint_disabled
    assert ends["evt_1"].attempts == 1 and ends["evt_1"].error == error and ends["evt_1"].endpoint_disabled
    assert [change.state for change in results.health] == ["disabled"]


def test_a_success_already_in_flight_closes_a_tripped_breaker() -> None:
    """With two attempts in flight, one failure trips the breaker; the other's success, arriving while the lane
    is paused, closes it again (recovered), and the pause's timer then finds nothing to do."""
    results = Results()
    background: BackgroundDelivery | None = None
    first_failed = threading.Event()

    def answer(request: DeliveryRequest) -> int:
        assert background is not None
        if request.event.id == "evt_0":
            first_failed.set()
            return 500
        first_failed.wait(10)
        results.wait_for(lambda: [change.state for change in results.health] == ["failing"])
        return 200

    webhooks = Webhooks(transport=RecordingTransport(answer), retry=ONCE, on_result=results)
    webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
    breaker = Breaker(failures=1, cooldown=0.2)
    background = BackgroundDelivery(webhooks, per_endpoint=2, breaker=breaker, on_health=results.on_health)
    background.publish(event(0))
    background.publish(event(1))
    assert background.flush(60)
    results.wait_for(lambda: not background._scheduler.timers)  # the stale pause timer fired and was ignored
    assert [change.state for change in results.health] == ["failing", "recovered"]
    assert background.stats()["paused_lanes"] == 0
    background.close()


def test_a_retry_of_a_disabled_endpoint_is_not_attempted() -> None:
    """A delivery waiting for its retry when a 410 disables its endpoint ends at once with that reason; its
    timer, when it comes, attempts nothing."""
    results = Results()
    transport = RecordingTransport([503, 410])
    webhooks = Webhooks(transport=transport, retry=RetryPolicy(attempts=3, backoff=0.05, jitter=0), on_result=results)
    webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
    background = BackgroundDelivery(webhooks)
    background.publish(event(0))
    background.publish(event(1))
    assert background.flush()
    results.wait_for(lambda: not background._scheduler.timers)
    background.close()
    assert len(transport.requests) == 2
    ends = {r.event_id: r for r in results.results}
    assert ends["evt_0"].error == "endpoint disabled: it answered 410 Gone" and ends["evt_0"].attempts == 1
    assert ends["evt_1"].status == 410

"""The separation every executor shares: plan (routing, encoding, no I/O), attempt (one signed attempt that never
raises), classify (the outcome table), and deliver (the inline loop); publish is plan, then deliver each."""

from __future__ import annotations

import re
import threading
import time
from datetime import UTC
from typing import Any

import attrs
import pytest

from background_helpers import ENV, event, local
from cases import BETA, banner_state
from flaghooks import (
    ConfigError,
    Delivery,
    DeliveryResult,
    Endpoint,
    FeatureSegment,
    Outcome,
    PayloadFormat,
    RetryPolicy,
    Signing,
    Webhooks,
    classify,
    encode,
    generate_secret,
    verify_flagsmith,
    verify_standard,
)
from flaghooks.testing import RecordingTransport
from flaghooks.transports import AttemptResult, DeliveryRequest, Transport
from httpserver import HttpServer, Received, Reply, free_port

POLICY = RetryPolicy(attempts=3, backoff=0.01, multiplier=2, max_delay=1, jitter=0)


def make_script() -> Any:
    seen: set[str] = set()
    lock = threading.Lock()

    def script(request: Received, count: int) -> Reply:
        if request.path == "/flaky":
            with lock:
                first = request.headers["webhook-id"] not in seen
                seen.add(request.headers["webhook-id"])
            return Reply(503, headers={"Retry-After": "0"}) if first else Reply(202)
        return {
            "/ok": Reply(200, body=b"ok"),
            "/bad": Reply(400, body=b"no"),
            "/gone": Reply(410),
            "/moved": Reply(302, headers={"Location": "/ok"}),
            "/down": Reply(500),
        }[request.path]

    return script


def subscribe_all(webhooks: Webhooks, server: HttpServer, refused: int) -> None:
    for path in ("/ok", "/flaky", "/bad", "/gone", "/moved", "/down"):
        webhooks.subscribe(Endpoint(server.url(path), name=path), environment=ENV)
    webhooks.subscribe(Endpoint(f"http://127.0.0.1:{refused}/", name="refused"), environment=ENV)
    modern = Endpoint(server.url("/ok"), name="modern", format=PayloadFormat.MODERN)
    webhooks.subscribe(modern, environment=ENV)


def comparable(result: DeliveryResult) -> tuple[Any, ...]:
    history = tuple((a.status, a.error, a.permanent, a.retry_after, a.response_body) for a in result.history)
    return (
        result.endpoint.name,
        result.event_id,
        result.event_type,
        result.ok,
        result.status,
        result.attempts,
        result.error,
        result.endpoint_disabled,
        history,
    )


def by_hand(webhooks: Webhooks, delivery: Delivery, policy: RetryPolicy) -> tuple[Any, ...]:
    """An executor of one's own: plan's delivery, attempt, classify, the policy's waits."""
    history: list[AttemptResult] = []
    while True:
        result = webhooks.attempt(delivery, len(history) + 1)
        history.append(result)
        outcome = classify(result)
        if outcome is not Outcome.RETRY or len(history) >= policy.attempts:
            break
        time.sleep(policy.wait(len(history), result.status, result.retry_after))
    last = history[-1]
    ok = outcome is Outcome.DELIVERED
    error = None if ok else (last.error or f"HTTP {last.status}")
    built = DeliveryResult(
        delivery.endpoint,
        delivery.event_id,
        delivery.event_type,
        ok,
        last.status,
        len(history),
        error,
        0.0,
        outcome is Outcome.GONE,
        tuple(history),
        delivery.id,
    )
    return comparable(built)


def test_plan_attempt_classify_reproduce_publish() -> None:
    """Acceptance 1: against real servers (200, 503 then 202, 400, 410, 302, 500, a refused port), planning and
    attempting by hand with classify gives exactly publish's results, in the same order."""
    segment = banner_state(feature_segment=FeatureSegment(segment=BETA))  # CLASSIC cannot express it
    events = [event(1)]  # one: after it, publish has disabled /gone (a 410), which is _finish's part, not plan's
    refused = free_port()
    with HttpServer(make_script()) as one, HttpServer(make_script()) as two:
        published_hooks = Webhooks(transport=local(), retry=POLICY)
        subscribe_all(published_hooks, one, refused)
        published = [comparable(r) for e in events for r in published_hooks.publish(e)]
        reported: list[DeliveryResult] = []
        hand_hooks = Webhooks(transport=local(), retry=POLICY, on_result=reported.append)
        subscribe_all(hand_hooks, two, refused)
        by_hand_results = [by_hand(hand_hooks, d, POLICY) for e in events for d in hand_hooks.plan(e)]
        assert reported == []  # plan reports only what it cannot plan
        assert by_hand_results == published
        assert len(published) == 8 and {r[0] for r in published if r[3]} == {"/ok", "/flaky", "modern"}
        # An endpoint whose format cannot express the event: no Delivery, a failed result with 0 attempts.
        from flaghooks import flag_changed

        unexpressible = flag_changed(None, segment)
        planned = hand_hooks.plan(unexpressible)
        assert [d.endpoint.name for d in planned] == ["modern"]
        assert len(reported) == 7 and all(r.attempts == 0 and r.error.startswith("PayloadError") for r in reported)
        assert all(r.delivery_id is None for r in reported)
        publish_order = [r.endpoint.name for r in published_hooks.publish(unexpressible)]
    assert publish_order == ["/ok", "/flaky", "/bad", "/moved", "/down", "refused", "modern"]  # /gone disabled


class TestPlan:
    def test_deliveries(self) -> None:
        """plan gives one Delivery per endpoint, in routing order, with unique dlv_ ids, the event's id and
        type, the encoded bytes (encoded once per format) and a UTC creation time; it sends nothing."""
        transport = RecordingTransport()
        webhooks = Webhooks(transport=transport)
        endpoints = [Endpoint(f"https://{name}.example/") for name in "abc"]
        for endpoint in endpoints:
            webhooks.subscribe(endpoint, environment=ENV)
        first = event(1)
        planned = webhooks.plan(first)
        assert [d.endpoint for d in planned] == endpoints and transport.requests == []
        assert all(re.fullmatch(r"dlv_[A-Za-z0-9_]+", d.id) for d in planned)
        assert planned[0].body is planned[1].body and planned[0].body == encode(first)
        assert {(d.event_id, d.event_type, d.event) for d in planned} == {(first.id, first.event_type, first)}
        assert all(d.created_at.tzinfo is UTC for d in planned)
        ids = {d.id for n in range(2000) for d in webhooks.plan(event(n))}
        assert len(ids) == 6000
        assert "bytes>" in repr(planned[0]) and planned[0].body.decode() not in repr(planned[0])

    def test_nothing_subscribed(self) -> None:
        """An event that routes nowhere plans nothing; bad arguments are refused as publish refuses them."""
        webhooks = Webhooks(transport=RecordingTransport())
        assert webhooks.plan(event(1)) == []
        with pytest.raises(TypeError, match="event must be a WebhookEvent"):
            webhooks.plan("evt")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="environment must be an int"):
            webhooks.plan(event(1), environment="23")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="organisation must be an int"):
            webhooks.plan(event(1), organisation=True)


class TestAttempt:
    def test_headers_of_each_attempt(self) -> None:
        """Every attempt sends the event id as webhook-id (to every endpoint), a fresh timestamp, signatures
        over it that verify, and the endpoint's own headers."""
        secret = generate_secret()
        transport = RecordingTransport()
        webhooks = Webhooks(transport=transport)
        signed = Endpoint(
            "https://a.example/", secret=secret, signing=Signing.BOTH, headers={"Authorization": "Bearer t0ken"}
        )
        webhooks.subscribe(signed, environment=ENV)
        webhooks.subscribe(Endpoint("https://b.example/"), environment=ENV)
        one, other = webhooks.plan(event(5))
        assert webhooks.attempt(one).status == 200
        assert webhooks.attempt(one, 2).status == 200
        webhooks.attempt(other)
        first, second, unsigned = transport.requests
        assert [r.attempt for r in transport.requests] == [1, 2, 1]
        assert {r.headers["webhook-id"] for r in transport.requests} == {"evt_5"}
        for request in (first, second):
            verify_flagsmith(request.body, request.headers["X-Flagsmith-Signature"], secret)
            verify_standard(request.body, request.headers, secret)
            assert request.headers["Authorization"] == "Bearer t0ken" and request.event is one.event
        assert "X-Flagsmith-Signature" not in unsigned.headers and "webhook-signature" not in unsigned.headers

    def test_never_raises_for_the_transport(self) -> None:
        """A transport that raises, returns junk, or quotes a secret in its error ends in an AttemptResult."""

        class Broken(Transport):
            def __init__(self, behaviour: str) -> None:
                self.behaviour = behaviour

            def send(self, request: DeliveryRequest) -> AttemptResult:
                if self.behaviour == "raise":
                    raise RuntimeError(f"boom with {request.endpoint.secret}")
                if self.behaviour == "junk":
                    return "202"  # type: ignore[return-value]
                return AttemptResult(None, f"refused {request.endpoint.secret}")

        endpoint = Endpoint("https://a.example/", secret="s3cret-value")
        results = {}
        for behaviour in ("raise", "junk", "quote"):
            webhooks = Webhooks(transport=Broken(behaviour))
            webhooks.subscribe(endpoint, environment=ENV)
            [delivery] = webhooks.plan(event(1))
            results[behaviour] = webhooks.attempt(delivery)
        assert results["raise"].error == "RuntimeError: boom with ***"
        assert classify(results["raise"]) is Outcome.RETRY
        assert results["junk"].permanent and "Broken.send returned str" in (results["junk"].error or "")
        assert results["quote"].error == "refused ***"

    def test_arguments(self) -> None:
        """attempt takes a Delivery and an attempt number from 1."""
        webhooks = Webhooks(transport=RecordingTransport())
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        [delivery] = webhooks.plan(event(1))
        with pytest.raises(TypeError, match="delivery must be a Delivery"):
            webhooks.attempt("dlv_x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="attempt must be an int"):
            webhooks.attempt(delivery, True)
        with pytest.raises(ConfigError, match="attempt counts from 1"):
            webhooks.attempt(delivery, 0)

    def test_a_delivery_rebuilt_without_its_event(self) -> None:
        """A Delivery kept elsewhere (without the event object) is attempted with its body decoded for the
        transport; a body that is no event fails for good, without reaching the transport."""
        transport = RecordingTransport()
        webhooks = Webhooks(transport=transport)
        webhooks.subscribe(Endpoint("https://a.example/"), environment=ENV)
        [planned] = webhooks.plan(event(3))
        stored = attrs.evolve(planned, event=None)
        assert stored == planned  # the event is not part of a delivery's identity
        assert webhooks.attempt(stored).status == 200
        assert transport.requests[-1].event.id == "evt_3" and transport.requests[-1].body == planned.body
        broken = attrs.evolve(planned, event=None, body=b"not json")
        result = webhooks.attempt(broken)
        assert result.permanent and (result.error or "").startswith("PayloadError")
        assert len(transport.requests) == 1


class TestDeliver:
    def test_deliver_with_its_own_policy(self) -> None:
        """deliver retries by the policy given (or the Webhooks' own), reports to on_result, and carries the
        delivery id; a 410 disables the endpoint as publish does."""
        reported: list[DeliveryResult] = []
        webhooks = Webhooks(
            transport=RecordingTransport([503, 503, 200, 410]), retry=RetryPolicy(backoff=0), on_result=reported.append
        )
        endpoint = Endpoint("https://a.example/")
        webhooks.subscribe(endpoint, environment=ENV)
        [delivery] = webhooks.plan(event(1))
        once = webhooks.deliver(delivery, retry=RetryPolicy.never())
        assert (once.ok, once.attempts, once.delivery_id) == (False, 1, delivery.id)
        again = webhooks.deliver(delivery)
        assert (again.ok, again.attempts) == (True, 2)
        gone = webhooks.deliver(delivery)
        assert gone.endpoint_disabled and webhooks.plan(event(2)) == []
        assert reported == [once, again, gone]
        with pytest.raises(TypeError, match="delivery must be a Delivery"):
            webhooks.deliver(object())  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="retry must be a RetryPolicy"):
            webhooks.deliver(delivery, retry=3)  # type: ignore[arg-type]

    def test_publish_results_carry_delivery_ids(self) -> None:
        """publish's results name their deliveries; ping's too."""
        with HttpServer() as server:
            webhooks = Webhooks(transport=local())
            webhooks.subscribe(Endpoint(server.url("/a")), environment=ENV)
            [result] = webhooks.publish(event(1))
            assert result.ok and re.fullmatch(r"dlv_[A-Za-z0-9_]+", result.delivery_id or "")
            assert re.fullmatch(r"dlv_\w+", webhooks.ping(server.url("/p")).delivery_id or "")


def test_signers_are_kept_for_a_bounded_number_of_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Signing keys and static headers are worked out once per endpoint and kept, up to a bound; past it the
    cache starts again (attempts to endpoints that come and go never grow it without end)."""
    from flaghooks import _dispatch

    monkeypatch.setattr(_dispatch, "_SIGNERS_KEPT", 2)
    webhooks = Webhooks(transport=RecordingTransport())
    for name in "abc":
        webhooks.subscribe(Endpoint(f"https://{name}.example/", secret="s3cret"), environment=ENV)
    planned = webhooks.plan(event(1))
    for delivery in planned:
        assert webhooks.attempt(delivery).status == 200
    assert len(webhooks._signers) == 1
    webhooks.unsubscribe(planned[2].endpoint)
    assert webhooks._signers == {}


def test_delivery_ids_are_time_ordered_and_never_stale_by_more_than_a_second() -> None:
    """Ids come in batches stamped with the time they were made; a batch older than a second is replaced, and
    ids sort in the order they were taken."""
    from flaghooks._delivery import _IdSource

    source = _IdSource()
    first = source(5_000)
    same_batch = source(5_900)
    later = source(6_001)
    assert first[4:16] == same_batch[4:16] == f"{5_000:012x}" and later[4:16] == f"{6_001:012x}"
    taken = [first, same_batch, later] + [source(6_001) for _ in range(600)]
    assert taken == sorted(taken) and len(set(taken)) == len(taken)


def test_routes_are_cached_for_a_bounded_number_of_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes are kept per (event type, environment, organisation) up to a bound, then the cache starts again;
    a subscription change empties it, so the next plan sees the change."""
    from flaghooks import _dispatch

    monkeypatch.setattr(_dispatch, "_ROUTES_KEPT", 2)
    webhooks = Webhooks(transport=RecordingTransport())
    endpoint = Endpoint("https://a.example/")
    webhooks.subscribe(endpoint, environment=ENV)
    for environment in (1, 2, ENV):
        webhooks.plan(event(1), environment=environment)
    assert len(webhooks._routes) == 1
    webhooks.unsubscribe(endpoint)
    assert webhooks._routes == {} and webhooks.plan(event(1)) == []

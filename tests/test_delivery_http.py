"""Delivery over real HTTP to servers on 127.0.0.1: every row of the outcome table, deadlines, limits, and what
a receiver sees (signatures over the exact bytes, a stable webhook-id, the encoded body)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import pytest

from cases import VARIANTS, banner_state, documented_flag_event
from flaghooks import (
    DeliveryResult,
    Endpoint,
    EventType,
    PayloadFormat,
    RetryPolicy,
    Signing,
    Webhooks,
    encode,
    generate_secret,
    verify_flagsmith,
    verify_standard,
)
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport
from httpserver import HttpServer, Received, Reply, free_port

LOOPBACK = ["127.0.0.0/8"]
FAST = RetryPolicy(attempts=3, backoff=0.01, jitter=0)


def hooks(retry: RetryPolicy = FAST, **kwargs: object) -> Webhooks:
    return Webhooks(transport=HttpTransport(allowed_networks=LOOPBACK), retry=retry, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def transport() -> Iterator[HttpTransport]:
    with HttpTransport(allowed_networks=LOOPBACK) as http:
        yield http  # type: ignore[misc]


def ping_once(
    script: object, *, retry: RetryPolicy = FAST, timeout: float = 5.0
) -> tuple[DeliveryResult, list[Received]]:
    """Publish one event to one endpoint served by ``script``; return its result and what the server got."""
    with HttpServer(script) as server, hooks(retry) as webhooks:  # type: ignore[arg-type]
        endpoint = Endpoint(server.url("/hook"), timeout=timeout)
        webhooks.subscribe(endpoint, environment=23)
        [result] = webhooks.publish(documented_flag_event())
        return result, server.received


def statuses(*codes: int, headers: dict[str, str] | None = None) -> object:
    def script(request: Received, count: int) -> Reply:
        return Reply(codes[min(count, len(codes)) - 1], headers=headers or {}, body=b"answer")

    return script


class TestOutcomes:
    def test_2xx_delivered(self) -> None:
        """A 2xx is delivered at the first attempt; the body is kept for diagnostics."""
        result, received = ping_once(statuses(202))
        assert (result.ok, result.status, result.attempts, result.error) == (True, 202, 1, None)
        assert result.history[0].response_body == b"answer"
        assert len(received) == 1

    def test_500_then_200(self) -> None:
        """500 then 200: delivered in 2 attempts."""
        result, received = ping_once(statuses(500, 200))
        assert (result.ok, result.status, result.attempts) == (True, 200, 2)
        assert [a.status for a in result.history] == [500, 200]
        assert len(received) == 2

    @pytest.mark.parametrize("status", [408, 425, 429, 502, 503, 504])
    def test_retried_statuses(self, status: int) -> None:
        """408, 425, 429 and 5xx are retried until the attempts run out."""
        result, received = ping_once(statuses(status))
        assert (result.ok, result.status, result.attempts, len(received)) == (False, status, 3, 3)
        assert result.error == f"HTTP {status}"

    @pytest.mark.parametrize("status", [400, 401, 404, 422, 501, 505])
    def test_failed_without_retry(self, status: int) -> None:
        """Other 4xx, 501 and 505 fail at once."""
        result, received = ping_once(statuses(status))
        assert (result.ok, result.attempts, len(received)) == (False, 1, 1)

    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    def test_redirect_not_followed(self, status: int) -> None:
        """A redirect is a failure: not followed (the target is never asked), not retried."""
        result, received = ping_once(statuses(status, headers={"Location": "/elsewhere"}))
        assert (result.ok, result.status, result.attempts) == (False, status, 1)
        assert [r.path for r in received] == ["/hook"]

    def test_429_retry_after_honoured(self) -> None:
        """A 429's Retry-After lengthens the wait before the next attempt."""
        policy = RetryPolicy(attempts=2, backoff=0.01, jitter=0, max_delay=5)
        result, received = ping_once(statuses(429, 200, headers={"Retry-After": "1"}), retry=policy)
        assert result.ok and result.attempts == 2
        assert result.history[0].retry_after == 1.0
        assert received[1].at - received[0].at >= 0.95

    def test_503_retry_after_clamped(self) -> None:
        """A Retry-After beyond max_delay is clamped to it."""
        policy = RetryPolicy(attempts=2, backoff=0.01, jitter=0, max_delay=0.3)
        result, received = ping_once(statuses(503, 200, headers={"Retry-After": "3600"}), retry=policy)
        assert result.ok and result.attempts == 2
        assert 0.25 <= received[1].at - received[0].at < 2.0
        assert result.elapsed >= 0.3

    def test_retry_after_http_date(self) -> None:
        """Retry-After may be an HTTP date."""
        later = email.utils.formatdate(time.time() + 120, usegmt=True)
        result, _ = ping_once(statuses(429, headers={"Retry-After": later}), retry=RetryPolicy.never())
        assert result.history[0].retry_after is not None
        assert 100 < result.history[0].retry_after <= 121

    def test_410_disables_the_endpoint(self) -> None:
        """410 fails without a retry and disables the endpoint in that Webhooks until subscribed again."""
        with HttpServer(statuses(410, 200)) as server, hooks() as webhooks:
            endpoint = Endpoint(server.url("/gone"))
            webhooks.subscribe(endpoint, environment=23)
            [result] = webhooks.publish(documented_flag_event())
            assert (result.ok, result.status, result.attempts, result.endpoint_disabled) == (False, 410, 1, True)
            assert webhooks.publish(documented_flag_event()) == []  # skipped while disabled
            assert webhooks.endpoints(environment=23) == [endpoint]  # still subscribed
            webhooks.subscribe(endpoint, environment=23)  # re-enables
            [again] = webhooks.publish(documented_flag_event())
            assert again.ok and not again.endpoint_disabled
            assert len(server.received) == 2

    def test_connection_refused(self) -> None:
        """A refused connection is retried, and reported."""
        with hooks() as webhooks:
            endpoint = Endpoint(f"http://127.0.0.1:{free_port()}/hook")
            webhooks.subscribe(endpoint, environment=23)
            [result] = webhooks.publish(documented_flag_event())
        assert (result.ok, result.status, result.attempts) == (False, None, 3)
        assert result.error == "connection refused"

    def test_read_timeout(self) -> None:
        """A server that answers too late times out, and the attempt is retried."""
        slow = lambda request, count: Reply(200, mode="silent", delay=3.0)  # noqa: E731
        started = time.monotonic()
        result, received = ping_once(slow, retry=RetryPolicy(attempts=2, backoff=0, jitter=0), timeout=0.5)
        assert (result.ok, result.attempts, len(received)) == (False, 2, 2)
        assert result.error is not None and "timeout" in result.error
        assert time.monotonic() - started < 3.0

    def test_trickling_server_is_cut_off_at_the_deadline(self, transport: HttpTransport) -> None:
        """A server sending one byte a second cannot hold the attempt much past its timeout."""
        trickle = lambda request, count: Reply(200, body=b"x" * 30, mode="trickle")  # noqa: E731
        with HttpServer(trickle) as server:
            request = DeliveryRequest(server.url(), b"{}", {}, 2.0, Endpoint(server.url()), documented_flag_event())
            result = transport.send(request)
        assert result.status == 200  # the status line arrived: delivered; the body is only diagnostics
        assert 1.9 <= result.elapsed <= 3.0
        assert 1 <= len(result.response_body) <= 4

    def test_large_response_read_only_up_to_the_limit(self) -> None:
        """Of a 10 MB response, only max_response_bytes are read; the rest goes with the connection."""
        huge = lambda request, count: Reply(200, mode="huge", size=10 * 1024 * 1024)  # noqa: E731
        with HttpServer(huge) as server, HttpTransport(allowed_networks=LOOPBACK, max_response_bytes=1000) as http:
            request = DeliveryRequest(server.url(), b"{}", {}, 10.0, Endpoint(server.url()), documented_flag_event())
            result = http.send(request)
            assert result.status == 200 and len(result.response_body) == 1000
            second = http.send(request)  # the pool recovers from the discarded connection
            assert second.status == 200

    def test_transport_that_raises(self) -> None:
        """A transport that raises makes failed, retried attempts; the caller keeps running."""

        class Broken(Transport):
            def send(self, request: DeliveryRequest) -> AttemptResult:
                raise RuntimeError(f"boom on attempt {request.attempt}")

        with Webhooks(transport=Broken(), retry=FAST) as webhooks:
            webhooks.subscribe(Endpoint("https://hooks.example.com/"), environment=23)
            [result] = webhooks.publish(documented_flag_event())
        assert (result.ok, result.attempts) == (False, 3)
        assert result.error == "RuntimeError: boom on attempt 3"

    def test_keep_alive_reuses_one_connection(self, transport: HttpTransport) -> None:
        """Consecutive attempts to one server reuse one pooled connection (one client port at the server)."""
        with HttpServer() as server:
            for _ in range(5):
                request = DeliveryRequest(server.url(), b"{}", {}, 5.0, Endpoint(server.url()), documented_flag_event())
                assert transport.send(request).status == 200
            assert len({received.client_port for received in server.received}) == 1


class ReceiverChecks:
    """A receiving server that checks what arrives, as a careful receiver would."""

    def __init__(self, secret: str, previous: tuple[str, ...], expected: dict[str, bytes], fail_first: int) -> None:
        self.secret, self.previous, self.expected, self.fail_first = secret, previous, expected, fail_first
        self.problems: list[str] = []
        self.ids: dict[str, set[str]] = {}

    def __call__(self, request: Received, count: int) -> Reply:
        headers = request.headers
        try:
            verify_flagsmith(request.body, headers["x-flagsmith-signature"], self.secret)
            verify_standard(request.body, headers, [self.secret, *self.previous])
            for old in self.previous:  # each secret verifies on its own, the old ones included
                verify_standard(request.body, headers, old)
        except Exception as exc:
            self.problems.append(f"{request.path}: {exc!r}")
        if request.body != self.expected[request.path]:
            self.problems.append(f"{request.path}: body is not encode(event, format)")
        if headers.get("content-type") != "application/json" or not headers.get("user-agent", "").startswith(
            "flaghooks/"
        ):
            self.problems.append(f"{request.path}: wrong content type or user agent")
        self.ids.setdefault(request.path, set()).add(headers["webhook-id"])
        return Reply(503 if count <= self.fail_first else 200)


@pytest.mark.parametrize("fmt", list(PayloadFormat))
def test_receiver_sees_verifiable_bytes(fmt: PayloadFormat) -> None:
    """For every request, both signatures verify over the exact bytes received, the body is encode(event, format),
    and webhook-id is the same across retries and endpoints."""
    secret, old = generate_secret(), generate_secret()
    event = VARIANTS["segment_override_set"]()
    expected = {"/a": encode(event, fmt), "/b": encode(event, fmt)}
    checks = ReceiverChecks(secret, (old,), expected, fail_first=2)
    with HttpServer(checks) as server, hooks(format=fmt) as webhooks:
        for path in ("/a", "/b"):
            endpoint = Endpoint(server.url(path), secret=secret, signing=Signing.BOTH, previous_secrets=(old,))
            webhooks.subscribe(endpoint, environment=23)
        results = webhooks.publish(event)
    assert [(r.ok, r.attempts) for r in results] == [(True, 3), (True, 3)]  # 503, 503, then 200 at each
    assert checks.problems == []
    assert checks.ids == {"/a": {event.id}, "/b": {event.id}}
    assert len(server.received) == 6


def test_each_attempt_is_signed_with_its_own_timestamp() -> None:
    """webhook-timestamp is the attempt's time, and the Standard signature covers it."""
    secret = generate_secret()
    with HttpServer(statuses(500, 200)) as server, hooks(RetryPolicy(attempts=2, backoff=1.1, jitter=0)) as webhooks:
        webhooks.subscribe(Endpoint(server.url(), secret=secret, signing=Signing.STANDARD), environment=23)
        webhooks.publish(documented_flag_event())
        first, second = server.received
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert "x-flagsmith-signature" not in first.headers


def test_extra_headers_are_sent() -> None:
    """An endpoint's extra headers go out with every attempt."""
    with HttpServer() as server, hooks() as webhooks:
        webhooks.subscribe(Endpoint(server.url(), headers={"Authorization": "Bearer t0ken"}), environment=23)
        webhooks.publish(documented_flag_event())
        assert server.received[0].headers["authorization"] == "Bearer t0ken"
        assert "x-flagsmith-signature" not in server.received[0].headers  # no secret, no signature


def test_ping_success_and_failure() -> None:
    """ping sends one sample event of the asked type, once, without needing a subscription."""
    with HttpServer(statuses(200, 500)) as server, hooks() as webhooks:
        ok = webhooks.ping(server.url("/p"), event_type=EventType.AUDIT_LOG_CREATED)
        failed = webhooks.ping(Endpoint(server.url("/p"), format=PayloadFormat.MODERN))
    assert (ok.ok, ok.status, ok.attempts, ok.event_type) == (True, 200, 1, EventType.AUDIT_LOG_CREATED)
    assert (failed.ok, failed.status, failed.attempts) == (False, 500, 1)
    assert b'"event_type": "AUDIT_LOG_CREATED"' in server.received[0].body


def test_ping_never_disables() -> None:
    """A 410 answer to a ping does not disable the endpoint."""
    with HttpServer(statuses(410, 200)) as server, hooks() as webhooks:
        endpoint = Endpoint(server.url())
        webhooks.subscribe(endpoint, environment=23)
        result = webhooks.ping(endpoint, event_type=EventType.FLAG_DELETED)
        assert result.status == 410 and not result.endpoint_disabled
        assert webhooks.publish(documented_flag_event())[0].ok


def test_feature_state_changed_over_http() -> None:
    """feature_state_changed publishes real changes."""
    with HttpServer() as server, hooks() as webhooks:
        webhooks.subscribe(Endpoint(server.url()), environment=23)
        [result] = webhooks.feature_state_changed(banner_state(), banner_state(enabled=True), changed_by="dana")
    assert result.ok and b'"changed_by": "dana"' in server.received[0].body

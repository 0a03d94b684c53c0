"""HttpTransport's parts: Retry-After parsing, error descriptions, the deadline thread, configuration."""

from __future__ import annotations

import email.utils
import http
import socket
import ssl
import time

import pytest
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from cases import documented_flag_event
from flaghooks import ConfigError, Endpoint, RetryPolicy, Webhooks
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport
from flaghooks.transports import _http as http_module
from flaghooks.transports._address import AddressPolicy, BlockedAddress
from flaghooks.transports._base import withhold_secrets
from flaghooks.transports._http import (
    _Attempt,
    _describe,
    _Watchdog,
    _WatchedHTTPConnection,
    _WatchedHTTPSConnection,
    parse_retry_after,
)
from httpserver import HttpServer, Reply


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (None, None),
            ("120", 120.0),
            (" 7 ", 7.0),
            ("0", 0.0),
            ("-5", None),
            ("1.5", None),
            ("9" * 11, None),
            ("soon", None),
            ("", None),
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        """Delay-seconds are whole non-negative numbers; anything unreadable is ignored."""
        assert parse_retry_after(value, 1_000_000.0) == expected

    def test_http_dates(self) -> None:
        """An HTTP date becomes the seconds from now; a date in the past is no wait."""
        now = 1_700_000_000.0
        assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == pytest.approx(90)
        assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
        assert parse_retry_after("Tue, 14 Nov 2023 22:13:20", now) == pytest.approx(0.0, abs=1)  # no zone: GMT


class TestDescriptions:
    def attempt(self, fired: bool = False) -> _Attempt:
        attempt = _Attempt(0.0)
        attempt.fired = fired
        return attempt

    def test_deadline_wins(self) -> None:
        """Once the deadline passed, whatever broke is a timeout of the whole attempt."""
        assert (
            _describe(ProtocolError("reset"), self.attempt(fired=True), 2) == "timeout: no complete response within 2 s"
        )

    @pytest.mark.parametrize(
        ("exc", "text"),
        [
            (ConnectTimeoutError("slow"), "connect timeout after 3 s"),
            (ReadTimeoutError(None, "/", "slow"), "read timeout after 3 s"),  # type: ignore[arg-type]
            (SSLError("certificate verify failed"), "TLS failure: certificate verify failed"),
            (
                ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
                "connection reset or closed: Connection aborted.",
            ),
            (RuntimeError("odd"), "RuntimeError: odd"),
        ],
    )
    def test_descriptions(self, exc: BaseException, text: str) -> None:
        """Each kind of failure is named plainly."""
        assert _describe(exc, self.attempt(), 3) == text

    def test_connection_errors(self) -> None:
        """Refused connections are named so; other connection failures carry their reason."""
        refused = NewConnectionError(None, "failed")  # type: ignore[arg-type]
        refused.__context__ = ConnectionRefusedError(111, "Connection refused")
        unreachable = NewConnectionError(None, "failed")  # type: ignore[arg-type]
        unreachable.__context__ = OSError(101, "Network is unreachable")
        dns = NameResolutionError("nowhere.test", None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
        assert _describe(refused, self.attempt(), 3) == "connection refused"
        assert _describe(unreachable, self.attempt(), 3) == "connection failed: [Errno 101] Network is unreachable"
        assert _describe(dns, self.attempt(), 3).startswith("DNS failure")


class _FakeConnection:
    def __init__(self) -> None:
        self.sock: socket.socket | None = None


def test_watchdog_shuts_the_socket_at_the_deadline() -> None:
    """At the deadline the watchdog shuts the attempt's socket, waiting for one that is still connecting."""
    watchdog = _Watchdog()
    ours, theirs = socket.socketpair()
    try:
        attempt = _Attempt(time.monotonic() + 0.1)
        connection = _FakeConnection()
        attempt.conn = connection  # type: ignore[assignment]
        watchdog.watch(attempt)
        time.sleep(0.25)
        assert attempt.fired  # fired, but no socket yet: it looks again shortly
        connection.sock = ours
        ours.settimeout(2)
        assert ours.recv(1) == b""  # woken by the shutdown
        finished = _Attempt(time.monotonic() + 0.05)
        finished.done = True
        watchdog.watch(finished)
        time.sleep(0.1)
        assert not finished.fired  # a finished attempt is left alone
    finally:
        watchdog.close()
        ours.close()
        theirs.close()


def test_watchdog_restarts_after_close() -> None:
    """A closed transport can still send: a new deadline thread starts."""
    with HttpServer() as server:
        transport = HttpTransport(allowed_networks=["127.0.0.0/8"])
        request = DeliveryRequest(server.url(), b"{}", {}, 2.0, Endpoint(server.url()), documented_flag_event())
        assert transport.send(request).status == 200
        transport.close()
        assert transport.send(request).status == 200
        transport.close()


def test_connection_closed_without_answer_is_retried() -> None:
    """A server that hangs up without answering: 'connection reset or closed', retried."""
    hang_up = lambda request, count: Reply(mode="close") if count == 1 else Reply(200)  # noqa: E731
    with (
        HttpServer(hang_up) as server,
        Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"]), retry=RetryPolicy(backoff=0)) as webhooks,
    ):
        webhooks.subscribe(Endpoint(server.url()), environment=23)
        [result] = webhooks.publish(documented_flag_event())
    assert result.ok and result.attempts == 2
    assert result.history[0].status is None
    assert "connection reset or closed" in (result.history[0].error or "")


def test_transport_returning_something_else() -> None:
    """A transport whose send returns something other than an AttemptResult makes a failed attempt."""

    class Sloppy(Transport):
        def send(self, request: DeliveryRequest) -> AttemptResult:
            return 200  # type: ignore[return-value]

    with Webhooks(transport=Sloppy(), retry=RetryPolicy.never()) as webhooks:
        webhooks.subscribe(Endpoint("https://a.example/"), environment=23)
        [result] = webhooks.publish(documented_flag_event())
    assert not result.ok and result.error == "TypeError: Sloppy.send returned int, not an AttemptResult"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"max_response_bytes": -1}, "max_response_bytes"),
        ({"max_response_bytes": True}, "max_response_bytes"),
        ({"allow_private_addresses": "yes"}, "allow_private_addresses"),
        ({"pool": object()}, "pool"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], words: str) -> None:
    """HttpTransport checks its configuration."""
    with pytest.raises(ConfigError, match=words):
        HttpTransport(**kwargs)  # type: ignore[arg-type]


def test_verdict_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memo of address verdicts never grows past its bound, and stays correct when it starts over."""
    monkeypatch.setattr(AddressPolicy, "_MAX_MEMO", 3)
    policy = AddressPolicy()
    for last in range(10):
        with pytest.raises(BlockedAddress, match="private"):
            policy.resolve(f"10.0.0.{last}", 80)
        assert len(policy._verdicts) <= 3
    with pytest.raises(BlockedAddress, match="private"):
        policy.resolve("10.0.0.1", 80)
    assert policy.resolve("93.184.216.34", 443) == "93.184.216.34"
    for last in range(10):  # allowed addresses written in URLs are remembered, within the same bound
        assert policy.resolve(f"93.184.216.{last}", 443) == f"93.184.216.{last}"
        assert policy.resolve(f"93.184.216.{last}", 443) == f"93.184.216.{last}"
        assert len(policy._literals) <= 3


class TestAttemptResult:
    def test_status_alone_is_enough(self) -> None:
        """AttemptResult(status=202) is a complete success: no error, no elapsed time needed."""
        result = AttemptResult(status=202)
        assert (result.status, result.error, result.elapsed, result.permanent) == (202, None, 0.0, False)
        assert AttemptResult(200, None, 0.5).elapsed == 0.5  # positional, as transports write it
        assert AttemptResult(None, "refused", 1).elapsed == 1.0
        assert type(AttemptResult(http.HTTPStatus.ACCEPTED).status) is int

    @pytest.mark.parametrize(
        ("kwargs", "error", "words"),
        [
            ({}, ConfigError, "needs an error"),
            ({"status": None, "error": None, "elapsed": 0.1}, ConfigError, "needs an error"),
            ({"error": ""}, ConfigError, "needs an error"),
            ({"status": "200"}, TypeError, "status must be an int"),
            ({"status": True}, TypeError, "status must be an int"),
            ({"status": 200.0}, TypeError, "status must be an int"),
            ({"status": 42}, ConfigError, "from 100 to 999"),
            ({"status": 1000}, ConfigError, "from 100 to 999"),
            ({"status": 200, "error": b"odd"}, TypeError, "error must be a str"),
            ({"status": 200, "elapsed": "1"}, TypeError, "elapsed must be a number"),
            ({"status": 200, "elapsed": -1.0}, ConfigError, "elapsed"),
            ({"status": 200, "elapsed": float("nan")}, ConfigError, "elapsed"),
            ({"status": 200, "elapsed": float("inf")}, ConfigError, "elapsed"),
            ({"status": 200, "retry_after": "5"}, TypeError, "retry_after"),
            ({"status": 200, "response_body": "text"}, TypeError, "response_body must be bytes"),
            ({"status": 200, "permanent": 1}, TypeError, "permanent must be a bool"),
        ],
    )
    def test_rejected_at_construction(self, kwargs: dict[str, object], error: type[Exception], words: str) -> None:
        """A result without a status needs an error; wrong types are TypeErrors, bad values ConfigErrors."""
        with pytest.raises(error, match=words):
            AttemptResult(**kwargs)  # type: ignore[arg-type]


def test_finished_attempts_leave_the_deadline_heap() -> None:
    """Many quick attempts with timeout=300: the deadline thread keeps about as many entries as are in flight,
    not one per attempt of the last five minutes."""
    with HttpServer() as server, HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
        request = DeliveryRequest(server.url(), b"{}", {}, 300.0, Endpoint(server.url()), documented_flag_event())
        for _ in range(300):
            assert transport.send(request).status == 200
        assert len(transport._watchdog._heap) <= 2 * _Watchdog._FLOOR


def test_compaction_keeps_attempts_in_flight() -> None:
    """Rebuilding the heap drops only finished attempts: one still in flight is shut at its deadline."""
    watchdog = _Watchdog()
    ours, theirs = socket.socketpair()
    try:
        live = _Attempt(time.monotonic() + 0.3)
        connection = _FakeConnection()
        connection.sock = ours
        live.conn = connection  # type: ignore[assignment]
        watchdog.watch(live)
        for _ in range(100):
            quick = _Attempt(time.monotonic() + 300)
            watchdog.watch(quick)
            watchdog.finish(quick)
        assert len(watchdog) <= 2 * _Watchdog._FLOOR
        ours.settimeout(5)
        assert ours.recv(1) == b""  # shut at its deadline
        assert live.fired
        watchdog.finish(live)
    finally:
        watchdog.close()
        ours.close()
        theirs.close()


@pytest.mark.parametrize("body", [b"", b"answer"])
def test_held_responses_do_not_break_reuse(monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    """Every response object kept alive (as a debugger, a tracer or a reference cycle would): consecutive
    attempts still succeed over one kept-alive connection, because each response is released explicitly."""
    held: list[object] = []
    original = _WatchedHTTPConnection.getresponse

    def keep(self: _WatchedHTTPConnection) -> object:
        response = original(self)
        held.append(response)
        return response

    monkeypatch.setattr(_WatchedHTTPConnection, "getresponse", keep)
    with (
        HttpServer(lambda request, count: Reply(200, body=body)) as server,
        HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport,
    ):
        request = DeliveryRequest(server.url(), b"{}", {}, 5.0, Endpoint(server.url()), documented_flag_event())
        results = [transport.send(request) for _ in range(6)]
        ports = {received.client_port for received in server.received}
    assert [(r.status, r.error) for r in results] == [(200, None)] * 6
    assert len(held) == 6 and len(ports) == 1


def test_one_pool_per_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    """One pool per (scheme, address, port, server name), bounded: the oldest is closed past the bound, and
    close() closes them all; a closed transport still sends."""
    monkeypatch.setattr(http_module, "_MAX_POOLS", 2)
    with HttpServer() as one, HttpServer() as two, HttpServer() as three:
        transport = HttpTransport(allowed_networks=["127.0.0.0/8"])
        for server in (one, two, one, three, one):
            request = DeliveryRequest(server.url(), b"{}", {}, 5.0, Endpoint(server.url()), documented_flag_event())
            assert transport.send(request).status == 200
        assert len(transport._pools) == 2
        assert ("http", "127.0.0.1", one.port, None) in transport._pools
        transport.close()
        assert transport._pools == {}
        request = DeliveryRequest(two.url(), b"{}", {}, 5.0, Endpoint(two.url()), documented_flag_event())
        assert transport.send(request).status == 200
        transport.close()


def test_unparsable_url_is_permanent_and_not_retried() -> None:
    """A transport handed a URL it cannot parse (a request built by hand) fails permanently: never retried."""
    endpoint = Endpoint("https://hooks.example.com/")

    class Rewriting(Transport):
        def __init__(self) -> None:
            self.http = HttpTransport()
            self.calls = 0

        def send(self, request: DeliveryRequest) -> AttemptResult:
            self.calls += 1
            bad = DeliveryRequest("http://a\\@b/", request.body, request.headers, 1.0, endpoint, request.event)
            return self.http.send(bad)

    transport = Rewriting()
    with Webhooks(transport=transport, retry=RetryPolicy(attempts=4, backoff=0)) as webhooks:
        webhooks.subscribe(endpoint, environment=23)
        [result] = webhooks.publish(documented_flag_event())
    assert (result.ok, result.attempts, transport.calls) == (False, 1, 1)
    assert result.history[0].permanent and (result.error or "").startswith("invalid URL")
    transport.http.close()


def test_connections_outside_an_attempt_are_left_alone() -> None:
    """The watched connection classes work with no attempt in progress (nothing to register)."""
    with HttpServer() as server:
        conn = _WatchedHTTPConnection("127.0.0.1", server.port)
        conn.request("POST", "/", body=b"{}")
        assert conn.getresponse().status == 200
        conn.close()
        tls = _WatchedHTTPSConnection("127.0.0.1", server.port)  # TLS to a plain HTTP server: the handshake fails
        with pytest.raises(ssl.SSLError):
            tls.connect()
        tls.close()


def test_slow_name_resolution_uses_up_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """When resolving the name took the whole timeout, the attempt ends there, a timeout, with no connection."""
    real = socket.getaddrinfo

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(0.1)
        return real("127.0.0.1", *args[1:], **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    with HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
        url = "http://slow-dns.test/"
        result = transport.send(DeliveryRequest(url, b"{}", {}, 0.05, Endpoint(url), documented_flag_event()))
    assert result.status is None and result.error == "timeout: name resolution took over 0.05 s"


def test_withhold_secrets_hides_header_values_and_their_words() -> None:
    """An error text quoting an endpoint's header value, whole or a word of it, shows *** instead; short words
    and the headers flaghooks sets without a secret (the event id, the content type) stay."""
    endpoint = Endpoint(
        "https://hooks.example.com/", headers={"Authorization": "Bearer s3cr3t-t0ken", "X-Short": "abc"}
    )
    request = DeliveryRequest(
        endpoint.url,
        b"{}",
        {"Content-Type": "application/json", **endpoint.headers},
        1.0,
        endpoint,
        documented_flag_event(),
    )
    assert withhold_secrets("bad value b'Bearer s3cr3t-t0ken\\n'", request) == "bad value b'***\\n'"
    assert withhold_secrets("quoted 's3cr3t-t0ken' alone", request) == "quoted '***' alone"
    # A short value is withheld where it stands alone, not inside other words.
    assert withhold_secrets("abc alone, abcdef and xabc stay", request) == "*** alone, abcdef and xabc stay"
    assert withhold_secrets("sent application/json", request) == "sent application/json"


def test_a_proxy_manager_is_refused_not_ignored() -> None:
    """A ProxyManager as pool= would have its proxy silently bypassed (the transport connects to the checked
    address): it is a ConfigError saying so."""
    import urllib3

    with pytest.raises(ConfigError, match=r"must not be a urllib3\.ProxyManager"):
        HttpTransport(pool=urllib3.ProxyManager("http://127.0.0.1:3128/"))


def test_withhold_secrets_short_secrets_and_the_url() -> None:
    """Short secrets and URL credentials are withheld too (a custom transport's error quoting its request): a
    4-character API key, a 5-character password; the URL itself is shown as its label."""
    endpoint = Endpoint("https://bob:pw123@hooks.example.com/in", secret="s3c", headers={"X-Api-Key": "ak_42"})
    request = DeliveryRequest(endpoint.url, b"{}", {}, 1.0, endpoint, documented_flag_event())
    text = withhold_secrets(f"auth refused for key ak_42 with s3c at {endpoint.url} (user bob, pw123)", request)
    assert text == "auth refused for key *** with *** at https://***@hooks.example.com/in (user ***, ***)"

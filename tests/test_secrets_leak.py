"""No secret leaks: planted credentials (URL user and password, a Flagsmith signing secret, a Standard Webhooks
secret and its key, an Authorization header value) never appear in an error, a repr or a log line (at DEBUG, every
logger), across failing and succeeding deliveries: refused, timed out, 500, 200, blocked by the SSRF policy,
and a URL the transport cannot parse."""

from __future__ import annotations

import logging

import pytest

from cases import documented_flag_event
from flaghooks import ConfigError, DeliveryResult, Endpoint, RetryPolicy, Signing, Webhooks, generate_secret
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport
from httpserver import HttpServer, Received, Reply, free_port

URL_USER = "hookUSER4d1e"
URL_PASSWORD = "urlPASSWORD7f3a"
FLAGSMITH_SECRET = "flagsmithSECRET5d1e"
STANDARD_SECRET = generate_secret()
PREVIOUS_SECRET = generate_secret()
AUTHORIZATION = "authTOKEN8b4c0e"
PLANTED = [
    URL_USER,
    URL_PASSWORD,
    FLAGSMITH_SECRET,
    STANDARD_SECRET,
    STANDARD_SECRET.removeprefix("whsec_"),
    PREVIOUS_SECRET,
    PREVIOUS_SECRET.removeprefix("whsec_"),
    AUTHORIZATION,
]
CREDENTIALS = f"{URL_USER}:{URL_PASSWORD}@"


def answer(request: Received, count: int) -> Reply:
    if request.path.startswith("/500"):
        return Reply(500, body=b"broken")
    if request.path.startswith("/silent"):
        return Reply(mode="silent", delay=1.5)
    return Reply(200, body=b"ok")


def endpoints(port: int) -> list[Endpoint]:
    """Endpoints carrying every planted secret, to a 200, a 500, a silent server, a closed port and 10.0.0.1."""
    auth = {"Authorization": f"Bearer {AUTHORIZATION}"}
    hosts = [
        f"127.0.0.1:{port}/200",
        f"127.0.0.1:{port}/500",
        f"127.0.0.1:{port}/silent",
        f"127.0.0.1:{free_port()}/refused",
        f"10.0.0.1:{port}/blocked",
    ]
    made = []
    for host in hosts:
        url = f"http://{CREDENTIALS}{host}"
        made.append(Endpoint(url, secret=FLAGSMITH_SECRET, headers=auth, timeout=1.0))
        made.append(
            Endpoint(
                url,
                secret=STANDARD_SECRET,
                previous_secrets=(PREVIOUS_SECRET,),
                signing=Signing.BOTH,
                headers=auth,
                timeout=1.0,
                name=f"both-signed {host}",  # the same URL as the one before: a key of its own
            )
        )
    return made


def leaks(text: str) -> list[str]:
    return [secret for secret in PLANTED if secret in text]


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger: flaghooks' and urllib3's records alike
    return caplog


def test_no_secret_in_results_reprs_or_logs(all_logs: pytest.LogCaptureFixture) -> None:
    """Publish to endpoints full of secrets, failing every way and succeeding: nothing shows a secret."""
    seen: list[DeliveryResult] = []
    with (
        HttpServer(answer) as server,
        Webhooks(
            transport=HttpTransport(allowed_networks=["127.0.0.0/8"]),
            retry=RetryPolicy(attempts=2, backoff=0, jitter=0),
            on_result=seen.append,
        ) as webhooks,
    ):
        for endpoint in endpoints(server.port):
            webhooks.subscribe(endpoint, environment=23)
        results = webhooks.publish(documented_flag_event())
        results.append(webhooks.ping(endpoints(server.port)[0]))
        assert len(server.received) > 0
        assert all(r.headers["authorization"] == f"Bearer {AUTHORIZATION}" for r in server.received)

    outcomes = {(r.endpoint.url.rpartition("/")[2], r.ok) for r in results}
    assert outcomes == {("200", True), ("500", False), ("silent", False), ("refused", False), ("blocked", False)}
    texts = []
    for result in results + seen:
        texts += [result.error or "", repr(result), str(result), result.endpoint.label, repr(result.endpoint)]
        texts += [repr(attempt) for attempt in result.history]
        texts += [attempt.error or "" for attempt in result.history]
    texts += [record.getMessage() for record in all_logs.records]
    texts.append(all_logs.text)
    assert any("SSRF" in text for text in texts) and any("timeout" in text for text in texts)
    assert [(text, leaks(text)) for text in texts if leaks(text)] == []


@pytest.mark.parametrize(
    "url",
    [
        f"http://{CREDENTIALS}ho%st/",  # a host urllib3 cannot parse
        f"http://{CREDENTIALS}evil.example\\@127.0.0.1/",  # a backslash in the authority
        f"http://{CREDENTIALS}\u2100/",  # a character that normalises into a "/"
        f"http://{CREDENTIALS}host:{URL_PASSWORD}/",  # a port that is not a number
        f"http://{URL_USER}:{URL_PASSWORD}/@host/",  # the credentials read as host and port
    ],
)
def test_unparsable_url_fails_without_secrets(url: str, all_logs: pytest.LogCaptureFixture) -> None:
    """A URL flaghooks cannot parse: the Endpoint refuses it, and a request built by hand with it is a permanent
    failure of the transport; neither message, nor any repr or log line, holds a credential."""
    with pytest.raises(ConfigError) as info:
        Endpoint(url)
    assert leaks(str(info.value)) == []

    request = DeliveryRequest(
        url,
        b"{}",
        {"Authorization": f"Bearer {AUTHORIZATION}"},
        1.0,
        Endpoint("https://hooks.example.com/"),
        documented_flag_event(),
    )
    with HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
        result = transport.send(request)
    assert result.status is None and result.permanent
    assert result.error is not None and result.error.startswith("invalid URL")
    texts = [result.error, repr(result), repr(request), all_logs.text]
    assert [(text, leaks(text)) for text in texts if leaks(text)] == []


def test_header_value_quoted_by_a_lower_layer_is_hidden(all_logs: pytest.LogCaptureFixture) -> None:
    """A header value that http.client refuses (a hand-built request: Endpoint refuses CR and LF) is quoted in
    http.client's message; the attempt's error hides it."""
    with HttpServer(answer) as server, HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
        request = DeliveryRequest(
            server.url("/200"),
            b"{}",
            {"Authorization": f"Bearer {AUTHORIZATION}\n"},
            1.0,
            Endpoint(server.url("/200")),
            documented_flag_event(),
        )
        result = transport.send(request)
    assert result.status is None and result.error
    assert leaks(result.error) == [] and leaks(repr(result)) == [] and leaks(all_logs.text) == []


class _Indiscreet(Transport):
    """A custom transport that quotes everything it was given in its errors: raising, then returning."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, request: DeliveryRequest) -> AttemptResult:
        self.calls += 1
        quoted = f"{request.url} {dict(request.headers)} {request.endpoint.secret} {request.endpoint.previous_secrets}"
        if self.calls % 2:
            raise RuntimeError(f"could not deliver: {quoted}")
        return AttemptResult(None, f"gave up: {quoted}")


def test_custom_transport_errors_are_recorded_without_secrets(all_logs: pytest.LogCaptureFixture) -> None:
    """Whatever a custom transport's exception or error text quotes, the recorded error, the results' reprs and
    the log lines hold no signature, secret, header value or URL credential."""
    transport = _Indiscreet()
    with Webhooks(transport=transport, retry=RetryPolicy(attempts=2, backoff=0, jitter=0)) as webhooks:
        for endpoint in endpoints(8080)[:2]:
            webhooks.subscribe(endpoint, environment=23)
        results = webhooks.publish(documented_flag_event())
    assert transport.calls == 4 and not any(r.ok for r in results)
    errors = [attempt.error or "" for result in results for attempt in result.history]
    assert any(e.startswith("RuntimeError: could not deliver") for e in errors)
    assert any(e.startswith("gave up:") for e in errors)
    assert all("***" in e for e in errors)  # the quoted secrets were there, and were withheld
    texts = [*errors, *(repr(r) for r in results), all_logs.text]
    assert [(text, leaks(text)) for text in texts if leaks(text)] == []

"""The receiving end: verify_and_decode, and WebhookReceiver served by a real WSGI server on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import socket
import time
from typing import Any

import pytest

from cases import VARIANTS, vector_bytes
from flaghooks import (
    ConfigError,
    Endpoint,
    PayloadError,
    RetryPolicy,
    SignatureError,
    Signing,
    WebhookEvent,
    Webhooks,
    decode,
    encode,
    generate_secret,
    sign_flagsmith,
    sign_standard,
)
from flaghooks.receiver import FlagCache, WebhookReceiver, verify_and_decode
from flaghooks.transports import HttpTransport

SECRET = "flagsmith-secret"
STANDARD = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")


def standard_headers(
    body: bytes, *, msg_id: str = "msg_1", when: int | None = None, secret: str = STANDARD
) -> dict[str, str]:
    stamp = int(time.time()) if when is None else when
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(body, secret=secret, msg_id=msg_id, timestamp=stamp),
    }


class TestVerifyAndDecode:
    def test_flagsmith_signature(self) -> None:
        """With secret, a valid X-Flagsmith-Signature (any header case) is required."""
        event = verify_and_decode(BODY, {"X-Flagsmith-Signature": sign_flagsmith(BODY, SECRET)}, secret=SECRET)
        assert event == verify_and_decode(BODY, {"x-flagsmith-signature": sign_flagsmith(BODY, SECRET)}, secret=SECRET)
        with pytest.raises(SignatureError, match="missing x-flagsmith-signature"):
            verify_and_decode(BODY, {}, secret=SECRET)
        with pytest.raises(SignatureError, match="does not match"):
            verify_and_decode(BODY + b" ", {"X-Flagsmith-Signature": sign_flagsmith(BODY, SECRET)}, secret=SECRET)

    def test_standard_signature_and_id(self) -> None:
        """With standard_secrets, Standard Webhooks headers are required; the event id is webhook-id."""
        event = verify_and_decode(BODY, standard_headers(BODY, msg_id="msg_42"), standard_secrets=STANDARD)
        assert event.id == "msg_42"
        with pytest.raises(SignatureError, match="too old"):
            verify_and_decode(BODY, standard_headers(BODY, when=int(time.time()) - 600), standard_secrets=[STANDARD])
        verify_and_decode(
            BODY, standard_headers(BODY, when=int(time.time()) - 600), standard_secrets=STANDARD, tolerance=900
        )

    def test_both_required_together(self) -> None:
        """With both, both signatures are required."""
        headers = standard_headers(BODY)
        with pytest.raises(SignatureError, match="x-flagsmith-signature"):
            verify_and_decode(BODY, headers, secret=SECRET, standard_secrets=STANDARD)
        headers["X-Flagsmith-Signature"] = sign_flagsmith(BODY, SECRET)
        verify_and_decode(BODY, headers, secret=SECRET, standard_secrets=STANDARD)

    def test_unsigned(self) -> None:
        """Neither secret is a ConfigError unless allow_unsigned; then the id comes from the body."""
        with pytest.raises(ConfigError, match="allow_unsigned"):
            verify_and_decode(BODY, {})
        assert verify_and_decode(BODY, {}, allow_unsigned=True).id.startswith("evt_")

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"secret": ""}, "secret"),
            ({"standard_secrets": "nope"}, "standard_secrets"),
            ({"standard_secrets": []}, "standard_secrets"),
            ({"allow_unsigned": 1}, "allow_unsigned"),
        ],
    )
    def test_configuration(self, kwargs: dict[str, Any], words: str) -> None:
        """Bad configuration is a ConfigError, raised before the request is looked at."""
        with pytest.raises(ConfigError, match=words):
            verify_and_decode(BODY, {}, **kwargs)

    def test_bad_payload(self) -> None:
        """A correctly signed body that is not an event is a PayloadError."""
        body = b'{"event_type": "FLAG_UPDATED"}'
        with pytest.raises(PayloadError, match="data"):
            verify_and_decode(body, {"X-Flagsmith-Signature": sign_flagsmith(body, SECRET)}, secret=SECRET)
        with pytest.raises(PayloadError, match="raw bytes"):
            verify_and_decode(BODY.decode(), {}, allow_unsigned=True)  # type: ignore[arg-type]

    def test_bad_webhook_id(self) -> None:
        """A signed webhook-id the decoder cannot use is a PayloadError."""
        with pytest.raises(PayloadError) as info:
            verify_and_decode(BODY, standard_headers(BODY, msg_id="has space"), standard_secrets=STANDARD)
        assert info.value.path == "event_id"

    @pytest.mark.parametrize("headers", [{"X-Flagsmith-Signature": 5}, [("X-Flagsmith-Signature", None)]])
    def test_odd_header_values(self, headers: Any) -> None:
        """Header values that are not text are SignatureErrors, nothing else."""
        with pytest.raises(SignatureError):
            verify_and_decode(BODY, headers, secret=SECRET)

    def test_hostile_headers(self) -> None:
        """Even a mapping that raises while read gives a SignatureError."""

        class Hostile(dict[str, str]):
            def items(self):  # type: ignore[no-untyped-def,override]
                raise RuntimeError("no")

        with pytest.raises(SignatureError, match="cannot verify"):
            verify_and_decode(BODY, Hostile(), secret=SECRET)


def post(
    address: str, body: bytes | None, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection(address, timeout=5)
    try:
        connection.request(method, "/hook", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        connection.close()


def signed(body: bytes) -> dict[str, str]:
    return {"X-Flagsmith-Signature": sign_flagsmith(body, SECRET), **standard_headers(body)}


class TestWebhookReceiver:
    def receiver(self, **kwargs: Any) -> WebhookReceiver:
        kwargs.setdefault("secret", SECRET)
        kwargs.setdefault("standard_secrets", STANDARD)
        return WebhookReceiver(**kwargs)

    def test_accepts_and_caches(self, serve: Any) -> None:
        """A signed event is answered 200 after the cache and on_event have run."""
        seen: list[WebhookEvent] = []
        receiver = self.receiver(on_event=seen.append)
        address = serve(receiver)
        status, _, answer = post(address, BODY, signed(BODY))
        assert status == 200 and answer == {"duplicate": False, "event_id": "msg_1"}
        assert [e.id for e in seen] == ["msg_1"]
        assert receiver.cache.value(23, "feature_name") is None and receiver.cache.is_enabled(23, 2411)

    def test_duplicate_not_handled_twice(self, serve: Any) -> None:
        """An event id already accepted is answered 200 without running on_event again."""
        seen: list[WebhookEvent] = []
        address = serve(self.receiver(on_event=seen.append))
        assert post(address, BODY, signed(BODY))[0] == 200
        status, _, answer = post(address, BODY, signed(BODY))
        assert status == 200 and answer["duplicate"] is True and len(seen) == 1

    def test_method_not_allowed(self, serve: Any) -> None:
        """Only POST: anything else is 405 with Allow, and the cache is untouched."""
        receiver = self.receiver()
        for method in ("GET", "PUT"):
            status, headers, _ = post(serve(receiver), BODY, signed(BODY), method=method)
            assert status == 405 and headers["Allow"] == "POST"
        assert len(receiver.cache) == 0

    def test_length_required(self) -> None:
        """No Content-Length (a chunked body) is 411."""
        receiver = self.receiver()
        captured: list[str] = []
        environ = {"REQUEST_METHOD": "POST", "wsgi.input": None, "HTTP_TRANSFER_ENCODING": "chunked"}
        receiver(environ, lambda status, headers: captured.append(status))
        assert captured == ["411 Length Required"]

    def test_too_large_without_reading_it(self, serve: Any) -> None:
        """A body over the limit is 413, answered without waiting for (or reading) the body."""
        receiver = self.receiver(max_body_bytes=1000)
        address = serve(receiver)
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 100)
            answer = sock.recv(4096)  # arrives though only 100 of the announced 10**9 bytes were sent
        assert answer.startswith((b"HTTP/1.0 413", b"HTTP/1.1 413"))
        assert len(receiver.cache) == 0

    def test_tampered_body(self, serve: Any) -> None:
        """A tampered body is 401, and the cache is untouched."""
        receiver = self.receiver()
        headers = signed(BODY)
        status, _, answer = post(serve(receiver), BODY.replace(b"true", b"false"), headers)
        assert status == 401 and "error" in answer and len(receiver.cache) == 0
        assert headers["X-Flagsmith-Signature"] not in json.dumps(answer)

    def test_stale_timestamp(self, serve: Any) -> None:
        """A Standard Webhooks timestamp outside the tolerance is 401."""
        receiver = self.receiver(secret=None, tolerance=60)
        headers = standard_headers(BODY, when=int(time.time()) - 120)
        status, _, answer = post(serve(receiver), BODY, headers)
        assert status == 401 and "too old" in answer["error"] and len(receiver.cache) == 0

    def test_bad_payload(self, serve: Any) -> None:
        """A signed body that is not an event is 400, and the cache is untouched."""
        receiver = self.receiver()
        body = b'{"event_type": "FLAG_UPDATED", "data": {"new_state": 5}}'
        status, _, answer = post(serve(receiver), body, signed(body))
        assert status == 400 and "data" in answer["error"] and len(receiver.cache) == 0

    def test_handler_failure_is_500_and_retried(self, serve: Any) -> None:
        """on_event raising answers 500 (so the sender retries); the retry runs on_event again."""
        calls: list[str] = []

        def flaky(event: WebhookEvent) -> None:
            calls.append(event.id)
            if len(calls) == 1:
                raise RuntimeError("database down")

        address = serve(self.receiver(on_event=flaky))
        assert post(address, BODY, signed(BODY))[0] == 500
        assert post(address, BODY, signed(BODY))[0] == 200
        assert calls == ["msg_1", "msg_1"]

    def test_short_body(self) -> None:
        """A body shorter than its Content-Length is 400."""
        import io

        receiver = self.receiver()
        captured: list[str] = []
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "50", "wsgi.input": io.BytesIO(b"{}")}
        receiver(environ, lambda status, headers: captured.append(status))
        assert captured == ["400 Bad Request"]
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "x", "wsgi.input": io.BytesIO(b"{}")}
        receiver(environ, lambda status, headers: captured.append(status))
        assert captured[-1] == "400 Bad Request"

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"cache": {}}, "cache"),
            ({"on_event": 5}, "on_event"),
            ({"max_body_bytes": 0}, "max_body_bytes"),
            ({"secret": None, "standard_secrets": None}, "allow_unsigned"),
        ],
    )
    def test_configuration(self, kwargs: dict[str, Any], words: str) -> None:
        """Bad configuration is a ConfigError."""
        with pytest.raises(ConfigError, match=words):
            self.receiver(**kwargs)

    def test_repr_hides_secrets(self) -> None:
        """The repr says what is verified, never with what."""
        text = repr(self.receiver(cache=FlagCache()))
        assert SECRET not in text and STANDARD not in text and "flagsmith" in text


@pytest.mark.parametrize("fmt", ["classic", "modern"])
def test_end_to_end_with_webhooks(serve: Any, fmt: str) -> None:
    """Webhooks and HttpTransport deliver every variant to a WebhookReceiver, which verifies and caches them."""
    secret = generate_secret()
    receiver = WebhookReceiver(secret=secret, standard_secrets=secret)
    address = serve(receiver)
    with Webhooks(
        transport=HttpTransport(allowed_networks=["127.0.0.0/8"]),
        retry=RetryPolicy.never(),
        format=fmt,  # type: ignore[arg-type]
    ) as hooks:
        endpoint = Endpoint(f"http://{address}/hook", secret=secret, signing=Signing.BOTH)
        hooks.subscribe(endpoint, environment=23)
        hooks.subscribe(endpoint, organisation=7)
        events = [build() for build in VARIANTS.values()]
        results = [r for event in events for r in hooks.publish(event)]
    assert [r.ok for r in results] == [True] * len(VARIANTS)
    expected = FlagCache()
    for event in events:
        expected.apply(decode(encode(event, fmt), event_id=event.id))  # type: ignore[arg-type]
    assert receiver.cache.states() == expected.states() != []

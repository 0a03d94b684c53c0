"""receiver.handle(method, headers, body): the receiver for a framework's view, without a server."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import attrs
import pytest

from cases import vector_bytes
from flaghooks import generate_secret, sign_standard
from flaghooks.receiver import AsgiWebhookReceiver, WebhookReceiver, WebhookResponse

STANDARD = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")
JSON = ("Content-Type", "application/json")


def signed(msg_id: str = "msg_1", body: bytes = BODY) -> dict[str, str]:
    stamp = int(time.time())
    signature = sign_standard(body, secret=STANDARD, msg_id=msg_id, timestamp=stamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


@pytest.fixture(params=[WebhookReceiver, AsgiWebhookReceiver], ids=["wsgi", "asgi"])
def receiver(request: pytest.FixtureRequest) -> Any:
    """Both receivers offer handle(), with the same answers."""
    return request.param(standard_secrets=STANDARD, max_body_bytes=len(BODY))


def test_answers_a_genuine_event_then_its_duplicate(receiver: Any) -> None:
    """A genuine event is 200 with the JSON answer and Content-Type; the same event again is 200 duplicate."""
    assert receiver.handle("POST", signed(), BODY) == WebhookResponse(
        200, b'{"duplicate": false, "event_id": "msg_1"}', (JSON,)
    )
    assert json.loads(receiver.handle("POST", signed(), bytearray(BODY)).body)["duplicate"] is True


@pytest.mark.parametrize(
    "headers",
    [
        [(b"webhook-id", b"msg_1")],  # ASGI's raw pairs, signature missing
        {"Webhook-Signature": "v1,AAAA", "webhook-id": "m", "webhook-timestamp": str(int(time.time()))},
    ],
)
def test_refuses_unsigned(receiver: Any, headers: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A missing or wrong signature is 401, logged with the method (handle knows no path or client)."""
    with caplog.at_level(logging.WARNING, logger="flaghooks.receiver"):
        answer = receiver.handle("POST", headers, BODY)
    assert answer.status == 401 and answer.headers == (JSON,) and len(receiver.cache) == 0
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["rejected POST request"]


def test_method_and_size(receiver: Any) -> None:
    """Any method but POST is 405 with Allow: POST; a body over max_body_bytes is 413; neither is applied."""
    assert receiver.handle("GET", signed(), b"") == WebhookResponse(
        405, b'{"error": "only POST is accepted"}', (JSON, ("Allow", "POST"))
    )
    assert receiver.handle("post", signed(), BODY).status == 405  # methods are case-sensitive (RFC 9110)
    too_large = receiver.handle("POST", signed(body=BODY + b" "), BODY + b" ")
    assert too_large.status == 413 and str(receiver.max_body_bytes).encode() in too_large.body
    assert len(receiver.cache) == 0


def test_headers_object_that_fails_while_read_is_401(receiver: Any) -> None:
    """A headers object that raises while it is read makes the request unverifiable: 401, not a crash."""

    class Hostile(dict[str, str]):
        def items(self):  # type: ignore[no-untyped-def,override]
            raise RuntimeError("no")

    assert receiver.handle("POST", Hostile(), BODY).status == 401


@pytest.mark.parametrize(
    ("method", "headers", "body", "words"),
    [
        (b"POST", {}, BODY, "method must be a str"),
        ("POST", {}, BODY.decode(), "body must be the raw bytes"),
        ("POST", None, BODY, "headers must be"),
        ("POST", "x-flagsmith-signature: x", BODY, "headers must be"),
    ],
)
def test_wrong_argument_types(receiver: Any, method: Any, headers: Any, body: Any, words: str) -> None:
    """Arguments of the wrong type are a programming error (TypeError), never an answer."""
    with pytest.raises(TypeError, match=words):
        receiver.handle(method, headers, body)


def test_response_is_frozen() -> None:
    """WebhookResponse is a frozen record."""
    answer = WebhookResponse(200, b"{}", (JSON,))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        answer.status = 500  # type: ignore[misc]

"""A flag store that fails (StoreError from claim, apply or release): every receiver answers 503 with Retry-After,
logs it, gives the claim back when it can, and never answers 500 or leaves the event half-handled.

Each case runs through the three ways in: WebhookReceiver under wsgiref, AsgiWebhookReceiver under uvicorn, and
``receiver.handle`` as a framework's view calls it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from asgiserver import post, uvicorn_server
from cases import vector_bytes
from flaghooks import StoreError, WebhookEvent, generate_secret, sign_standard
from flaghooks.receiver import AsgiWebhookReceiver, FlagCache, WebhookReceiver

STANDARD = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")

Send = Callable[[str], tuple[int, Mapping[str, str], Any]]


class FailingCache(FlagCache):
    """A FlagCache whose store fails in the named operations while ``down`` is set (as Redis going away would)."""

    def __init__(self, *failing: str) -> None:
        super().__init__()
        self.failing = set(failing)
        self.down = True

    def _fail(self, operation: str) -> None:
        if self.down and operation in self.failing:
            raise StoreError(f"flag store unavailable: {operation} refused (test)")

    def claim(self, event_id: str) -> bool | None:
        self._fail("claim")
        return super().claim(event_id)

    def apply(self, event: WebhookEvent) -> bool:
        self._fail("apply")
        return super().apply(event)

    def release(self, event_id: str, *, handled: bool) -> None:
        self._fail("release")
        super().release(event_id, handled=handled)


def headers_for(msg_id: str) -> dict[str, str]:
    stamp = int(time.time())
    signature = sign_standard(BODY, secret=STANDARD, msg_id=msg_id, timestamp=stamp)
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


@contextmanager
def front(
    kind: str, cache: FlagCache, on_event: Callable[[WebhookEvent], None], serve: Callable[[Any], str]
) -> Iterator[Send]:
    """A receiver of ``kind`` on ``cache`` (``serve``: conftest's wsgiref fixture); yields send(msg_id) ->
    (status, headers, JSON answer)."""
    if kind == "handle":
        receiver = WebhookReceiver(standard_secrets=STANDARD, cache=cache, on_event=on_event)

        def send(msg_id: str) -> tuple[int, Mapping[str, str], Any]:
            response = receiver.handle("POST", headers_for(msg_id), BODY)
            return response.status, dict(response.headers), json.loads(response.body)

        yield send
        return
    if kind == "wsgi":
        address = serve(WebhookReceiver(standard_secrets=STANDARD, cache=cache, on_event=on_event))
        yield lambda msg_id: post(f"http://{address}/hook", BODY, headers_for(msg_id))
        return
    receiver_asgi = AsgiWebhookReceiver(standard_secrets=STANDARD, cache=cache, on_event=on_event)
    with uvicorn_server(receiver_asgi) as url:
        yield lambda msg_id: post(url + "/hook", BODY, headers_for(msg_id))


KINDS = ["wsgi", "asgi", "handle"]


def assert_store_503(status: int, headers: Mapping[str, str], answer: Any) -> None:
    assert status == 503 and headers["Retry-After"] == "5" and headers["Content-Type"] == "application/json"
    assert "store is unavailable" in answer["error"] and "refused (test)" not in answer["error"]


@pytest.mark.parametrize("kind", KINDS)
def test_apply_failing_is_503_and_the_retry_is_handled(kind: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """apply raising StoreError: 503 + Retry-After: 5, logged, on_event not run, the claim given back: once the
    store is back, the sender's retry is handled (on_event once) and a further copy is a duplicate."""
    cache = FailingCache("apply")
    seen: list[str] = []
    with (
        caplog.at_level(logging.ERROR, logger="flaghooks.receiver"),
        front(kind, cache, lambda e: seen.append(e.id), serve) as send,
    ):
        assert_store_503(*send("msg_a"))
        assert len(cache) == 0 and seen == []
        cache.down = False
        assert send("msg_a")[2] == {"duplicate": False, "event_id": "msg_a"}
        assert send("msg_a")[2] == {"duplicate": True, "event_id": "msg_a"}
    assert seen == ["msg_a"] and len(cache) == 1
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1 and "503" in logged[0].getMessage() and "msg_a" in logged[0].getMessage()


@pytest.mark.parametrize("kind", KINDS)
def test_claim_failing_is_503(kind: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """claim raising StoreError: 503 + Retry-After, nothing applied, on_event not run; handled once the store is
    back."""
    cache = FailingCache("claim")
    seen: list[str] = []
    with (
        caplog.at_level(logging.ERROR, logger="flaghooks.receiver"),
        front(kind, cache, lambda e: seen.append(e.id), serve) as send,
    ):
        assert_store_503(*send("msg_b"))
        assert len(cache) == 0 and seen == []
        cache.down = False
        assert send("msg_b")[0] == 200
    assert seen == ["msg_b"]
    assert any("claiming" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@pytest.mark.parametrize("kind", KINDS)
def test_apply_and_release_failing_is_503(kind: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """apply and then release failing: still 503 (never 500), and both failures are logged; the claim stays
    until its lease expires."""
    cache = FailingCache("apply", "release")
    seen: list[str] = []
    with (
        caplog.at_level(logging.ERROR, logger="flaghooks.receiver"),
        front(kind, cache, lambda e: seen.append(e.id), serve) as send,
    ):
        assert_store_503(*send("msg_c"))
    assert len(cache) == 0 and seen == []
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(messages) == 2 and "lease" in messages[1]


@pytest.mark.parametrize("kind", KINDS)
def test_release_failing_after_success_is_200(kind: str, serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Only the release failing, after the event was applied and on_event ran: 200 (a 503 would have the sender
    retry, and run on_event again once the claim expires), logged as an error."""
    cache = FailingCache("release")
    seen: list[str] = []
    with (
        caplog.at_level(logging.ERROR, logger="flaghooks.receiver"),
        front(kind, cache, lambda e: seen.append(e.id), serve) as send,
    ):
        status, _, answer = send("msg_d")
    assert status == 200 and answer == {"duplicate": False, "event_id": "msg_d"}
    assert seen == ["msg_d"] and len(cache) == 1
    assert any("as handled failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", KINDS)
def test_on_event_raising_store_error_is_503(kind: str, serve: Any) -> None:
    """on_event raising StoreError (it read the same unavailable store) is 503 too, and the retry runs it again."""
    calls: list[str] = []

    def on_event(event: WebhookEvent) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise StoreError("flag store unavailable (test)")

    with front(kind, FlagCache(), on_event, serve) as send:
        assert_store_503(*send("msg_e"))
        assert send("msg_e")[2] == {"duplicate": False, "event_id": "msg_e"}
    assert calls == ["msg_e", "msg_e"]

"""AsgiWebhookReceiver under uvicorn on 127.0.0.1 (urllib3 as the client), mounted in Starlette, and at the ASGI
level for what a server rarely sends (lifespan, websocket, other scope types, a client going away)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3

from asgiserver import post, raw_exchange, uvicorn_server
from cases import vector_bytes
from flaghooks import ConfigError, WebhookEvent, generate_secret, sign_flagsmith, sign_standard
from flaghooks.receiver import AsgiWebhookReceiver, FlagCache, WebhookReceiver

SECRET = "flagsmith-secret"
STANDARD = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")


def signed(body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    stamp = int(time.time())
    return {
        "X-Flagsmith-Signature": sign_flagsmith(body, SECRET),
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(body, secret=STANDARD, msg_id=msg_id, timestamp=stamp),
    }


class Recorder:
    """An on_event that records events (from worker threads) and can hold the first call until released."""

    def __init__(self, *, hold: bool = False) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, event: WebhookEvent) -> None:
        with self.lock:
            self.calls.append(event.id)
            first = len(self.calls) == 1
        if first:
            self.entered.set()
            assert self.release.wait(10), "the test never released the first call"


@pytest.fixture
def served() -> Iterator[tuple[AsgiWebhookReceiver, Recorder, str]]:
    """An AsgiWebhookReceiver (max_body_bytes=4000) under uvicorn: (receiver, its on_event, the hook's URL)."""
    recorder = Recorder()
    receiver = AsgiWebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=recorder, max_body_bytes=4000)
    with uvicorn_server(receiver) as url:
        yield receiver, recorder, url + "/hook"


class TestUnderUvicorn:
    def test_genuine_delivery_is_cached(self, served: Any) -> None:
        """A genuine delivery is answered 200 once the cache holds it and on_event ran."""
        receiver, recorder, url = served
        status, headers, answer = post(url, BODY, signed(BODY))
        assert status == 200 and answer == {"duplicate": False, "event_id": "msg_1"}
        assert headers["Content-Type"] == "application/json"
        assert recorder.calls == ["msg_1"] and receiver.cache.is_enabled(23, 2411)

    def test_tampered_is_401(self, served: Any) -> None:
        """A tampered body is 401; the cache and on_event are untouched."""
        receiver, recorder, url = served
        headers = signed(BODY)
        status, _, answer = post(url, BODY.replace(b"true", b"false"), headers)
        assert status == 401 and "error" in answer and headers["webhook-signature"] not in str(answer)
        assert len(receiver.cache) == 0 and recorder.calls == []

    def test_duplicates_update_the_cache_once(self, served: Any) -> None:
        """Three copies of one event: on_event runs once, the copies are answered 200 duplicate."""
        receiver, recorder, url = served
        answers = [post(url, BODY, signed(BODY, "msg_dup")) for _ in range(3)]
        assert [a[2]["duplicate"] for a in answers] == [False, True, True]
        assert recorder.calls == ["msg_dup"] and len(receiver.cache) == 1

    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
    def test_wrong_method_is_405(self, served: Any, method: str) -> None:
        """Any method but POST is 405 with Allow: POST."""
        receiver, _, url = served
        status, headers, answer = post(url, BODY, signed(BODY), method=method)
        assert status == 405 and headers["Allow"] == "POST" and "POST" in answer["error"]
        assert len(receiver.cache) == 0

    def test_oversized_is_413_without_reading_the_body(self, served: Any) -> None:
        """A Content-Length over the limit is 413, answered although the body never comes."""
        receiver, _, url = served
        answer = raw_exchange(url, b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 100)
        assert answer.startswith(b"HTTP/1.1 413") and b"over 4000 bytes" in answer
        assert len(receiver.cache) == 0

    def test_chunked_over_the_limit_is_413_as_it_arrives(self, served: Any) -> None:
        """A chunked body is counted as it arrives: 413 once it passes the limit, before its end is sent."""
        _, recorder, url = served
        chunk = b"x" * 3000
        request = b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        request += (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2  # 6000 bytes, and no final chunk
        answer = raw_exchange(url, request)
        assert answer.startswith(b"HTTP/1.1 413") and recorder.calls == []

    def test_chunked_within_the_limit_is_read(self, served: Any) -> None:
        """A genuine delivery sent chunked (no Content-Length) is read whole and handled."""
        _, recorder, url = served
        chunks = iter([BODY[:100], BODY[100:400], BODY[400:]])
        status, _, answer = post(url, chunks, signed(BODY, "msg_chunked"), chunked=True)
        assert status == 200 and answer["event_id"] == "msg_chunked" and recorder.calls == ["msg_chunked"]

    @pytest.mark.parametrize("length", ["-1", "0x10", "²", "1" * 5000])
    def test_bad_content_length(self, served: Any, length: str) -> None:
        """A Content-Length that is not ASCII digits is refused: uvicorn (h11) answers 400 itself, or, for one it
        lets through, the receiver does (400, or 413 for thousands of digits)."""
        receiver, _, url = served
        answer = raw_exchange(
            url, b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: " + length.encode() + b"\r\n\r\n{}"
        )
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")) and len(receiver.cache) == 0

    def test_concurrent_copies_one_handled(self) -> None:
        """8 copies of one event at once: on_event runs once, the others get 503 + Retry-After: 1 while it runs,
        and a later copy 200 duplicate."""
        recorder = Recorder(hold=True)
        receiver = AsgiWebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=recorder)
        headers = signed(BODY, "msg_many")
        answers: list[tuple[int, dict[str, str], Any]] = []
        answered = threading.Condition()
        start = threading.Barrier(8)

        def send(url: str) -> None:
            start.wait(10)
            answer = post(url, BODY, headers)
            with answered:
                answers.append(answer)
                answered.notify_all()

        with uvicorn_server(receiver) as base:
            threads = [threading.Thread(target=send, args=(base + "/hook",)) for _ in range(8)]
            for thread in threads:
                thread.start()
            with answered:  # the seven other copies are answered while the first is still being handled
                assert answered.wait_for(lambda: len(answers) == 7, timeout=10)
            recorder.release.set()
            for thread in threads:
                thread.join(10)
            later = post(base + "/hook", BODY, headers)
        assert sorted(status for status, _, _ in answers) == [200] + [503] * 7
        assert all(h["Retry-After"] == "1" for status, h, _ in answers if status == 503)
        assert recorder.calls == ["msg_many"] and later[2] == {"duplicate": True, "event_id": "msg_many"}

    def test_event_loop_stays_free_while_on_event_blocks(self) -> None:
        """on_event runs in a worker thread: while one blocks, the server still answers other requests."""
        recorder = Recorder(hold=True)
        receiver = AsgiWebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=recorder)
        with uvicorn_server(receiver) as base:
            first: list[int] = []
            sender = threading.Thread(target=lambda: first.append(post(base + "/h", BODY, signed(BODY, "a"))[0]))
            sender.start()
            assert recorder.entered.wait(10)
            assert post(base + "/h", BODY, signed(BODY, "a"))[0] == 503  # answered while the first is held
            assert post(base + "/h", BODY, method="GET", headers={})[0] == 405
            recorder.release.set()
            sender.join(10)
        assert first == [200]

    def test_rejections_are_logged_with_path_and_client(self, served: Any, caplog: pytest.LogCaptureFixture) -> None:
        """A rejection is logged at WARNING on flaghooks.receiver with the method, path and client address."""
        _, _, url = served
        with caplog.at_level(logging.WARNING, logger="flaghooks.receiver"):
            post(url, BODY, {})
        messages = [r.getMessage() for r in caplog.records if r.name == "flaghooks.receiver"]
        assert any("POST /hook from 127.0.0.1: 401" in m for m in messages), messages


def test_mounted_in_starlette() -> None:
    """Mounted under /hooks in a Starlette app (which runs the lifespan itself), beside the app's own routes."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    recorder = Recorder()
    receiver = AsgiWebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=recorder)

    async def flag(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        return JSONResponse({"enabled": receiver.cache.is_enabled(23, name)})

    app = Starlette(routes=[Route("/flags/{name}", flag), Mount("/hooks", app=receiver)])
    with uvicorn_server(app) as base:
        status, _, answer = post(base + "/hooks/flagsmith", BODY, signed(BODY, "m1"))
        assert status == 200 and answer == {"duplicate": False, "event_id": "m1"}
        assert post(base + "/hooks/flagsmith", BODY, signed(BODY, "m1"))[2]["duplicate"] is True
        tampered = post(base + "/hooks/flagsmith", BODY + b" ", signed(BODY, "m2"))
        assert tampered[0] == 401
        with urllib3.PoolManager() as http:
            assert http.request("GET", base + "/flags/feature_name").json() == {"enabled": True}
    assert recorder.calls == ["m1"]


# --- at the ASGI level ---------------------------------------------------------------------------------------


def run(receiver: AsgiWebhookReceiver, scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Call the application with ``incoming`` as what it receives; the messages it sent."""
    sent: list[dict[str, Any]] = []
    queue = list(incoming)

    async def receive() -> dict[str, Any]:
        assert queue, "the application asked for more than the client sent"
        return queue.pop(0)

    async def send(message: Any) -> None:
        sent.append(dict(message))

    asyncio.run(receiver(scope, receive, send))
    return sent


def http_scope(headers: list[tuple[bytes, bytes]], method: str = "POST") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": "/hook", "headers": headers, "client": ("10.0.0.7", 5000)}


def asgi_headers(body: bytes, headers: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    """ASGI's raw header pairs for ``body``: its length and ``headers`` (by default, genuine signatures)."""
    pairs = [(name.lower().encode(), value.encode()) for name, value in (headers or signed(body)).items()]
    return [(b"content-length", str(len(body)).encode()), *pairs]


class TestAsgiProtocol:
    def receiver(self, **kwargs: Any) -> AsgiWebhookReceiver:
        return AsgiWebhookReceiver(secret=SECRET, standard_secrets=STANDARD, **kwargs)

    def test_lifespan_is_answered(self) -> None:
        """The lifespan protocol is answered: startup complete, then shutdown complete, and the call returns."""
        sent = run(self.receiver(), {"type": "lifespan"}, [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    def test_websocket_is_refused(self, caplog: pytest.LogCaptureFixture) -> None:
        """A WebSocket connection is closed before it is accepted (the server answers 403), and logged."""
        scope = {"type": "websocket", "path": "/hook", "client": ("10.0.0.7", 1), "headers": []}
        with caplog.at_level(logging.WARNING, logger="flaghooks.receiver"):
            sent = run(self.receiver(), scope, [{"type": "websocket.connect"}])
        assert [m["type"] for m in sent] == ["websocket.close"]
        assert any("websocket /hook from 10.0.0.7: 403" in r.getMessage() for r in caplog.records)

    def test_unknown_scope_type_raises(self) -> None:
        """A scope type it does not serve raises, as ASGI asks of an application that does not support it."""
        with pytest.raises(ConfigError, match="'webtransport'"):
            run(self.receiver(), {"type": "webtransport"}, [])

    def test_body_in_many_messages(self) -> None:
        """A body that arrives in several http.request messages is joined before it is verified."""
        recorder = Recorder()
        receiver = self.receiver(on_event=recorder)
        parts = [BODY[:10], b"", BODY[10:500], BODY[500:]]
        incoming = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
        incoming[-1]["more_body"] = False
        sent = run(receiver, http_scope(asgi_headers(BODY)), incoming)
        assert sent[0]["status"] == 200 and recorder.calls == ["msg_1"]
        assert (b"content-length", str(len(sent[1]["body"])).encode()) in sent[0]["headers"]

    def test_client_gone_before_the_body_is_complete(self, caplog: pytest.LogCaptureFixture) -> None:
        """A client that disconnects mid-body gets no answer (nobody to read it), nothing is applied, and it is
        logged."""
        recorder = Recorder()
        receiver = self.receiver(on_event=recorder)
        incoming = [{"type": "http.request", "body": BODY[:50], "more_body": True}, {"type": "http.disconnect"}]
        with caplog.at_level(logging.WARNING, logger="flaghooks.receiver"):
            sent = run(receiver, http_scope(asgi_headers(BODY)), incoming)
        assert sent == [] and recorder.calls == [] and len(receiver.cache) == 0
        assert any("disconnected" in r.getMessage() for r in caplog.records)

    def test_body_shorter_than_its_length(self) -> None:
        """A body that ends before its Content-Length says is 400 (a server would normally catch it first)."""
        incoming = [{"type": "http.request", "body": BODY[:50], "more_body": False}]
        sent = run(self.receiver(), http_scope(asgi_headers(BODY)), incoming)
        assert sent[0]["status"] == 400

    def test_same_answers_as_the_wsgi_receiver(self) -> None:
        """For the same request both receivers answer the same status and body (here: handled, duplicate, 401)."""
        from test_receiver_delivery import call, environ_for

        asgi, wsgi = self.receiver(), WebhookReceiver(secret=SECRET, standard_secrets=STANDARD)
        for body in (BODY, BODY, BODY + b" "):
            headers = signed(BODY, "msg_same")
            sent = run(asgi, http_scope(asgi_headers(body, headers)), [{"type": "http.request", "body": body}])
            status, _, answer = call(wsgi, environ_for(body, headers))
            assert f"{sent[0]['status']} " == status[:4] and json.loads(sent[1]["body"]) == answer

    def test_async_on_event_is_refused(self) -> None:
        """on_event runs in a worker thread, so a coroutine function (or async __call__) is a ConfigError."""

        async def handler(event: WebhookEvent) -> None:
            pass

        class Handler:
            async def __call__(self, event: WebhookEvent) -> None:
                pass

        for on_event in (handler, Handler()):
            with pytest.raises(ConfigError, match="not async"):
                self.receiver(on_event=on_event)
            with pytest.raises(ConfigError, match="not async"):
                WebhookReceiver(secret=SECRET, on_event=on_event)

    def test_repr_names_the_class(self) -> None:
        """The repr names the class and what is verified, never with what."""
        text = repr(self.receiver(cache=FlagCache()))
        assert text.startswith("AsgiWebhookReceiver(") and SECRET not in text and STANDARD not in text

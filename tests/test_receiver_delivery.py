"""WebhookReceiver under what real deliveries do: chunked bodies, odd lengths, concurrent copies, replays, new types.

Servers are real and on 127.0.0.1: wsgiref's, and werkzeug's threaded development server (which decodes chunked
bodies and sets ``wsgi.input_terminated``, as gunicorn does).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import cases
from cases import VARIANTS, vector_bytes
from flaghooks import WebhookEvent, decode, encode, generate_secret, sign_flagsmith, sign_standard
from flaghooks.receiver import FlagCache, WebhookReceiver

SECRET = "flagsmith-secret"
STANDARD = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")

Post = Callable[..., tuple[int, dict[str, str], Any]]


@pytest.fixture
def serve_threaded() -> Iterator[Callable[[Any], str]]:
    """Serve an app with werkzeug's threaded server (a thread per request, chunked bodies decoded)."""
    from werkzeug.serving import WSGIRequestHandler as WerkzeugHandler
    from werkzeug.serving import make_server as werkzeug_server

    class Quiet(WerkzeugHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            pass

    servers = []

    def start(app: Any) -> str:
        server = werkzeug_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def post(address: str, body: Any, headers: dict[str, str], *, chunked: bool = False) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection(address, timeout=10)
    try:
        connection.request("POST", "/hook", body=body, headers=headers, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        connection.close()


def flagsmith_signed(body: bytes, msg_id: str | None = None) -> dict[str, str]:
    """What Flagsmith sends: the Flagsmith signature only; optionally a webhook-id nothing signs."""
    headers = {"X-Flagsmith-Signature": sign_flagsmith(body, SECRET)}
    if msg_id is not None:
        headers["webhook-id"] = msg_id
    return headers


def both_signed(body: bytes, msg_id: str = "msg_1") -> dict[str, str]:
    stamp = int(time.time())
    return {
        "X-Flagsmith-Signature": sign_flagsmith(body, SECRET),
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(body, secret=STANDARD, msg_id=msg_id, timestamp=stamp),
    }


def call(receiver: WebhookReceiver, environ: dict[str, Any]) -> tuple[str, dict[str, str], Any]:
    """Call the WSGI app directly with a hand-built environ; (status line, headers, decoded answer)."""
    captured: list[Any] = []
    environ.setdefault("REQUEST_METHOD", "POST")
    answer = b"".join(receiver(environ, lambda status, headers: captured.extend([status, dict(headers)])))
    return captured[0], captured[1], json.loads(answer)


def environ_for(body: bytes, headers: dict[str, str], **extra: Any) -> dict[str, Any]:
    environ: dict[str, Any] = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()})
    environ.update(extra)
    return environ


# --- chunked bodies and lengths (issue 7 s3 item 8, issue 8 item 12) ---------------------------------------


class TestBodies:
    def test_chunked_body_through_a_server_that_decodes_it(self, serve_threaded: Any) -> None:
        """A chunked body is read when the server decoded it (wsgi.input_terminated): 200, not 411."""
        seen: list[WebhookEvent] = []
        receiver = WebhookReceiver(secret=SECRET, on_event=seen.append)
        chunks = iter([BODY[:100], BODY[100:250], BODY[250:]])
        status, _, answer = post(serve_threaded(receiver), chunks, flagsmith_signed(BODY), chunked=True)
        assert status == 200 and answer["duplicate"] is False
        assert [event.data for event in seen] == [decode(BODY).data]

    def test_chunked_body_over_the_limit(self, serve_threaded: Any) -> None:
        """A chunked body over max_body_bytes is 413: the limit holds without a Content-Length."""
        receiver = WebhookReceiver(secret=SECRET, max_body_bytes=len(BODY) - 1)
        chunks = iter([BODY[:100], BODY[100:]])
        status, _, answer = post(serve_threaded(receiver), chunks, flagsmith_signed(BODY), chunked=True)
        assert status == 413 and "over" in answer["error"] and len(receiver.cache) == 0

    def test_chunked_body_exactly_at_the_limit(self) -> None:
        """A decoded body of exactly max_body_bytes is accepted; one byte more is 413."""
        receiver = WebhookReceiver(secret=SECRET, max_body_bytes=len(BODY))
        environ = environ_for(BODY, flagsmith_signed(BODY), **{"wsgi.input_terminated": True})
        del environ["CONTENT_LENGTH"]
        assert call(receiver, environ)[0] == "200 OK"
        environ = environ_for(BODY + b" ", flagsmith_signed(BODY + b" "), **{"wsgi.input_terminated": True})
        del environ["CONTENT_LENGTH"]
        assert call(receiver, environ)[0] == "413 Content Too Large"

    def test_reads_at_most_one_byte_past_the_limit(self) -> None:
        """An endless decoded body is not read to its end: at most max_body_bytes + 1 bytes are taken."""

        class Endless(io.RawIOBase):
            taken = 0

            def readable(self) -> bool:
                return True

            def read(self, size: int = -1) -> bytes:
                assert size > 0, "the receiver must ask for a bounded amount"
                self.taken += size
                return b"x" * size

        stream = Endless()
        receiver = WebhookReceiver(secret=SECRET, max_body_bytes=100_000)
        environ = {"wsgi.input": stream, "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
        assert call(receiver, environ)[0] == "413 Content Too Large"
        assert stream.taken == 100_001

    def test_length_that_is_not_text_is_400(self) -> None:
        """A server handing a CONTENT_LENGTH that is not a str (against PEP 3333) gets 400, not a crash."""
        receiver = WebhookReceiver(secret=SECRET)
        assert (
            call(receiver, environ_for(BODY, flagsmith_signed(BODY), CONTENT_LENGTH=len(BODY)))[0] == "400 Bad Request"
        )

    def test_unknown_length_is_411(self) -> None:
        """Without Content-Length and without a server that ends the stream, the length cannot be known: 411."""
        receiver = WebhookReceiver(secret=SECRET)
        environ = {"wsgi.input": io.BytesIO(BODY), "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": False}
        assert call(receiver, environ)[0] == "411 Length Required"

    @pytest.mark.parametrize(
        "length",
        [
            "\N{SUPERSCRIPT TWO}",  # isdigit() is true, int() raises
            "".join(chr(0x0660 + int(d)) for d in str(len(BODY))),  # Arabic-Indic digits: int() would accept them
            "1\N{SUPERSCRIPT TWO}",
            "-1",
            "+5",
            "1_0",
            "0x10",
        ],
        ids=["superscript", "arabic-indic", "mixed", "negative", "plus", "underscore", "hex"],
    )
    def test_non_ascii_digit_length_is_400(self, length: str) -> None:
        """Any Content-Length that is not ASCII digits is 400, never a 500 or a body read by another reading."""
        receiver = WebhookReceiver(secret=SECRET)
        status, _, answer = call(receiver, environ_for(BODY, flagsmith_signed(BODY), CONTENT_LENGTH=length))
        assert status == "400 Bad Request" and answer == {"error": "invalid Content-Length"}
        assert len(receiver.cache) == 0

    @pytest.mark.parametrize(
        ("length", "status"),
        [
            ("9" * 4301, "413 Content Too Large"),  # int() refuses over 4,300 digits
            ("9" * 100_000, "413 Content Too Large"),
            ("0" * 5000 + str(len(BODY)), "200 OK"),  # leading zeros: the length it says
            ("0" * 5000 + "1048577", "413 Content Too Large"),
        ],
        ids=["4301-digits", "100k-digits", "leading-zeros", "zeros-then-over"],
    )
    def test_very_long_length(self, length: str, status: str) -> None:
        """A Content-Length of thousands of digits is judged by its value without int() of the whole text (which
        raises past 4,300 digits): over the limit is 413, a small value behind zeros is read as itself."""
        receiver = WebhookReceiver(secret=SECRET)
        assert call(receiver, environ_for(BODY, flagsmith_signed(BODY), CONTENT_LENGTH=length))[0] == status

    def test_superscript_length_through_a_server(self, serve: Any) -> None:
        """A "Content-Length: \N{SUPERSCRIPT TWO}" sent to a real server is answered 400, and the server goes on."""
        receiver = WebhookReceiver(secret=SECRET)
        address = serve(receiver)
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            # The length header's value is the single byte 0xB2, which HTTP's Latin-1 header text reads as "²".
            sock.sendall(b"POST /hook HTTP/1.0\r\nHost: x\r\nContent-Length: \xb2\r\n\r\nxx")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")) and b"invalid Content-Length" in answer
        assert post(address, BODY, flagsmith_signed(BODY))[0] == 200


# --- atomic de-duplication (issue 8 item 4) ---------------------------------------------------------------


class Gate:
    """An on_event that counts its calls and holds the first one until released (later ones pass at once)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, event: WebhookEvent) -> None:
        with self.lock:
            self.calls.append(event.id)
            first = len(self.calls) == 1
        if first:
            self.entered.set()
            assert self.release.wait(10), "the test never released the first call"


class TestConcurrentCopies:
    def test_eight_concurrent_copies_run_on_event_once(self, serve_threaded: Any) -> None:
        """8 copies of one delivery at once: on_event runs once; the others are told 503 + Retry-After: 1."""
        gate = Gate()
        address = serve_threaded(WebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=gate))
        headers = both_signed(BODY, "msg_dup")
        start = threading.Barrier(8)
        answers: list[tuple[int, dict[str, str], Any]] = []
        answered = threading.Condition()

        def send() -> None:
            start.wait(10)
            answer = post(address, BODY, headers)
            with answered:
                answers.append(answer)
                answered.notify_all()

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        with answered:  # the 7 copies that are not being handled are answered while the first still runs
            assert answered.wait_for(lambda: len(answers) == 7, timeout=10)
        gate.release.set()
        for thread in threads:
            thread.join(10)
        assert gate.calls == ["msg_dup"]
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [200] + [503] * 7
        for status, response_headers, answer in answers:
            if status == 503:
                assert response_headers["Retry-After"] == "1" and answer["event_id"] == "msg_dup"
        assert post(address, BODY, headers)[2] == {"duplicate": True, "event_id": "msg_dup"}

    def test_retry_during_a_slow_handler_does_not_run_it_twice(self, serve_threaded: Any) -> None:
        """A sender that gave up on a slow handler and retries gets 503 meanwhile, and 200 duplicate after."""
        gate = Gate()
        receiver = WebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=gate)
        address = serve_threaded(receiver)
        headers = both_signed(BODY, "msg_slow")
        first: list[int] = []
        sender = threading.Thread(target=lambda: first.append(post(address, BODY, headers)[0]))
        sender.start()
        assert gate.entered.wait(10)
        status, response_headers, _ = post(address, BODY, headers)  # the retry, while the first still runs
        assert status == 503 and response_headers["Retry-After"] == "1"
        gate.release.set()
        sender.join(10)
        assert first == [200]
        assert post(address, BODY, headers)[2] == {"duplicate": True, "event_id": "msg_slow"}
        assert gate.calls == ["msg_slow"]

    def test_failed_handler_releases_the_claim(self, serve_threaded: Any) -> None:
        """on_event failing answers 500 and frees the id: the retry runs on_event again and succeeds, once."""
        calls: list[str] = []

        def flaky(event: WebhookEvent) -> None:
            calls.append(event.id)
            if len(calls) == 1:
                raise RuntimeError("database down")

        address = serve_threaded(WebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=flaky))
        headers = both_signed(BODY, "msg_flaky")
        assert post(address, BODY, headers)[0] == 500
        assert post(address, BODY, headers)[2] == {"duplicate": False, "event_id": "msg_flaky"}
        assert post(address, BODY, headers)[2] == {"duplicate": True, "event_id": "msg_flaky"}
        assert calls == ["msg_flaky", "msg_flaky"]

    def test_remembers_a_bounded_number_of_ids(self) -> None:
        """Only the newest handled ids are remembered: past the bound, the oldest is forgotten first."""

        class Small(FlagCache):
            _REMEMBERED_IDS = 2

        seen: list[str] = []
        receiver = WebhookReceiver(
            secret=SECRET, standard_secrets=STANDARD, cache=Small(), on_event=lambda event: seen.append(event.id)
        )
        for msg_id in ["m1", "m2", "m2", "m3", "m3", "m1"]:
            assert call(receiver, environ_for(BODY, both_signed(BODY, msg_id)))[0] == "200 OK"
        assert seen == ["m1", "m2", "m3", "m1"]

    def test_handler_interrupted_releases_the_claim(self) -> None:
        """Even an exception that is not an Exception (KeyboardInterrupt) leaves the id free for a retry."""
        calls: list[str] = []

        def interrupted(event: WebhookEvent) -> None:
            calls.append(event.id)
            if len(calls) == 1:
                raise KeyboardInterrupt

        receiver = WebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=interrupted)
        headers = both_signed(BODY, "msg_int")
        with pytest.raises(KeyboardInterrupt):
            call(receiver, environ_for(BODY, headers))
        assert call(receiver, environ_for(BODY, headers))[2] == {"duplicate": False, "event_id": "msg_int"}


# --- replays when only the Flagsmith signature is checked (issue 8 item 5) -----------------------------------


class TestUnsignedWebhookId:
    def test_replay_under_new_ids_runs_on_event_once(self, serve: Any) -> None:
        """A captured Flagsmith-signed body replayed under new webhook-ids is one event: on_event runs once."""
        seen: list[WebhookEvent] = []
        address = serve(WebhookReceiver(secret=SECRET, on_event=seen.append))
        answers = [post(address, BODY, flagsmith_signed(BODY, f"replay_{n}")) for n in range(5)]
        assert [status for status, _, _ in answers] == [200] * 5
        assert [answer["duplicate"] for _, _, answer in answers] == [False, True, True, True, True]
        assert len(seen) == 1 and seen[0].id == decode(BODY).id  # the id the body's digest gives

    def test_replays_cannot_use_up_the_ids_of_later_events(self) -> None:
        """3,000 replays under predicted ids do not make a later genuine event be dropped as a duplicate."""
        seen: list[WebhookEvent] = []
        receiver = WebhookReceiver(secret=SECRET, on_event=seen.append)
        predicted = [f"evt_next_{n}" for n in range(3000)]
        for msg_id in predicted:
            status, _, _ = call(receiver, environ_for(BODY, flagsmith_signed(BODY, msg_id)))
            assert status == "200 OK"
        genuine = encode(VARIANTS["environment_state_updated"](), "classic")  # "kill switch": a new event
        status, _, answer = call(receiver, environ_for(genuine, flagsmith_signed(genuine, predicted[1234])))
        assert status == "200 OK" and answer["duplicate"] is False
        assert [event.id for event in seen] == [decode(BODY).id, decode(genuine).id]

    def test_signed_webhook_id_is_the_event_id(self) -> None:
        """With Standard Webhooks verified, webhook-id is signed and is the event id, as before."""
        seen: list[WebhookEvent] = []
        receiver = WebhookReceiver(secret=SECRET, standard_secrets=STANDARD, on_event=seen.append)
        assert call(receiver, environ_for(BODY, both_signed(BODY, "msg_a")))[2]["event_id"] == "msg_a"
        assert call(receiver, environ_for(BODY, both_signed(BODY, "msg_b")))[2]["event_id"] == "msg_b"
        assert [event.id for event in seen] == ["msg_a", "msg_b"]

    def test_unsigned_receiver_ignores_webhook_id(self) -> None:
        """allow_unsigned verifies nothing, so webhook-id is not trusted there either."""
        receiver = WebhookReceiver(allow_unsigned=True)
        status, _, answer = call(receiver, environ_for(BODY, {"webhook-id": "msg_x"}))
        assert status == "200 OK" and answer["event_id"] == decode(BODY).id


# --- event types flaghooks does not know (issue 7 s2) -------------------------------------------------------


def unknown_event_body(kind: str, n: int = 0) -> bytes:
    return json.dumps({"data": {"n": n, "uuid": f"u-{n}"}, "event_type": kind}, sort_keys=True).encode()


class TestUnknownEventTypes:
    def test_answered_200_passed_on_and_kept_out_of_the_cache(self) -> None:
        """An unknown type is 200, reaches on_event with its type name as a str, and leaves the cache alone."""
        seen: list[WebhookEvent] = []
        receiver = WebhookReceiver(secret=SECRET, on_event=seen.append)
        call(receiver, environ_for(BODY, flagsmith_signed(BODY)))
        before = receiver.cache.states()
        body = unknown_event_body("SOMETHING_NEW")
        status, _, answer = call(receiver, environ_for(body, flagsmith_signed(body)))
        assert status == "200 OK" and answer["duplicate"] is False
        assert seen[-1].event_type == "SOMETHING_NEW" and seen[-1].data == {"n": 0, "uuid": "u-0"}
        assert receiver.cache.states() == before

    def test_logged_once_per_type(self, caplog: pytest.LogCaptureFixture) -> None:
        """Each unknown type name is logged once per receiver, however often it comes."""
        receiver = WebhookReceiver(allow_unsigned=True)
        with caplog.at_level(logging.INFO, logger="flaghooks.receiver"):
            for n, kind in enumerate(["NEW_A", "NEW_A", "NEW_B", "NEW_A", "NEW_B"]):
                assert call(receiver, environ_for(unknown_event_body(kind, n), {}))[0] == "200 OK"
        lines = [record.getMessage() for record in caplog.records if "does not know" in record.getMessage()]
        assert len(lines) == 2 and "NEW_A" in lines[0] and "NEW_B" in lines[1]
        other = WebhookReceiver(allow_unsigned=True)  # per receiver: another one logs it again
        with caplog.at_level(logging.INFO, logger="flaghooks.receiver"):
            call(other, environ_for(unknown_event_body("NEW_A", 99), {}))
        assert sum("NEW_A" in record.getMessage() for record in caplog.records) == 2

    def test_logging_memory_is_bounded(self, caplog: pytest.LogCaptureFixture) -> None:
        """A flood of distinct type names is logged up to a bound, then once more to say logging stopped."""
        receiver = WebhookReceiver(allow_unsigned=True)
        bound = WebhookReceiver._REMEMBERED_UNKNOWN_TYPES
        with caplog.at_level(logging.INFO, logger="flaghooks.receiver"):
            for n in range(bound + 50):
                assert call(receiver, environ_for(unknown_event_body(f"T{n}", n), {}))[0] == "200 OK"
        messages = [record.getMessage() for record in caplog.records]
        assert sum("does not know" in message for message in messages) == bound
        assert sum("no more are logged" in message for message in messages) == 1


def test_every_corpus_payload_is_answered_2xx() -> None:
    """WebhookReceiver answers 2xx to every payload of the Flagsmith corpus, signed as Flagsmith signs it."""
    bodies = cases.flagsmith_corpus()
    assert len(bodies) >= 20
    receiver = WebhookReceiver(secret=SECRET)
    for label, body in bodies:
        status, _, answer = call(receiver, environ_for(body, flagsmith_signed(body)))
        assert status.startswith("2"), (label, status, answer)


def test_answer_is_json_whatever_the_id() -> None:
    """The 200 answer is built without json.dumps of a dict; it is still the same JSON for ids with quotes."""
    receiver = WebhookReceiver(secret=SECRET, standard_secrets=STANDARD)
    for msg_id in ['msg_"quoted"', "msg_back\\slash", "msg_plain"]:
        environ = environ_for(BODY, both_signed(BODY, msg_id), REQUEST_METHOD="POST")
        answer = b"".join(receiver(environ, lambda status, headers: None))
        assert answer == json.dumps({"event_id": msg_id, "duplicate": False}, sort_keys=True).encode()

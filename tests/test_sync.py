"""fetch_environment_document against real servers on 127.0.0.1: the URL it asks, the key it sends, what it
refuses before sending, and a clear error for every way the API can fail."""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from documents import load_sample
from flaghooks import ConfigError, FlaghooksError, PayloadError
from flaghooks.sync import DEFAULT_MAX_BYTES, FetchError, fetch_environment_document
from httpserver import HttpServer, Listener, Received, Reply, free_port

KEY = "ser.Qp9rXk2mZt7vLw3nBf8dHj"
DOCUMENT = json.dumps(load_sample()).encode()


def answer(reply: Reply) -> Callable[[Received, int], Reply]:
    return lambda request, count: reply


def document_server() -> HttpServer:
    """Answers the environment document at Flagsmith's path, 404 elsewhere."""

    def script(request: Received, count: int) -> Reply:
        if request.path.endswith("/api/v1/environment-document/"):
            return Reply(200, {"Content-Type": "application/json"}, DOCUMENT)
        return Reply(404, body=b'{"detail":"Not found."}')

    return HttpServer(script)


class TestRequest:
    @pytest.mark.parametrize(
        ("path", "asked"),
        [
            ("", "/api/v1/environment-document/"),
            ("/", "/api/v1/environment-document/"),
            ("/api/v1", "/api/v1/environment-document/"),
            ("/api/v1/", "/api/v1/environment-document/"),
            ("/api/v1/environment-document/", "/api/v1/environment-document/"),
            ("/flagsmith", "/flagsmith/api/v1/environment-document/"),
            ("/flagsmith/api/v1/", "/flagsmith/api/v1/environment-document/"),
        ],
    )
    def test_the_url_asked(self, path: str, asked: str) -> None:
        """``api_url`` with or without /api/v1 and a trailing slash (a self-hosted prefix kept) asks the same
        document path, and the parsed JSON object is returned."""
        with document_server() as server:
            document = fetch_environment_document(server.url(path), KEY)
            (request,) = server.received
        assert request.method == "GET" and request.path == asked
        assert document == load_sample()

    def test_the_headers_sent(self) -> None:
        """The server key in X-Environment-Key, JSON asked for without compression, flaghooks named."""
        with document_server() as server:
            fetch_environment_document(server.url("/api/v1/"), KEY)
            (request,) = server.received
        assert request.headers["x-environment-key"] == KEY
        assert request.headers["accept"] == "application/json"
        assert request.headers["accept-encoding"] == "identity"
        assert request.headers["user-agent"].startswith("flaghooks/")

    def test_localhost_may_use_http(self) -> None:
        """http is allowed for a loopback host by name too."""
        with document_server() as server:
            assert fetch_environment_document(server.url("/", host="localhost"), KEY)["id"] == 1284

    def test_ipv6_loopback_may_use_http(self) -> None:
        """http to [::1] is allowed (the request goes out; this listener never answers)."""
        listener = Listener(socket.AF_INET6)
        try:
            with pytest.raises(FetchError, match="no answer within"):
                fetch_environment_document(f"http://[::1]:{listener.port}/api/v1/", KEY, timeout=0.2)
        finally:
            listener.close()


class TestRefusedBeforeSending:
    @pytest.mark.parametrize(
        "key",
        ["Qp9rXk2mZt7vLw3nBf8dHj", "ser.", "SER.Qp9rXk2mZt7vLw3nBf8dHj", " ser.Qp9rXk2mZt7vLw3nBf8dHj"],
    )
    def test_a_key_that_is_not_a_server_key(self, key: str) -> None:
        """A client-side key (or anything not starting with ser.) is refused, the key never echoed, and no
        connection is made."""
        listener = Listener()
        try:
            with pytest.raises(ConfigError, match="server-side key") as caught:
                fetch_environment_document(f"http://127.0.0.1:{listener.port}/api/v1/", key)
            assert listener.connections() == 0
        finally:
            listener.close()
        assert key.strip() not in str(caught.value) or key.strip() == "ser."

    @pytest.mark.parametrize("key", ["ser.abc def", "ser.abc\r\nX-Injected: 1", "ser.clé"])
    def test_a_key_that_cannot_be_a_header(self, key: str) -> None:
        """A key with spaces, line breaks or non-ASCII characters is refused without being quoted."""
        with pytest.raises(ConfigError, match="printable ASCII") as caught:
            fetch_environment_document("http://127.0.0.1:1/", key)
        assert key not in str(caught.value)

    def test_a_key_that_is_not_a_string(self) -> None:
        """A wrong type is a ConfigError naming the type."""
        with pytest.raises(ConfigError, match="server_key must be a str, got bytes"):
            fetch_environment_document("http://127.0.0.1:1/", b"ser.abc")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("http://flagsmith.example.com/api/v1/", "must use https"),
            ("http://10.0.0.8/api/v1/", "must use https"),
            ("ftp://flagsmith.example.com/", "http\\(s\\) URL with a host"),
            ("https:///api/v1/", "http\\(s\\) URL with a host"),
            ("flagsmith.example.com/api/v1/", "http\\(s\\) URL with a host"),
            ("https://user:pa55word@flagsmith.example.com/api/v1/", "user information"),
            ("https://flagsmith.example.com/api/v1/?x=1", "query or a fragment"),
            ("https://flagsmith.example.com:port/api/v1/", "not a valid URL"),
            ("https://[::1/api/v1/", "not a valid URL"),
        ],
    )
    def test_a_url_that_cannot_be_used(self, url: str, reason: str) -> None:
        """Only http(s) URLs with a host; https unless loopback; no credentials, query or fragment."""
        with pytest.raises(ConfigError, match=reason) as caught:
            fetch_environment_document(url, KEY)
        assert "pa55word" not in str(caught.value)

    def test_a_url_that_is_not_a_string(self) -> None:
        """A wrong type is a ConfigError naming the type."""
        with pytest.raises(ConfigError, match="api_url must be a str, got NoneType"):
            fetch_environment_document(None, KEY)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("options", "reason"),
        [
            ({"timeout": 0}, "timeout must be a positive number"),
            ({"timeout": float("inf")}, "timeout must be a positive number"),
            ({"timeout": "10"}, "timeout must be a positive number"),
            ({"timeout": True}, "timeout must be a positive number"),
            ({"max_bytes": 1.5}, "max_bytes must be a positive int"),
            ({"max_bytes": -1}, "max_bytes must be a positive int"),
            ({"ca_certs": 3}, "ca_certs must be a path"),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], reason: str) -> None:
        """timeout, max_bytes and ca_certs are checked before sending."""
        with pytest.raises(ConfigError, match=reason):
            fetch_environment_document("http://127.0.0.1:1/", KEY, **options)


class TestAnswers:
    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            (401, "refused the server key \\(401\\)"),
            (403, "refused the server key \\(403\\)"),
            (404, "no environment document here \\(404\\): check api_url"),
            (500, "the API answered 500"),
            (429, "the API answered 429"),
        ],
    )
    def test_an_error_status(self, status: int, reason: str) -> None:
        """Each error status is a FetchError with the status and a message saying what to check; the body's
        start is shown, with the key cut out if the API echoed it."""
        body = json.dumps({"detail": f"Invalid key {KEY}"}).encode()
        with HttpServer(answer(Reply(status, body=body))) as server, pytest.raises(FetchError, match=reason) as caught:
            fetch_environment_document(server.url("/api/v1/"), KEY)
        assert caught.value.status == status
        assert "Invalid key ***" in str(caught.value) and KEY not in str(caught.value)

    def test_a_redirect_is_not_followed(self) -> None:
        """A 3xx is an error naming where it points: the key is not sent on to another host."""
        with HttpServer(answer(Reply(301, {"Location": "https://elsewhere.example/api/v1/"}))) as server:
            with pytest.raises(
                FetchError, match=r"redirected to 'https://elsewhere\.example/api/v1/' \(301\)"
            ) as caught:
                fetch_environment_document(server.url("/api/v1/"), KEY)
            assert len(server.received) == 1
        assert caught.value.status == 301

    def test_a_redirect_quoting_the_key_does_not_show_it(self) -> None:
        """A Location that carries the key (a proxy adding it as a query parameter, say) is named without it."""
        location = f"https://elsewhere.example/api/v1/?key={KEY}"
        with (
            HttpServer(answer(Reply(302, {"Location": location}))) as server,
            pytest.raises(FetchError, match="redirected") as caught,
        ):
            fetch_environment_document(server.url("/api/v1/"), KEY)
        assert KEY not in str(caught.value) and "key=***" in str(caught.value)

    def test_a_redirect_without_location(self) -> None:
        """A 3xx without Location still says it was a redirect."""
        with HttpServer(answer(Reply(307))) as server, pytest.raises(FetchError, match="redirected \\(307\\)"):
            fetch_environment_document(server.url("/api/v1/"), KEY)

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"<html>maintenance</html>", "not valid JSON"),
            (b"[1, 2]", "not a JSON object \\(got list\\)"),
            (b'{"id": NaN}', "NaN is not valid JSON"),
            (b'{"id": "\xff"}', "not UTF-8"),
            (b"[" * 100_000, "nested too deeply"),
        ],
    )
    def test_a_body_that_is_not_a_document(self, body: bytes, reason: str) -> None:
        """A 200 whose body is not a JSON object is a PayloadError naming the URL."""
        with HttpServer(answer(Reply(200, body=body))) as server, pytest.raises(PayloadError, match=reason):
            fetch_environment_document(server.url("/api/v1/"), KEY)

    def test_an_unreachable_api(self) -> None:
        """Nothing listening: a FetchError without a status."""
        with pytest.raises(FetchError, match="cannot reach the API") as caught:
            fetch_environment_document(f"http://127.0.0.1:{free_port()}/api/v1/", KEY)
        assert caught.value.status is None

    def test_errors_are_flaghooks_errors(self) -> None:
        """FetchError is a FlaghooksError, so one except clause catches every failure of the library."""
        assert issubclass(FetchError, FlaghooksError)


class TestLimits:
    def test_a_huge_document_announced_by_its_length(self) -> None:
        """A Content-Length over max_bytes is refused before the body is read."""
        with (
            HttpServer(answer(Reply(200, mode="huge", size=50_000_000))) as server,
            pytest.raises(FetchError, match="50,000,000 bytes, over the cap of 1,000,000") as caught,
        ):
            fetch_environment_document(server.url("/api/v1/"), KEY, max_bytes=1_000_000)
        assert caught.value.status is None

    def test_a_huge_document_without_a_length(self, serve: Callable[[Any], str]) -> None:
        """A body without Content-Length (read until the connection closes) is cut off at max_bytes."""

        def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "application/json")])
            return (b" " * 65536 for _ in range(1000))  # 64 MB, never all sent

        address = serve(app)
        with pytest.raises(FetchError, match="over the cap of 100,000 bytes"):
            fetch_environment_document(f"http://{address}/api/v1/", KEY, max_bytes=100_000)

    def test_the_default_cap(self) -> None:
        """The default cap is the documented 64 MiB."""
        assert DEFAULT_MAX_BYTES == 64 * 1024 * 1024

    def test_a_hanging_server(self) -> None:
        """A server that accepts the request and never answers: a FetchError after the timeout."""
        with (
            HttpServer(answer(Reply(200, body=b"{}", mode="silent", delay=5))) as server,
            pytest.raises(FetchError, match=r"no answer within 0\.3 s"),
        ):
            fetch_environment_document(server.url("/api/v1/"), KEY, timeout=0.3)

    def test_a_server_that_does_not_accept(self) -> None:
        """A listening socket whose accept queue is full: connecting times out."""
        sock = socket.create_server(("127.0.0.1", 0), backlog=0)
        queued = socket.create_connection(sock.getsockname())  # fills the queue of one
        try:
            with pytest.raises(FetchError, match=r"cannot connect within 0\.3 s"):
                fetch_environment_document(f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/", KEY, timeout=0.3)
        finally:
            queued.close()
            sock.close()

    def test_a_body_that_stops_arriving(self) -> None:
        """Headers, then no byte of the body for longer than the timeout."""
        with (
            HttpServer(answer(Reply(200, body=b'{"id": 1}', mode="trickle", delay=5))) as server,
            pytest.raises(FetchError, match="stopped arriving"),
        ):
            fetch_environment_document(server.url("/api/v1/"), KEY, timeout=0.3)

    def test_a_body_that_trickles_past_the_timeout(self) -> None:
        """Each byte arrives in time, but the whole document does not: the download as a whole is bounded."""
        body = b'{"id": 1, "padding": "' + b"x" * 40 + b'"}'
        with (
            HttpServer(answer(Reply(200, body=body, mode="trickle", delay=0.02))) as server,
            pytest.raises(FetchError, match=r"took over 0\.3 s to arrive"),
        ):
            fetch_environment_document(server.url("/api/v1/"), KEY, timeout=0.3)

    def test_a_body_cut_off(self, cut_off_server: int) -> None:
        """The connection closes before Content-Length bytes arrived."""
        with pytest.raises(FetchError, match="cut off"):
            fetch_environment_document(f"http://127.0.0.1:{cut_off_server}/api/v1/", KEY)


@pytest.fixture
def cut_off_server() -> Iterator[int]:
    """A server that answers 200 with Content-Length 1000, sends 10 bytes and hangs up."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    def run() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b'{"id": 1, ')

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield port
    thread.join(5)
    sock.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """One throwaway CA for the TLS tests (a module-level fixture: pytest 9.1 deprecates class-scoped fixtures
    defined as methods, and warnings are errors here)."""
    return trustme.CA()


class TestTls:
    def test_https_verified_with_the_given_ca(self, ca: trustme.CA, tmp_path: Path) -> None:
        """https to a server whose certificate the given CA bundle trusts."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        with document_server_tls(context) as server:
            document = fetch_environment_document(server.url("/api/v1/", host="localhost"), KEY, ca_certs=str(bundle))
        assert document["id"] == 1284

    def test_an_untrusted_certificate(self, ca: trustme.CA) -> None:
        """A certificate the system does not trust is a FetchError; nothing is read."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(context)
        with (
            document_server_tls(context) as server,
            pytest.raises(FetchError, match=r"cannot reach the API.*CERTIFICATE_VERIFY_FAILED"),
        ):
            fetch_environment_document(server.url("/api/v1/", host="localhost"), KEY)


def document_server_tls(context: ssl.SSLContext) -> HttpServer:
    return HttpServer(answer(Reply(200, body=DOCUMENT)), ssl_context=context)


@pytest.mark.parametrize(
    ("delay", "reason"),
    [(0.05, "the document took over 0.3 s to arrive"), (0.2, "no answer within 0.3 s")],
)
def test_headers_that_trickle_past_the_timeout(delay: float, reason: str) -> None:
    """A server that sends its status line and headers a byte at a time, each byte well within the timeout: the
    timeout bounds the whole answer, so the client gives up (and hangs up) before the headers are complete: cut off
    in the headers (the answer then looks complete but is not) or in the status line (no answer)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Padding: " + b"p" * 20
    sent: list[int] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def hung_up(conn: socket.socket) -> bool:
        try:
            return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            for byte in head:
                if hung_up(conn):
                    return
                conn.sendall(bytes([byte]))
                sent.append(byte)
                threading.Event().wait(delay)
            conn.sendall(b"\r\nContent-Length: 2\r\n\r\n{}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with pytest.raises(FetchError, match=re.escape(reason)):
            fetch_environment_document(f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1/", KEY, timeout=0.3)
        thread.join(30)
    finally:
        listener.close()
    assert len(sent) < len(head)  # the client hung up before the headers were complete

"""Real HTTP servers on 127.0.0.1 for the tests: scripted answers, every request recorded as received."""

from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple


class Received(NamedTuple):
    """A request as the server received it: raw body bytes and headers (names lower-cased), and the client's
    port (one per connection: equal ports mean a reused connection)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    client_port: int = 0


class Reply(NamedTuple):
    """A scripted answer. ``mode`` is "normal", "trickle" (the body one byte every ``delay`` seconds, 1 when
    unset), "drip" (the whole answer, status line included, one byte every ``delay`` seconds), "silent" (sleep
    ``delay`` seconds before answering), "huge" (``size`` bytes of body) or "close" (hang up, no answer)."""

    status: int = 200
    headers: dict[str, str] | None = None
    body: bytes = b""
    mode: str = "normal"
    delay: float = 0.0
    size: int = 0


Script = Callable[[Received, int], Reply]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = Received(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
            time.monotonic(),
            self.client_address[1],
        )
        with self.server.lock:
            self.server.received.append(received)
            count = self.server.counts.get(self.path, 0) + 1
            self.server.counts[self.path] = count
        reply = self.server.script(received, count)
        try:
            self._reply(reply)
        except OSError:  # the client gave up (a deadline, a cut-off read): that is the point of some tests
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_DELETE = _handle

    def _reply(self, reply: Reply) -> None:
        if reply.mode == "close":  # hang up without an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.mode == "drip":
            raw = b"HTTP/1.1 %d Drip\r\nContent-Length: %d\r\n\r\n%s" % (reply.status, len(reply.body), reply.body)
            for byte in raw:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(reply.delay)
            return
        if reply.mode == "silent":
            time.sleep(reply.delay)
        body = reply.body
        length = reply.size if reply.mode == "huge" else len(body)
        self.send_response(reply.status)
        for name, value in (reply.headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if reply.mode == "trickle":
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(reply.delay or 1.0)
        elif reply.mode == "huge":
            chunk = b"x" * 65536
            sent = 0
            while sent < length:
                self.wfile.write(chunk[: length - sent])
                sent += len(chunk)
        else:
            self.wfile.write(body)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    script: Script
    received: list[Received]
    counts: dict[str, int]
    lock: threading.Lock


class HttpServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 (an ephemeral port), optionally with TLS."""

    def __init__(self, script: Script | None = None, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.script = script or (lambda request, count: Reply(200, body=b"ok"))
        self._server.received = []
        self._server.counts = {}
        self._server.lock = threading.Lock()
        if ssl_context is not None:
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def received(self) -> list[Received]:
        with self._server.lock:
            return list(self._server.received)

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def __enter__(self) -> HttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Listener:
    """A listening socket that records whether anything ever connected to it."""

    def __init__(self, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()

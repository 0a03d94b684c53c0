"""TLS: certificates are verified, against the URL's host name, even when connecting to the checked address."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
import trustme
import urllib3

from cases import documented_flag_event
from flaghooks import Endpoint
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport
from httpserver import HttpServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def send(transport: HttpTransport, url: str) -> object:
    return transport.send(DeliveryRequest(url, b"{}", {}, 5.0, Endpoint(url), documented_flag_event()))


def test_verified_against_the_url_host(ca: trustme.CA, ca_file: str) -> None:
    """With the CA trusted, https://localhost verifies, though the connection goes to the checked 127.0.0.1."""
    with (
        HttpServer(ssl_context=server_context(ca, "localhost")) as server,
        HttpTransport(pool=urllib3.PoolManager(ca_certs=ca_file), allowed_networks=["127.0.0.0/8"]) as transport,
    ):
        result = send(transport, server.url(host="localhost"))
    assert result.status == 200, result  # type: ignore[attr-defined]


def test_untrusted_certificate_fails_and_is_retried(ca: trustme.CA) -> None:
    """A certificate from an unknown CA is a TLS failure (no status; retried like other connection errors)."""
    with (
        HttpServer(ssl_context=server_context(ca, "localhost")) as server,
        HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport,
    ):
        result = send(transport, server.url(host="localhost"))
    assert result.status is None and not result.permanent  # type: ignore[attr-defined]
    assert result.error.startswith("TLS failure")  # type: ignore[attr-defined]


def test_wrong_host_name_fails(ca: trustme.CA, ca_file: str) -> None:
    """A trusted certificate for another name does not verify."""
    with (
        HttpServer(ssl_context=server_context(ca, "other.example")) as server,
        HttpTransport(pool=urllib3.PoolManager(ca_certs=ca_file), allowed_networks=["127.0.0.0/8"]) as transport,
    ):
        result = send(transport, server.url(host="localhost"))
    assert result.status is None  # type: ignore[attr-defined]
    assert "TLS failure" in result.error  # type: ignore[attr-defined]


class StalledHandshake:
    """A listening socket on 127.0.0.1 whose connections never complete a TLS handshake: "silent" accepts and
    says nothing; "drip" starts a TLS record of 16 KB and sends it a byte every 0.25 s, so no single read ever
    waits long enough to trip a socket timeout."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.mode == "drip":
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record, 16384 bytes long
            while not self.stop.wait(0.25):
                conn.sendall(b"\x00")
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize("mode", ["silent", "drip"])
def test_handshake_is_under_the_deadline(mode: str) -> None:
    """A TLS server that accepts and never finishes the handshake (silent, or dripping bytes) cannot hold the
    attempt past its deadline: it ends with a timeout, however the handshake stalls."""
    server = StalledHandshake(mode)
    outcome: list[AttemptResult] = []
    try:
        with HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
            url = f"https://127.0.0.1:{server.port}/"
            request = DeliveryRequest(url, b"{}", {}, 2.0, Endpoint(url), documented_flag_event())
            worker = threading.Thread(target=lambda: outcome.append(transport.send(request)), daemon=True)
            worker.start()
            worker.join(10)  # generous: the deadline is 2 s; without it a dripping handshake runs for over an hour
            assert not worker.is_alive(), "the attempt outlived its deadline by far"
    finally:
        server.close()
    [result] = outcome
    assert result.status is None and not result.permanent
    assert result.error is not None and "timeout" in result.error


def test_watched_while_handshaking() -> None:
    """From the moment the TCP connection exists, the deadline thread holds a handle on it, through the TLS
    handshake: urllib3 handshakes before the request is sent, so watching from the request on would leave a
    slow connect plus a stalled handshake running past the deadline (connect time plus a full timeout)."""
    server = StalledHandshake("silent")
    outcome: list[AttemptResult] = []
    try:
        with HttpTransport(allowed_networks=["127.0.0.0/8"]) as transport:
            url = f"https://127.0.0.1:{server.port}/"
            request = DeliveryRequest(url, b"{}", {}, 30.0, Endpoint(url), documented_flag_event())
            worker = threading.Thread(target=lambda: outcome.append(transport.send(request)), daemon=True)
            worker.start()
            handles: list[object] = []
            for _ in range(200):  # until the server accepted and the client is in its handshake
                attempts = [entry[2] for entry in transport._watchdog._heap]
                handles = [getattr(a, "raw", None) or (a.conn.sock if a.conn else None) for a in attempts]
                if server.conns and any(handles):
                    break
                time.sleep(0.02)
            assert server.conns and any(handles), "the handshaking connection is not watched"
            server.close()  # ends the handshake at once
            worker.join(10)
    finally:
        server.close()
    [result] = outcome
    assert result.status is None

"""TLS: certificates are verified, against the URL's host name, even when connecting to the checked address."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
import urllib3

from cases import documented_flag_event
from flaghooks import Endpoint
from flaghooks.transports import DeliveryRequest, HttpTransport
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

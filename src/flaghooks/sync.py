"""Fetching Flagsmith's environment document, to seed a flag cache before web hooks keep it current.

::

    from flaghooks.cache import FlagCache
    from flaghooks.sync import fetch_environment_document

    cache = FlagCache()
    document = fetch_environment_document("https://flagsmith.example.com/api/v1/", os.environ["FLAGSMITH_SERVER_KEY"])
    cache.load_environment_document(document)

The request goes to the Flagsmith API you configure, so no SSRF address policy applies (unlike web hook
delivery): the URL is yours, not a tenant's.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import math
import socket
import threading
import time
import urllib.parse
from typing import Any

import urllib3

from ._document import UNKNOWN_CREATED_DATE, EnvironmentDocument, parse_environment_document
from ._models import clip
from ._version import VERSION
from .exceptions import ConfigError, FlaghooksError, PayloadError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "UNKNOWN_CREATED_DATE",
    "EnvironmentDocument",
    "FetchError",
    "fetch_environment_document",
    "parse_environment_document",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""The largest environment document :func:`fetch_environment_document` reads by default: 64 MiB. A document
costs a few hundred bytes per feature state (a 1,000-feature, 10,000-override environment is about 5 MB), so this
leaves room for large environments while bounding what a misconfigured URL can make a process hold."""

_CHUNK = 256 * 1024
_PATH_SUFFIX = "/environment-document/"


class FetchError(FlaghooksError):
    """The environment document could not be fetched: the API cannot be reached, answered with an error status
    (``status``: 401 or 403 for a refused key, 404 for a wrong URL, ...), took longer than the timeout, or sent
    more than the size cap. ``status`` is None when no answer arrived. Messages never contain the server key."""

    status: int | None

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _document_url(api_url: object) -> str:
    """``{api_url}/environment-document/``, ``api_url`` with or without ``/api/v1`` and a trailing slash."""
    if not isinstance(api_url, str):
        raise ConfigError(f"api_url must be a str, got {type(api_url).__name__}")
    try:
        parts = urllib.parse.urlsplit(api_url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"api_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"api_url must be an http(s) URL with a host, got {clip(api_url)}")
    if parts.username is not None or parts.password is not None:
        # Flagsmith authenticates with the server key; and user information would end up in error messages.
        raise ConfigError("api_url must not contain user information (credentials): give the server key instead")
    if parts.query or parts.fragment:
        raise ConfigError(f"api_url must not have a query or a fragment, got {clip(api_url)}")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"api_url must use https (the server key travels with the request); http is allowed only for loopback "
            f"hosts, got {clip(api_url)}"
        )
    path = parts.path.rstrip("/")
    path = path.removesuffix("/environment-document")
    if not path.endswith("/api/v1"):
        path += "/api/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path + _PATH_SUFFIX, "", ""))


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_key(server_key: object) -> str:
    if not isinstance(server_key, str):
        raise ConfigError(f"server_key must be a str, got {type(server_key).__name__}")
    if not server_key.startswith("ser.") or len(server_key) == len("ser."):
        raise ConfigError(
            "server_key must be the environment's server-side key (it starts with 'ser.'); the client-side key "
            "cannot read the environment document"
        )
    if not server_key.isascii() or not server_key.isprintable() or any(c.isspace() for c in server_key):
        raise ConfigError("server_key must be printable ASCII without spaces")
    return server_key


def _positive(name: str, value: object, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{name} must be a positive {'int' if kind is int else 'number'}, got {clip(value)}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive {'int' if kind is int else 'number'}, got {value!r}")
    return value


def fetch_environment_document(
    api_url: str,
    server_key: str,
    *,
    timeout: float = 10,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ca_certs: str | None = None,
) -> dict[str, Any]:
    """Fetch the environment document: ``GET {api_url}/environment-document/`` with ``X-Environment-Key``.

    ``api_url`` is Flagsmith's API as its SDKs take it (``https://edge.api.flagsmith.com/api/v1/``, or your own
    ``https://flagsmith.example.com/api/v1``); ``/api/v1`` is added when the URL does not end with it, and a
    trailing slash does not matter. It must be https, except for a loopback host (``localhost``, ``127.0.0.1``,
    ``::1``). ``server_key`` is the environment's server-side key (``ser.…``); anything else is refused before a
    request is sent. ``timeout`` (seconds) bounds connecting, each wait for data, and the whole download (checked
    as data arrives); an answer still incomplete twice ``timeout`` after the request began (headers sent a byte at
    a time, say) is abandoned; ``max_bytes`` caps the body (:data:`DEFAULT_MAX_BYTES`). TLS is verified against the
    system's trust store, or the PEM bundle ``ca_certs``. Redirects are not followed.

    Returns the parsed JSON object, for :meth:`FlagCache.load_environment_document
    <flaghooks.cache.FlagCache.load_environment_document>` (or :func:`parse_environment_document`).

    Raises :class:`ConfigError` for a bad argument (never quoting the key), :class:`FetchError` when the document
    cannot be fetched (``status`` set for an HTTP answer: 401/403 for a refused key, 404 for a wrong URL), and
    :class:`PayloadError` for a body that is not a JSON object.
    """
    url = _document_url(api_url)
    key = _check_key(server_key)
    timeout = _positive("timeout", timeout)
    max_bytes = _positive("max_bytes", max_bytes, int)
    if ca_certs is not None and not isinstance(ca_certs, str):
        raise ConfigError(f"ca_certs must be a path (str) or None, got {type(ca_certs).__name__}")
    deadline = time.monotonic() + timeout
    headers = {
        "X-Environment-Key": key,
        "Accept": "application/json",
        "Accept-Encoding": "identity",
        "User-Agent": f"flaghooks/{VERSION}",
    }
    with urllib3.PoolManager(num_pools=1, ca_certs=ca_certs) as pool, _Watchdog(2 * timeout) as watchdog:
        watchdog.watch_pool(pool.connection_from_url(url))
        try:
            response = pool.request(
                "GET",
                url,
                headers=headers,
                retries=False,
                redirect=False,
                timeout=urllib3.Timeout(connect=timeout, read=timeout),
                preload_content=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: urllib3 derives it from that
            raise FetchError(f"{url}: cannot reach the API: {_reason(exc, key)}") from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise FetchError(f"{url}: cannot connect within {timeout:g} s") from None
        except urllib3.exceptions.TimeoutError:
            raise FetchError(f"{url}: no answer within {timeout:g} s") from None
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
            if watchdog.expired:  # an answer (its headers) arriving slower than the timeout, cut off
                raise FetchError(f"{url}: no answer within {timeout:g} s") from None
            raise FetchError(f"{url}: cannot reach the API: {_reason(exc, key)}") from None
        try:
            body = _read(response, url, timeout, deadline, max_bytes, key)
            if watchdog.expired:  # the socket was shut down at the deadline: what was read may be cut short
                raise FetchError(f"{url}: the document took over {timeout:g} s to arrive")
        except FetchError:
            if watchdog.expired:
                raise FetchError(f"{url}: the document took over {timeout:g} s to arrive") from None
            raise
        finally:
            response.close()
            response.release_conn()
    return _parse(body, url)


class _Watchdog:
    """Shuts the request's connection down once ``timeout`` has passed since the request began: the backstop for
    what socket timeouts (each wait for data) and the download's deadline (checked as the body arrives) miss, such as
    a server that sends its status line and headers a byte at a time."""

    def __init__(self, timeout: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def watch_pool(self, pool: Any) -> None:
        """Have ``pool``'s connections report their sockets to this watchdog as they connect."""
        watchdog = self

        class Watched(pool.ConnectionCls):  # type: ignore[misc]
            def connect(self) -> None:
                super().connect()
                watchdog._watch(self.sock)

        pool.ConnectionCls = Watched

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:  # connected (a TLS handshake) after the deadline
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    """Shut a (TLS) socket down at the file-descriptor level: a read blocked on it in another thread returns."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _reason(exc: BaseException, key: str) -> str:
    """The innermost reason of a urllib3 error, without the key (an error quoting a header would show it)."""
    reason = getattr(exc, "reason", None) or exc
    return str(reason).replace(key, "***") or type(reason).__name__


def _read(
    response: urllib3.BaseHTTPResponse, url: str, timeout: float, deadline: float, max_bytes: int, key: str
) -> bytes:
    status = response.status
    if status != 200:
        snippet = b""
        with contextlib.suppress(urllib3.exceptions.HTTPError, OSError, http.client.HTTPException):
            snippet = response.read1(200)
        detail = snippet.decode("utf-8", "replace").replace(key, "***").strip()
        location = response.headers.get("Location")
        location = None if location is None else location.replace(key, "***")
        raise FetchError(_status_message(status, url, location) + _detail(detail), status)
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"{url}: the document is {int(length):,} bytes, over the cap of {max_bytes:,} (max_bytes)")
    body = bytearray()
    try:
        while True:
            chunk = response.read1(min(_CHUNK, max_bytes - len(body) + 1))
            if not chunk:
                break
            body += chunk
            if len(body) > max_bytes:
                raise FetchError(f"{url}: the document is over the cap of {max_bytes:,} bytes (max_bytes)")
            if time.monotonic() > deadline:
                raise FetchError(f"{url}: the document took over {timeout:g} s to arrive")
    except urllib3.exceptions.TimeoutError:
        raise FetchError(f"{url}: the document stopped arriving (no data for {timeout:g} s)") from None
    except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{url}: the document was cut off: {_reason(exc, key)}") from None
    return bytes(body)


def _status_message(status: int, url: str, location: str | None) -> str:
    if status == 401:
        return f"{url}: the API refused the server key (401): is it this environment's server-side key?"
    if status == 403:
        return f"{url}: the API refused the server key (403): it may be revoked, or not a server-side key"
    if status == 404:
        return f"{url}: no environment document here (404): check api_url (Flagsmith's API ends in /api/v1/)"
    if 300 <= status < 400:
        where = f" to {clip(location)}" if location else ""
        return f"{url}: redirected{where} ({status}); redirects are not followed: give the final URL as api_url"
    return f"{url}: the API answered {status}"


def _detail(text: str) -> str:
    return f": {clip(text)}" if text else ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse(body: bytes, url: str) -> dict[str, Any]:
    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise PayloadError(f"the environment document from {url} is not UTF-8 (offset {exc.start})") from None
    except RecursionError:
        raise PayloadError(f"the environment document from {url} is nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"the environment document from {url} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise PayloadError(f"the environment document from {url} is not a JSON object (got {type(document).__name__})")
    return document

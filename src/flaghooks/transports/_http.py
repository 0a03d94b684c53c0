"""HttpTransport: the default transport, a hardened urllib3 poster."""

from __future__ import annotations

import contextlib
import email.utils
import functools
import heapq
import http.client
import itertools
import socket
import threading
import time
from collections.abc import Sequence
from datetime import UTC
from typing import Any, NamedTuple

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from ..exceptions import ConfigError
from ._address import AddressPolicy, BlockedAddress
from ._base import AttemptResult, DeliveryRequest, Transport

__all__ = ["HttpTransport"]

_CHUNK = 65536
_local = threading.local()


class _Attempt:
    """One attempt in flight: its deadline, and the connection the watchdog shuts when it passes."""

    __slots__ = ("conn", "deadline", "done", "fired")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: HTTPConnection | None = None
        self.done = False
        self.fired = False


def _register(conn: HTTPConnection) -> None:
    attempt = getattr(_local, "attempt", None)
    if attempt is not None:
        attempt.conn = conn


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _Watchdog:
    """One thread per transport that ends attempts at their deadline by shutting their socket.

    urllib3's timeouts bound each socket operation, not an attempt: a server that sends a byte a second never
    trips them. Shutting the socket from here wakes the blocked read, whatever phase it is in.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._thread_generation = 0

    def watch(self, attempt: _Attempt) -> None:
        with self._cond:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._thread_generation,), name="flaghooks-http-deadline", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is attempt:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._thread_generation += 1  # the running thread, if any, ends; a later watch() starts a new one
            self._thread = None
            self._heap.clear()
            self._cond.notify_all()

    def _run(self, generation: int) -> None:
        with self._cond:
            while generation == self._thread_generation:
                heap = self._heap
                while heap and heap[0][2].done:
                    heapq.heappop(heap)
                if not heap:
                    self._cond.wait()
                    continue
                delay = heap[0][0] - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                _, _, attempt = heapq.heappop(heap)
                if attempt.done:  # finished in the meantime: its connection may already serve another request
                    continue
                attempt.fired = True
                sock = attempt.conn.sock if attempt.conn is not None else None
                if sock is None:
                    # Still connecting (bounded by the connect timeout): look again shortly.
                    heapq.heappush(heap, (time.monotonic() + 0.05, next(self._order), attempt))
                    continue
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Target(NamedTuple):
    scheme: str
    host: str  # without IPv6 brackets
    port: int
    path: str
    host_header: str


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> _Target:
    parsed = urllib3.util.parse_url(url)
    scheme = (parsed.scheme or "").lower()
    if scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an absolute http or https URL: {url!r}")
    default = 443 if scheme == "https" else 80
    port = parsed.port or default
    header = parsed.host if port == default else f"{parsed.host}:{port}"
    return _Target(scheme, parsed.host.strip("[]"), port, parsed.request_uri, header)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now``: delay-seconds or an HTTP date; ``None`` when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value) if len(value) <= 10 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _describe(exc: BaseException, attempt: _Attempt, timeout: float) -> str:
    if attempt.fired:
        return f"timeout: no complete response within {timeout:g} s"
    # urllib3 derives NameResolutionError and NewConnectionError from ConnectTimeoutError: test them first.
    if isinstance(exc, NameResolutionError):
        return f"DNS failure: {exc.__context__ or exc}"
    if isinstance(exc, NewConnectionError):
        reason = exc.__context__ or exc
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused"
        return f"connection failed: {reason}"
    if isinstance(exc, ConnectTimeoutError):
        return f"connect timeout after {timeout:g} s"
    if isinstance(exc, ReadTimeoutError):
        return f"read timeout after {timeout:g} s"
    if isinstance(exc, SSLError):
        return f"TLS failure: {exc}"
    if isinstance(exc, ProtocolError):
        return f"connection reset or closed: {exc.args[0] if exc.args else exc}"
    return f"{type(exc).__name__}: {exc}"


class HttpTransport(Transport):
    """POSTs with urllib3, safely.

    - One connection pool, kept alive and reused (pass your own ``pool`` to tune it; HttpTransport installs
      its own connection classes on it to enforce deadlines). urllib3 runs with ``retries=False`` and
      ``redirect=False``: no hidden retries, no redirects followed.
    - ``request.timeout`` bounds the attempt as a whole (connecting, sending, reading): a server that trickles
      its response is cut off at the deadline. Name resolution is bounded by the system resolver.
    - At most ``max_response_bytes`` of a response are read; the rest is discarded with the connection.
    - TLS is verified (the system's trust store, or the ``pool``'s ``ca_certs``).
    - SSRF policy, on by default: the URL's host is resolved and the attempt refused, with no connection made
      and ``permanent=True``, if any address is loopback, private, link-local (cloud metadata included),
      shared (100.64.0.0/10), unspecified, multicast, reserved or broadcast, in IPv4 or IPv6, including
      IPv4-mapped and other embedded forms and literal, decimal or hex IPs. The connection goes to the address
      that was checked, while TLS still verifies the URL's host name. ``allowed_networks`` lets named CIDRs
      through (``["127.0.0.0/8"]`` for a receiver on this machine); ``allow_private_addresses=True`` turns the
      policy off.
    """

    def __init__(
        self,
        *,
        pool: urllib3.PoolManager | None = None,
        max_response_bytes: int = 65536,
        allow_private_addresses: bool = False,
        allowed_networks: Sequence[str] = (),
    ) -> None:
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 0:
            raise ConfigError(f"HttpTransport.max_response_bytes must be an int >= 0, got {max_response_bytes!r}")
        if type(allow_private_addresses) is not bool:
            raise ConfigError("HttpTransport.allow_private_addresses must be a bool")
        if pool is not None and not isinstance(pool, urllib3.PoolManager):
            raise ConfigError(f"HttpTransport.pool must be a urllib3.PoolManager, got {type(pool).__name__}")
        self._policy = AddressPolicy(enabled=not allow_private_addresses, allowed_networks=allowed_networks)
        self._owns_pool = pool is None
        self._pool = pool if pool is not None else urllib3.PoolManager(num_pools=64, maxsize=4)
        self._pool.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._max_response_bytes = max_response_bytes
        self._watchdog = _Watchdog()

    def send(self, request: DeliveryRequest) -> AttemptResult:
        """POST ``request.body`` to ``request.url``, one attempt."""
        started = time.monotonic()
        timeout = request.timeout
        deadline = started + timeout
        target = _target(request.url)
        try:
            address = self._policy.resolve(target.host, target.port) if self._policy.enabled else target.host
        except BlockedAddress as exc:
            return AttemptResult(None, str(exc), time.monotonic() - started, permanent=True)
        except (OSError, UnicodeError) as exc:
            return AttemptResult(None, f"DNS failure: {exc}", time.monotonic() - started)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return AttemptResult(None, f"timeout: name resolution took over {timeout:g} s", time.monotonic() - started)
        pool_kwargs = None
        if target.scheme == "https" and address != target.host:
            # Connect to the checked address, but send SNI for and verify the certificate against the name.
            pool_kwargs = {"server_hostname": target.host, "assert_hostname": target.host}
        pool = self._pool.connection_from_host(address, target.port, target.scheme, pool_kwargs=pool_kwargs)
        headers = dict(request.headers)
        headers["Host"] = target.host_header
        attempt = _Attempt(deadline)
        self._watchdog.watch(attempt)
        _local.attempt = attempt
        try:
            response = pool.urlopen(
                "POST",
                target.path,
                body=request.body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=remaining, read=remaining),
                preload_content=False,
                release_conn=False,
            )
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as exc:
            attempt.done = True
            return AttemptResult(None, _describe(exc, attempt, timeout), time.monotonic() - started)
        finally:
            _local.attempt = None
        body, complete = self._read(response, attempt)
        attempt.done = True
        if not complete:
            response.close()  # the rest is discarded with the connection, never drained
        response.release_conn()
        return AttemptResult(
            response.status,
            None,
            time.monotonic() - started,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), time.time()),
            response_body=body,
        )

    def _read(self, response: urllib3.BaseHTTPResponse, attempt: _Attempt) -> tuple[bytes, bool]:
        """Read at most max_response_bytes; True when the body ended (the connection can be reused)."""
        if response.length_remaining == 0:  # most web hook answers: nothing to read
            return b"", True
        limit = self._max_response_bytes
        body = bytearray()
        try:
            while True:
                chunk = response.read1(min(_CHUNK, limit - len(body) + 1), decode_content=False)
                if not chunk:
                    return bytes(body), not attempt.fired
                body += chunk
                if len(body) > limit:
                    return bytes(body[:limit]), False
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException):
            return bytes(body[:limit]), False

    def close(self) -> None:
        """Stop the deadline thread and close the pooled connections (of a pool this transport created)."""
        self._watchdog.close()
        if self._owns_pool:
            self._pool.clear()

"""HttpTransport: the default transport, a hardened urllib3 poster."""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import http.client
import itertools
import os
import socket
import threading
import time
import weakref
from collections.abc import Sequence
from datetime import UTC
from typing import Any

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
from urllib3.poolmanager import SSL_KEYWORDS

from .._endpoints import parse_url
from ..exceptions import ConfigError
from ._address import AddressPolicy, BlockedAddress
from ._base import AttemptResult, DeliveryRequest, Transport, withhold_secrets

__all__ = ["HttpTransport"]

_CHUNK = 65536
_local = threading.local()


class _Attempt:
    """One attempt in flight: its deadline, and the connection the watchdog shuts when it passes."""

    __slots__ = ("conn", "deadline", "done", "fired", "guard", "raw")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.conn: HTTPConnection | None = None
        # A duplicate of a TLS connection's socket while it handshakes: urllib3 detaches the plain socket
        # when it wraps it, so the duplicate is the only handle on the connection until the wrap returns.
        self.raw: socket.socket | None = None
        self.guard: threading.Lock | None = None  # the watchdog's lock, once watched
        self.done = False
        self.fired = False


def _current() -> _Attempt | None:
    return getattr(_local, "attempt", None)


def _register(conn: HTTPConnection) -> None:
    attempt = _current()
    if attempt is not None:
        attempt.conn = conn


def _set_raw(attempt: _Attempt, sock: socket.socket | None) -> None:
    """Swap the attempt's handshake handle under the watchdog's lock, closing the one it replaces."""
    guard = attempt.guard
    with guard if guard is not None else contextlib.nullcontext():
        old, attempt.raw = attempt.raw, sock
    if old is not None:
        old.close()


class _WatchedHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        _register(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    """Watched from the moment it connects, so the deadline covers the TLS handshake too."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        attempt = _current()
        if attempt is not None:
            _set_raw(attempt, sock.dup())
        return sock

    def connect(self) -> None:
        _register(self)
        try:
            super().connect()
        finally:
            attempt = _current()
            if attempt is not None:
                _set_raw(attempt, None)

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

    Finished attempts are dropped lazily: when the heap has doubled since it was last rebuilt, it is rebuilt
    without them. Its size follows the attempts in flight (at most about twice as many, plus a small floor),
    not the attempts of the last ``timeout`` seconds, at an amortised constant cost per attempt.
    """

    _FLOOR = 32  # below this many entries, a rebuild costs more than it frees

    def __init__(self) -> None:
        # The condition's own lock, used directly where no waiting is involved: Condition's __enter__ and
        # __exit__ are Python code, and watch() and finish() run twice per attempt.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._rebuild_at = self._FLOOR
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._thread_generation = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)

    def watch(self, attempt: _Attempt) -> None:
        with self._lock:
            attempt.guard = self._lock
            heap = self._heap
            if len(heap) >= self._rebuild_at:
                heap[:] = [entry for entry in heap if not entry[2].done]
                heapq.heapify(heap)
                self._rebuild_at = max(self._FLOOR, 2 * len(heap))
            heapq.heappush(heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._thread_generation,), name="flaghooks-http-deadline", daemon=True
                )
                self._thread.start()
            elif heap[0][2] is attempt:
                self._cond.notify()

    def finish(self, attempt: _Attempt) -> None:
        # Under the lock: once this returns, the deadline thread can no longer shut the attempt's socket, which
        # may be about to serve another attempt from the pool.
        with self._lock:
            attempt.done = True

    def close(self) -> None:
        with self._cond:
            self._thread_generation += 1  # the running thread, if any, ends; a later watch() starts a new one
            self._thread = None
            self._heap.clear()
            self._rebuild_at = self._FLOOR
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
                attempt.fired = True
                sock = attempt.raw
                if sock is None and attempt.conn is not None:
                    sock = attempt.conn.sock
                if sock is None:
                    # Still connecting (bounded by the connect timeout): look again shortly.
                    heapq.heappush(heap, (time.monotonic() + 0.05, next(self._order), attempt))
                    continue
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


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

    - One connection pool per destination (scheme, address, port, TLS server name), kept alive and reused.
      Pass your own ``pool`` (a ``urllib3.PoolManager``) to tune them: its ``connection_pool_kw`` (``ca_certs``,
      ``ssl_context``, ``maxsize``, ...) configure the pools HttpTransport keeps, with its own connection
      classes that enforce deadlines. urllib3 runs with ``retries=False`` and ``redirect=False``: no hidden
      retries, no redirects followed. Each response is released as soon as it is read.
    - ``request.timeout`` bounds the attempt as a whole (connecting, the TLS handshake, sending, reading): a
      server that trickles its response is cut off at the deadline. Name resolution is bounded by the system
      resolver.
    - At most ``max_response_bytes`` of a response are read; the rest is discarded with the connection.
    - TLS is verified (the system's trust store, or the ``pool``'s ``ca_certs``).
    - Fork-safe: after ``os.fork()`` the child starts with no pooled connection and its own deadline thread,
      and never touches the parent's connections.
    - The URL is parsed once, strictly (see :class:`~flaghooks.Endpoint`); a request whose URL does not parse
      fails with ``permanent=True``. Errors never quote the URL's credentials or a header value.
    - SSRF policy, on by default: the URL's host is resolved and the attempt refused, with no connection made
      and ``permanent=True``, if any address is in a block of the IANA IPv4 and IPv6 Special-Purpose Address
      Registries that is not globally reachable (loopback, private, link-local with cloud metadata, shared
      100.64.0.0/10, 192.0.0.0/24, documentation, ...), multicast, reserved, broadcast or deprecated
      site-local (fec0::/10), including IPv4-mapped and other embedded forms and literal, decimal or hex IPs.
      The connection goes to the address that was checked, while TLS still verifies the URL's host name.
      ``allowed_networks`` lets named CIDRs through (``["127.0.0.0/8"]`` for a receiver on this machine);
      ``allow_private_addresses=True`` turns the policy off. The refusal's error names both.
      :meth:`Endpoint.check_address <flaghooks.Endpoint.check_address>` applies the same policy when a URL is
      saved.
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
        if isinstance(pool, urllib3.ProxyManager):
            # Its settings would be taken and its proxy silently ignored: the transport connects to the address
            # the SSRF policy checked, never through a proxy. Say so instead.
            raise ConfigError(
                "HttpTransport.pool must not be a urllib3.ProxyManager: HttpTransport connects to the address "
                "its SSRF policy checked and does not send through a proxy (write a Transport for that)"
            )
        self._policy = AddressPolicy(enabled=not allow_private_addresses, allowed_networks=allowed_networks)
        # The manager is where settings come from (its connection_pool_kw: TLS trust, maxsize, block, ...);
        # the pools themselves are this transport's, one per destination, looked up without urllib3's key
        # normalisation on every attempt.
        self._pool = pool if pool is not None else urllib3.PoolManager(num_pools=_MAX_POOLS, maxsize=4)
        self._max_response_bytes = max_response_bytes
        self._fresh_state()
        _live.add(self)

    def _fresh_state(self) -> None:
        """Pools, their lock and the deadline thread: what a forked child must not share with its parent."""
        self._pools: dict[tuple[str, str, int, str | None], urllib3.HTTPConnectionPool] = {}
        self._pools_lock = threading.Lock()
        self._watchdog = _Watchdog()

    def _after_fork(self) -> None:  # pragma: no cover - runs in forked children (tests/test_fork.py)
        # The child forgets the parent's pools without closing them: their sockets are the parent's
        # connections (closing the child's copies of the descriptors, when they are collected, leaves the
        # parent's connections open). The deadline thread did not survive the fork: a new one starts on use.
        self._fresh_state()

    def _connection_pool(self, scheme: str, address: str, port: int, server_name: str | None) -> Any:
        key = (scheme, address, port, server_name)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        with self._pools_lock:  # another thread may have made it meanwhile
            return self._pools.get(key) or self._new_pool(key)

    def _new_pool(self, key: tuple[str, str, int, str | None]) -> Any:
        scheme, address, port, server_name = key
        if len(self._pools) >= _MAX_POOLS:
            self._pools.pop(next(iter(self._pools))).close()  # the oldest
        settings = dict(self._pool.connection_pool_kw)
        if scheme == "http":
            for name in SSL_KEYWORDS:
                settings.pop(name, None)
            pool: urllib3.HTTPConnectionPool = _HTTPPool(address, port, **settings)
        else:
            if server_name is not None:
                # Connect to the checked address; send SNI for and verify the certificate against the name.
                settings["server_hostname"] = server_name
                settings["assert_hostname"] = server_name
            pool = _HTTPSPool(address, port, **settings)
        self._pools[key] = pool
        return pool

    def send(self, request: DeliveryRequest) -> AttemptResult:
        """POST ``request.body`` to ``request.url``, one attempt."""
        started = time.monotonic()
        timeout = request.timeout
        deadline = started + timeout
        try:
            target = parse_url(request.url)
        except (ValueError, TypeError) as exc:  # a hand-built request: the Endpoint would have refused it
            return AttemptResult(None, f"invalid URL: it {exc}", time.monotonic() - started, permanent=True)
        try:
            address = self._policy.resolve(target.host, target.port) if self._policy.enabled else target.host
        except BlockedAddress as exc:
            return AttemptResult(None, str(exc), time.monotonic() - started, permanent=True)
        except (OSError, UnicodeError) as exc:
            return AttemptResult(None, f"DNS failure: {exc}", time.monotonic() - started)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return AttemptResult(None, f"timeout: name resolution took over {timeout:g} s", time.monotonic() - started)
        server_name = target.host if target.scheme == "https" and address != target.host else None
        pool = self._connection_pool(target.scheme, address, target.port, server_name)
        headers = dict(request.headers)
        headers["Host"] = target.host_header
        attempt = _Attempt(deadline)
        watchdog = self._watchdog
        watchdog.watch(attempt)
        _local.attempt = attempt
        try:
            response = pool.urlopen(
                "POST",
                target.target,
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
            watchdog.finish(attempt)
            error = withhold_secrets(_describe(exc, attempt, timeout), request)
            return AttemptResult(None, error, time.monotonic() - started)
        except Exception as exc:  # a request http.client refuses (a hand-built header): its message may quote it
            watchdog.finish(attempt)
            error = f"{type(exc).__name__} while sending the request (its message is withheld: it may quote a header)"
            return AttemptResult(None, error, time.monotonic() - started)
        finally:
            _local.attempt = None
        body, complete = self._read(response, attempt)
        watchdog.finish(attempt)
        # Release explicitly, never by garbage collection: a complete body ends the response (so the
        # connection can serve the next request even while this response object lives on); anything else
        # closes the connection, the rest of the body discarded with it.
        if complete:
            response.drain_conn()
        else:
            response.close()
        response.release_conn()
        retry_after = response.headers.get("Retry-After")
        return AttemptResult(
            response.status,
            None,
            time.monotonic() - started,
            retry_after=None if retry_after is None else parse_retry_after(retry_after, time.time()),
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
        """Stop the deadline thread and close the pooled connections."""
        self._watchdog.close()
        with self._pools_lock:
            pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


_MAX_POOLS = 64
_live: weakref.WeakSet[HttpTransport] = weakref.WeakSet()


def _after_fork_in_child() -> None:  # pragma: no cover - runs in forked children (tests/test_fork.py)
    for transport in list(_live):
        transport._after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(after_in_child=_after_fork_in_child)

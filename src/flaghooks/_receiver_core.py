"""What every receiver does with a request, whatever serves it: method, headers and body in; status, headers and a
JSON body out.

The WSGI receiver, the ASGI receiver and the framework recipes (Django, Flask, FastAPI views calling
``receiver.handle``) differ only in how they read a body and write an answer; the answers, limits, logging and
de-duplication are decided here, once.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ._decode import decode
from ._events import EventType, WebhookEvent
from ._models import clip
from ._signing import (
    FLAGSMITH_HEADER,
    Headers,
    check_headers,
    collect_headers,
    header_text,
    standard_key,
    verify_flagsmith_key,
    verify_standard_found,
)
from .cache import FlagCache
from .exceptions import ConfigError, PayloadError, SignatureError, StoreError

logger = logging.getLogger("flaghooks.receiver")

# An answer before it is written out: the status, the JSON body (bytes already encoded, or a dict to encode) and
# the headers beside Content-Type and Content-Length.
Answer = tuple[int, bytes | dict[str, Any], list[tuple[str, str]]]
# Who asked, for log lines only: (method, path, client address); a receiver that does not know one passes None.
Where = tuple[object, object, object]

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# How long a sender should wait before retrying after the store failed: long enough for a Redis failover or a
# SQLite writer to finish, short enough that flags stay fresh.
STORE_RETRY_AFTER = "5"
# ... and while another copy of the same event is being handled: it usually finishes within milliseconds.
BUSY_RETRY_AFTER = "1"
CONTENT_TYPE = ("Content-Type", "application/json")


class _Verifier:
    """One configuration's checks, with its keys made once: verifying a request is then HMACs and lookups."""

    __slots__ = ("flagsmith_key", "standard_keys", "tolerance")

    def __init__(self, secret: str | None, standard_keys: list[bytes] | None, tolerance: float) -> None:
        self.flagsmith_key = None if secret is None else secret.encode("utf-8")
        self.standard_keys = standard_keys
        self.tolerance = tolerance

    def __call__(self, raw: bytes, found: Mapping[str, object]) -> str | None:
        """Check the signatures configured; the event id to use: the webhook-id only when it was signed."""
        try:
            if self.flagsmith_key is not None:
                verify_flagsmith_key(raw, header_text(found, FLAGSMITH_HEADER), self.flagsmith_key)
            if self.standard_keys is not None:
                return verify_standard_found(raw, found, self.standard_keys, self.tolerance, None)
        except SignatureError:
            raise
        except Exception as exc:  # odd header values (a surrogate in an id, ...): the request is not verifiable
            raise SignatureError(f"cannot verify: {type(exc).__name__}") from None
        # Only a Standard Webhooks signature covers webhook-id. Unsigned, it would let anyone replay a captured
        # body under new ids (running on_event again) or burn the ids of events still to come; the id derived
        # from the body's digest is covered by the Flagsmith signature instead.
        return None


def configure(secret: object, standard_secrets: object, allow_unsigned: object, tolerance: float) -> _Verifier:
    """The verifier for these settings; :class:`ConfigError` naming the setting that cannot work."""
    if type(allow_unsigned) is not bool:
        raise ConfigError("allow_unsigned must be a bool")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigError("secret must be a non-empty str (the endpoint's Flagsmith secret)")
    keys = None
    if standard_secrets is not None:
        candidates = [standard_secrets] if isinstance(standard_secrets, str) else standard_secrets
        if not isinstance(candidates, Sequence) or not candidates:
            raise ConfigError("standard_secrets must be a whsec_ secret or a non-empty sequence of them")
        keys = []
        for index, candidate in enumerate(candidates):
            try:
                keys.append(standard_key(candidate))
            except ValueError as exc:
                raise ConfigError(f"standard_secrets[{index}] is not a Standard Webhooks secret: {exc}") from None
    if secret is None and keys is None and not allow_unsigned:
        raise ConfigError(
            "give secret= (X-Flagsmith-Signature), standard_secrets= (Standard Webhooks) or both; "
            "allow_unsigned=True accepts unsigned requests, for local testing only"
        )
    return _Verifier(secret, keys, tolerance)


@attrs.frozen
class WebhookResponse:
    """A receiver's answer to one request, for any framework to write out (see :meth:`WebhookReceiver.handle`).

    ``status`` is the HTTP status code; ``body`` a small JSON document (``{"event_id": ..., "duplicate": ...}`` or
    ``{"error": ...}``) that never echoes a secret or a signature; ``headers`` the (name, value) pairs to send:
    ``Content-Type: application/json``, plus ``Allow`` on a 405 and ``Retry-After`` on a 503. ``Content-Length``
    is left to the framework.
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


def encode_answer(body: bytes | dict[str, Any]) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body, sort_keys=True).encode()


class Receiver:
    """The framework-neutral receiver both public receivers are: configuration, the answers and de-duplication."""

    _REMEMBERED_UNKNOWN_TYPES = 256

    def __init__(
        self,
        *,
        secret: str | None = None,
        standard_secrets: str | Sequence[str] | None = None,
        cache: FlagCache | None = None,
        on_event: Callable[[WebhookEvent], None] | None = None,
        max_body_bytes: int = 1_048_576,
        tolerance: float = 300,
        allow_unsigned: bool = False,
    ) -> None:
        self._verify = configure(secret, standard_secrets, allow_unsigned, tolerance)
        if cache is not None and not isinstance(cache, FlagCache):
            raise ConfigError(f"cache must be a FlagCache, got {type(cache).__name__}")
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event must be callable or None")
        if on_event is not None and (
            inspect.iscoroutinefunction(on_event) or inspect.iscoroutinefunction(type(on_event).__call__)
        ):
            # Its coroutine would never be awaited: on_event runs in the request's (or a worker) thread.
            raise ConfigError("on_event must be a plain function, not async: it is called in a worker thread")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
        self.cache = cache if cache is not None else FlagCache()
        self._schemes = [name for name, on in (("flagsmith", secret), ("standard", standard_secrets)) if on]
        self._on_event = on_event
        self._max = max_body_bytes
        self._unknown_types: set[str] = set()
        self._unknown_lock = threading.Lock()

    @property
    def max_body_bytes(self) -> int:
        """The largest body accepted; a longer one is answered 413."""
        return self._max

    def __repr__(self) -> str:
        return f"{type(self).__name__}(verifies={self._schemes or ['nothing']}, max_body_bytes={self._max})"

    def handle(self, method: str, headers: Headers, body: bytes) -> WebhookResponse:
        """Answer one request that a framework has read: its method, its headers and its raw body.

        This is the receiver without a server: from a Django, Flask or FastAPI view, call it with what the
        framework read and write out the :class:`WebhookResponse` it returns (its status, headers and body). The
        answers, de-duplication, logging and the ``cache`` and ``on_event`` calls are the receiver's own: 405 for
        a method but POST, 413 for a body over ``max_body_bytes``, 401, 400, 503 with ``Retry-After`` and 200 as
        the class documents. ``headers`` is anything :func:`verify_and_decode` takes (``request.headers`` of
        each of these frameworks does). It blocks while the cache and ``on_event`` run: from async code, call
        it with ``await asyncio.to_thread(receiver.handle, ...)``.

        The size limit is checked on the body given, which the framework has already read into memory: check
        ``Content-Length`` against :attr:`max_body_bytes` before reading where the framework does not limit the
        body itself (docs/receiving.md shows how for each framework).

        A wrong argument type (``body`` a str, ``headers`` None) is a ``TypeError``.
        """
        if not isinstance(method, str):
            raise TypeError(f"method must be a str, got {type(method).__name__}")
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError(f"body must be the raw bytes received, got {type(body).__name__}")
        check_headers(headers)
        where = (method, None, None)
        answer = self._handle(method, body, headers, where)
        status, payload, extra = answer
        return WebhookResponse(status, encode_answer(payload), (CONTENT_TYPE, *extra))

    def _handle(self, method: str, body: bytes | bytearray | memoryview, headers: Headers, where: Where) -> Answer:
        if method != "POST":
            return self._not_allowed(where)
        if len(body) > self._max:
            return self._too_large(where)
        try:
            found = collect_headers(headers)
        except Exception as exc:  # a headers object that fails while read: the request is not verifiable
            return self._reject(401, f"cannot verify: {type(exc).__name__}", where)
        event = self._event(body if type(body) is bytes else bytes(body), found, where)
        return event if isinstance(event, tuple) else self._deliver(event)

    # --- the steps each receiver composes ---------------------------------------------------------------------

    def _reject(self, status: int, reason: str, where: Where) -> Answer:
        method, path, client = where
        if path is None:
            logger.warning("rejected %s request: %d %s %s", method, status, REASONS[status], reason)
        else:
            logger.warning("rejected %s %s from %s: %d %s %s", method, path, client, status, REASONS[status], reason)
        return status, {"error": reason}, []

    def _not_allowed(self, where: Where) -> Answer:
        status, answer, _ = self._reject(405, "only POST is accepted", where)
        return status, answer, [("Allow", "POST")]

    def _too_large(self, where: Where) -> Answer:
        return self._reject(413, f"the body is over {self._max} bytes", where)

    def _declared_length(self, text: object, where: Where) -> int | Answer | None:
        """The length a ``Content-Length`` value declares (None when absent), or the answer refusing it."""
        if isinstance(text, bytes):
            text = text.decode("latin-1")
        if not isinstance(text, str):
            return self._reject(400, "invalid Content-Length", where)
        text = text.strip()
        if not text:
            return None
        # isdigit() alone accepts "²" and other digits int() refuses: only ASCII digits are a length.
        if not (text.isascii() and text.isdigit()):
            return self._reject(400, "invalid Content-Length", where)
        # More digits than the limit has is over it, whatever they say: int() of thousands of digits would raise
        # (Python caps integer conversion at 4,300 digits), and would cost time before any signature is checked.
        digits = text.lstrip("0")
        if len(digits) > len(str(self._max)) or int(digits or "0") > self._max:
            return self._too_large(where)
        return int(digits or "0")

    def _event(self, body: bytes, found: Mapping[str, object], where: Where) -> WebhookEvent | Answer:
        """The verified, decoded event, or the answer refusing the request (401, 400)."""
        try:
            return decode(body, event_id=self._verify(body, found))
        except SignatureError as exc:
            return self._reject(401, str(exc), where)
        except PayloadError as exc:
            return self._reject(400, str(exc), where)

    def _deliver(self, event: WebhookEvent) -> Answer:
        """Claim the event, apply it to the cache, run ``on_event``, release the claim: the answer.

        Blocking (the store and ``on_event``): the ASGI receiver runs it in a worker thread.
        """
        event_id = event.id
        cache = self.cache
        try:
            claimed = cache.claim(event_id)
        except StoreError as exc:
            return _store_failed(event, exc, "claiming")
        if claimed is None:
            answer = {"error": "another copy of this event is being handled; try again", "event_id": event_id}
            return 503, answer, [("Retry-After", BUSY_RETRY_AFTER)]
        if not claimed:
            return 200, _accepted(event_id, b"true"), []
        handled = False
        failed: Answer | None = None
        try:
            cache.apply(event)
            kind: object = event.event_type
            if not isinstance(kind, EventType):
                self._note_unknown(str(kind))
            if self._on_event is not None:
                self._on_event(event)
            handled = True
        except StoreError as exc:
            failed = _store_failed(event, exc, "applying")
        except Exception:
            logger.exception(
                "handling %s %s failed; answering 500 so that it is sent again", event.event_type, event_id
            )
            failed = 500, {"error": "the event could not be handled"}, []
        finally:
            try:
                cache.release(event_id, handled=handled)
            except StoreError as exc:
                # The claim stays until its lease expires; then a retry of the event can be handled again.
                if not handled:
                    logger.error("releasing the claim on %s failed (it expires with its lease): %s", event_id, exc)
                else:
                    # The event is in the cache and on_event has run: answering 503 would have the sender retry,
                    # and that retry would run on_event a second time once the claim's lease expires.
                    logger.error(
                        "recording %s %s as handled failed (answered 200: it was handled; a copy arriving after "
                        "the claim's lease expires is handled again): %s",
                        event.event_type,
                        event_id,
                        exc,
                    )
        if failed is not None:
            return failed
        return 200, _accepted(event_id, b"false"), []

    def _note_unknown(self, kind: str) -> None:
        with self._unknown_lock:
            if kind in self._unknown_types or len(self._unknown_types) > self._REMEMBERED_UNKNOWN_TYPES:
                return
            self._unknown_types.add(kind)
            full = len(self._unknown_types) > self._REMEMBERED_UNKNOWN_TYPES
        if full:
            logger.warning("over %d unknown event types received; no more are logged", self._REMEMBERED_UNKNOWN_TYPES)
        else:
            logger.warning(
                "received event type %s, which flaghooks does not know: answered 200 and passed to on_event, "
                "the cache ignores it (logged once per type)",
                clip(kind),
            )


def _store_failed(event: WebhookEvent, exc: StoreError, doing: str) -> Answer:
    logger.error(
        "%s %s %s failed, the flag store is unavailable; answering 503 so that it is sent again: %s",
        doing,
        event.event_type,
        event.id,
        exc,
    )
    answer = {"error": "the flag store is unavailable; try again later", "event_id": event.id}
    return 503, answer, [("Retry-After", STORE_RETRY_AFTER)]


def _accepted(event_id: str, duplicate: bytes) -> bytes:
    # What json.dumps(..., sort_keys=True) gives, without building a dict and sorting it per request.
    return b'{"duplicate": ' + duplicate + b', "event_id": ' + json.dumps(event_id).encode() + b"}"

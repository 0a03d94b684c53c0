"""The receiving end: verify, decode, and keep a local cache of flag state.

- :func:`verify_and_decode` checks a request's signatures over its raw bytes and decodes it;
- :class:`FlagCache` mirrors flag state from events that may arrive late, twice or out of order;
- :class:`WebhookReceiver` is a WSGI application doing both, behind any PEP 3333 server.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

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
from .exceptions import ConfigError, PayloadError, SignatureError

__all__ = ["FlagCache", "WebhookReceiver", "verify_and_decode"]

logger = logging.getLogger("flaghooks.receiver")

StartResponse = Callable[..., Any]


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


def _configure(secret: object, standard_secrets: object, allow_unsigned: object, tolerance: float) -> _Verifier:
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


def verify_and_decode(
    body: bytes,
    headers: Headers,
    *,
    secret: str | None = None,
    standard_secrets: str | Sequence[str] | None = None,
    tolerance: float = 300,
    allow_unsigned: bool = False,
) -> WebhookEvent:
    """Verify a request's signatures over its raw ``body`` and decode it.

    ``headers`` is the request's headers as the framework has them: a dict, werkzeug's (Flask's)
    ``request.headers``, Django's ``request.headers``, an ``http.client.HTTPMessage``, Starlette's ``Headers``,
    or a list of (name, value) pairs (str or bytes, as ASGI has them); names are case-insensitive.

    With ``secret``, a valid ``X-Flagsmith-Signature`` is required; with ``standard_secrets`` (one ``whsec_``
    secret or several, for rotation), valid Standard Webhooks headers within ``tolerance`` seconds; with both,
    both are. With neither, :class:`ConfigError` (a programming error), unless ``allow_unsigned=True``.

    The event id is the ``webhook-id`` header only when a Standard Webhooks signature, which covers it, was
    verified. Otherwise ``webhook-id`` is ignored and the id is derived from the body's digest (which the
    Flagsmith signature covers), so a captured body replayed under new ids keeps its one id, and nobody can
    use up the ids of events still to come.

    For any request it raises only :class:`SignatureError` or :class:`PayloadError`; ``headers`` that are not
    a headers object at all (``None``, a str, a list of anything but pairs) are a ``TypeError``.
    """
    verifier = _configure(secret, standard_secrets, allow_unsigned, tolerance)
    if not isinstance(body, bytes | bytearray | memoryview):
        raise PayloadError(f"body must be the raw bytes received, got {type(body).__name__}")
    check_headers(headers)
    raw = body if type(body) is bytes else bytes(body)
    try:
        found = collect_headers(headers)
    except Exception as exc:  # a headers object that fails while read: the request is not verifiable
        raise SignatureError(f"cannot verify: {type(exc).__name__}") from None
    return decode(raw, event_id=verifier(raw, found))


_Answer = tuple[str, bytes | dict[str, Any], list[tuple[str, str]]]


class WebhookReceiver:
    """A WSGI application that receives web hooks (runs under ``wsgiref``, gunicorn, any PEP 3333 server).

    Each request is answered:

    - 405 (with ``Allow: POST``) for any method but POST; 400 for a ``Content-Length`` that is not ASCII
      digits; 413, without reading it, for a body over ``max_body_bytes``; a body without ``Content-Length``
      (chunked) is read when the server has decoded it (it sets ``wsgi.input_terminated``, as gunicorn does),
      at most ``max_body_bytes`` + 1 bytes of it (413 past the limit), and is 411 otherwise;
    - 401 when a signature is missing or wrong, or a Standard Webhooks timestamp is outside ``tolerance``;
    - 400 for a body that is not a valid event;
    - 503 with ``Retry-After: 1`` while another copy of the same event (same event id) is being handled: the
      event is handled once, and the sender is told to come back for the outcome;
    - 500 when the ``cache`` or ``on_event`` raised (logged; the event may be sent again, and is handled again);
    - 200 once the event is in the cache and ``on_event`` has run; an event id already handled is answered
      200 again without running ``on_event`` (a retry after a lost response).

    The event id is as :func:`verify_and_decode` gives it: ``webhook-id`` only when Standard Webhooks
    signatures are verified, else derived from the body. An event type flaghooks does not know is answered
    200, passed to ``on_event`` and left out of the cache; each such type name is logged once.

    ``secret``, ``standard_secrets`` and ``allow_unsigned`` are as for :func:`verify_and_decode`. ``cache``
    defaults to a new :class:`FlagCache`, available as ``receiver.cache``. Responses are small JSON documents
    that never echo a secret or a signature.
    """

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
        self._verify = _configure(secret, standard_secrets, allow_unsigned, tolerance)
        if cache is not None and not isinstance(cache, FlagCache):
            raise ConfigError(f"cache must be a FlagCache, got {type(cache).__name__}")
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event must be callable or None")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
        self.cache = cache if cache is not None else FlagCache()
        self._schemes = [name for name, on in (("flagsmith", secret), ("standard", standard_secrets)) if on]
        self._on_event = on_event
        self._max = max_body_bytes
        self._unknown_types: set[str] = set()
        self._unknown_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookReceiver(verifies={self._schemes or ['nothing']}, max_body_bytes={self._max})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, body, extra = self._handle(environ)
        payload = body if isinstance(body, bytes) else json.dumps(body, sort_keys=True).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *extra])
        return [payload]

    def _reject(self, status: str, reason: str, environ: dict[str, Any]) -> _Answer:
        logger.warning(
            "rejected %s %s from %s: %s %s",
            environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO"),
            environ.get("REMOTE_ADDR", "?"),
            status,
            reason,
        )
        return status, {"error": reason}, []

    def _body(self, environ: dict[str, Any]) -> bytes | _Answer:
        length_text = environ.get("CONTENT_LENGTH") or ""
        if not isinstance(length_text, str):
            return self._reject("400 Bad Request", "invalid Content-Length", environ)
        length_text = length_text.strip()
        if not length_text:
            if not environ.get("wsgi.input_terminated"):
                return self._reject("411 Length Required", "a Content-Length is required", environ)
            # The server decoded the body (chunked) and ends the stream with it: one byte past the limit is
            # enough to know the body is too large, without holding any more of it.
            body = _read(environ["wsgi.input"], self._max + 1)
            if len(body) > self._max:
                return self._reject("413 Content Too Large", f"the body is over {self._max} bytes", environ)
            return body
        # isdigit() alone accepts "²" and other digits int() refuses: only ASCII digits are a length.
        if not (length_text.isascii() and length_text.isdigit()):
            return self._reject("400 Bad Request", "invalid Content-Length", environ)
        # More digits than the limit has is over it, whatever they say: int() of thousands of digits would raise
        # (Python caps integer conversion at 4,300 digits), and would cost time before any signature is checked.
        digits = length_text.lstrip("0")
        if len(digits) > len(str(self._max)) or int(digits or "0") > self._max:
            return self._reject("413 Content Too Large", f"the body is over {self._max} bytes", environ)
        length = int(digits or "0")
        body = _read(environ["wsgi.input"], length)
        if len(body) != length:
            return self._reject("400 Bad Request", "the body is shorter than its Content-Length", environ)
        return body

    def _handle(self, environ: dict[str, Any]) -> _Answer:
        if environ.get("REQUEST_METHOD") != "POST":
            status, answer, _ = self._reject("405 Method Not Allowed", "only POST is accepted", environ)
            return status, answer, [("Allow", "POST")]
        body = self._body(environ)
        if not isinstance(body, bytes):
            return body
        get = environ.get
        found = {
            FLAGSMITH_HEADER: get("HTTP_X_FLAGSMITH_SIGNATURE"),
            "webhook-id": get("HTTP_WEBHOOK_ID"),
            "webhook-timestamp": get("HTTP_WEBHOOK_TIMESTAMP"),
            "webhook-signature": get("HTTP_WEBHOOK_SIGNATURE"),
        }
        try:
            event = decode(body, event_id=self._verify(body, found))
        except SignatureError as exc:
            return self._reject("401 Unauthorized", str(exc), environ)
        except PayloadError as exc:
            return self._reject("400 Bad Request", str(exc), environ)
        event_id = event.id
        cache = self.cache
        claimed = cache.claim(event_id)
        if claimed is None:
            answer = {"error": "another copy of this event is being handled; try again", "event_id": event_id}
            return "503 Service Unavailable", answer, [("Retry-After", "1")]
        if not claimed:
            return "200 OK", _accepted(event_id, b"true"), []
        handled = False
        try:
            cache.apply(event)
            kind: object = event.event_type
            if not isinstance(kind, EventType):
                self._note_unknown(str(kind))
            if self._on_event is not None:
                self._on_event(event)
            handled = True
        except Exception:
            logger.exception(
                "handling %s %s failed; answering 500 so that it is sent again", event.event_type, event_id
            )
            return "500 Internal Server Error", {"error": "the event could not be handled"}, []
        finally:
            cache.release(event_id, handled=handled)
        return "200 OK", _accepted(event_id, b"false"), []

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


def _accepted(event_id: str, duplicate: bytes) -> bytes:
    # What json.dumps(..., sort_keys=True) gives, without building a dict and sorting it per request.
    return b'{"duplicate": ' + duplicate + b', "event_id": ' + json.dumps(event_id).encode() + b"}"


def _read(stream: Any, length: int) -> bytes:
    chunks = []
    remaining = length
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)

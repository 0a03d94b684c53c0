"""The receiving end: verify, decode, and keep a local cache of flag state.

- :func:`verify_and_decode` checks a request's signatures over its raw bytes and decodes it;
- :class:`FlagCache` mirrors flag state from events that may arrive late, twice or out of order;
- :class:`WebhookReceiver` is a WSGI application doing both, behind any PEP 3333 server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._cache import FlagCache, RecentIds
from ._decode import decode
from ._events import WebhookEvent
from ._signing import find_header, standard_key, verify_flagsmith, verify_standard
from .exceptions import ConfigError, PayloadError, SignatureError

__all__ = ["FlagCache", "WebhookReceiver", "verify_and_decode"]

logger = logging.getLogger("flaghooks.receiver")

StartResponse = Callable[..., Any]


def _check_config(secret: object, standard_secrets: object, allow_unsigned: object) -> None:
    if type(allow_unsigned) is not bool:
        raise ConfigError("allow_unsigned must be a bool")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise ConfigError("secret must be a non-empty str (the endpoint's Flagsmith secret)")
    if standard_secrets is not None:
        candidates = [standard_secrets] if isinstance(standard_secrets, str) else standard_secrets
        if not isinstance(candidates, Sequence) or not candidates:
            raise ConfigError("standard_secrets must be a whsec_ secret or a non-empty sequence of them")
        for index, candidate in enumerate(candidates):
            try:
                standard_key(candidate)
            except ValueError as exc:
                raise ConfigError(f"standard_secrets[{index}] is not a Standard Webhooks secret: {exc}") from None
    if secret is None and standard_secrets is None and not allow_unsigned:
        raise ConfigError(
            "give secret= (X-Flagsmith-Signature), standard_secrets= (Standard Webhooks) or both; "
            "allow_unsigned=True accepts unsigned requests, for local testing only"
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = find_header(headers, name)
    return value if isinstance(value, str) else None


def verify_and_decode(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret: str | None = None,
    standard_secrets: str | Sequence[str] | None = None,
    tolerance: float = 300,
    allow_unsigned: bool = False,
) -> WebhookEvent:
    """Verify a request's signatures over its raw ``body`` and decode it.

    With ``secret``, a valid ``X-Flagsmith-Signature`` is required; with ``standard_secrets`` (one ``whsec_``
    secret or several, for rotation), valid Standard Webhooks headers within ``tolerance`` seconds; with both,
    both are. With neither, :class:`ConfigError` (a programming error), unless ``allow_unsigned=True``. The
    event id is the ``webhook-id`` header when there is one.

    For any request it raises only :class:`SignatureError` or :class:`PayloadError`.
    """
    _check_config(secret, standard_secrets, allow_unsigned)
    if not isinstance(body, bytes | bytearray | memoryview):
        raise PayloadError(f"body must be the raw bytes received, got {type(body).__name__}")
    if not isinstance(headers, Mapping):
        raise SignatureError(f"headers must be a mapping, got {type(headers).__name__}")
    raw = bytes(body)
    try:
        if secret is not None:
            signature = _header(headers, "x-flagsmith-signature")
            if signature is None:
                raise SignatureError("missing x-flagsmith-signature header")
            verify_flagsmith(raw, signature, secret)
        if standard_secrets is not None:
            verify_standard(raw, headers, standard_secrets, tolerance=tolerance)
        event_id = _header(headers, "webhook-id")
    except SignatureError:
        raise
    except Exception as exc:  # an odd headers mapping: the request is not verifiable
        raise SignatureError(f"cannot verify: {type(exc).__name__}") from None
    return decode(raw, event_id=event_id)


class WebhookReceiver:
    """A WSGI application that receives web hooks (runs under ``wsgiref``, gunicorn, any PEP 3333 server).

    Each request is answered:

    - 405 (with ``Allow: POST``) for any method but POST; 411 without ``Content-Length``; 413, without reading
      it, for a body over ``max_body_bytes``;
    - 401 when a signature is missing or wrong, or a Standard Webhooks timestamp is outside ``tolerance``;
    - 400 for a body that is not a valid event;
    - 500 when the ``cache`` or ``on_event`` raised (logged; the sender will retry);
    - 200 once the event is in the cache and ``on_event`` has run; an event id already accepted is answered
      200 again without running ``on_event`` (a retry after a lost response).

    ``secret``, ``standard_secrets`` and ``allow_unsigned`` are as for :func:`verify_and_decode`. ``cache``
    defaults to a new :class:`FlagCache`, available as ``receiver.cache``. Responses are small JSON documents
    that never echo a secret or a signature.
    """

    _REMEMBERED_IDS = 65536

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
        _check_config(secret, standard_secrets, allow_unsigned)
        if cache is not None and not isinstance(cache, FlagCache):
            raise ConfigError(f"cache must be a FlagCache, got {type(cache).__name__}")
        if on_event is not None and not callable(on_event):
            raise ConfigError("on_event must be callable or None")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive int, got {max_body_bytes!r}")
        self.cache = cache if cache is not None else FlagCache()
        self._secret = secret
        self._standard = standard_secrets
        self._on_event = on_event
        self._max = max_body_bytes
        self._tolerance = tolerance
        self._allow_unsigned = allow_unsigned
        self._seen = RecentIds(self._REMEMBERED_IDS)

    def __repr__(self) -> str:
        schemes = [name for name, on in (("flagsmith", self._secret), ("standard", self._standard)) if on]
        return f"WebhookReceiver(verifies={schemes or ['nothing']}, max_body_bytes={self._max})"

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, body, extra = self._handle(environ)
        payload = json.dumps(body, sort_keys=True).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload))), *extra]
        start_response(status, headers)
        return [payload]

    def _reject(self, status: str, reason: str, environ: dict[str, Any]) -> tuple[str, dict[str, Any], list[Any]]:
        logger.warning(
            "rejected %s %s from %s: %s %s",
            environ.get("REQUEST_METHOD"),
            environ.get("PATH_INFO"),
            environ.get("REMOTE_ADDR", "?"),
            status,
            reason,
        )
        return status, {"error": reason}, []

    def _handle(self, environ: dict[str, Any]) -> tuple[str, dict[str, Any], list[Any]]:
        if environ.get("REQUEST_METHOD") != "POST":
            status, answer, _ = self._reject("405 Method Not Allowed", "only POST is accepted", environ)
            return status, answer, [("Allow", "POST")]
        length_text = (environ.get("CONTENT_LENGTH") or "").strip()
        if not length_text:
            return self._reject("411 Length Required", "a Content-Length is required", environ)
        if not length_text.isdigit():
            return self._reject("400 Bad Request", "invalid Content-Length", environ)
        length = int(length_text)
        if length > self._max:
            return self._reject("413 Content Too Large", f"the body is over {self._max} bytes", environ)
        body = _read(environ["wsgi.input"], length)
        if len(body) != length:
            return self._reject("400 Bad Request", "the body is shorter than its Content-Length", environ)
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        try:
            event = verify_and_decode(
                body,
                headers,
                secret=self._secret,
                standard_secrets=self._standard,
                tolerance=self._tolerance,
                allow_unsigned=self._allow_unsigned,
            )
        except SignatureError as exc:
            return self._reject("401 Unauthorized", str(exc), environ)
        except PayloadError as exc:
            return self._reject("400 Bad Request", str(exc), environ)
        if event.id in self._seen:
            return "200 OK", {"event_id": event.id, "duplicate": True}, []
        try:
            self.cache.apply(event)
            if self._on_event is not None:
                self._on_event(event)
        except Exception:
            logger.exception(
                "handling %s %s failed; answering 500 so that it is sent again", event.event_type, event.id
            )
            return "500 Internal Server Error", {"error": "the event could not be handled"}, []
        self._seen.add(event.id)
        return "200 OK", {"event_id": event.id, "duplicate": False}, []


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

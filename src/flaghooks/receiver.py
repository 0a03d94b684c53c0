"""The receiving end: verify, decode, and keep a local cache of flag state.

- :func:`verify_and_decode` checks a request's signatures over its raw bytes and decodes it;
- :class:`FlagCache` mirrors flag state from events that may arrive late, twice or out of order;
- :class:`WebhookReceiver` is a WSGI application doing both, behind any PEP 3333 server;
- :class:`AsgiWebhookReceiver` is the same as an ASGI 3 application (uvicorn, hypercorn, mounted in Starlette or
  FastAPI);
- ``receiver.handle(method, headers, body)``, on either, answers a request a framework has read (a Django, Flask
  or FastAPI view), with a :class:`WebhookResponse`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._asgi import AsgiWebhookReceiver
from ._decode import decode
from ._events import WebhookEvent
from ._receiver_core import CONTENT_TYPE, REASONS, Answer, Receiver, WebhookResponse, Where, configure, encode_answer
from ._signing import FLAGSMITH_HEADER, Headers, check_headers, collect_headers
from .cache import FlagCache
from .exceptions import PayloadError, SignatureError

__all__ = ["AsgiWebhookReceiver", "FlagCache", "WebhookReceiver", "WebhookResponse", "verify_and_decode"]

StartResponse = Callable[..., Any]


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
    verifier = configure(secret, standard_secrets, allow_unsigned, tolerance)
    if not isinstance(body, bytes | bytearray | memoryview):
        raise PayloadError(f"body must be the raw bytes received, got {type(body).__name__}")
    check_headers(headers)
    raw = body if type(body) is bytes else bytes(body)
    try:
        found = collect_headers(headers)
    except Exception as exc:  # a headers object that fails while read: the request is not verifiable
        raise SignatureError(f"cannot verify: {type(exc).__name__}") from None
    return decode(raw, event_id=verifier(raw, found))


class WebhookReceiver(Receiver):
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
    - 503 with ``Retry-After: 5`` when the cache's store fails (``StoreError`` from claiming, applying or
      releasing; logged): nothing of the event was applied, and the sender's retry handles it;
    - 500 when the ``cache`` or ``on_event`` raised anything else (logged; the event may be sent again, and is
      handled again);
    - 200 once the event is in the cache and ``on_event`` has run; an event id already handled is answered
      200 again without running ``on_event`` (a retry after a lost response).

    The event id is as :func:`verify_and_decode` gives it: ``webhook-id`` only when Standard Webhooks
    signatures are verified, else derived from the body. An event type flaghooks does not know is answered
    200, passed to ``on_event`` and left out of the cache; each such type name is logged once.

    ``secret``, ``standard_secrets`` and ``allow_unsigned`` are as for :func:`verify_and_decode`. ``cache``
    defaults to a new :class:`FlagCache`, available as ``receiver.cache``. ``on_event`` is a plain function
    (not async), called in the request's thread. Responses are small JSON documents that never echo a secret or
    a signature.

    From a framework's view (Django, Flask), :meth:`handle` answers the request the framework has read, with
    the same answers.
    """

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        status, body, extra = self._wsgi(environ)
        payload = encode_answer(body)
        start_response(f"{status} {REASONS[status]}", [CONTENT_TYPE, ("Content-Length", str(len(payload))), *extra])
        return [payload]

    def _wsgi(self, environ: dict[str, Any]) -> Answer:
        get = environ.get
        where = (get("REQUEST_METHOD"), get("PATH_INFO"), get("REMOTE_ADDR", "?"))
        if get("REQUEST_METHOD") != "POST":
            return self._not_allowed(where)
        body = self._body(environ, where)
        if not isinstance(body, bytes):
            return body
        found = {
            FLAGSMITH_HEADER: get("HTTP_X_FLAGSMITH_SIGNATURE"),
            "webhook-id": get("HTTP_WEBHOOK_ID"),
            "webhook-timestamp": get("HTTP_WEBHOOK_TIMESTAMP"),
            "webhook-signature": get("HTTP_WEBHOOK_SIGNATURE"),
        }
        event = self._event(body, found, where)
        return event if isinstance(event, tuple) else self._deliver(event)

    def _body(self, environ: dict[str, Any], where: Where) -> bytes | Answer:
        length = self._declared_length(environ.get("CONTENT_LENGTH") or "", where)
        if isinstance(length, tuple):
            return length
        if length is None:
            if not environ.get("wsgi.input_terminated"):
                return self._reject(411, "a Content-Length is required", where)
            # The server decoded the body (chunked) and ends the stream with it: one byte past the limit is
            # enough to know the body is too large, without holding any more of it.
            body = _read(environ["wsgi.input"], self._max + 1)
            if len(body) > self._max:
                return self._too_large(where)
            return body
        body = _read(environ["wsgi.input"], length)
        if len(body) != length:
            return self._reject(400, "the body is shorter than its Content-Length", where)
        return body


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

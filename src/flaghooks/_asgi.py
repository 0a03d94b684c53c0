"""AsgiWebhookReceiver: the receiver as an ASGI 3 application, with no dependency beyond the standard library."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._receiver_core import CONTENT_TYPE, Answer, Receiver, Where, encode_answer
from ._signing import WANTED_HEADERS, collect_headers
from .exceptions import ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_READ_HEADERS = WANTED_HEADERS | {"content-length"}


class AsgiWebhookReceiver(Receiver):
    """An ASGI 3 application that receives web hooks: under uvicorn or hypercorn, or mounted in Starlette or
    FastAPI (``Mount("/hooks", app=receiver)``, ``app.mount("/hooks", receiver)``).

    It takes the arguments of :class:`WebhookReceiver` and gives the same answers, with the same limits,
    logging and de-duplication. It reads the body itself: a ``Content-Length`` over ``max_body_bytes`` is
    answered 413 before any of the body is read, and a chunked body is counted as it arrives and answered 413
    as soon as it passes the limit (the rest is never read). A client that disconnects before its body is
    complete gets no answer (there is nobody to answer) and nothing is applied.

    Verifying and decoding run on the event loop (they are quick, and a request that fails them never takes a
    thread); claiming, applying to the cache (its store may block on a file or the network) and ``on_event``
    run in a worker thread (``asyncio.to_thread``), so ``on_event`` is a plain function, not a coroutine.

    A ``lifespan`` scope is answered ``startup.complete`` and ``shutdown.complete`` (there is nothing to start);
    a ``websocket`` connection is refused (the server answers 403); any other scope type raises
    :class:`ConfigError`, which ASGI servers take as "not supported".
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":
            await receive()  # websocket.connect
            self._reject(403, "web hooks are POST requests, not WebSocket connections", _where(scope))
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ConfigError(f"AsgiWebhookReceiver serves http scopes, not {kind!r}")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = _where(scope)
        if scope.get("method") != "POST":
            await _respond(send, self._not_allowed(where))
            return
        found = collect_headers(scope.get("headers") or [], _READ_HEADERS)
        length = self._declared_length(found.pop("content-length", b""), where)
        if isinstance(length, tuple):
            await _respond(send, length)
            return
        body = await self._read(receive, length, where)
        if body is None:
            return
        if isinstance(body, tuple):
            await _respond(send, body)
            return
        event = self._event(body, found, where)
        if isinstance(event, tuple):
            await _respond(send, event)
            return
        # If this task is cancelled meanwhile, the thread still runs to its end, releasing its claim.
        await _respond(send, await asyncio.to_thread(self._deliver, event))

    async def _read(self, receive: Receive, length: int | None, where: Where) -> bytes | Answer | None:
        """The body (at most ``length`` bytes, or ``max_body_bytes``), the answer refusing it, or None when the
        client went away before sending all of it."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._reject(400, "the client disconnected before its body was complete; not answered", where)
                return None
            chunk = message.get("body", b"")
            more = bool(message.get("more_body", False))
            size += len(chunk)
            if size > self._max:  # a chunked body past the limit: stop here, without reading the rest
                return self._too_large(where)
            if chunk:
                chunks.append(chunk)
        if length is not None and size != length:
            return self._reject(400, "the body's length differs from its Content-Length", where)
        return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    # The protocol has two messages: lifespan.startup, then lifespan.shutdown.
    while (await receive())["type"] == "lifespan.startup":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def _respond(send: Send, answer: Answer) -> None:
    status, body, extra = answer
    payload = encode_answer(body)
    headers = [CONTENT_TYPE, ("Content-Length", str(len(payload))), *extra]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def _where(scope: Scope) -> Where:
    client = scope.get("client")
    return scope.get("method", scope["type"]), scope.get("path", "?"), client[0] if client else "?"

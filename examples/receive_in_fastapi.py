"""Receive flaghooks (or Flagsmith) web hooks in a FastAPI application, two ways:

- mount an ``AsgiWebhookReceiver`` (it reads the body itself, within its size limit): the simplest;
- or a route that reads the body within the limit (``await request.body()`` has none) and hands it to the
  receiver's ``handle`` in a worker thread: when the route needs FastAPI's dependencies or middleware.

Run: ``python examples/receive_in_fastapi.py``: it serves the app with uvicorn on 127.0.0.1 and sends each way a
genuine change, the same change again and a tampered copy.
"""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn
from _delivery_tour import deliver
from fastapi import FastAPI, Request, Response

from flaghooks import WebhookEvent, generate_secret
from flaghooks.receiver import AsgiWebhookReceiver, FlagCache


def mount_flagsmith_webhook(app: FastAPI, receiver: AsgiWebhookReceiver) -> None:
    """Way 1: the receiver is an ASGI application; FastAPI passes it every request under /hooks/ (give the sender
    https://.../hooks/flagsmith: a request to /hooks itself is redirected to /hooks/, which senders do not follow)."""
    app.mount("/hooks", receiver)


def route_flagsmith_webhook(app: FastAPI, receiver: AsgiWebhookReceiver, path: str = "/hooks/flagsmith") -> None:
    """Way 2: a route of ``app`` that reads the body within ``receiver.max_body_bytes`` and lets it answer."""

    @app.post(path)
    async def flagsmith_webhook(request: Request) -> Response:
        body = await read_body(request, receiver.max_body_bytes)
        if body is None:
            return Response(b'{"error": "the body is too large"}', 413, media_type="application/json")
        # handle() blocks while the cache's store and on_event run: keep that off the event loop.
        answer = await asyncio.to_thread(receiver.handle, request.method, request.headers, body)
        return Response(answer.body, answer.status, headers=dict(answer.headers))


async def read_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None as soon as it is over ``limit`` bytes (the rest is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():  # a chunked body is counted as it arrives
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


# --- the tour ---------------------------------------------------------------------------------------------------


def tour() -> None:
    for way, add in (("mounted", mount_flagsmith_webhook), ("route", route_flagsmith_webhook)):
        print(f"-- {way}")
        secret, cache, handled = generate_secret(), FlagCache(), list[WebhookEvent]()
        app = FastAPI()
        add(app, AsgiWebhookReceiver(standard_secrets=secret, cache=cache, on_event=handled.append))
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise SystemExit("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            deliver(f"http://127.0.0.1:{port}/hooks/flagsmith", secret, cache, handled)
        finally:
            server.should_exit = True
            thread.join()


if __name__ == "__main__":
    tour()

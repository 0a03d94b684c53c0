"""Mount a ``WebhookReceiver`` under a path of a WSGI application you already have (any framework's, or none),
with a dispatcher by path prefix: requests under the prefix go to the receiver, the rest to the application.

werkzeug's ``DispatcherMiddleware(app, {"/hooks/flagsmith": receiver})`` does the same, if werkzeug is at hand.

Run: ``python examples/receive_in_wsgi_app.py``: it serves the combined application with wsgiref on 127.0.0.1 and
sends itself a genuine change, the same change again and a tampered copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from _delivery_tour import deliver

from flaghooks import WebhookEvent, generate_secret
from flaghooks.receiver import FlagCache, WebhookReceiver

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def mount(app: WsgiApp, prefix: str, receiver: WsgiApp) -> WsgiApp:
    """``app``, with the requests under ``prefix`` (``"/hooks/flagsmith"``) passed to ``receiver`` instead."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            # As a mounted application expects: the prefix moves from PATH_INFO to SCRIPT_NAME.
            environ = {**environ, "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + prefix}
            environ["PATH_INFO"] = path[len(prefix) :]
            return receiver(environ, start_response)
        return app(environ, start_response)

    return dispatch


# --- the tour ---------------------------------------------------------------------------------------------------


def existing_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Stands for the application you have: it answers everything else."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the rest of the site\n"]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def tour() -> None:
    secret, cache, handled = generate_secret(), FlagCache(), list[WebhookEvent]()
    receiver = WebhookReceiver(standard_secrets=secret, cache=cache, on_event=handled.append)
    server = make_server("127.0.0.1", 0, mount(existing_app, "/hooks/flagsmith", receiver), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deliver(f"http://127.0.0.1:{server.server_port}/hooks/flagsmith", secret, cache, handled)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    tour()

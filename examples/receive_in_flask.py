"""Receive flaghooks (or Flagsmith) web hooks in a Flask application: a view that hands the request to
``WebhookReceiver.handle`` and returns its answer.

Run: ``python examples/receive_in_flask.py``: it serves the app with werkzeug on 127.0.0.1 and sends itself a
genuine change, the same change again and a tampered copy.
"""

from __future__ import annotations

import threading

from _delivery_tour import deliver
from flask import Flask, request
from werkzeug.serving import WSGIRequestHandler, make_server

from flaghooks import WebhookEvent, generate_secret
from flaghooks.receiver import FlagCache, WebhookReceiver


def add_flagsmith_webhook(app: Flask, receiver: WebhookReceiver, rule: str = "/hooks/flagsmith") -> None:
    """Route POST ``rule`` of ``app`` to ``receiver``."""

    @app.post(rule)
    def flagsmith_webhook() -> tuple[bytes, int, list[tuple[str, str]]]:
        # Flask 3.1+: read at most one byte past the receiver's limit, chunked bodies included (a larger declared
        # Content-Length is 413 before the body is read; a chunked body is cut there, and the receiver says 413).
        request.max_content_length = receiver.max_body_bytes + 1
        # get_data() is the raw bytes, as signed; call it before anything reads request.form or request.json.
        answer = receiver.handle(request.method, request.headers, request.get_data())
        return answer.body, answer.status, list(answer.headers)


# --- the tour ---------------------------------------------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: object) -> None:
        pass


def tour() -> None:
    secret, cache, handled = generate_secret(), FlagCache(), list[WebhookEvent]()
    app = Flask(__name__)
    add_flagsmith_webhook(app, WebhookReceiver(standard_secrets=secret, cache=cache, on_event=handled.append))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        deliver(f"http://127.0.0.1:{server.server_port}/hooks/flagsmith", secret, cache, handled)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    tour()

"""A service that keeps a local cache of flag state from incoming web hooks and answers flag lookups.

POST /webhooks receives (and verifies) web hooks; GET /flags/<environment>/<feature>[?identity=...] answers
{"enabled": ..., "value": ...} from the cache, without calling the flag service.

Run: ``python examples/local_cache_receiver.py`` for a self-contained tour (it sends itself a few changes), or
``WEBHOOK_SECRET=whsec_... python examples/local_cache_receiver.py --serve PORT`` to keep serving on
127.0.0.1:PORT. The receiver verifies Standard Webhooks signatures, so WEBHOOK_SECRET is a Standard Webhooks
secret: ``whsec_`` and base64, shared with the sender (``python -c "import flaghooks;
print(flaghooks.generate_secret())"`` makes one). It comes from the environment, not the command line, so that it
stays out of ``ps`` and the shell's history; without a valid one the service refuses to start.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flaghooks import (
    ConfigError,
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    Identity,
    Project,
    Signing,
    Webhooks,
    generate_secret,
)
from flaghooks.receiver import FlagCache, WebhookReceiver
from flaghooks.transports import HttpTransport


def make_app(secret: str, cache: FlagCache) -> Callable[..., Iterable[bytes]]:
    receiver = WebhookReceiver(standard_secrets=secret, cache=cache)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/webhooks":
            return receiver(environ, start_response)
        parts = path.strip("/").split("/")
        if environ["REQUEST_METHOD"] == "GET" and len(parts) == 3 and parts[0] == "flags" and parts[1].isdigit():
            environment, feature = int(parts[1]), parts[2]
            identity = parse_qs(environ.get("QUERY_STRING", "")).get("identity", [None])[0]
            state = cache.get(environment, feature, identity=identity)
            if state is None:
                start_response("404 Not Found", [("Content-Type", "application/json")])
                return [json.dumps({"error": f"unknown flag {feature!r}"}).encode()]
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"enabled": state.enabled, "value": state.value}).encode()]
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"error": "not found"}']

    return app


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def lookup(base: str, path: str) -> str:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as response:  # noqa: S310 - our own 127.0.0.1 service
            return response.read().decode()
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode()}"


def tour() -> None:
    secret = generate_secret()
    server = make_server("127.0.0.1", 0, make_app(secret, FlagCache()), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"

    feature = Feature(
        id=1, name="new_checkout", project=Project(1, "Shop", 1), created_date=datetime(2024, 1, 1, tzinfo=UTC)
    )
    production = Environment(5, "Production")
    default = FeatureState(feature=feature, environment=production, enabled=False, value="v1")
    rollout = FeatureState(feature=feature, environment=production, enabled=True, value="v2")
    beta_user = FeatureState(
        feature=feature, environment=production, enabled=True, value="v2-beta", identity=Identity(77, "ada@example.com")
    )

    with Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"])) as webhooks:
        webhooks.subscribe(Endpoint(base + "/webhooks", secret=secret, signing=Signing.STANDARD), environment=5)
        print("before any web hook:  ", lookup(base, "/flags/5/new_checkout"))
        webhooks.feature_state_changed(None, default)
        print("after the creation:   ", lookup(base, "/flags/5/new_checkout"))
        webhooks.feature_state_changed(None, beta_user)
        webhooks.feature_state_changed(default, rollout)
        print("after the rollout:    ", lookup(base, "/flags/5/new_checkout"))
        print("for ada@example.com:  ", lookup(base, "/flags/5/new_checkout?identity=ada@example.com"))
    server.shutdown()
    server.server_close()


USAGE = "usage: WEBHOOK_SECRET=whsec_... python examples/local_cache_receiver.py [--serve PORT]"


def serve(port_text: str) -> None:
    """Serve until stopped; a missing or unusable port or secret ends it with one line on stderr (exit 1)."""
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise SystemExit(f"local_cache_receiver: not a port number: {port_text!r} ({USAGE})")
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        raise SystemExit(
            "local_cache_receiver: set WEBHOOK_SECRET to the Standard Webhooks secret the sender signs with "
            "(whsec_ and base64; flaghooks.generate_secret() makes one)"
        )
    try:
        app = make_app(secret, FlagCache())
    except ConfigError as error:  # never a traceback; the message never shows the secret
        reason = str(error).rpartition(": ")[2]
        raise SystemExit(f"local_cache_receiver: WEBHOOK_SECRET is not a Standard Webhooks secret ({reason})") from None
    try:
        server = make_server("127.0.0.1", int(port_text), app, handler_class=QuietHandler)
    except OSError as error:
        raise SystemExit(f"local_cache_receiver: cannot listen on 127.0.0.1:{port_text}: {error.strerror}") from None
    print(f"serving on http://127.0.0.1:{server.server_port}/ (POST /webhooks, GET /flags/<env>/<feature>)", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"] and len(sys.argv) == 3:
        serve(sys.argv[2])
    elif len(sys.argv) == 1:
        tour()
    else:
        raise SystemExit(USAGE)

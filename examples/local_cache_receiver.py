"""A service that keeps a local cache of flag state from incoming web hooks and answers flag lookups.

POST /webhooks receives (and verifies) web hooks; GET /flags/<environment>/<feature>[?identity=...] answers
{"enabled": ..., "value": ...} from the cache, without calling the flag service.

Run: ``python examples/local_cache_receiver.py`` for a self-contained tour (it sends itself a few changes), or
``python examples/local_cache_receiver.py --serve PORT SECRET`` to keep serving on 127.0.0.1:PORT.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flaghooks import (
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


def serve(port: int, secret: str) -> None:
    server = make_server("127.0.0.1", port, make_app(secret, FlagCache()))
    print(f"serving on http://127.0.0.1:{server.server_port}/ (POST /webhooks, GET /flags/<env>/<feature>)")
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        tour()

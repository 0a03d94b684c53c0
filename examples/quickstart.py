"""Embed flaghooks in an app: build Flagsmith's documented change from models, look at the exact bytes and their
signature, then deliver the change through Webhooks to a receiver running on this machine.

Run: ``python examples/quickstart.py [SECRET]``.
"""

from __future__ import annotations

import logging
import sys
import threading
from datetime import UTC, datetime
from wsgiref.simple_server import WSGIRequestHandler, make_server

from flaghooks import (
    DeliveryResult,
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    PayloadFormat,
    Project,
    Webhooks,
    diff_states,
    encode,
    flag_changed,
    sign_flagsmith,
)
from flaghooks.receiver import WebhookReceiver
from flaghooks.transports import HttpTransport


def report(result: DeliveryResult) -> None:
    """Called with every delivery's result: the place to alert on, count or keep the failures."""
    if not result.ok:
        print(f"delivery to {result.endpoint.label} failed: {result.error}", file=sys.stderr)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main(secret: str = "some-secret") -> None:
    # flaghooks logs each failed delivery as a WARNING on the "flaghooks" logger, which has no handler until the
    # application configures logging: without this (or Webhooks(on_result=...)), failures would go unseen.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    # 1. Models: the documented change switched the flag on, and its initial value went from red to blue.
    project = Project(12)
    production = Environment(23)
    created = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)

    def feature(initial_value: str) -> Feature:
        return Feature(id=2411, name="feature_name", project=project, created_date=created, initial_value=initial_value)

    before = FeatureState(id=10430, feature=feature("red"), environment=production, enabled=False)
    after = FeatureState(id=10430, feature=feature("blue"), environment=production, enabled=True)
    print("changed:", ", ".join(sorted(diff_states(before, after).changed)))

    # 2. The event and its exact bytes: what Flagsmith documents, byte for byte.
    event = flag_changed(
        before, after, changed_by="Some User", timestamp=datetime(2020, 3, 7, 13, 59, 7, 40000, tzinfo=UTC)
    )
    body = encode(event, PayloadFormat.CLASSIC)
    print("event:", event.event_type, event.id)
    print("body:", body.decode())
    print("X-Flagsmith-Signature:", sign_flagsmith(body, secret))

    # 3. A receiver on this machine: it verifies the signature over the raw bytes and keeps a flag cache.
    receiver = WebhookReceiver(secret=secret)
    server = make_server("127.0.0.1", 0, receiver, handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/webhooks"

    # 4. Webhooks delivers it. The default transport refuses this machine's addresses (SSRF protection),
    #    so the local receiver's network is allowed explicitly.
    #    publish runs in this thread and returns when the delivery is done, retries included.
    transport = HttpTransport(allowed_networks=["127.0.0.0/8"])
    with Webhooks(transport=transport, on_result=report) as webhooks:
        webhooks.subscribe(Endpoint(url, secret=secret, name="local receiver"), environment=production.id)
        [result] = webhooks.publish(event)
    server.shutdown()
    server.server_close()

    print(f"delivered: {result.ok} (HTTP {result.status}, {result.attempts} attempt, {result.elapsed * 1000:.1f} ms)")
    print("the receiver's cache says feature_name is", "on" if receiver.cache.is_enabled(23, "feature_name") else "off")
    if not (result.ok and receiver.cache.is_enabled(23, "feature_name")):
        raise SystemExit("the change did not arrive")


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""The sending half of the receive_in_*.py tours (a helper they import; not an example of its own): deliver a
genuine change, the same change again and a tampered copy to a receiver, and print what came back."""

from __future__ import annotations

from datetime import UTC, datetime

import urllib3

from flaghooks import (
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    Project,
    RetryPolicy,
    Signing,
    WebhookEvent,
    Webhooks,
    flag_changed,
)
from flaghooks.receiver import FlagCache
from flaghooks.transports import HttpTransport


def deliver(url: str, secret: str, cache: FlagCache, handled: list[WebhookEvent]) -> None:
    """Send to ``url``, signed (Standard Webhooks) with ``secret``; print the answers and what ``cache`` holds."""
    feature = Feature(id=1, name="checkout_banner", project=Project(1), created_date=datetime(2024, 1, 1, tzinfo=UTC))
    state = FeatureState(feature=feature, environment=Environment(5), enabled=True, value="green")
    event = flag_changed(None, state, timestamp=datetime(2024, 6, 1, tzinfo=UTC))
    transport = HttpTransport(allowed_networks=["127.0.0.0/8"])  # this machine's receiver, allowed on purpose
    with Webhooks(transport=transport, retry=RetryPolicy.never()) as webhooks:
        webhooks.subscribe(Endpoint(url, secret=secret, signing=Signing.STANDARD), environment=5)
        [first] = webhooks.publish(event)
        [again] = webhooks.publish(event)  # the same event id: the receiver knows it handled it
    print(f"genuine delivery: HTTP {first.status}")
    print(f"the same event again: HTTP {again.status} (on_event ran {len(handled)} time)")
    forged = {"webhook-id": "msg_forged", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
    with urllib3.PoolManager(retries=False) as http:
        print(f"tampered copy: HTTP {http.request('POST', url, body=b'{}', headers=forged).status}")
    held = cache.get(5, "checkout_banner")
    print(f"checkout_banner in the cache: {held and (held.enabled, held.value)}")

"""``flaghooks demo``: a scripted story of flag changes through Webhooks and HTTP to a verifying receiver."""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from wsgiref.simple_server import WSGIServer

from . import __version__
from ._cli_common import StartResponse, describe_target, out, serve
from ._dispatch import Webhooks
from ._endpoints import Endpoint, Signing
from ._events import WebhookEvent, audit_log_created, flag_changed
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    Project,
    Segment,
)
from ._retry import RetryPolicy
from ._signing import generate_secret
from ._wire import PayloadFormat
from .receiver import FlagCache, WebhookReceiver
from .transports import HttpTransport

__all__ = ["run_demo"]


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, a cut marked with "..." so it is never mistaken for the whole."""
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe_state(state: FeatureState) -> str:
    scope = "default"
    if state.identity is not None:
        scope = f"identity {state.identity.identifier}"
    elif state.feature_segment is not None:
        fs = state.feature_segment
        scope = f"segment {fs.segment.name}" if fs.segment is not None else f"feature segment {fs.id}"
    return f"{state.feature.name:<16} {scope:<26} {'on ' if state.enabled else 'off'}  {state.value!r}"


class _FlakyReceiver:
    """Answers 503 to a fraction of first attempts (by webhook-id), so that retries show."""

    def __init__(self, app: Callable[..., Iterable[bytes]], rate: float, seed: int = 7) -> None:
        self.app, self.rate = app, rate
        self.random = random.Random(seed)  # noqa: S311 - a demo's coin, not cryptography
        self.seen: set[str] = set()
        self.failed = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        event_id = environ.get("HTTP_WEBHOOK_ID", "")
        first = event_id not in self.seen
        self.seen.add(event_id)
        if first and self.rate and self.random.random() < self.rate:
            self.failed += 1
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": "failing on purpose (--fail-rate)"}']
        return self.app(environ, start_response)


Step = tuple[str, Callable[[], WebhookEvent]]


def _story(start: datetime) -> tuple[list[Step], Callable[[FlagCache], list[str]]]:
    """The scripted story: (label, event builder) steps, and a check of the cache's end state (problems)."""
    project = Project(1, "Demo shop", organisation=1)
    production = Environment(10, "Production")
    created = start - timedelta(days=30)
    banner = Feature(
        id=101, name="checkout_banner", project=project, created_date=created, type="CONFIG", initial_value="red"
    )
    search = Feature(id=102, name="legacy_search", project=project, created_date=created)
    beta = FeatureSegment(id=501, segment=Segment(5, "beta_users", "Opted in to beta features"), priority=0)
    alice = Identity(9001, "alice@example.com")
    clock = iter(start + timedelta(seconds=i) for i in range(100))

    def state(feature: Feature, enabled: bool, value: Any = None, **override: Any) -> FeatureState:
        return FeatureState(feature=feature, environment=production, enabled=enabled, value=value, **override)

    banner_off = state(banner, False, "red", id=1)
    banner_on = state(banner, True, "red", id=1)
    banner_green = state(banner, True, "green", id=1)
    segment = state(banner, True, "purple", id=2, feature_segment=beta)
    identity = state(banner, True, "gold", id=3, identity=alice)
    search_on = state(search, True, id=4)
    who = "dana@example.com"

    def change(previous: FeatureState | None, new: FeatureState | None) -> Callable[[], WebhookEvent]:
        return lambda: flag_changed(previous, new, changed_by=who, timestamp=next(clock))

    def audit() -> WebhookEvent:
        entry = AuditLogEntry(
            created_date=next(clock),
            log="Flag state / Remote config value updated for feature: checkout_banner",
            related_object_type="FEATURE_STATE",
            related_object_id=1,
            author=Author(3, who, "Dana", "Admin"),
            project=project,
            environment=production,
        )
        return audit_log_created(entry)

    steps: list[Step] = [
        ("create checkout_banner", change(None, banner_off)),
        ("create legacy_search", change(None, search_on)),
        ("toggle checkout_banner on", change(banner_off, banner_on)),
        ("change its value to green", change(banner_on, banner_green)),
        ("add a beta_users segment override", change(None, segment)),
        ("add an override for alice", change(None, identity)),
        ("remove alice's override", change(identity, None)),
        ("delete legacy_search", change(search_on, None)),
        ("write an audit log entry", audit),
    ]

    def check(cache: FlagCache) -> list[str]:
        problems = []
        env = production.id
        default = cache.get(env, "checkout_banner", identity="alice@example.com")
        if default is None or (default.enabled, default.value, default.identity) != (True, "green", None):
            problems.append(f"checkout_banner should be on, 'green', with no override for alice: {default}")
        overrides = cache.segment_overrides(env, "checkout_banner")
        if [(o.enabled, o.value) for o in overrides] != [(True, "purple")]:
            problems.append(f"checkout_banner should have one segment override, on, 'purple': {overrides}")
        if cache.get(env, "legacy_search") is not None:
            problems.append("legacy_search should be gone")
        if len(cache) != 2:
            problems.append(f"the cache should hold 2 states, holds {len(cache)}")
        return problems

    return steps, check


class DemoReceiver(NamedTuple):
    """What both demos deliver to: the secret both ends share, the receiver's cache, the events it verified, and
    the WSGI app (a verifying WebhookReceiver that answers 503 to a fraction of first attempts)."""

    secret: str
    cache: FlagCache
    verified: list[WebhookEvent]
    app: _FlakyReceiver


def demo_receiver(fail_rate: float) -> DemoReceiver:
    secret = generate_secret()
    cache = FlagCache()
    verified: list[WebhookEvent] = []
    receiver = WebhookReceiver(secret=secret, standard_secrets=secret, cache=cache, on_event=verified.append)
    return DemoReceiver(secret, cache, verified, _FlakyReceiver(receiver, fail_rate))


def serve_in_background(server: WSGIServer) -> None:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def run_demo(args: argparse.Namespace) -> int:
    fmt = PayloadFormat(args.format)
    stdout = sys.stdout
    secret, cache, verified, flaky = demo_receiver(args.fail_rate)
    server = serve(flaky, "127.0.0.1", 0)
    serve_in_background(server)
    url = f"http://127.0.0.1:{server.server_port}/webhooks"
    steps, check = _story(datetime.now(UTC).replace(microsecond=0))
    rows = []
    policy = RetryPolicy(attempts=4, backoff=0.05, multiplier=2, max_delay=1, jitter=0.2)
    transport = HttpTransport(allowed_networks=["127.0.0.0/8"])  # the demo's receiver is on this machine
    try:
        with Webhooks(transport=transport, retry=policy, format=fmt) as hooks:
            endpoint = Endpoint(url, secret=secret, signing=Signing.BOTH, name="demo receiver")
            hooks.subscribe(endpoint, environment=10)
            hooks.subscribe(endpoint, organisation=1)
            if not args.json:
                out(stdout, f"flaghooks {__version__} demo: {fmt.value} payloads to a receiver at {url}")
                out(stdout, "signed with X-Flagsmith-Signature and Standard Webhooks (BOTH), verified on arrival")
                if args.fail_rate:
                    out(stdout, f"the receiver answers 503 to {args.fail_rate:.0%} of first attempts")
                out(stdout, "")
                out(stdout, f"{'step':<36} {'event':<18} {'target':<48} {'status':>6} {'tries':>5} {'ms':>7}")
            for label, build in steps:
                event = build()
                for result in hooks.publish(event):
                    row = {
                        "step": label,
                        "event": str(result.event_type),
                        "event_id": result.event_id,
                        "target": describe_target(event),
                        "ok": result.ok,
                        "status": result.status,
                        "attempts": result.attempts,
                        "ms": round(result.elapsed * 1000, 1),
                        "error": result.error,
                    }
                    rows.append(row)
    finally:
        server.shutdown()
        server.server_close()
    problems = check(cache)
    delivered = all(row["ok"] for row in rows) and len(rows) == len(steps)
    all_verified = len(verified) == len(rows) == len(steps)
    if not delivered:
        problems.append("not every delivery succeeded")
    if not all_verified:
        problems.append(f"the receiver verified {len(verified)} of {len(rows)} deliveries")
    ok = not problems
    states = cache.states()
    if args.json:
        document = {
            "ok": ok,
            "format": fmt.value,
            "fail_rate": args.fail_rate,
            "receiver": url,
            "deliveries": rows,
            "cache": [
                {
                    "environment": s.environment.id,
                    "feature": s.feature.name,
                    "segment": s.feature_segment.segment.name
                    if s.feature_segment is not None and s.feature_segment.segment is not None
                    else None,
                    "feature_segment": s.feature_segment.id if s.feature_segment is not None else None,
                    "identity": s.identity.identifier if s.identity is not None else None,
                    "enabled": s.enabled,
                    "value": s.value,
                }
                for s in states
            ],
            "problems": problems,
        }
        out(stdout, json.dumps(document, indent=2, sort_keys=True))
        return 0 if ok else 1
    for row in rows:
        status = row["status"] if row["status"] is not None else "-"
        out(
            stdout,
            f"{row['step']:<36} {row['event']:<18} {_cut(str(row['target']), 48):<48} {status!s:>6} "
            f"{row['attempts']!s:>5} {row['ms']!s:>7}",
        )
    retried = sum(row["attempts"] != 1 for row in rows)
    out(stdout, "")
    out(stdout, f"{len(rows)} deliveries, {sum(bool(r['ok']) for r in rows)} delivered, {retried} needed a retry")
    out(stdout, "")
    out(stdout, f"the receiver's flag cache ({len(states)} states):")
    for state in states:
        out(stdout, f"  environment {state.environment.id:<4} {_describe_state(state)}")
    out(stdout, "")
    if ok:
        out(stdout, "ok: every delivery was verified and the cache matches the story's end")
        return 0
    for problem in problems:
        out(sys.stderr, f"flaghooks demo: {problem}")
    return 1

"""``flaghooks demo --background``: the story through BackgroundDelivery, to healthy, slow and dead endpoints."""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

from . import __version__
from ._background import BackgroundDelivery
from ._breaker import Breaker, HealthChange
from ._cli_common import StartResponse, _QuietHandler, out
from ._cli_demo import _cut, _story, demo_receiver, serve_in_background
from ._delivery import DeliveryResult
from ._dispatch import Webhooks
from ._endpoints import Endpoint, Signing
from ._retry import RetryPolicy
from ._wire import PayloadFormat
from .transports import HttpTransport

__all__ = ["run_background_demo"]

SLOW = 0.25  # seconds the slow endpoint takes to answer
DEAD_TIMEOUT = 1.0  # the dead endpoint's Endpoint(timeout=...)


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow answer must not hold up the others: one thread per connection


def run_background_demo(args: argparse.Namespace) -> int:
    fmt = PayloadFormat(args.format)
    stdout = sys.stdout
    secret, cache, verified, flaky = demo_receiver(args.fail_rate)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/slow":
            time.sleep(SLOW)
        return flaky(environ, start_response)

    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    serve_in_background(server)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)  # the kernel accepts connections; nothing ever answers them
    base = f"http://127.0.0.1:{server.server_port}"
    endpoints = [
        Endpoint(f"{base}/hooks/1", secret=secret, signing=Signing.BOTH, name="healthy-1"),
        Endpoint(f"{base}/hooks/2", secret=secret, signing=Signing.BOTH, name="healthy-2"),
        Endpoint(f"{base}/slow", secret=secret, signing=Signing.BOTH, name="slow"),
        Endpoint(f"http://127.0.0.1:{dead.getsockname()[1]}/hooks", timeout=DEAD_TIMEOUT, name="dead"),
    ]
    steps, check = _story(datetime.now(UTC).replace(microsecond=0))
    ended: list[tuple[float, DeliveryResult]] = []
    health: list[HealthChange] = []
    cond = threading.Condition()
    started = time.monotonic()

    def on_result(result: DeliveryResult) -> None:
        with cond:
            ended.append((time.monotonic() - started, result))
            cond.notify_all()

    labels: dict[str, str] = {}
    policy = RetryPolicy(attempts=2, backoff=0.05, multiplier=2, max_delay=1, jitter=0)
    transport = HttpTransport(allowed_networks=["127.0.0.0/8"])  # the demo's receivers are on this machine
    try:
        with Webhooks(transport=transport, retry=policy, format=fmt, on_result=on_result) as hooks:
            for endpoint in endpoints:
                hooks.subscribe(endpoint, environment=10)
                hooks.subscribe(endpoint, organisation=1)
            breaker = Breaker(failures=2, cooldown=30)
            background = BackgroundDelivery(hooks, workers=4, breaker=breaker, on_health=health.append)
            started = time.monotonic()
            alive = 0
            for label, build in steps:
                for delivery in background.publish(build()):
                    labels[delivery.id] = label
                    alive += delivery.endpoint.name != "dead"
            published_ms = (time.monotonic() - started) * 1000

            with cond:  # every delivery to the live endpoints; the dead one's wait behind its breaker
                cond.wait_for(lambda: sum(r.endpoint.name != "dead" for _, r in ended) >= alive, timeout=60)
            abandoned = background.close(timeout=0)
    finally:
        server.shutdown()
        server.server_close()
        dead.close()
    rows = [
        {
            "ms": round(at * 1000, 1),
            "endpoint": result.endpoint.name,
            "step": labels.get(result.delivery_id or "", ""),
            "event_id": result.event_id,
            "ok": result.ok,
            "status": result.status,
            "attempts": result.attempts,
            "error": result.error,
        }
        for at, result in ended
    ]
    problems = check(cache)
    healthy = [row for row in rows if str(row["endpoint"]).startswith("healthy")]
    slow = [row for row in rows if row["endpoint"] == "slow"]
    gone = [row for row in rows if row["endpoint"] == "dead"]
    if len(healthy) != 2 * len(steps) or not all(row["ok"] for row in healthy + slow):
        problems.append("not every delivery to the healthy and slow endpoints succeeded")
    events = {event.id for event in verified}  # the receiver takes each event once, from whichever endpoint
    if len(events) != len(steps):
        problems.append(f"the receiver verified {len(events)} of {len(steps)} events")
    last_healthy = max((at for at, result in ended if str(result.endpoint.name).startswith("healthy")), default=0.0)
    last_slow = max((at for at, result in ended if result.endpoint.name == "slow"), default=0.0)
    first_dead = min((at for at, result in ended if result.endpoint.name == "dead"), default=0.0)
    if not last_healthy < min(last_slow, first_dead):
        problems.append("the healthy endpoints did not finish first")
    ok = not problems
    if args.json:
        document = {
            "ok": ok,
            "format": fmt.value,
            "published_ms": round(published_ms, 1),
            "deliveries": rows,
            "health": [{"endpoint": h.endpoint.label, "state": h.state, "reason": h.reason} for h in health],
            "abandoned": abandoned,
            "problems": problems,
        }
        out(stdout, json.dumps(document, indent=2, sort_keys=True))
        return 0 if ok else 1
    out(stdout, f"flaghooks {__version__} demo --background: {len(steps)} events, {fmt.value} payloads, to 4 endpoints")
    out(stdout, f"  healthy-1, healthy-2: answer at once; slow: answers after {SLOW * 1000:g} ms;")
    out(stdout, f"  dead: never answers (timeout {DEAD_TIMEOUT:g} s, {policy.attempts} attempts, breaker after 2)")
    out(stdout, f"published {len(labels)} deliveries in {published_ms:.1f} ms: publish never waits on an endpoint")
    out(stdout, "")
    out(stdout, f"{'ms':>8}  {'endpoint':<10} {'step':<34} {'status':>6} {'tries':>5}  error")
    for row in rows:
        status = row["status"] if row["status"] is not None else "-"
        error = _cut(str(row["error"]), 40) if row["error"] is not None else ""
        line = f"{row['ms']!s:>8}  {row['endpoint']!s:<10} {_cut(str(row['step']), 34):<34} {status!s:>6}"
        out(stdout, f"{line} {row['attempts']!s:>5}  {error}".rstrip())
    out(stdout, "")
    for change in health:
        out(stdout, f"health: {change.endpoint.label} {change.state} ({change.reason})")
    out(stdout, f"healthy endpoints: {len(healthy)} delivered, the last at {last_healthy * 1000:.0f} ms")
    out(stdout, f"slow endpoint:     {len(slow)} delivered, the last at {last_slow * 1000:.0f} ms")
    failed = sum(1 for row in gone if row["error"] != "abandoned at shutdown")
    out(stdout, f"dead endpoint:     {failed} failed, {abandoned} abandoned at shutdown")
    out(stdout, "")
    if ok:
        out(stdout, "ok: the healthy endpoints finished first; the slow and dead ones cost them nothing")
        return 0
    for problem in problems:
        out(sys.stderr, f"flaghooks demo: {problem}")
    return 1

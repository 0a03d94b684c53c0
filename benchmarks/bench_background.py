"""Background delivery: what publishing costs the caller, what workers buy, and what a hung endpoint costs the rest.

Three ratios, each against a baseline measured in the same run:

(a) ``BackgroundDelivery.publish`` per event against ``Webhooks.plan`` alone (the routing and encoding any
    executor needs), with the workers held so that only queueing is measured: target at most 1.3x;
(b) 20 endpoints (20 loopback servers, each answering after 20 ms), 40 events: wall time to deliver everything
    inline with ``Webhooks.publish`` over ``BackgroundDelivery(workers=20)`` (publish, then ``flush``): target
    at least 10x;
(c) 9 healthy endpoints plus one that never answers (``timeout=2``), 200 events published one every 10 ms,
    ``workers=4``: the healthy endpoints' p99 delivery latency (publish to ``on_result``) over the same run
    without the hung endpoint (each run twice, interleaved, the better p99 kept): target at most 1.5x.

The servers run in a subprocess (they share the machine's cores with the client).

Run: ``python benchmarks/bench_background.py [--rounds R]``.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import urllib3

from flaghooks import (
    BackgroundDelivery,
    Breaker,
    DeliveryResult,
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    Project,
    RetryPolicy,
    WebhookEvent,
    Webhooks,
    flag_changed,
)
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport

SERVERS = r"""
import http.server, socketserver, sys, threading, time

delay = float(sys.argv[2])

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if delay:
            time.sleep(delay)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 128

ports = []
for _ in range(int(sys.argv[1])):
    server = Server(("127.0.0.1", 0), Handler)
    ports.append(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
print(" ".join(map(str, ports)), flush=True)
sys.stdin.read()
"""


def events(n: int, start: int = 0) -> list[WebhookEvent]:
    project = Project(12, "Checkout", 7)
    environment = Environment(23, "Production")
    created = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)
    feature = Feature(id=2411, name="feature_name", project=project, created_date=created, initial_value="red")
    return [
        flag_changed(
            FeatureState(id=10430, feature=feature, environment=environment, enabled=False, value=i),
            FeatureState(id=10430, feature=feature, environment=environment, enabled=True, value=i + 1),
            changed_by="Some User",
        )
        for i in range(start, start + n)
    ]


class Servers:
    """``count`` loopback servers in a subprocess, each answering 204 after ``delay`` seconds."""

    def __init__(self, count: int, delay: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVERS, str(count), str(delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.urls = [f"http://127.0.0.1:{port}/hook" for port in self.process.stdout.readline().split()]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


def transport(maxsize: int = 4) -> HttpTransport:
    return HttpTransport(pool=urllib3.PoolManager(maxsize=maxsize), allowed_networks=["127.0.0.0/8"])


class Held(Transport):
    """Holds every attempt until released: the workers stay busy, so only queueing is measured."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, request: DeliveryRequest) -> AttemptResult:
        self.release.wait()
        return AttemptResult(204)


def publish_overhead(rounds: int, endpoints: int) -> tuple[float, float]:
    """(a): seconds per event for plan() alone and for BackgroundDelivery.publish, best of ``rounds``."""
    batch = events(500)
    [warm] = events(1, start=1000)
    best_plan = best_publish = float("inf")
    for _ in range(rounds):
        held = Held()
        webhooks = Webhooks(transport=held)
        for n in range(endpoints):
            webhooks.subscribe(Endpoint(f"https://hooks{n}.example/flags"), environment=23)
        background = BackgroundDelivery(webhooks, queue_size=(len(batch) + 1) * endpoints)
        background.publish(warm)  # starts the workers: a cost of the first publish only, not of each
        started = time.perf_counter()
        for event in batch:
            webhooks.plan(event)
        best_plan = min(best_plan, time.perf_counter() - started)
        started = time.perf_counter()
        for event in batch:
            background.publish(event)
        best_publish = min(best_publish, time.perf_counter() - started)
        held.release.set()
        background.close(timeout=0)
    return best_plan / len(batch), best_publish / len(batch)


def inline_vs_background() -> tuple[float, float]:
    """(b): wall seconds to deliver 40 events to 20 endpoints answering after 20 ms, inline and in the background."""
    servers = Servers(20, 0.02)
    try:
        batch = events(40)

        delivered: list[DeliveryResult] = []

        def hooks() -> Webhooks:
            webhooks = Webhooks(transport=transport(), retry=RetryPolicy.never(), on_result=delivered.append)
            for url in servers.urls:
                webhooks.subscribe(Endpoint(url), environment=23)
            return webhooks

        warm = hooks()
        warm.publish(batch[0])  # imports and code paths, for both runs alike
        warm.close()
        delivered.clear()
        with hooks() as webhooks:
            started = time.perf_counter()
            inline = [result for event in batch for result in webhooks.publish(event)]
            inline_wall = time.perf_counter() - started
        assert len(inline) == 800 and all(result.ok for result in inline), "inline delivery failed"
        delivered.clear()
        with hooks() as webhooks, BackgroundDelivery(webhooks, workers=20) as background:
            started = time.perf_counter()
            for event in batch:
                background.publish(event)
            assert background.flush(120)
            background_wall = time.perf_counter() - started
        assert len(delivered) == 800 and all(result.ok for result in delivered), "background delivery failed"
        return inline_wall, background_wall
    finally:
        servers.close()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def healthy_latency(with_hung: bool, count: int = 200, pace: float = 0.01) -> float:
    """(c): p99 seconds from publish to on_result for 9 healthy endpoints, with or without a hung tenth."""
    servers = Servers(9, 0.0)
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1024)  # accepts connections (the kernel does) and never answers
    try:
        published: dict[str, float] = {}
        latencies: list[float] = []
        lock = threading.Lock()
        done = threading.Event()
        healthy = [Endpoint(url) for url in servers.urls]
        expected = count * len(healthy)

        def on_result(result: DeliveryResult) -> None:
            if result.endpoint.timeout == 2.0:
                return
            with lock:
                latencies.append(time.perf_counter() - published[result.delivery_id or ""])
                if len(latencies) == expected:
                    done.set()

        webhooks = Webhooks(transport=transport(), retry=RetryPolicy(backoff=0.5), on_result=on_result)
        for endpoint in healthy:
            webhooks.subscribe(endpoint, environment=23)
        if with_hung:
            webhooks.subscribe(Endpoint(f"http://127.0.0.1:{hung.getsockname()[1]}/hook", timeout=2.0), environment=23)
        background = BackgroundDelivery(webhooks, workers=4, breaker=Breaker(failures=1_000_000))
        for event in events(count):
            now = time.perf_counter()
            for delivery in background.publish(event):
                published[delivery.id] = now
            time.sleep(pace)
        assert done.wait(120), "the healthy deliveries did not all arrive"
        background.close(timeout=0)
        webhooks.close()
        return p99(latencies)
    finally:
        hung.close()
        servers.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    plan_one, publish_one = publish_overhead(args.rounds, 1)
    plan_ten, publish_ten = publish_overhead(args.rounds, 10)
    for label, plan, publish in (("1 endpoint:  ", plan_one, publish_one), ("10 endpoints:", plan_ten, publish_ten)):
        print(f"(a) {label} plan {plan * 1e6:7.1f} us/event, BackgroundDelivery.publish {publish * 1e6:7.1f} us/event")
    inline_wall, background_wall = inline_vs_background()
    print(f"(b) 800 deliveries to 20 endpoints answering after 20 ms: inline {inline_wall:.2f} s, ", end="")
    print(f"background (20 workers) {background_wall:.2f} s")
    # Each side twice, interleaved, the better p99 of each: other work on the machine shows in single runs.
    without = with_hung = float("inf")
    for _ in range(2):
        without = min(without, healthy_latency(False))
        with_hung = min(with_hung, healthy_latency(True))
    print(f"(c) healthy p99 latency: {without * 1e3:.1f} ms alone, {with_hung * 1e3:.1f} ms beside a hung endpoint")
    print(f"(a) publish vs plan, 1 endpoint:      {publish_one / plan_one:.2f}x (target <= 1.30x)")
    print(f"(a) publish vs plan, 10 endpoints:    {publish_ten / plan_ten:.2f}x (target <= 1.30x)")
    print(f"(b) inline over background wall time: {inline_wall / background_wall:.1f}x (target >= 10x)")
    print(f"(c) healthy p99, hung over alone:     {with_hung / without:.2f}x (target <= 1.50x)")


if __name__ == "__main__":
    main()

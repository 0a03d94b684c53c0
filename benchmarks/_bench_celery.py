"""Celery's part of benchmarks/bench_scale_out.py: deliveries per second with 1 and 2 Celery worker processes.

20 loopback endpoints (in a subprocess, answering 204 at once), N deliveries (N / 20 events) published with
``CeleryDelivery.publish``, delivered by ``celery worker`` processes (threads pool, ``--concurrency 4``) on the
local Redis and RabbitMQ. Everything is published first, then the workers start: the rate is deliveries over
the time from the first request received to the last. Beside it, in the same run:

- inline: the same deliveries sent by one thread with ``Webhooks.attempt`` (no engine at all);
- the engine's per-delivery overhead: one worker with ``--concurrency 1`` (one delivery at a time, like the inline
  thread), seconds per delivery minus inline's;
- what ``publish`` costs the caller per delivery (planning and one message to the broker).

Run standalone: ``PYTHONPATH=src python benchmarks/_bench_celery.py [--deliveries N] [--brokers redis,rabbitmq]
[--rounds R]`` (each rate the best of R runs);
``bench_scale_out.py`` calls :func:`run` and prints :func:`report`'s lines.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from flaghooks import Endpoint, Environment, Feature, FeatureState, Project, WebhookEvent, Webhooks, flag_changed
from flaghooks.contrib.celery import CeleryDelivery, configure_app, register
from flaghooks.transports import HttpTransport

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"  # the workers import this checkout's flaghooks

ENDPOINTS = 20
SECRET = "bench-secret"
BROKERS = {"redis": ("redis://127.0.0.1:6379/0", 6379), "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672)}

# The endpoints: one threaded server per port, counting requests; "count" on stdin prints the total so far.
SERVERS = r"""
import http.server, socketserver, sys, threading

lock = threading.Lock()
total = 0

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        global total
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()
        with lock:
            total += 1

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
for line in sys.stdin:
    with lock:
        print(total, flush=True)
"""


class Servers:
    """The 20 endpoints in a subprocess; :meth:`count` asks how many requests they have had."""

    def __init__(self, count: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVERS, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.urls = [f"http://127.0.0.1:{port}/hook" for port in self.stdout.readline().split()]

    def count(self) -> int:
        self.stdin.write("count\n")
        self.stdin.flush()
        return int(self.stdout.readline())

    def wait_for(self, total: int, timeout: float = 300.0) -> float:
        """Wait until ``total`` requests have arrived; returns when (``perf_counter``)."""
        deadline = time.monotonic() + timeout
        while self.count() < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count()} of {total} deliveries arrived in {timeout} s")
            time.sleep(0.005)
        return time.perf_counter()

    def close(self) -> None:
        self.stdin.close()
        self.process.wait(10)


def events(n: int, start: int = 0) -> list[WebhookEvent]:
    project = Project(12, "Checkout", 7)
    environment = Environment(23, "Production")
    created = datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC)
    feature = Feature(id=2411, name="feature_name", project=project, created_date=created, initial_value="red")
    return [
        flag_changed(
            FeatureState(id=10430, feature=feature, environment=environment, enabled=False, value=i),
            FeatureState(id=10430, feature=feature, environment=environment, enabled=True, value=i + 1),
        )
        for i in range(start, start + n)
    ]


def build(settings: dict[str, Any]) -> tuple[Celery, Webhooks, CeleryDelivery]:
    """The benchmark's app, the same in the publishing process and in its workers."""
    app = Celery("flaghooks_bench", broker=settings["broker"], set_as_current=False)
    configure_app(app)
    app.conf.update(
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=settings.get("transport_options", {}),
    )
    webhooks = Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"]))
    for n, url in enumerate(settings["urls"]):
        webhooks.subscribe(Endpoint(url, name=f"ep{n}", secret=SECRET), environment=23)
    return app, webhooks, register(app, webhooks, queue=settings["queue"])


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _workers(settings: dict[str, Any], count: int, concurrency: int) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(HERE)]),
        "FLAGHOOKS_BENCH_CELERY": json.dumps(settings),
    }
    started = []
    for n in range(count):
        command = [
            sys.executable, "-m", "celery", "-A", "_bench_celery", "worker", "-Q", settings["queue"],
            "-n", f"bench{n}@%h", "--pool", "threads", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "ERROR",
        ]  # fmt: skip
        started.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return started


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(3)
        except subprocess.TimeoutExpired:  # the threads pool's timer may sleep 10 s first: the run is over
            worker.kill()
            worker.wait(5)


def _cleanup(broker: str, settings: dict[str, Any]) -> None:
    """Remove the run's queue (RabbitMQ) or keys (Redis)."""
    if broker == "rabbitmq":
        import kombu

        with kombu.Connection(settings["broker"]) as connection:
            connection.default_channel.queue_delete(settings["queue"])
            connection.default_channel.exchange_delete(settings["queue"])
    else:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            prefix = settings["transport_options"]["global_keyprefix"]
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def celery_rate(broker: str, servers: Servers, workers: int, concurrency: int, deliveries: int) -> dict[str, float]:
    """One run: ``deliveries`` published with no worker running (what publish costs the caller, alone on the
    machine), then ``workers`` Celery workers of ``concurrency`` threads started; the rate is deliveries over
    the time from the first request received to the last (the workers' start-up is not counted)."""
    queue = f"flaghooks-bench-{uuid.uuid4().hex[:8]}"
    settings: dict[str, Any] = {"broker": BROKERS[broker][0], "queue": queue, "urls": servers.urls}
    if broker == "redis":
        settings["transport_options"] = {"global_keyprefix": f"{queue}:"}
    app, _, delivery = build(settings)
    running: list[subprocess.Popen[bytes]] = []
    try:
        delivery.publish(events(1, start=10**6)[0], environment=23)  # connects and declares the queue
        batch = events(deliveries // ENDPOINTS)
        base = servers.count()
        started = time.perf_counter()
        for event in batch:
            delivery.publish(event, environment=23)
        published = time.perf_counter()
        running = _workers(settings, workers, concurrency)
        first = servers.wait_for(base + 1)
        total = len(batch) * ENDPOINTS + ENDPOINTS
        ended = servers.wait_for(base + total)
    finally:
        _stop(running)
        app.close()
        _cleanup(broker, settings)
    return {"rate": (total - 1) / (ended - first), "publish": (published - started) / (total - ENDPOINTS)}


def inline_rate(servers: Servers, deliveries: int) -> float:
    """The same deliveries from one thread with ``Webhooks.attempt``: no engine, no broker."""
    webhooks = Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"]))
    for n, url in enumerate(servers.urls):
        webhooks.subscribe(Endpoint(url, name=f"ep{n}", secret=SECRET), environment=23)
    planned = [d for event in events(deliveries // ENDPOINTS) for d in webhooks.plan(event)]
    started = time.perf_counter()
    for d in planned:
        webhooks.attempt(d)
    elapsed = time.perf_counter() - started
    webhooks.close()
    return len(planned) / elapsed


def run(deliveries: int = 2000, brokers: tuple[str, ...] = ("redis", "rabbitmq"), rounds: int = 1) -> dict[str, Any]:
    """Every measurement, as a dict (``bench_scale_out.py`` prints it with :func:`report`); each rate is the
    best of ``rounds`` runs (the machine is shared: the best run is the one least disturbed)."""
    servers = Servers(ENDPOINTS)
    try:
        inline = max(inline_rate(servers, deliveries) for _ in range(rounds))
        found: dict[str, Any] = {"deliveries": deliveries, "inline": inline}
        for broker in brokers:
            if not _reachable(BROKERS[broker][1]):
                found[broker] = None
                continue
            found[broker] = {
                label: max(
                    (celery_rate(broker, servers, workers, threads, deliveries) for _ in range(rounds)),
                    key=lambda row: row["rate"],
                )
                for label, workers, threads in (("1 worker", 1, 4), ("2 workers", 2, 4), ("1 worker, 1 thread", 1, 1))
            }
    finally:
        servers.close()
    return found


def report(found: dict[str, Any]) -> list[str]:
    """The lines to print for :func:`run`'s measurements."""
    inline = found["inline"]
    lines = [f"Celery, {found['deliveries']} deliveries to {ENDPOINTS} loopback endpoints answering at once:"]
    lines.append(f"  inline, one thread (Webhooks.attempt, no engine): {inline:8.0f} deliveries/s")
    for broker in ("redis", "rabbitmq"):
        if broker not in found:
            continue
        rows = found[broker]
        if rows is None:
            lines.append(f"  {broker}: not reachable, skipped")
            continue
        for label in ("1 worker", "2 workers"):
            rate = rows[label]["rate"]
            lines.append(f"  {broker:8} {label} x 4 threads: {rate:8.0f} deliveries/s ({rate / inline:.2f}x inline)")
        one = rows["1 worker, 1 thread"]
        overhead = 1 / one["rate"] - 1 / inline
        lines.append(
            f"  {broker:8} 1 worker x 1 thread: {one['rate']:8.0f} deliveries/s; Celery's overhead "
            f"{overhead * 1e3:.2f} ms per delivery over inline; publish {rows['1 worker']['publish'] * 1e6:.0f} us "
            "per delivery in the caller"
        )
        lines.append(
            f"  {broker:8} 2 workers over 1 worker: {rows['2 workers']['rate'] / rows['1 worker']['rate']:.2f}x"
        )
    return lines


_settings = os.environ.get("FLAGHOOKS_BENCH_CELERY")
if _settings:  # a worker process of this benchmark: its app is this module's ``app``
    app, _webhooks, _delivery = build(json.loads(_settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--brokers", default="redis,rabbitmq")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for line in report(run(args.deliveries, tuple(args.brokers.split(",")), args.rounds)):
        print(line)


if __name__ == "__main__":
    main()

"""Scale-out: deliveries per second to a fast loopback receiver over 20 endpoints with 1, 2 and 4 procrastinate
worker processes, beside BackgroundDelivery's rate measured in the same run, and the engine's per-delivery cost.

- The receiver (a threaded HTTP server answering 204 at once) runs in a subprocess; so do the workers
  (tests/procrastinate_worker.py: concurrency 8 each, the production heartbeat settings).
- Each procrastinate round gets a fresh database with both schemas; the workers are started and idle first, then
  the deliveries are deferred (one statement per event: 20 jobs); the clock runs from the first defer until every
  job has succeeded. Deferring is timed on its own too (the publisher's cost per delivery).
- BackgroundDelivery (workers=8, one process) delivers the same count to the same receiver: the in-process rate.
- "inline" is one delivery at a time in one thread (Webhooks.deliver): the bare cost of an attempt here.
- The engine's overhead per delivery is 1 / rate(1 procrastinate worker) - 1 / rate(inline), i.e. what one worker
  process spends per delivery beyond the attempt itself (fetching, locking, finishing the job, flaghooks' gate).

- The SQLite outbox delivers the same count from one file with 8 worker threads (its workers' own rate, the
  publishes made before the clock starts); Celery's rounds (benchmarks/_bench_celery.py: 1 and 2 worker
  processes on Redis and on RabbitMQ) follow, with their own inline baseline.

Run: ``python benchmarks/bench_scale_out.py [--deliveries N] [--workers 1 2 4] [--celery redis,rabbitmq]``
(PostgreSQL on 127.0.0.1:5432, Redis on 6379, RabbitMQ on 5672).
On a machine shared with PostgreSQL (and with anything else), read the ratios, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import procrastinate
import psycopg

from flaghooks import BackgroundDelivery, OutboxDelivery, SqliteOutbox
from flaghooks.contrib.procrastinate import ProcrastinateDelivery, apply_schema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import _bench_celery  # noqa: E402 - Celery's rounds (Redis and RabbitMQ workers)

from background_helpers import event  # noqa: E402 - the tests' FLAG_UPDATED events
from procrastinate_worker import ENV, webhooks  # noqa: E402 - the worker's own endpoints, shared with it

ENDPOINTS = 20
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

RECEIVER = r"""
import http.server, socketserver, sys

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def fresh_database() -> str:
    name = f"flaghooks_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def succeeded(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'flaghooks:deliver' AND status = 'succeeded'"
        ).fetchone()
    return int(row[0]) if row else 0


def procrastinate_round(receiver: str, deliveries: int, workers: int, concurrency: int) -> tuple[float, float]:
    """(deliveries per second with ``workers`` processes, seconds spent deferring per delivery)."""
    name = fresh_database()
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    processes: list[subprocess.Popen[bytes]] = []
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    try:
        app.open()
        app.schema_manager.apply_schema()
        with psycopg.connect(url) as connection:
            apply_schema(connection)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
        command = [sys.executable, str(ROOT / "tests" / "procrastinate_worker.py"), url, receiver, str(ENDPOINTS)]
        command += ["--concurrency", str(concurrency)]
        processes = [subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL) for _ in range(workers)]
        time.sleep(3)  # imports and the workers' first poll: not part of the rate
        publisher = ProcrastinateDelivery(webhooks(receiver, ENDPOINTS), app)
        started = time.perf_counter()
        for n in range(deliveries // ENDPOINTS):
            publisher.publish(event(n), environment=ENV)
        deferring = (time.perf_counter() - started) / deliveries
        while succeeded(url) < deliveries:
            time.sleep(0.05)
        return deliveries / (time.perf_counter() - started), deferring
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
        app.close()
        drop_database(name)


def background_rate(receiver: str, deliveries: int) -> float:
    hooks = webhooks(receiver, ENDPOINTS)
    with BackgroundDelivery(hooks, workers=8, queue_size=deliveries + 1) as background:
        background.publish(event(0), environment=ENV)  # imports and connections, outside the clock
        background.flush(60)
        started = time.perf_counter()
        for n in range(deliveries // ENDPOINTS):
            background.publish(event(n), environment=ENV)
        background.flush(600)
        return deliveries / (time.perf_counter() - started)


def inline_rate(receiver: str, deliveries: int) -> float:
    hooks = webhooks(receiver, ENDPOINTS)
    hooks.publish(event(0), environment=ENV)
    started = time.perf_counter()
    for n in range(deliveries // ENDPOINTS):
        hooks.publish(event(n), environment=ENV)
    return deliveries / (time.perf_counter() - started)


def sqlite_outbox_rate(receiver: str, deliveries: int) -> float:
    """The SQLite outbox (synchronous=FULL, 8 worker threads in this process) over the same receiver and count:
    published first, one transaction per event, then the clock runs from the workers' start to the last
    delivery (the workers' own rate, as procrastinate's rounds exclude deferring)."""
    with tempfile.TemporaryDirectory() as directory:
        hooks = webhooks(receiver, ENDPOINTS)
        with SqliteOutbox(Path(directory) / "outbox.db") as outbox:
            delivery = OutboxDelivery(hooks, outbox, workers=8, poll_interval=0.05)
            for n in range(deliveries // ENDPOINTS):
                delivery.publish(event(n), environment=ENV)
            started = time.perf_counter()
            delivery.start()
            try:
                while outbox.counts()["delivered"] < deliveries:
                    time.sleep(0.01)
                elapsed = time.perf_counter() - started
            finally:
                delivery.close()
        return deliveries / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--celery", default="redis,rabbitmq", help="Celery brokers to measure ('' for none)")
    options = parser.parse_args()
    deliveries = options.deliveries // ENDPOINTS * ENDPOINTS
    server = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        receiver = f"http://127.0.0.1:{int(server.stdout.readline())}"
        inline = inline_rate(receiver, min(deliveries, 400))
        background = background_rate(receiver, deliveries)
        outbox = sqlite_outbox_rate(receiver, deliveries)
        rounds = [(n, *procrastinate_round(receiver, deliveries, n, options.concurrency)) for n in options.workers]
        brokers = tuple(broker for broker in options.celery.split(",") if broker)
        celery = _bench_celery.run(deliveries, brokers) if brokers else None
    finally:
        server.terminate()
        server.wait()
    print(f"{deliveries} deliveries over {ENDPOINTS} endpoints, {os.cpu_count()} cores (shared with PostgreSQL)")
    print(f"{'executor':<42}{'deliveries/s':>14}{'vs background':>15}")
    print(f"{'inline (one thread, Webhooks.deliver)':<42}{inline:>14.0f}{inline / background:>14.2f}x")
    print(f"{'BackgroundDelivery (8 threads)':<42}{background:>14.0f}{1.0:>14.2f}x")
    print(f"{'SqliteOutbox, FULL (8 worker threads)':<42}{outbox:>14.0f}{outbox / background:>14.2f}x")
    for workers, rate, _ in rounds:
        label = f"procrastinate, {workers} worker process(es) x {options.concurrency}"
        print(f"{label:<42}{rate:>14.0f}{rate / background:>14.2f}x")
    one = rounds[0][1]
    print(
        f"per delivery: attempt {1000 / inline:.2f} ms inline; procrastinate worker {1000 / one:.2f} ms "
        f"({rounds[0][0]} process) -> engine overhead {1000 / one - 1000 / inline:.2f} ms; "
        f"deferring {rounds[0][2] * 1000:.3f} ms per delivery (20 per statement)"
    )
    if celery is not None:
        for line in _bench_celery.report(celery):
            print(line)


if __name__ == "__main__":
    main()

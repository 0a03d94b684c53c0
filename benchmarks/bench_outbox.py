"""The SQLite outbox: what a durable publish costs, and what delivering from a file costs against memory.

Two figures, each beside a baseline measured in the same run:

(a) durable publish: events routed to 10 endpoints each, one transaction per event (every delivery of the event
    committed, or none), with ``synchronous=FULL`` (the commit survives a power loss): deliveries enqueued per
    second by ``OutboxDelivery.publish`` with no worker running; target at least 5,000/s. Printed beside
    ``BackgroundDelivery.publish``'s enqueue rate (memory, its workers held) and beside a bare ``sqlite3``
    transaction inserting 10 rows of the same size (the floor the file system sets: WAL and fsync);
(b) end to end: 2,000 deliveries (200 events to 10 loopback endpoints answering 204 at once), published while
    4 workers run, until the last result reaches ``on_result``: ``OutboxDelivery`` against
    ``BackgroundDelivery`` with the same 4 workers, as a ratio of deliveries per second; target at least 0.4x.
    The outbox's figure includes its durable publishes (one fsync per event with FULL, holding the file's write
    lock that the workers' claims and finishes need too); a second figure starts the workers on a file where
    everything was published beforehand, so that the workers' own cost (claims and fenced finishes) shows.

Both are also run with ``synchronous=NORMAL`` (survives a process crash, not a power loss), for comparison.
The outbox file lives in a temporary directory on the file system of ``--dir`` (default: the system's
temporary directory); its type is printed, since fsync costs what the disk under it costs. The servers run in a
subprocess and share the machine's cores with the client.

Run: ``python benchmarks/bench_outbox.py [--rounds R] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import urllib3

from flaghooks import (
    BackgroundDelivery,
    DeliveryResult,
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    OutboxDelivery,
    Project,
    RetryPolicy,
    SqliteOutbox,
    WebhookEvent,
    Webhooks,
    encode,
    flag_changed,
)
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport

ENDPOINTS = 10
WORKERS = 4
PUBLISH_TARGET = 5_000.0
END_TO_END_TARGET = 0.4

SERVER = r"""
import http.server, socketserver, sys, threading

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


class Held(Transport):
    """Holds every attempt until released: BackgroundDelivery's workers stay busy, so only queueing is measured."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, request: DeliveryRequest) -> AttemptResult:
        self.release.wait()
        return AttemptResult(204)


def subscribed(webhooks: Webhooks, urls: list[str]) -> Webhooks:
    for n, url in enumerate(urls):
        webhooks.subscribe(Endpoint(url, name=f"endpoint-{n}"), environment=23)
    return webhooks


@contextmanager
def scratch(parent: str | None) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=parent))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def filesystem(path: Path) -> str:
    """The type of the file system that holds ``path`` (from /proc/mounts), or "unknown"."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    real = str(path.resolve())
    best = max(
        (m for m in mounts if len(m) > 2 and (real == m[1] or real.startswith(m[1].rstrip("/") + "/"))),
        key=lambda m: len(m[1]),
        default=None,
    )
    return f"{best[2]} ({best[0]} on {best[1]})" if best else "unknown"


# --- (a) publish ----------------------------------------------------------------------------------------


def publish_outbox(directory: Path, synchronous: str, batch: list[WebhookEvent]) -> float:
    """Deliveries per second that OutboxDelivery.publish commits, no worker running."""
    urls = [f"https://hooks{n}.example/flags" for n in range(ENDPOINTS)]
    path = directory / f"publish-{synchronous}-{time.monotonic_ns()}.db"
    outbox = SqliteOutbox(path, synchronous=synchronous)
    webhooks = subscribed(Webhooks(transport=Held()), urls)
    delivery = OutboxDelivery(webhooks, outbox)  # never started: publishing alone is measured
    try:
        delivery.publish(batch[0])  # the schema and the statements' first use, not a cost of each publish
        started = time.perf_counter()
        count = sum(len(delivery.publish(event)) for event in batch[1:])
        elapsed = time.perf_counter() - started
    finally:
        delivery.close(timeout=0)
        webhooks.close()
        outbox.close()
    assert count == (len(batch) - 1) * ENDPOINTS, "publish did not route every event to every endpoint"
    return count / elapsed


def publish_background(batch: list[WebhookEvent]) -> float:
    """Deliveries per second that BackgroundDelivery.publish queues in memory, its workers held."""
    held = Held()
    webhooks = subscribed(Webhooks(transport=held), [f"https://hooks{n}.example/flags" for n in range(ENDPOINTS)])
    background = BackgroundDelivery(webhooks, queue_size=(len(batch) + 1) * ENDPOINTS)
    try:
        background.publish(batch[0])  # starts the workers: a cost of the first publish only
        started = time.perf_counter()
        count = sum(len(background.publish(event)) for event in batch[1:])
        elapsed = time.perf_counter() - started
    finally:
        held.release.set()
        background.close(timeout=0)
        webhooks.close()
    return count / elapsed


def publish_bare_sqlite(directory: Path, synchronous: str, batch: list[WebhookEvent]) -> float:
    """Rows per second a bare sqlite3 connection commits, 10 rows of an event's size per transaction (WAL)."""
    body = encode(batch[0])
    path = directory / f"bare-{synchronous}-{time.monotonic_ns()}.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("CREATE TABLE t (id TEXT PRIMARY KEY, endpoint TEXT, body BLOB, at REAL, state TEXT)")
        started = time.perf_counter()
        for i in range(len(batch) - 1):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO t VALUES (?, ?, ?, ?, 'pending')",
                [(f"{i}-{n}", f"endpoint-{n}", body, time.time()) for n in range(ENDPOINTS)],
            )
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return (len(batch) - 1) * ENDPOINTS / elapsed


# --- (b) end to end -------------------------------------------------------------------------------------


class Servers:
    """``count`` loopback servers in a subprocess, each answering 204 at once."""

    def __init__(self, count: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.urls = [f"http://127.0.0.1:{port}/hook" for port in self.process.stdout.readline().split()]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


class Results:
    """Counts results reaching on_result; ``done`` is set when ``expected`` have, all of them delivered."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = self.failed = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def __call__(self, result: DeliveryResult) -> None:
        with self.lock:
            self.count += 1
            self.failed += not result.ok
            if self.count == self.expected:
                self.done.set()


def hooks(urls: list[str], results: Results) -> Webhooks:
    transport = HttpTransport(pool=urllib3.PoolManager(maxsize=WORKERS), allowed_networks=["127.0.0.0/8"])
    return subscribed(Webhooks(transport=transport, retry=RetryPolicy(backoff=0.05), on_result=results), urls)


def end_to_end_background(urls: list[str], batch: list[WebhookEvent]) -> float:
    """Deliveries per second, publish to the last on_result, through BackgroundDelivery(workers=4)."""
    results = Results(len(batch) * len(urls))
    with hooks(urls, results) as webhooks, BackgroundDelivery(webhooks, workers=WORKERS) as background:
        started = time.perf_counter()
        for event in batch:
            background.publish(event)
        assert results.done.wait(300), "BackgroundDelivery did not deliver everything"
        elapsed = time.perf_counter() - started
    assert results.failed == 0, f"{results.failed} deliveries failed"
    return results.expected / elapsed


def end_to_end_outbox(
    directory: Path, synchronous: str, urls: list[str], batch: list[WebhookEvent], *, drain: bool = False
) -> float:
    """Deliveries per second through OutboxDelivery(workers=4) on a fresh file: from the first publish to the last
    on_result, the workers running meanwhile; or, with ``drain``, from starting the workers on a file where
    everything was published already to the last on_result (the workers' cost alone)."""
    results = Results(len(batch) * len(urls))
    path = directory / f"e2e-{synchronous}-{time.monotonic_ns()}.db"
    outbox = SqliteOutbox(path, synchronous=synchronous)
    webhooks = hooks(urls, results)
    delivery = OutboxDelivery(webhooks, outbox, workers=WORKERS)
    try:
        if drain:
            for event in batch:
                delivery.publish(event)
        started = time.perf_counter()
        delivery.start()
        if not drain:
            for event in batch:
                delivery.publish(event)
        assert results.done.wait(300), "OutboxDelivery did not deliver everything"
        elapsed = time.perf_counter() - started
        delivery.close()
        delivered = outbox.counts()["delivered"]
    finally:
        webhooks.close()
        outbox.close()
    assert results.failed == 0, f"{results.failed} deliveries failed"
    assert delivered == results.expected, f"the outbox counts {delivered} delivered, not {results.expected}"
    return results.expected / elapsed


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each measurement; the best is kept")
    parser.add_argument("--events", type=int, default=1000, help="events published in (a) (default: 1000)")
    parser.add_argument("--dir", default=None, help="where the outbox files go (default: the temporary directory)")
    args = parser.parse_args()

    with scratch(args.dir) as directory:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(
            f"outbox files on {filesystem(directory)}; {os.cpu_count()} cores, load average {load}; "
            f"SQLite {sqlite3.sqlite_version}"
        )
        batch = events(args.events + 1)
        rates: dict[str, float] = {}
        # Interleaved rounds, the best of each kept: other work on the machine shows in single runs.
        for _ in range(args.rounds):
            for name, measure in (
                ("background", lambda: publish_background(batch)),
                ("FULL", lambda: publish_outbox(directory, "FULL", batch)),
                ("NORMAL", lambda: publish_outbox(directory, "NORMAL", batch)),
                ("bare FULL", lambda: publish_bare_sqlite(directory, "FULL", batch)),
                ("bare NORMAL", lambda: publish_bare_sqlite(directory, "NORMAL", batch)),
            ):
                rates[name] = max(rates.get(name, 0.0), measure())
        for synchronous in ("FULL", "NORMAL"):
            print(
                f"(a) publish, {ENDPOINTS} endpoints/event, synchronous={synchronous:<6}: "
                f"outbox {rates[synchronous]:9,.0f} deliveries/s; bare sqlite3 {rates['bare ' + synchronous]:9,.0f} "
                f"rows/s; BackgroundDelivery {rates['background']:9,.0f} deliveries/s (memory)"
            )

        servers = Servers(ENDPOINTS)
        try:
            urls = servers.urls
            e2e = events(200)
            end_to_end_background(urls, events(10, start=5000))  # imports and first connections, for both alike
            e2e_rates: dict[str, float] = {}
            for _ in range(args.rounds):
                for name, run in (
                    ("background", lambda: end_to_end_background(urls, e2e)),
                    ("FULL", lambda: end_to_end_outbox(directory, "FULL", urls, e2e)),
                    ("NORMAL", lambda: end_to_end_outbox(directory, "NORMAL", urls, e2e)),
                    ("drain", lambda: end_to_end_outbox(directory, "FULL", urls, e2e, drain=True)),
                ):
                    e2e_rates[name] = max(e2e_rates.get(name, 0.0), run())
        finally:
            servers.close()
        total = len(e2e) * ENDPOINTS
        print(
            f"(b) end to end, {total} deliveries to {ENDPOINTS} loopback endpoints, {WORKERS} workers: "
            f"BackgroundDelivery {e2e_rates['background']:,.0f}/s, outbox FULL {e2e_rates['FULL']:,.0f}/s, "
            f"outbox NORMAL {e2e_rates['NORMAL']:,.0f}/s; the outbox's workers alone, on a file published "
            f"beforehand: {e2e_rates['drain']:,.0f}/s"
        )

    full, normal = rates["FULL"], rates["NORMAL"]
    print(
        f"(a) durable publish, FULL:   {full:9,.0f} deliveries/s (target >= {PUBLISH_TARGET:,.0f}/s) "
        f"{verdict(full >= PUBLISH_TARGET)}; {full / rates['background']:.2f}x BackgroundDelivery's enqueue, "
        f"{full / rates['bare FULL']:.2f}x bare sqlite3"
    )
    print(
        f"(a) durable publish, NORMAL: {normal:9,.0f} deliveries/s (for comparison); "
        f"{normal / rates['background']:.2f}x BackgroundDelivery's enqueue, {normal / rates['bare NORMAL']:.2f}x bare "
        "sqlite3"
    )
    ratio_full = e2e_rates["FULL"] / e2e_rates["background"]
    ratio_normal = e2e_rates["NORMAL"] / e2e_rates["background"]
    print(
        f"(b) end to end, FULL over BackgroundDelivery:   {ratio_full:.3f}x (target >= {END_TO_END_TARGET}x) "
        f"{verdict(ratio_full >= END_TO_END_TARGET)}"
    )
    print(f"(b) end to end, NORMAL over BackgroundDelivery: {ratio_normal:.3f}x (for comparison)")
    ratio_drain = e2e_rates["drain"] / e2e_rates["background"]
    print(
        f"(b) the outbox's workers alone over BackgroundDelivery end to end: {ratio_drain:.3f}x "
        f"(target >= {END_TO_END_TARGET}x) {verdict(ratio_drain >= END_TO_END_TARGET)}"
    )


if __name__ == "__main__":
    main()

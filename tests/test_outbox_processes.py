"""The outbox across real processes: a worker process killed with SIGKILL three times loses nothing (acceptance 1), two
worker processes share one file without attempting any delivery twice (acceptance 2), and os.fork() leaves the
child its own connections and workers."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from background_helpers import ENV, event, local
from flaghooks import Endpoint, OutboxDelivery, SqliteOutbox, Webhooks
from httpserver import HttpServer
from outbox_helpers import SRC, TESTS, wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX processes and signals")


def worker(db: Path, url: str, endpoints: int = 1, per_endpoint: int = 4) -> subprocess.Popen[str]:
    """A worker process (tests/outbox_worker.py) running OutboxDelivery.run() on ``db`` until SIGTERM."""
    return subprocess.Popen(
        [sys.executable, str(TESTS / "outbox_worker.py"), str(db), url, str(endpoints), str(per_endpoint)],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGTERM, then the worker's JSON line; it must exit cleanly with nothing on stderr."""
    process.terminate()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and err == "", err
    return dict(json.loads(out))


def publish_all(path: Path, url: str, events: int, endpoints: int) -> set[str]:
    """Publish ``events`` events to ``endpoints`` endpoints in one transaction of the application's; their ids."""
    with Webhooks(transport=local()) as webhooks, SqliteOutbox(path) as outbox:
        for number in range(endpoints):
            webhooks.subscribe(Endpoint(f"{url}r{number}", name=f"r{number}"), environment=ENV)
        delivery = OutboxDelivery(webhooks, outbox)
        app = sqlite3.connect(path)
        ids = {d.event_id for n in range(events) for d in delivery.publish(event(n), connection=app)}
        app.commit()
        app.close()
    return ids


def test_sigkill_three_times_loses_nothing(tmp_path: Path) -> None:
    """Acceptance 1: a worker process delivering 2,000 events to a loopback receiver is killed with SIGKILL three
    times at random moments and restarted; the receiver gets every event at least once, duplicates are at most
    the deliveries that were in flight at the kills, and the outbox counts 2,000 delivered."""
    rng = random.Random()
    path = tmp_path / "outbox.db"
    with HttpServer() as server:
        ids = publish_all(path, server.url("/"), 2000, 1)
        in_flight_at_kills = 0
        with SqliteOutbox(path) as outbox:
            process = worker(path, server.url("/"))
            for _ in range(3):
                target = len(server.received) + rng.randint(50, 400)
                wait_until(lambda target=target: len(server.received) >= target)  # type: ignore[misc]
                process.kill()
                process.communicate(timeout=30)
                in_flight_at_kills += outbox.counts()["in_flight"]  # the dead worker's leases
                process = worker(path, server.url("/"))
            wait_until(lambda: outbox.counts()["delivered"] == 2000)
            stop(process)
            counts = outbox.counts()
        received = [request.headers["webhook-id"] for request in server.received]
    assert counts == {"pending": 0, "in_flight": 0, "delivered": 2000, "dead": 0}
    assert set(received) == ids
    assert len(received) - len(ids) <= in_flight_at_kills


def test_two_worker_processes_share_one_file_and_never_attempt_twice(tmp_path: Path) -> None:
    """Acceptance 2: two worker processes on one file deliver 5,000 deliveries (500 events to 10 endpoints);
    no lease expires, so no delivery is attempted twice: the receiver gets each once, the file records one
    attempt each, both processes did part of the work, and neither let SQLITE_BUSY escape (nothing on stderr,
    exit status 0)."""
    path = tmp_path / "outbox.db"
    with HttpServer() as server:
        ids = publish_all(path, server.url("/"), 500, 10)
        processes = [worker(path, server.url("/"), 10, 2) for _ in range(2)]
        with SqliteOutbox(path) as outbox:
            wait_until(lambda: outbox.counts()["delivered"] == 5000)
            ended = [stop(process) for process in processes]
            counts = outbox.counts()
        received = [(request.path, request.headers["webhook-id"]) for request in server.received]
    conn = sqlite3.connect(path)
    attempts = conn.execute("SELECT count(*), max(attempts) FROM flaghooks_outbox_deliveries").fetchone()
    recorded = conn.execute("SELECT count(*) FROM flaghooks_outbox_attempts").fetchone()[0]
    conn.close()
    assert counts["delivered"] == 5000 and attempts == (5000, 1) and recorded == 5000
    assert len(received) == 5000 and len(set(received)) == 5000 and {e for _, e in received} == ids
    assert sum(e["delivered"] for e in ended) == 5000 and all(e["delivered"] > 0 for e in ended)


FORK = r"""
import json, os, sys, time
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from background_helpers import ENV, Results, event, local
from flaghooks import Endpoint, OutboxDelivery, SqliteOutbox, Webhooks

results = Results()
webhooks = Webhooks(transport=local(), on_result=results)
webhooks.subscribe(Endpoint(sys.argv[1], name="hook"), environment=ENV)
outbox = SqliteOutbox(sys.argv[4])
delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.05)
delivery.start()
for n in range(3):
    delivery.publish(event(n))
results.wait_for(lambda: len(results.results) == 3)
child = os.fork()  # the parent's workers are running, its connections open
who = "child" if child == 0 else "parent"
mine = (100, 101) if child == 0 else (3, 4)
for n in mine:
    delivery.publish(event(n))
if child == 0:
    delivery.start()  # the child's own workers; the parent's did not survive the fork
deadline = time.monotonic() + 60
while outbox.counts()["delivered"] < 7 and time.monotonic() < deadline:
    time.sleep(0.01)
delivery.close()
line = {"who": who, "counts": outbox.counts(), "ended": [r.event_id for r in results.results if r.ok]}
if child == 0:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(child, 0)
line["child_status"] = status
outbox.close()
webhooks.close()
sys.stdout.write(json.dumps(line) + "\n")
"""


def test_fork_gives_the_child_its_own_connection_and_workers(tmp_path: Path) -> None:
    """After os.fork() (the parent's workers running, its connections open) parent and child both publish into
    the same outbox and both run workers on it: every event is delivered exactly once, each delivery ends in
    one result in one of the two processes, and the file counts them all."""
    with HttpServer() as server:
        run = subprocess.run(
            [sys.executable, "-c", FORK, server.url("/hook"), str(SRC), str(TESTS), str(tmp_path / "outbox.db")],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        received = sorted(request.headers["webhook-id"] for request in server.received)
    lines = {line["who"]: line for line in map(json.loads, run.stdout.splitlines())}
    parent, child = lines["parent"], lines["child"]
    expected = sorted(f"evt_{n}" for n in (0, 1, 2, 3, 4, 100, 101))
    assert parent["child_status"] == 0 and child["counts"]["delivered"] == parent["counts"]["delivered"] == 7
    assert received == expected
    assert sorted(parent["ended"] + [e for e in child["ended"] if e not in ("evt_0", "evt_1", "evt_2")]) == expected


FORK_CLOSE = r"""
import os, sys, time
sys.path[:0] = [sys.argv[1]]
from flaghooks import SqliteOutbox

outbox = SqliteOutbox(sys.argv[2])
outbox._lock.acquire()  # as a publish in another thread of the parent holds it at the moment of the fork
child = os.fork()
if child == 0:
    outbox.close()  # the child's: must not wait for a lock that nobody in the child will release
    os._exit(0)
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    done, status = os.waitpid(child, os.WNOHANG)
    if done:
        break
    time.sleep(0.01)
else:
    os.kill(child, 9)
    os.waitpid(child, 0)
    status = "hung"
outbox._lock.release()
outbox.close()
print(status)
"""


def test_a_forked_child_closes_the_outbox_even_when_the_parent_held_its_lock(tmp_path: Path) -> None:
    """A child forked while a thread of the parent held the outbox's lock (a publish under way) closes the outbox
    at once: the parent's lock and connection are not the child's to wait for or close."""
    run = subprocess.run(
        [sys.executable, "-c", FORK_CLOSE, str(SRC), str(tmp_path / "outbox.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0"

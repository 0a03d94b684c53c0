"""Shared stores across real processes: events split between processes applying at once converge; gunicorn
workers on one SQLite file answer alike and run on_event once per event; two receivers on Redis converge."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3

from cache_workers import fed, history, open_store, snapshot
from flaghooks import FlagChange, PayloadFormat, WebhookEvent, encode, sign_flagsmith
from flaghooks.cache import FlagCache
from flaghooks.receiver import verify_and_decode
from services import redis_prefix

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
SECRET = "processes-secret"


def _key(event: WebhookEvent) -> tuple[Any, str]:
    data = event.data
    assert isinstance(data, FlagChange)
    return (data.timestamp, event.id)


@contextlib.contextmanager
def shared_store(kind: str, tmp_path: Path) -> Iterator[str]:
    """A store spec (``sqlite:PATH`` or ``redis:PREFIX``) of this test's own, removed after."""
    if kind == "sqlite":
        yield f"sqlite:{tmp_path / 'shared.db'}"
    else:
        with redis_prefix("flaghooks-processes") as prefix:
            yield f"redis:{prefix}"


@pytest.mark.parametrize("processes", [2, 4])
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_processes_applying_at_once_converge(kind: str, processes: int, tmp_path: Path) -> None:
    """A shuffled history with duplicates, split across 2 or 4 processes that apply their shares at once to one
    store, ends where an in-memory cache fed the same events ends: every state and every lookup."""
    events = history(processes, 400)
    rnd = random.Random(processes)
    stream = events + rnd.sample(events, 40)
    rnd.shuffle(stream)
    with shared_store(kind, tmp_path) as spec:
        workers = []
        for n in range(processes):
            path = tmp_path / f"events{n}.pickle"
            path.write_bytes(pickle.dumps(stream[n::processes]))
            workers.append(
                subprocess.Popen([sys.executable, str(TESTS / "cache_workers.py"), "apply", spec, str(path)], env=ENV)
            )
        for worker in workers:
            assert worker.wait(timeout=120) == 0
        cache = FlagCache(open_store(spec))
        try:
            assert snapshot(cache) == snapshot(fed(sorted(events, key=_key)))
        finally:
            cache.close()


# --- receivers under gunicorn ----------------------------------------------------------------------------------


def deliveries(seed: int, distinct: int, duplicates: int) -> tuple[list[tuple[bytes, dict[str, str]]], FlagCache]:
    """Signed CLASSIC deliveries of a history, with ``duplicates`` sent twice, shuffled; and an in-memory cache fed
    the same events as a receiver decodes them."""
    events = history(seed, distinct)
    rnd = random.Random(seed)
    sent = []
    for event in events + rnd.sample(events, duplicates):
        body = encode(event, PayloadFormat.CLASSIC)
        sent.append((body, {"X-Flagsmith-Signature": sign_flagsmith(body, SECRET), "Content-Type": "application/json"}))
    rnd.shuffle(sent)
    expected = fed(verify_and_decode(body, headers, secret=SECRET) for body, headers in sent)
    return sent, expected


@contextlib.contextmanager
def gunicorn(spec: str, handled: Path, workers: int) -> Iterator[str]:
    """``cache_workers:app`` under gunicorn (``--preload``: the store is opened before the workers fork) on a
    socket of 127.0.0.1 bound here; yields "host:port"."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    os.set_inheritable(listener.fileno(), True)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        "--preload",
        "--bind",
        f"fd://{listener.fileno()}",
        "--log-level",
        "warning",
        "--timeout",
        "60",
        "cache_workers:app",
    ]
    env = {**ENV, "FLAGHOOKS_TEST_STORE": spec, "FLAGHOOKS_TEST_HANDLED": str(handled), "FLAGHOOKS_TEST_SECRET": SECRET}
    process = subprocess.Popen(command, env=env, cwd=TESTS, pass_fds=(listener.fileno(),))
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    try:
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - only when gunicorn hangs
            process.kill()
            process.wait()


def post_all(
    http: urllib3.PoolManager, address: str, sent: list[tuple[bytes, dict[str, str]]], threads: int, failures: list[str]
) -> None:
    """Post every delivery from ``threads`` client threads; a 503 (a copy being handled elsewhere) is retried, as
    a sender would. Every delivery that does not end in 200 is added to ``failures``."""

    def send(part: list[tuple[bytes, dict[str, str]]]) -> None:
        for body, headers in part:
            for _ in range(200):
                response = http.request("POST", f"http://{address}/", body=body, headers=headers, retries=False)
                if response.status != 503:
                    break
                time.sleep(0.02)
            if response.status != 200:
                failures.append(f"{response.status} {response.data[:200]!r}")

    workers = [threading.Thread(target=send, args=(sent[n::threads],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def wait_until_serving(http: urllib3.PoolManager, address: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if http.request("GET", f"http://{address}/", retries=False).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def every_worker(http: urllib3.PoolManager, address: str, workers: int) -> dict[int, dict[str, Any]]:
    """Each worker's answer (by pid): GETs from several threads at once until every worker has answered."""
    seen: dict[int, dict[str, Any]] = {}
    lock = threading.Lock()

    def ask() -> None:
        for _ in range(100):
            with lock:
                if len(seen) >= workers:
                    return
            answer = json.loads(http.request("GET", f"http://{address}/", retries=False).data)
            with lock:
                seen[answer.pop("pid")] = answer

    askers = [threading.Thread(target=ask) for _ in range(workers * 2)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    return seen


def handled_table(tmp_path: Path) -> Path:
    path = tmp_path / "handled.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE handled (event_id TEXT NOT NULL, pid INTEGER NOT NULL)")
    return path


def handled_ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [event_id for (event_id,) in conn.execute("SELECT event_id FROM handled")]


def test_gunicorn_workers_share_one_sqlite_cache(tmp_path: Path) -> None:
    """Acceptance 1: gunicorn with 4 workers and SqliteFlagStore, 5,000 deliveries (10 % duplicates, shuffled)
    posted by 8 client threads: every worker's reads agree with an in-memory cache fed the same events, and each
    event's on_event ran once across all workers."""
    sent, expected = deliveries(11, 4_545, 455)
    handled = handled_table(tmp_path)
    with (
        gunicorn(f"sqlite:{tmp_path / 'flags.db'}", handled, workers=4) as address,
        urllib3.PoolManager(maxsize=16) as http,
    ):
        wait_until_serving(http, address)
        failures: list[str] = []
        post_all(http, address, sent, 8, failures)
        assert failures == []
        answers = every_worker(http, address, 4)
    assert len(answers) == 4
    want = snapshot(expected)
    for pid, answer in answers.items():
        assert answer == want, f"worker {pid} disagrees"
    ids = handled_ids(handled)
    distinct = {verify_and_decode(body, headers, secret=SECRET).id for body, headers in sent}
    assert sorted(ids) == sorted(distinct)


@pytest.mark.redis
def test_two_receivers_on_redis_converge(tmp_path: Path) -> None:
    """Acceptance 2: two receiver processes on RedisFlagStore (a key prefix of this test's own), each fed one of
    two disjoint halves of a shuffled history at the same time, converge to the in-memory answer; on_event ran
    once per event."""
    sent, expected = deliveries(12, 1_500, 0)
    handled = handled_table(tmp_path)
    with (
        redis_prefix("flaghooks-receivers") as prefix,
        gunicorn(f"redis:{prefix}", handled, workers=1) as first,
        gunicorn(f"redis:{prefix}", handled, workers=1) as second,
        urllib3.PoolManager(maxsize=16) as http,
    ):
        wait_until_serving(http, first)
        wait_until_serving(http, second)
        failures: list[str] = []
        halves = [
            threading.Thread(target=post_all, args=(http, address, sent[n::2], 3, failures))
            for n, address in enumerate((first, second))
        ]
        for half in halves:
            half.start()
        for half in halves:
            half.join()
        assert failures == []
        answers = [every_worker(http, address, 1) for address in (first, second)]
    want = snapshot(expected)
    assert [list(answer.values()) for answer in answers] == [[want], [want]]
    assert len(handled_ids(handled)) == len(set(handled_ids(handled))) == len(sent)

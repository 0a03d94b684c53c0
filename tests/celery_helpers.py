"""What the Celery worker tests share: a broker of the test's own, worker processes, the workers' results."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from services import RABBITMQ_URL, rabbitmq_queue, redis_prefix, unique_name

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"

# Redis gives an unacknowledged message to another worker once visibility_timeout has passed; short here so a
# killed worker's messages come back within the test (the sweep that brings them back runs every second). The
# sweep holds a lock in Redis for at most unacked_mutex_expire (300 s by default): a worker killed mid-sweep would
# otherwise hold every redelivery up for five minutes.
REDIS_OPTIONS = {
    "visibility_timeout": 5,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 3,
}


@contextlib.contextmanager
def broker(kind: str) -> Iterator[dict[str, Any]]:
    """Settings for ``flaghooks_celery_app.build`` naming a broker and a queue of this test's own (removed after)."""
    if kind == "redis":
        with redis_prefix("flaghooks-celery") as prefix:
            yield {
                "broker": "redis://127.0.0.1:6379/0",
                "queue": unique_name("flaghooks"),
                "transport_options": {"global_keyprefix": prefix, **REDIS_OPTIONS},
                "max_hop": 2.0,  # below the visibility_timeout
            }
    else:
        with rabbitmq_queue("flaghooks-celery") as queue:
            yield {"broker": RABBITMQ_URL, "queue": queue}


class Workers:
    """Celery workers running ``flaghooks_celery_app`` with the given settings; stopped when the block ends
    (SIGTERM, a warm shutdown; SIGKILL after 3 s: the threads pool's timer thread may sleep 10 s before it
    stops, and the test is over by then). The threads pool by default: one process per worker, so the test's
    deliveries, sent to one loopback server, go about twice as fast as with prefork on 2 cores."""

    def __init__(self, settings: dict[str, Any], log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *, pool: str = "threads", concurrency: int = 4) -> subprocess.Popen[bytes]:
        """Start a worker (in a session of its own, so :meth:`kill` reaches its pool processes too)."""
        number = len(self.processes)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
            "FLAGHOOKS_CELERY_TEST": json.dumps(self.settings),
        }
        log = (self.log_dir / f"worker{number}.log").open("wb")
        with log:
            process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "flaghooks_celery_app", "worker",
                    "-Q", self.settings["queue"], "-n", f"flaghooks{number}@%h", "--pool", pool,
                    "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "--loglevel", os.environ.get("FLAGHOOKS_CELERY_LOGLEVEL", "WARNING"),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append(process)
        return process

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and its pool processes at once, as when its host or container dies."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("worker*.log")))

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(3)
            except subprocess.TimeoutExpired:
                self.kill(process)


def results(path: Path) -> list[dict[str, Any]]:
    """The DeliveryResults the workers appended to ``path``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_for(check: Callable[[], bool], timeout: float, what: str, workers: Workers | None = None) -> None:
    """Poll ``check`` every 50 ms until it holds; fail naming ``what`` (with the workers' logs) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = workers.logs()[-3000:] if workers is not None else ""
            raise AssertionError(f"waited {timeout} s for {what}\n{logs}")
        time.sleep(0.05)

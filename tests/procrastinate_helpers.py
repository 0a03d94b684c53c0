"""What the procrastinate tests share: a fresh database with both schemas, a publishing app, in-process workers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import procrastinate
import psycopg

from flaghooks import Webhooks
from flaghooks.contrib.procrastinate import apply_schema, blueprint
from services import postgres_database

QUEUE = "flaghooks"


@contextlib.contextmanager
def database() -> Iterator[tuple[str, procrastinate.App]]:
    """A fresh database with procrastinate's schema and flaghooks' tables; yields its URL and an opened
    publishing app (no tasks: it defers by name, as a web process that never runs jobs would)."""
    with postgres_database("flaghooks_procrastinate") as url:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
        app.open()
        try:
            app.schema_manager.apply_schema()
            with psycopg.connect(url) as connection:
                apply_schema(connection)
            yield url, app
        finally:
            app.close()


def worker_app(url: str, webhooks: Webhooks, **options: Any) -> procrastinate.App:
    """A worker's app: flaghooks' blueprint for ``webhooks`` under the namespace "flaghooks"."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    app.add_tasks_from(blueprint(webhooks, **options), namespace="flaghooks")
    return app


def statuses(app: procrastinate.App, task: str = "flaghooks:deliver") -> list[str]:
    return [job.status or "" for job in app.job_manager.list_jobs(task=task)]


def work(app: procrastinate.App, publisher: procrastinate.App, timeout: float = 30.0) -> None:
    """Run ``app``'s worker in this process until every delivery job has ended (succeeded or failed), retries
    included: a worker that stops when it has caught up, run again while a retry is scheduled."""

    async def run() -> None:
        deadline = time.monotonic() + timeout
        async with app.open_async():
            while True:
                await app.run_worker_async(
                    queues=[QUEUE], wait=False, install_signal_handlers=False, listen_notify=False
                )
                if all(status in ("succeeded", "failed") for status in statuses(publisher)):
                    return
                assert time.monotonic() < deadline, "jobs still pending"
                await asyncio.sleep(0.05)

    asyncio.run(run())

"""The Celery app the Celery tests' worker processes run (``python -m celery -A flaghooks_celery_app worker``).

The test and its workers build the same app from the same settings (JSON in ``FLAGHOOKS_CELERY_TEST``): the
broker, the queue, the endpoints (name -> URL), the dead letters' SQLite outbox and the file every
``DeliveryResult`` is appended to, one JSON line each. A request to a URL ending in ``/poison`` kills the process
making it.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from flaghooks import DeliveryResult, Endpoint, RetryPolicy, SqliteOutbox, Webhooks
from flaghooks.contrib.celery import CeleryDelivery, configure_app, register
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport

ENV = 23  # banner_state's environment
SECRET = "celery-test-secret"


class PoisonTransport(Transport):
    """HTTP to 127.0.0.1, except that a request to a URL ending in ``/poison`` kills the process making it (a
    delivery that kills its worker every time)."""

    def __init__(self) -> None:
        self.http = HttpTransport(allowed_networks=["127.0.0.0/8"])

    def send(self, request: DeliveryRequest) -> AttemptResult:
        if request.url.endswith("/poison"):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.http.send(request)

    def close(self) -> None:
        self.http.close()


def recorder(path: str | None) -> Any:
    """An ``on_result`` appending each result to ``path`` as one JSON line (O_APPEND: processes may share it)."""
    if path is None:
        return None

    def on_result(result: DeliveryResult) -> None:
        line = {
            "delivery_id": result.delivery_id,
            "endpoint": result.endpoint.label,
            "ok": result.ok,
            "status": result.status,
            "attempts": result.attempts,
            "error": result.error,
            "disabled": result.endpoint_disabled,
            "pid": os.getpid(),
            "ppid": os.getppid(),  # the worker's main process, when the pool is prefork
        }
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(line) + "\n").encode())
        finally:
            os.close(fd)

    return on_result


def build(settings: dict[str, Any]) -> tuple[Celery, Webhooks, CeleryDelivery, SqliteOutbox | None]:
    """The app, its ``Webhooks``, its ``CeleryDelivery`` and the dead letters' outbox, from the test's
    settings."""
    app = Celery("flaghooks_test", broker=settings["broker"], set_as_current=False)
    configure_app(app)
    app.conf.update(
        broker_transport_options=settings.get("transport_options", {}),
        broker_connection_retry_on_startup=True,
        worker_enable_remote_control=False,  # no pidbox queues or exchanges left behind on the broker
        worker_hijack_root_logger=False,
    )
    webhooks = Webhooks(
        transport=PoisonTransport(),
        retry=RetryPolicy(attempts=3, backoff=0.05, max_delay=2.0, jitter=0.0),
        on_result=recorder(settings.get("results")),
    )
    for name, url in settings["endpoints"].items():
        webhooks.subscribe(Endpoint(url, name=name, secret=SECRET), environment=ENV)
    dead = SqliteOutbox(settings["dead"]) if settings.get("dead") else None
    delivery = register(
        app,
        webhooks,
        queue=settings["queue"],
        dead_letters=dead,
        max_hop=settings.get("max_hop", 600.0),
        worker_lost_limit=settings.get("lost_limit", 3),
    )
    return app, webhooks, delivery, dead


_settings = os.environ.get("FLAGHOOKS_CELERY_TEST")
if _settings:  # a worker process: its app is this module's ``app``
    app, webhooks, delivery, dead_letters = build(json.loads(_settings))

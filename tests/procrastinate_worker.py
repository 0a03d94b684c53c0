"""A real procrastinate worker process delivering flaghooks' jobs, for the scale test and the scale-out benchmark.

``python procrastinate_worker.py DATABASE_URL RECEIVER_URL ENDPOINTS [--concurrency N] [--heartbeat S]
[--stalled S]``: a ``Webhooks`` with ``ENDPOINTS`` endpoints named ``ep0``, ``ep1``, ... at ``RECEIVER_URL/ep<i>``
(subscribed to environment 23, loopback allowed), flaghooks' blueprint with stalled-job recovery every second,
and procrastinate's worker on the queue "flaghooks" until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse

import procrastinate

from flaghooks import Endpoint, Webhooks
from flaghooks.contrib.procrastinate import blueprint
from flaghooks.transports import HttpTransport

ENV = 23


def webhooks(receiver: str, endpoints: int) -> Webhooks:
    """The endpoints every process of a run agrees on (the publisher builds the same)."""
    hooks = Webhooks(transport=HttpTransport(allowed_networks=["127.0.0.0/8"]))
    for number in range(endpoints):
        endpoint = Endpoint(f"{receiver}/ep{number}", name=f"ep{number}", secret=f"secret-of-endpoint-{number:04}")
        hooks.subscribe(endpoint, environment=ENV)
    return hooks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("receiver")
    parser.add_argument("endpoints", type=int)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    parser.add_argument("--stalled", type=float, default=30.0)
    options = parser.parse_args()
    connector = procrastinate.PsycopgConnector(conninfo=options.database, min_size=2, max_size=options.concurrency + 4)
    app = procrastinate.App(connector=connector)
    bp = blueprint(
        webhooks(options.receiver, options.endpoints), stalled_after=options.stalled, recover_cron="* * * * * *"
    )
    app.add_tasks_from(bp, namespace="flaghooks")
    app.run_worker(
        queues=["flaghooks"],
        concurrency=options.concurrency,
        update_heartbeat_interval=options.heartbeat,
        stalled_worker_timeout=options.stalled,
        fetch_job_polling_interval=1.0,
    )


if __name__ == "__main__":
    main()

"""flaghooks' own tables beside procrastinate's: endpoint health (the breaker, the durable disabled state) and the
attempt history of deliveries that needed more than one run. Only SQL and the row shapes live here.

Every statement goes through a procrastinate connector (``execute_query*`` with ``%(name)s`` parameters), so the
worker uses the pool it already has and the publishing side the app's connector. The breaker's read-modify-write
is optimistic (a ``version`` column), which needs no transaction spanning several statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..transports import AttemptResult

__all__ = ["SCHEMA", "history_from_json", "history_to_json"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS flaghooks_endpoint_health (
    endpoint text PRIMARY KEY,
    failures integer NOT NULL DEFAULT 0,
    failing_since timestamptz,
    cooldown double precision NOT NULL DEFAULT 0,
    paused_until timestamptz,
    disabled_at timestamptz,
    disabled_reason text,
    version bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS flaghooks_delivery_attempts (
    delivery_id text PRIMARY KEY,
    job_id bigint,
    attempts jsonb NOT NULL,
    reason text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS flaghooks_delivery_attempts_job ON flaghooks_delivery_attempts (job_id);
"""

# Before an attempt: the database's clock, the endpoint's health row (if any) and, when the job ran before, the
# delivery's attempt history. One round trip; a first run of a healthy endpoint reads one empty row.
GATE = """
SELECT extract(epoch FROM now())::float8 AS now,
       h.endpoint IS NOT NULL AS has_row,
       extract(epoch FROM h.paused_until)::float8 AS paused_until,
       h.cooldown AS cooldown,
       h.disabled_reason AS disabled_reason,
       (SELECT a.attempts FROM flaghooks_delivery_attempts a
         WHERE %(ran)s AND a.delivery_id = %(delivery_id)s) AS attempts
  FROM (VALUES (1)) AS one
  LEFT JOIN flaghooks_endpoint_health h ON h.endpoint = %(endpoint)s
"""

# The pause is over: one worker wins the probe by moving the pause forward by the probe's window.
CLAIM_PROBE = """
UPDATE flaghooks_endpoint_health
   SET paused_until = now() + make_interval(secs => %(window)s), version = version + 1
 WHERE endpoint = %(endpoint)s AND paused_until <= now() AND disabled_reason IS NULL
RETURNING extract(epoch FROM paused_until)::float8 AS paused_until
"""

ENSURE_HEALTH = """
INSERT INTO flaghooks_endpoint_health (endpoint) VALUES (%(endpoint)s) ON CONFLICT (endpoint) DO NOTHING
"""

READ_HEALTH = """
SELECT failures, extract(epoch FROM failing_since)::float8 AS failing_since, cooldown,
       paused_until IS NULL AS unpaused, disabled_reason, version, extract(epoch FROM now())::float8 AS now
  FROM flaghooks_endpoint_health WHERE endpoint = %(endpoint)s
"""

# Each write is conditional on the version read: a concurrent writer makes it return no row, and it is redone.
RECOVER = """
DELETE FROM flaghooks_endpoint_health
 WHERE endpoint = %(endpoint)s AND version = %(version)s AND disabled_reason IS NULL
RETURNING 1 AS done
"""

FAIL = """
UPDATE flaghooks_endpoint_health
   SET failures = %(failures)s,
       failing_since = to_timestamp(%(failing_since)s),
       cooldown = %(cooldown)s,
       paused_until = CASE WHEN %(pause)s::float8 IS NULL THEN paused_until
                           ELSE now() + make_interval(secs => %(pause)s::float8) END,
       version = version + 1
 WHERE endpoint = %(endpoint)s AND version = %(version)s
RETURNING 1 AS done
"""

DISABLE = """
UPDATE flaghooks_endpoint_health
   SET failures = %(failures)s, failing_since = to_timestamp(%(failing_since)s), paused_until = NULL,
       disabled_at = now(), disabled_reason = %(reason)s, version = version + 1
 WHERE endpoint = %(endpoint)s AND version = %(version)s
RETURNING 1 AS done
"""

ENABLE = """
DELETE FROM flaghooks_endpoint_health WHERE endpoint = %(endpoint)s RETURNING disabled_reason
"""

SAVE_HISTORY = """
INSERT INTO flaghooks_delivery_attempts (delivery_id, job_id, attempts, reason)
VALUES (%(delivery_id)s, %(job_id)s, %(attempts)s::jsonb, %(reason)s)
ON CONFLICT (delivery_id) DO UPDATE
   SET attempts = EXCLUDED.attempts, job_id = EXCLUDED.job_id, reason = EXCLUDED.reason, updated_at = now()
"""

FORGET_HISTORY = """
DELETE FROM flaghooks_delivery_attempts WHERE delivery_id = ANY(%(delivery_ids)s)
"""

DEAD_LETTERS = """
SELECT j.id, j.args, a.attempts, a.reason
  FROM procrastinate_jobs j
  LEFT JOIN flaghooks_delivery_attempts a ON a.delivery_id = j.args->>'delivery_id'
 WHERE j.status = 'failed' AND j.task_name = %(task_name)s AND j.queue_name = %(queue)s
   AND (%(endpoint)s::text IS NULL OR j.args->>'endpoint' = %(endpoint)s::text)
   AND (%(ids)s::bigint[] IS NULL OR j.id = ANY(%(ids)s::bigint[]))
 ORDER BY j.id
"""

PRUNE_HISTORY = """
DELETE FROM flaghooks_delivery_attempts a
 WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.id = a.job_id)
"""


def history_to_json(history: Sequence[AttemptResult]) -> str:
    """The attempts as JSON: what a result says, never its response body (diagnostics only, possibly large)."""
    return json.dumps(
        [
            {
                "status": result.status,
                "error": result.error,
                "elapsed": result.elapsed,
                "retry_after": result.retry_after,
                "permanent": result.permanent,
            }
            for result in history
        ]
    )


def history_from_json(value: Any) -> list[AttemptResult]:
    """The attempts stored by :func:`history_to_json` (the driver may hand back the text or the parsed list)."""
    if value is None:
        return []
    items = json.loads(value) if isinstance(value, str | bytes) else value
    return [
        AttemptResult(
            item["status"],
            item["error"],
            float(item["elapsed"]),
            item["retry_after"],
            permanent=bool(item["permanent"]),
        )
        for item in items
    ]

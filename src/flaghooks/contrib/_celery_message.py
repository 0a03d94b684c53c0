"""What a Celery delivery message carries (JSON, never a secret), and where its dead letters go.

A message is one delivery at one step: which attempt it makes next, when that attempt is due, how many runs of
it were lost with their worker, and the earlier attempts' results (so the delivery's final result has its whole
history, whichever worker ends it). The endpoint travels as its key only: the worker's own ``Webhooks`` holds
the endpoint, its secret and its signing, and resolves the key at each attempt.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from .._delivery import Delivery
from .._endpoints import Endpoint
from .._events import EventType
from .._outbox_records import DeliveryRecord
from .._outbox_store import SqliteOutbox
from ..exceptions import PayloadError
from ..transports import AttemptResult

VERSION = 1  # of the message layout; a worker refuses (and logs) a layout it does not know


def event_type(name: str) -> EventType | str:
    """The :class:`EventType` named ``name``, or the name itself for a type flaghooks does not know."""
    try:
        return EventType(name)
    except ValueError:
        return name


@attrs.frozen(kw_only=True)
class Message:
    """One delivery at one step, as a Celery task's only argument carries it."""

    delivery_id: str
    event_id: str
    event_type: str
    endpoint: str  # the endpoint's key (its label)
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")
    created_at: datetime
    attempt: int = 1  # the number of the attempt this message makes (from 1)
    due: float | None = None  # the attempt is not made before this time.time() (a long wait taken in hops)
    lost: int = 0  # runs of this delivery that were lost with their worker (redelivered by the broker)
    history: tuple[AttemptResult, ...] = ()  # the earlier attempts

    @classmethod
    def first(cls, delivery: Delivery) -> Message:
        """The message that makes ``delivery``'s first attempt."""
        return cls(
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            event_type=str(delivery.event_type),
            endpoint=delivery.endpoint.label,
            body=delivery.body,
            created_at=delivery.created_at,
        )

    def delivery(self, endpoint: Endpoint) -> Delivery:
        """The :class:`Delivery` this message is about, to ``endpoint``."""
        return Delivery(
            self.delivery_id, self.event_id, event_type(self.event_type), endpoint, self.body, self.created_at
        )

    def to_json(self) -> dict[str, Any]:
        """The message as JSON values: the body as UTF-8 text when it is, else as base64."""
        data: dict[str, Any] = {
            "v": VERSION,
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "endpoint": self.endpoint,
            "created_at": self.created_at.isoformat(),
            "attempt": self.attempt,
            "due": self.due,
            "lost": self.lost,
            "history": [[r.status, r.error, r.elapsed, r.retry_after] for r in self.history],
        }
        try:
            data["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            data["body_b64"] = base64.b64encode(self.body).decode("ascii")
        return data

    @classmethod
    def from_json(cls, data: object) -> Message:
        """Read a message; :class:`PayloadError` naming what is wrong when it is not one."""
        if not isinstance(data, Mapping):
            raise PayloadError(f"a flaghooks Celery message is a JSON object, got {type(data).__name__}")
        if data.get("v") != VERSION:
            raise PayloadError(f"a flaghooks Celery message of layout {data.get('v')!r}; this worker reads {VERSION}")
        try:
            if "body" in data:
                body = _str(data, "body").encode("utf-8")
            else:
                body = base64.b64decode(_str(data, "body_b64"), validate=True)
            due = data["due"]
            if due is not None and (isinstance(due, bool) or not isinstance(due, int | float)):
                raise PayloadError(f"due must be a number or null, got {type(due).__name__}")
            if due is not None and not math.isfinite(due):  # JSON's Infinity: a wait that never ends, hop by hop
                raise PayloadError(f"due must be a finite number or null, got {due!r}")
            return cls(
                delivery_id=_str(data, "delivery_id"),
                event_id=_str(data, "event_id"),
                event_type=_str(data, "event_type"),
                endpoint=_str(data, "endpoint"),
                body=body,
                created_at=datetime.fromisoformat(_str(data, "created_at")),
                attempt=_count(data, "attempt", 1),
                due=None if due is None else float(due),
                lost=_count(data, "lost", 0),
                history=tuple(_attempt(item) for item in data["history"]),
            )
        except KeyError as exc:
            raise PayloadError(f"a flaghooks Celery message lacks {exc.args[0]!r}") from None
        except (TypeError, ValueError, binascii.Error) as exc:
            if isinstance(exc, PayloadError):
                raise
            raise PayloadError(f"a flaghooks Celery message is malformed: {exc}") from None


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise PayloadError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _count(data: Mapping[str, Any], key: str, minimum: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PayloadError(f"{key} must be an int >= {minimum}, got {value!r}")
    return value


def _attempt(item: object) -> AttemptResult:
    if not isinstance(item, list) or len(item) != 4:
        raise PayloadError("history items are [status, error, elapsed, retry_after]")
    status, error, elapsed, retry_after = item
    return AttemptResult(status, error, elapsed, retry_after)


# --- dead letters --------------------------------------------------------------------------------------------
#
# A delivery that ends without being delivered is kept where it can be listed and replayed: the
# ``flaghooks.SqliteOutbox`` given to ``register(dead_letters=...)``, as a delivery in its "dead" state (so
# ``flaghooks outbox list --db PATH`` shows it). Everything this executor asks of that file is in the three
# functions below, through the private hooks the outbox offers for dead letters made elsewhere.


def add_dead(store: SqliteOutbox, delivery: Delivery, history: Sequence[AttemptResult], error: str) -> None:
    """Keep ``delivery`` as a dead letter (idempotent on its id: a run repeated after a lost worker adds it once)."""
    store._add_dead(delivery, history, error)


def take_dead(
    store: SqliteOutbox, ids: Sequence[str] | None, endpoint: str | None, since: datetime | timedelta | None
) -> list[tuple[Message, DeliveryRecord]]:
    """The dead letters chosen (left in place), each as the message that makes its first attempt again, with its
    record (for :func:`delete_dead`)."""
    return [
        (
            Message(
                delivery_id=record.id,
                event_id=record.event_id,
                event_type=str(record.event_type),
                endpoint=record.endpoint_key,
                body=body,
                created_at=record.created_at,
            ),
            record,
        )
        for record, body in store._take_dead(ids, endpoint=endpoint, since=since)
    ]


def delete_dead(store: SqliteOutbox, taken: Sequence[DeliveryRecord]) -> None:
    """Forget the dead letters ``taken`` (once they are queued again), except those that a worker has made dead
    again meanwhile (a replayed delivery may fail again before this runs)."""
    if taken:
        store._delete_taken(taken)

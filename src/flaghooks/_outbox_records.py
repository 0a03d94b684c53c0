"""The outbox's records (what inspection returns) and the small conversions both sides of the file share."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs

from ._endpoints import Endpoint
from ._events import EventType
from ._outbox_schema import IN_FLIGHT, PENDING, to_datetime
from .exceptions import ConfigError

__all__ = ["AttemptRecord", "DeliveryRecord", "cutoff", "event_type_of", "key_of", "record", "scrub"]

BODY_KEPT = 1024  # bytes of each response body kept in an attempt record
_SHORTEST_WORD = 6  # the words of a secret value at least this long are secrets too


def event_type_of(name: str) -> EventType | str:
    """A stored event type: the EventType for a known one, else the plain name."""
    try:
        return EventType(name)
    except ValueError:
        return name


@attrs.frozen(kw_only=True)
class DeliveryRecord:
    """One delivery as the outbox holds it.

    ``state`` is ``"pending"`` (waiting for its next attempt, due at ``next_attempt_at``), ``"in_flight"`` (an
    attempt is under way; ``next_attempt_at`` is when its lease expires and another worker may take it),
    ``"delivered"`` or ``"dead"`` (no more attempts; :meth:`SqliteOutbox.replay` sends it again).
    ``attempts`` counts the attempts since it was published or last replayed; ``last_status`` and
    ``last_error`` are the last attempt's (or why it went dead without one). Times are UTC.
    """

    id: str
    event_id: str
    event_type: EventType | str
    endpoint_key: str
    state: Literal["pending", "in_flight", "delivered", "dead"]
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@attrs.frozen(kw_only=True)
class AttemptRecord:
    """One attempt at a delivery: ``number`` counts the delivery's attempts since it was first published (replays
    included, so numbers never repeat); ``at`` is when it ended (UTC); ``status``, ``error`` and ``elapsed``
    (seconds) are the :class:`~flaghooks.transports.AttemptResult`'s; ``response_body`` the first bytes (at most
    1024) of the response body, with the endpoint's secrets blanked out."""

    delivery_id: str
    number: int
    at: datetime
    status: int | None
    error: str | None
    elapsed: float
    response_body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")


def record(row: Sequence[Any]) -> DeliveryRecord:
    state = row[4]
    return DeliveryRecord(
        id=row[0],
        event_id=row[1],
        event_type=event_type_of(row[2]),
        endpoint_key=row[3],
        state=state,
        attempts=row[5],
        next_attempt_at=to_datetime(row[6]) if state in (PENDING, IN_FLIGHT) else None,
        last_status=row[7],
        last_error=row[8],
        created_at=datetime.fromtimestamp(row[9], UTC),
        updated_at=datetime.fromtimestamp(row[10], UTC),
    )


def secret_words(endpoint: Endpoint) -> list[bytes]:
    """What must never be stored about ``endpoint``: its secrets, header values and URL user information."""
    values: list[str] = [*endpoint.previous_secrets, *endpoint.headers.values()]
    if endpoint.secret is not None:
        values.append(endpoint.secret)
    values += [value.removeprefix("whsec_") for value in values if value.startswith("whsec_")]
    authority = endpoint.url.partition("://")[2].split("/", 1)[0]
    userinfo = authority.rpartition("@")[0]
    if userinfo:
        for part in (userinfo, *userinfo.split(":")):
            values += (part, urllib.parse.unquote(part))
    # The words of a value too ("Bearer <token>": a receiver may quote the token alone), as the transport
    # withholds them from error texts; shorter words ("Bearer", "Basic") are too common to be worth hiding.
    values += [word for value in values for word in value.split() if len(word) >= _SHORTEST_WORD]
    words = {value.encode() for value in values if value}
    return sorted(words, key=len, reverse=True)


def scrub(body: bytes, endpoint: Endpoint) -> bytes:
    """The first bytes of a response body, fit to keep: a receiver may echo what it was sent. Secrets are blanked
    out before the body is cut, so that none is kept in part where the cut falls inside it."""
    if not body:
        return body
    words = secret_words(endpoint)
    body = body[: BODY_KEPT + (len(words[0]) if words else 0)]
    for word in words:
        body = body.replace(word, b"***")
    return body[:BODY_KEPT]


def cutoff(name: str, value: object) -> float:
    """``since``/``older_than``: a datetime (aware; a naive one is UTC) or a timedelta back from now, as a time."""
    if isinstance(value, timedelta):
        return time.time() - value.total_seconds()
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
    raise ConfigError(f"{name} must be a datetime or a timedelta, got {type(value).__name__}")


def key_of(endpoint: object) -> str:
    """An endpoint argument as its key."""
    if isinstance(endpoint, Endpoint):
        return endpoint.label
    if isinstance(endpoint, str):
        return endpoint
    raise ConfigError(f"endpoint must be a key (str) or an Endpoint, got {type(endpoint).__name__}")

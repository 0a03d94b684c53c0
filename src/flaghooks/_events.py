"""Web hook events: what happened, to what, when, with an id that survives retries."""

from __future__ import annotations

import enum
import itertools
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

import attrs

from ._changes import StateChange, check_same_target, diff_states
from ._models import AuditLogEntry, FeatureState, _aware_datetime, _instance_of, _str

__all__ = ["EventType", "FlagChange", "WebhookEvent", "audit_log_created", "flag_changed"]

_UTC = UTC
_GIVEN_ID = re.compile(r"[A-Za-z0-9_]{1,128}")
# Ids that arrive from elsewhere (a sender's webhook-id, a UUID, ...): printable ASCII without spaces.
_ANY_ID = re.compile(r"[\x21-\x7e]{1,256}")
_ANY_ID_MATCH = _ANY_ID.fullmatch


class EventType(enum.StrEnum):
    """Flagsmith's web hook event types."""

    FLAG_UPDATED = "FLAG_UPDATED"
    FLAG_DELETED = "FLAG_DELETED"
    AUDIT_LOG_CREATED = "AUDIT_LOG_CREATED"


_optional_state = _instance_of(FeatureState, optional=True)


@attrs.frozen
class FlagChange:
    """The ``data`` of a FLAG_UPDATED or FLAG_DELETED event.

    ``previous_state`` is ``None`` for a creation, ``new_state`` is ``None`` for a deletion; when both are
    given they must be states of the same target. ``timestamp`` is when the change happened (timezone-aware).
    """

    # Validated in one pass in __attrs_post_init__ (one FlagChange per event, on the hot path).
    changed_by: str
    new_state: FeatureState | None
    previous_state: FeatureState | None
    timestamp: datetime

    def __attrs_post_init__(self) -> None:
        fields = _CHANGE_FIELDS
        if type(self.changed_by) is not str:
            _str(self, fields.changed_by, self.changed_by)
        new, previous = self.new_state, self.previous_state
        if type(new) is not FeatureState:
            _optional_state(self, fields.new_state, new)
        if type(previous) is not FeatureState:
            _optional_state(self, fields.previous_state, previous)
        if self.timestamp.__class__ is not datetime or self.timestamp.tzinfo is not _UTC:
            _aware_datetime(self, fields.timestamp, self.timestamp)
        if new is None:
            if previous is None:
                raise ValueError(
                    "FlagChange.new_state and FlagChange.previous_state are both None: "
                    "a change needs at least one state"
                )
        elif previous is not None:
            check_same_target(previous, new)

    @property
    def change(self) -> StateChange:
        """What changed, as :func:`diff_states` computes it."""
        return diff_states(self.previous_state, self.new_state)


_CHANGE_FIELDS = attrs.fields(FlagChange)


def _event_type(value: Any) -> EventType:
    if type(value) is EventType:
        return value
    try:
        return EventType(value)
    except ValueError:
        names = ", ".join(EventType)
        raise ValueError(f"WebhookEvent.event_type must be one of {names}, got {value!r}") from None


@attrs.frozen
class WebhookEvent:
    """One web hook event. ``id`` is the same for every attempt and every endpoint (``webhook-id``): 1 to 256
    printable ASCII characters without spaces.

    The event type and the data must agree: FLAG_UPDATED carries a :class:`FlagChange` with a new state,
    FLAG_DELETED one with a previous state and no new state, AUDIT_LOG_CREATED an :class:`AuditLogEntry`.
    ``event_type`` may be given as its string value.
    """

    id: str
    event_type: EventType = attrs.field(converter=_event_type)
    data: FlagChange | AuditLogEntry

    def __attrs_post_init__(self) -> None:
        if type(self.id) is not str or not _ANY_ID_MATCH(self.id):
            raise ValueError(
                f"WebhookEvent.id must be 1 to 256 printable ASCII characters without spaces, got {self.id!r}"
            )
        data, kind = self.data, self.event_type
        if kind is EventType.AUDIT_LOG_CREATED:
            if not isinstance(data, AuditLogEntry):
                raise TypeError(f"WebhookEvent.data must be an AuditLogEntry for {kind}, got {type(data).__name__}")
            return
        if not isinstance(data, FlagChange):
            raise TypeError(f"WebhookEvent.data must be a FlagChange for {kind}, got {type(data).__name__}")
        if kind is EventType.FLAG_UPDATED and data.new_state is None:
            raise ValueError(
                "WebhookEvent.data.new_state is None but the event type is FLAG_UPDATED "
                "(a removed state is FLAG_DELETED)"
            )
        if kind is EventType.FLAG_DELETED and data.new_state is not None:
            raise ValueError("WebhookEvent.data.new_state must be None for FLAG_DELETED")


class _IdSource:
    """Unique, time-ordered ids without a system call per id.

    An id is ``evt_``, the time in milliseconds, 64 random bits drawn once per process (drawn again in a
    forked child, so a child never repeats its parent's ids) and a counter.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"evt_{time.time_ns() // 1_000_000:012x}{self._prefix}{next(self._counter):08x}"


new_event_id = _IdSource()


def _check_given_id(event_id: str | None) -> str:
    if event_id is None:
        return new_event_id()
    if not isinstance(event_id, str) or not _GIVEN_ID.fullmatch(event_id):
        raise ValueError(f"event_id must match ^[A-Za-z0-9_]{{1,128}}$ (it travels as webhook-id), got {event_id!r}")
    return event_id


def flag_changed(
    previous: FeatureState | None,
    new: FeatureState | None,
    *,
    changed_by: str = "",
    timestamp: datetime | None = None,
    event_id: str | None = None,
) -> WebhookEvent:
    """Build the event for a feature state that was created, updated or removed.

    FLAG_UPDATED when ``new`` is a state (created when ``previous`` is ``None``), FLAG_DELETED when ``new`` is
    ``None`` (a feature deleted in an environment, or an override removed). ``timestamp`` defaults to now in
    UTC; ``event_id`` defaults to a fresh ``evt_...`` id and must otherwise match ``^[A-Za-z0-9_]{1,128}$``.

    Raises ``ValueError`` when both states are ``None`` or they are not of the same target, and ``TypeError``
    or ``ValueError`` for a bad argument, naming it.
    """
    return WebhookEvent(
        _check_given_id(event_id),
        EventType.FLAG_DELETED if new is None else EventType.FLAG_UPDATED,
        FlagChange(
            changed_by,
            new,
            previous,
            datetime.now(UTC) if timestamp is None else timestamp,
        ),
    )


def audit_log_created(entry: AuditLogEntry, *, event_id: str | None = None) -> WebhookEvent:
    """Build the AUDIT_LOG_CREATED event for an audit-log entry."""
    if not isinstance(entry, AuditLogEntry):
        raise TypeError(f"entry must be an AuditLogEntry, got {type(entry).__name__}")
    return WebhookEvent(_check_given_id(event_id), EventType.AUDIT_LOG_CREATED, entry)

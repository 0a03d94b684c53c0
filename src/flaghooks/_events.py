"""Web hook events: what happened, to what, when, with an id that survives retries."""

from __future__ import annotations

import enum
import itertools
import math
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from ._changes import StateChange, check_same_target, diff_states
from ._extra import NO_EXTRA
from ._models import AuditLogEntry, FeatureState, _aware_datetime, _instance_of, _set_extra, _str
from ._versions import VersionPublished

__all__ = ["EventType", "FlagChange", "WebhookEvent", "audit_log_created", "flag_changed", "version_published"]

_UTC = UTC
_GIVEN_ID = re.compile(r"[A-Za-z0-9_]{1,128}")
# Ids that arrive from elsewhere (a sender's webhook-id, a UUID, ...): printable ASCII without spaces.
_ANY_ID = re.compile(r"[\x21-\x7e]{1,256}")
_ANY_ID_MATCH = _ANY_ID.fullmatch
# The name of an event type flaghooks does not know: printable ASCII without spaces, as Flagsmith's names are
# (and safe to log).
_TYPE_NAME = re.compile(r"[\x21-\x7e]{1,128}")


class EventType(enum.StrEnum):
    """Flagsmith's web hook event types."""

    FLAG_UPDATED = "FLAG_UPDATED"
    FLAG_DELETED = "FLAG_DELETED"
    AUDIT_LOG_CREATED = "AUDIT_LOG_CREATED"
    NEW_VERSION_PUBLISHED = "NEW_VERSION_PUBLISHED"


_optional_state = _instance_of(FeatureState, optional=True)


@attrs.frozen
class FlagChange:
    """The ``data`` of a FLAG_UPDATED or FLAG_DELETED event.

    ``previous_state`` is ``None`` for a creation, ``new_state`` is ``None`` for a deletion; when both are
    given they must be states of the same target. ``timestamp`` is when the change happened (timezone-aware),
    or ``None`` when it is unknown: Flagsmith sends ``"timestamp": ""`` for a state without a history record
    (a deletion, typically), and encoding writes ``""`` again. ``extra`` holds the keys of a decoded ``data``
    object that flaghooks does not model (MODERN writes them back).
    """

    # Validated in one pass in __attrs_post_init__ (one FlagChange per event, on the hot path).
    changed_by: str
    new_state: FeatureState | None
    previous_state: FeatureState | None
    timestamp: datetime | None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        fields = _CHANGE_FIELDS
        if type(self.changed_by) is not str:
            _str(self, fields.changed_by, self.changed_by)
        new, previous = self.new_state, self.previous_state
        if type(new) is not FeatureState:
            _optional_state(self, fields.new_state, new)
        if type(previous) is not FeatureState:
            _optional_state(self, fields.previous_state, previous)
        stamp = self.timestamp
        if (stamp.__class__ is not datetime or stamp.tzinfo is not _UTC) and stamp is not None:
            _aware_datetime(self, fields.timestamp, self.timestamp)
        if new is None:
            if previous is None:
                raise ValueError(
                    "FlagChange.new_state and FlagChange.previous_state are both None: "
                    "a change needs at least one state"
                )
        elif previous is not None:
            check_same_target(previous, new)
        if self.extra is not NO_EXTRA:
            # previous_state is written only when set: a null one that was sent is kept here to be written back.
            _set_extra(self, "FlagChange", CHANGE_KEYS, ("previous_state",))

    @property
    def change(self) -> StateChange:
        """What changed, as :func:`diff_states` computes it."""
        return diff_states(self.previous_state, self.new_state)


_CHANGE_FIELDS = attrs.fields(FlagChange)
CHANGE_KEYS = frozenset({"changed_by", "new_state", "timestamp"})


_KNOWN = ", ".join(EventType)


def _event_type(value: Any) -> EventType | str:
    if type(value) is EventType:
        return value
    try:
        return EventType(value)
    except ValueError:
        if type(value) is str and _TYPE_NAME.fullmatch(value):
            return value  # a type flaghooks does not know; WebhookEvent checks that its data is a dict
        raise ValueError(
            f"WebhookEvent.event_type must be one of {_KNOWN}, or the name of another type (1 to 128 "
            f"printable ASCII characters without spaces) with dict data, got {value!r}"
        ) from None


def _check_json(value: Any, where: str) -> None:
    """``value`` must be what a JSON object's value can be, so that encoding it cannot fail or mislead."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot carry")
        return
    if kind is list:
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"{where} keys must be strings, got {type(key).__name__} {key!r}")
            _check_json(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} must hold JSON values (None, bool, int, float, str, list, dict), got {kind.__name__}")


EventData = FlagChange | AuditLogEntry | VersionPublished | dict[str, Any]
EVENT_KEYS = frozenset({"event_type", "data"})


@attrs.frozen
class WebhookEvent:
    """One web hook event. ``id`` is the same for every attempt and every endpoint (``webhook-id``): 1 to 256
    printable ASCII characters without spaces.

    The event type and the data must agree: FLAG_UPDATED carries a :class:`FlagChange` with a new state,
    FLAG_DELETED one with a previous state and no new state, AUDIT_LOG_CREATED an :class:`AuditLogEntry`,
    NEW_VERSION_PUBLISHED a :class:`VersionPublished`. ``event_type`` may be given as its string value.

    An event type flaghooks does not know (Flagsmith adds them) is kept as the plain ``str`` it was sent as, and
    its data is the payload's raw ``data`` object, a ``dict`` of JSON values; test for it with
    ``isinstance(event.event_type, EventType)``. A known type with dict data, or an unknown one with model data,
    is refused. Events hash by ``id`` and type (the data of an unknown type is a dict); equality compares all.

    ``extra`` holds the keys of a decoded body beside ``event_type`` and ``data`` that flaghooks does not model
    (MODERN writes them back).
    """

    id: str
    event_type: EventType | str = attrs.field(converter=_event_type)
    data: EventData = attrs.field(hash=False)
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True, hash=False)

    def __attrs_post_init__(self) -> None:
        if type(self.id) is not str or not _ANY_ID_MATCH(self.id):
            raise ValueError(
                f"WebhookEvent.id must be 1 to 256 printable ASCII characters without spaces, got {self.id!r}"
            )
        if self.extra is not NO_EXTRA:
            _set_extra(self, "WebhookEvent", EVENT_KEYS)
        data, kind = self.data, self.event_type
        if kind is EventType.FLAG_UPDATED or kind is EventType.FLAG_DELETED:
            if not isinstance(data, FlagChange):
                raise TypeError(f"WebhookEvent.data must be a FlagChange for {kind}, got {type(data).__name__}")
            if kind is EventType.FLAG_UPDATED and data.new_state is None:
                raise ValueError(
                    "WebhookEvent.data.new_state is None but the event type is FLAG_UPDATED "
                    "(a removed state is FLAG_DELETED)"
                )
            if kind is EventType.FLAG_DELETED and data.new_state is not None:
                raise ValueError("WebhookEvent.data.new_state must be None for FLAG_DELETED")
            return
        if kind is EventType.AUDIT_LOG_CREATED:
            if not isinstance(data, AuditLogEntry):
                raise TypeError(f"WebhookEvent.data must be an AuditLogEntry for {kind}, got {type(data).__name__}")
            return
        if kind is EventType.NEW_VERSION_PUBLISHED:
            if not isinstance(data, VersionPublished):
                raise TypeError(f"WebhookEvent.data must be a VersionPublished for {kind}, got {type(data).__name__}")
            return
        if isinstance(data, FlagChange | AuditLogEntry | VersionPublished):
            raise ValueError(
                f"WebhookEvent.event_type must be one of {_KNOWN} for {type(data).__name__} data, got {kind!r} "
                "(an event of a type flaghooks does not know carries its data as a dict)"
            )
        if type(data) is not dict:
            raise TypeError(
                f"WebhookEvent.data must be a dict (the raw JSON object) for {kind!r}, a type flaghooks does not "
                f"know (known types: {_KNOWN}), got {type(data).__name__}"
            )
        _check_json(data, "WebhookEvent.data")


class _IdSource:
    """Unique, time-ordered, unpredictable ids without a system call per id.

    An id is ``evt_``, the time in milliseconds, a counter (so that one process's ids sort in creation order)
    and 64 fresh random bits per id, so that a receiver's de-duplication cannot be poisoned by predicting the
    next ids. The random bits come from ``os.urandom`` in bulk, handed out one slice per id; a forked child
    draws a new pool and counter, so it never repeats its parent's ids.
    """

    _POOL = 512  # ids per os.urandom call

    def __init__(self) -> None:
        self.reseed()
        if hasattr(os, "register_at_fork"):  # pragma: no branch - absent where there is no fork (Windows)
            os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._counter = itertools.count()
        self._refill()

    def _refill(self) -> None:
        pool = os.urandom(8 * self._POOL).hex()
        # A list iterator hands each slice to one caller only, even across threads (next() holds the GIL);
        # two threads that refill at once each install fresh random slices, which is harmless.
        self._slices = iter([pool[i : i + 16] for i in range(0, len(pool), 16)])

    def __call__(self) -> str:
        fresh = next(self._slices, None)
        while fresh is None:
            self._refill()
            fresh = next(self._slices, None)
        return f"evt_{time.time_ns() // 1_000_000:012x}{next(self._counter):08x}{fresh}"


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


def version_published(version: VersionPublished, *, event_id: str | None = None) -> WebhookEvent:
    """Build the NEW_VERSION_PUBLISHED event for a published feature version.

    Its payload carries no environment id: publish it with ``Webhooks.publish(event, environment=...)`` or
    :meth:`Webhooks.version_published`.
    """
    if not isinstance(version, VersionPublished):
        raise TypeError(f"version must be a VersionPublished, got {type(version).__name__}")
    return WebhookEvent(_check_given_id(event_id), EventType.NEW_VERSION_PUBLISHED, version)

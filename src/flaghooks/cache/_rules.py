"""The ordering rules of the flag cache, written once for every store that runs Python inside its transaction.

A store keeps, per feature in an environment, one :class:`Record`: the feature's targets (environment default,
segment overrides, identity overrides), each with the key of the newest event that touched it, and the feature's
tombstone, floor and name. :func:`settle` applies one event's change to one record; the memory store runs it on its
live records under its lock, the SQLite store on a record it reads (the one target the event touches) and writes back
inside one ``BEGIN IMMEDIATE`` transaction. Only the Redis store restates these rules, in Lua (``_redis_lua.py``);
the convergence property tests run the same histories against every store.

Keys are ``(time, event id)`` pairs compared as tuples. The time is whatever the store keeps, as long as it sorts
like the timestamps: a ``datetime`` (or :data:`UNDATED`) in memory, a fixed-width string (:func:`time_text`) in
SQLite and Redis.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

__all__ = ["ADDED", "UNCHANGED", "UPDATED", "UNDATED", "Record", "settle", "time_text"]


class _Undated:
    """The time of an event whose timestamp is unknown (Flagsmith sent ``""``): before every datetime."""

    __slots__ = ()

    def __lt__(self, other: datetime | _Undated) -> bool:
        return other is not self

    def __le__(self, other: datetime | _Undated) -> bool:
        return True

    def __gt__(self, other: datetime | _Undated) -> bool:
        return False

    def __ge__(self, other: datetime | _Undated) -> bool:
        return other is self

    def __repr__(self) -> str:
        return "<undated>"


UNDATED = _Undated()
_UNDATED = UNDATED  # the name the tests have always imported

# The fixed-width text of an unknown time: before every real one ("0001-..." is the smallest datetime).
UNDATED_TEXT = "0000-00-00T00:00:00.000000"


def time_text(when: datetime | None) -> str:
    """A timestamp as fixed-width UTC text that sorts like the timestamps (byte order, as SQLite and Lua compare);
    None (unknown) sorts before every real time."""
    if when is None:
        return UNDATED_TEXT
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
        f".{when.microsecond:06d}"
    )


# What settle returns besides a change of the live count (+1: a target gained a state; -n: n targets lost theirs;
# 0: nothing visible changed): a live target was given a new state, the old one is in Record.replaced.
UNCHANGED = 0
ADDED = 1
UPDATED = 2


class Record:
    """Everything a store holds for one feature in one environment.

    The unit a store keeps together (one set of rows, one hash): the targets' entries ``(time, event id, state or
    None)`` (None: a tombstone for that target, so that older events for it stay ignored), the feature's tombstone,
    the name it carries, and the floor below which identity-override events are no longer told apart. ``state`` is
    whatever the store keeps of a state (a :class:`FeatureState`, or its encoded bytes): :func:`settle` only
    compares states for identity.
    """

    __slots__ = (
        "buried",
        "default",
        "floor",
        "identities",
        "live",
        "name",
        "name_key",
        "newest",
        "replaced",
        "segments",
        "tombstone",
    )

    def __init__(self, name: str, key: tuple[Any, str]) -> None:
        self.name = name  # the name carried by this feature's newest event, ...
        self.name_key = key  # ... and that event's key
        self.tombstone: tuple[Any, str] | None = None  # the newest deletion of the environment default
        self.floor: tuple[Any, str] | None = None  # the newest identity-override deletion forgotten
        self.default: tuple[Any, str, Any] | None = None
        self.segments: dict[Hashable, tuple[Any, str, Any]] = {}
        self.identities: dict[str, tuple[Any, str, Any]] = {}
        self.live = 0  # how many of the entries hold a state
        self.newest = key  # no entry here is newer than this (lets a deletion skip looking at each)
        self.replaced: Any = None  # the state an UPDATED replaced
        self.buried: tuple[Any, str, Any] | None = None  # the tombstone an identity-override deletion left

    def drop_older(self, key: tuple[Any, str]) -> int:
        """Remove every entry older than ``key``, dead or alive; how many held a state."""
        before = self.live
        # The common case, nothing newer arrived first: no need to look at each. An entry can have the key itself
        # only when it is a load's (event id ""): a second document of the same time keeps the first's targets.
        if self.newest < key or (self.newest == key and key[1] != ""):
            self.default = None
            self.segments = {}
            self.identities = {}
            self.live = 0
            return before
        default = self.default
        if default is not None and (default[0], default[1]) < key:
            self.default = None
            self.live -= default[2] is not None
        segments, identities = self.segments, self.identities
        for where in [where for where, entry in segments.items() if (entry[0], entry[1]) < key]:
            self.live -= segments.pop(where)[2] is not None
        for identifier in [identifier for identifier, entry in identities.items() if (entry[0], entry[1]) < key]:
            self.live -= identities.pop(identifier)[2] is not None
        return before - self.live


def settle(record: Record, when: Any, event_id: str, identifier: str | None, where: Hashable | None, new: Any) -> int:
    """Apply one event's change to ``record``: the rules of :class:`~flaghooks.cache.FlagCache`, in one place.

    ``identifier`` is the identity of an identity override, ``where`` the key of a segment override; neither: the
    environment default. ``new`` is the new state, or None for a deletion. Returns the change of the number of
    live targets, or :data:`UPDATED` (a live target's state replaced; the old one is left in ``record.replaced``).
    An identity-override deletion that leaves a tombstone leaves it in ``record.buried`` (stores forget it later).
    """
    key = (when, event_id)
    tombstone = record.tombstone
    if tombstone is not None and key < tombstone:
        return UNCHANGED  # hidden by a later deletion of the feature in this environment
    if key > record.newest:
        record.newest = key
    if identifier is not None:
        table = record.identities
        current = table.get(identifier)
        # Not newer than what the target holds (the key compared in place, not rebuilt as a tuple).
        if current is not None and (when < current[0] or (when == current[0] and event_id <= current[1])):
            return UNCHANGED
        floor = record.floor
        if new is None:
            if floor is not None and key <= floor:
                # Older than a forgotten deletion: remove an older state, but keep no tombstone (the floor already
                # hides everything older for this identity).
                if current is None:
                    return UNCHANGED
                del table[identifier]
            else:
                entry = table[identifier] = (when, event_id, None)
                record.buried = entry
            if current is None or current[2] is None:
                return UNCHANGED
            record.live -= 1
            return -1
        if floor is not None and key <= floor:
            return UNCHANGED
        table[identifier] = (when, event_id, new)
    elif where is not None:
        table_s = record.segments
        current = table_s.get(where)
        if current is not None and (when < current[0] or (when == current[0] and event_id <= current[1])):
            return UNCHANGED
        table_s[where] = (when, event_id, new)
        if new is None:
            if current is None or current[2] is None:
                return UNCHANGED
            record.live -= 1
            return -1
    elif new is None:
        # FLAG_DELETED of the environment default: everything of the feature older than the deletion goes, and
        # the tombstone hides what arrives later (it replaces the targets' own).
        record.tombstone = key
        return -record.drop_older(key)
    else:
        current = record.default
        if current is not None and (when < current[0] or (when == current[0] and event_id <= current[1])):
            return UNCHANGED
        record.default = (when, event_id, new)
    if current is None or current[2] is None:
        record.live += 1
        return ADDED
    record.replaced = current[2]
    return UPDATED


def load(record: Record, when: Any, states: dict[Any, Any]) -> int:
    """Make ``states`` (target -> state: None for the default, a segment key, or ``("identity", identifier)``) the
    whole truth about ``record``'s feature as of ``(when, "")``, with the rules of :func:`settle` alone: the
    feature is deleted as of that key (nothing older survives, nor arrives later), then each state is applied as if
    by an event at that key. A load is therefore a few events, and converges with web hooks in any order. Returns
    how many targets changed what they show."""
    before = shown(record)
    settle(record, when, "", None, None, None)
    for target, state in states.items():
        if target is None:
            settle(record, when, "", None, None, state)
        elif target[0] == "identity":
            settle(record, when, "", target[1], None, state)
        else:
            settle(record, when, "", None, target, state)
    record.replaced = None
    after = shown(record)
    return sum(before.get(target) != after.get(target) for target in before.keys() | after.keys())


def shown(record: Record) -> dict[Any, Any]:
    """What a record shows: target -> state, for the targets that hold one."""
    found: dict[Any, Any] = {}
    if record.default is not None and record.default[2] is not None:
        found[None] = record.default[2]
    found.update((where, entry[2]) for where, entry in record.segments.items() if entry[2] is not None)
    found.update(
        (("identity", identifier), entry[2]) for identifier, entry in record.identities.items() if entry[2] is not None
    )
    return found

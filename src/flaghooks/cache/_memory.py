"""MemoryFlagStore: the default store, one process's dicts under one lock."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import Any

from .._models import FeatureState
from ._rules import UNCHANGED, UNDATED, UPDATED, Record, load, settle
from ._store import Entry, FlagStore, Loaded

__all__ = ["Claims", "MemoryFlagStore", "RecentIds"]


class RecentIds:
    """A bounded, thread-safe set of the most recently added event ids (the oldest go first)."""

    def __init__(self, size: int) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def __contains__(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self._ids

    def add(self, event_id: str) -> bool:
        """Remember ``event_id``; False when it was already remembered."""
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            if len(self._ids) > self._size:
                self._ids.popitem(last=False)
            return True


class Claims:
    """Which event ids are being handled and which were handled (the newest ``size``), under one lock.

    Claiming before the cache and ``on_event`` run is what makes de-duplication atomic: of concurrent copies
    of one event exactly one is handled, and the others are told to come back.
    """

    __slots__ = ("_busy", "_done", "_lock", "_size")

    def __init__(self, size: int) -> None:
        self._busy: set[str] = set()
        self._done: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def claim(self, event_id: str) -> bool | None:
        """True when claimed (the caller handles it), False when handled already, None when being handled."""
        with self._lock:
            if event_id in self._done:
                return False
            if event_id in self._busy:
                return None
            self._busy.add(event_id)
            return True

    def release(self, event_id: str, handled: bool) -> None:
        """Give a claim back: remembered as handled, or (the handling failed) free to be claimed again. An id
        that was not claimed is left alone (as the shared stores do)."""
        with self._lock:
            if event_id not in self._busy:
                return
            self._busy.discard(event_id)
            if handled:
                self._done[event_id] = None
                if len(self._done) > self._size:
                    self._done.popitem(last=False)


class MemoryFlagStore(FlagStore):
    """Flag state in this process's memory: the default store of :class:`~flaghooks.cache.FlagCache`.

    Fast (a dict lookup per read) and private to one process: behind several worker processes each holds its own
    share of the truth; use :class:`~flaghooks.cache.SqliteFlagStore` or :class:`~flaghooks.cache.RedisFlagStore`
    there. ``remembered`` bounds the recent event ids (and the handled claims) kept for de-duplication.
    """

    def __init__(self, *, remembered: int = 65536) -> None:
        self._lock = threading.Lock()
        self._records: dict[tuple[int, int], Record] = {}
        # (environment id, name) -> the ids of the features in that environment whose name it is.
        self._names: dict[tuple[int, str], list[int]] = {}
        # The recent event ids, oldest first; an identity-override deletion's id carries its tombstone, which
        # is forgotten with the id (a dead entry per deleted override would otherwise be kept forever).
        self._recent: OrderedDict[str, tuple[Record, str, tuple[object, str, None]] | None] = OrderedDict()
        self._remembered = remembered
        self._live = 0
        self._claims = Claims(remembered)
        # environment id -> the key of its newest load and the features that load had (see FlagCache's rules).
        self._loads: dict[int, tuple[tuple[datetime, str], frozenset[int]]] = {}

    def __repr__(self) -> str:
        return "MemoryFlagStore()"

    def apply(
        self,
        event_id: str,
        when: datetime | None,
        environment: int,
        feature: int,
        name: str,
        identifier: str | None,
        where: Hashable | None,
        new: FeatureState | None,
    ) -> bool:
        time = UNDATED if when is None else when
        scope = (environment, feature)
        with self._lock:
            recent = self._recent
            held = len(recent)
            recent.setdefault(event_id)
            if len(recent) == held:
                return False  # applied already
            if held == self._remembered:
                forgotten = recent.popitem(last=False)[1]
                if forgotten is not None:
                    _forget(*forgotten)
            record = self._records.get(scope)
            key = (time, event_id)
            if record is None:
                record = self._create(environment, feature, name, key)
            elif key > record.name_key:
                if name != record.name:
                    self._rename(environment, feature, record, name)
                record.name_key = key
            if where is None and identifier is None and new is None:
                # Held until the lock is released, so that freeing a million overrides keeps no reader waiting.
                dropped = (record.segments, record.identities)  # noqa: F841
            outcome = settle(record, time, event_id, identifier, where, new)
            if new is None and identifier is not None and record.buried is not None:
                recent[event_id] = (record, identifier, record.buried)
                record.buried = None
            if outcome == UNCHANGED:
                return False
            if outcome == UPDATED:
                old = record.replaced
                record.replaced = None
                assert new is not None
                # The cheap fields first: an update usually changes one of them, the old state is rarely in cache.
                return old.enabled is not new.enabled or old.value != new.value or (old is not new and old != new)
            self._live += outcome
            return True

    def _create(self, environment: int, feature: int, name: str, key: tuple[Any, str]) -> Record:
        """A new feature's record; a feature the environment's newest load lacked is deleted as of that load."""
        record = self._records[(environment, feature)] = Record(name, key)
        self._names.setdefault((environment, name), []).append(feature)
        loaded = self._loads.get(environment)
        if loaded is not None and feature not in loaded[1]:
            settle(record, loaded[0][0], "", None, None, None)
        return record

    def _rename(self, environment: int, feature: int, record: Record, name: str) -> None:
        owners = self._names[(environment, record.name)]
        owners.remove(feature)
        if not owners:
            del self._names[(environment, record.name)]
        self._names.setdefault((environment, name), []).append(feature)
        record.name = name

    def _record(self, environment: int, feature: str | int) -> Record | None:
        """The feature's record (by name: the newest of those carrying it); called with the lock held."""
        if type(feature) is str:
            owners = self._names.get((environment, feature))
            if not owners:
                return None
            if len(owners) == 1:
                return self._records[(environment, owners[0])]
            # The newest name wins; a tie (features named by one load) goes to the larger id, in every store.
            records = self._records
            return records[
                (environment, max(owners, key=lambda owner: (records[(environment, owner)].name_key, owner)))
            ]
        return self._records.get((environment, feature))  # type: ignore[arg-type]

    def find(self, environment: int, feature: str | int, identifier: str | None) -> FeatureState | None:
        with self._lock:
            found = self._record(environment, feature)
            if found is None:
                return None
            if identifier is not None:
                override = found.identities.get(identifier)
                if override is not None and override[2] is not None:
                    return override[2]  # type: ignore[no-any-return]
            default = found.default
            return None if default is None else default[2]

    def segments(self, environment: int, feature: str | int) -> list[tuple[Hashable, FeatureState]]:
        with self._lock:
            found = self._record(environment, feature)
            entries = [] if found is None else list(found.segments.items())
        return [(where, entry[2]) for where, entry in entries if entry[2] is not None]

    def entries(self) -> list[Entry]:
        # Copy under the lock (C-speed copies of each record's tables), build the list without it.
        with self._lock:
            copied = [
                (scope, record.default, list(record.segments.items()), list(record.identities.items()))
                for scope, record in self._records.items()
            ]
        found: list[Entry] = []
        for (environment, feature), default, segments, identities in copied:
            if default is not None and default[2] is not None:
                found.append((environment, feature, 0, None, default[2]))
            found.extend((environment, feature, 1, where, e[2]) for where, e in segments if e[2] is not None)
            found.extend((environment, feature, 2, who, e[2]) for who, e in identities if e[2] is not None)
        return found

    def count(self) -> int:
        return self._live

    def claim(self, event_id: str) -> bool | None:
        return self._claims.claim(event_id)

    def release(self, event_id: str, handled: bool) -> None:
        self._claims.release(event_id, handled)

    def load(self, environment: int, features: Loaded, when: datetime) -> int:
        changed = 0
        with self._lock:
            held_load = self._loads.get(environment)
            if held_load is None or held_load[0] < (when, ""):
                self._loads[environment] = ((when, ""), frozenset(features))
            for (held_environment, feature), held in list(self._records.items()):
                if held_environment == environment and feature not in features:
                    outcome = settle(held, when, "", None, None, None)
                    self._live += outcome
                    changed -= outcome
            for feature, (name, states) in features.items():
                key = (when, "")
                record = self._records.get((environment, feature))
                if record is None:
                    record = self._create(environment, feature, name, key)
                elif key > record.name_key:
                    if name != record.name:
                        self._rename(environment, feature, record, name)
                    record.name_key = key
                before = record.live
                changed += load(record, when, dict(states))
                self._live += record.live - before
        return changed


def _forget(record: Record, identifier: str, entry: tuple[object, str, None]) -> None:
    """The deletion of an identity override left the recent ids: fold its tombstone into the floor."""
    if record.identities.get(identifier) is entry:  # else a newer event or a feature deletion replaced it
        del record.identities[identifier]
        forgotten = (entry[0], entry[1])
        if record.floor is None or record.floor < forgotten:
            record.floor = forgotten

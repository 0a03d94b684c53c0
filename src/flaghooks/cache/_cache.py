"""FlagCache: a local mirror of flag state, fed with web hook events in any order."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime
from typing import Any

from ._changes import Scope
from ._events import FlagChange, WebhookEvent
from ._models import Environment, Feature, FeatureState, FlagValue, Identity

__all__ = ["FlagCache"]


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


_UNDATED = _Undated()
_Time = datetime | _Undated
# An event's place in the total order that decides every conflict: (timestamp, event id). Newest wins, ties
# broken by the event id.
_Key = tuple[_Time, str]
# What a target holds, flat (one object per target): the newest event's timestamp and id, and its state or None
# once deleted (a tombstone for that target, so that older events for it stay ignored).
_Entry = tuple[_Time, str, FeatureState | None]
_SCOPES = tuple(Scope)


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
        """Give a claim back: remembered as handled, or (the handling failed) free to be claimed again."""
        with self._lock:
            self._busy.discard(event_id)
            if handled:
                self._done[event_id] = None
                if len(self._done) > self._size:
                    self._done.popitem(last=False)


class _Feature:
    """Everything the cache holds for one feature in one environment.

    The unit a store can keep together (one row, one hash): the targets' entries, the feature's tombstone, the
    name it carries, and the floor below which identity-override events are no longer told apart.
    """

    __slots__ = ("default", "floor", "identities", "live", "name", "name_key", "newest", "segments", "tombstone")

    def __init__(self, name: str, key: _Key) -> None:
        self.name = name  # the name carried by this feature's newest event, ...
        self.name_key = key  # ... and that event's key
        self.tombstone: _Key | None = None  # the newest deletion of the environment default
        self.floor: _Key | None = None  # the newest identity-override deletion forgotten (see FlagCache)
        self.default: _Entry | None = None
        self.segments: dict[Hashable, _Entry] = {}
        self.identities: dict[str, _Entry] = {}
        self.live = 0  # how many of the entries hold a state
        self.newest = key  # no entry here is newer than this (lets a deletion skip looking at each)


class FlagCache:
    """A thread-safe local mirror of flag state, fed with :class:`WebhookEvent` s.

    Events may arrive late, out of order, or more than once (retries); the cache ends in the same state as if
    every event had been applied once, in timestamp order:

    - each target (an environment default, a segment override or an identity override of one feature in one
      environment) keeps its newest event by ``timestamp``; an older one is ignored; equal timestamps are
      broken by the event id, so every cache decides alike; an event without a timestamp is older than any
      event with one;
    - an event id already applied is ignored (the last 65,536 ids are remembered; older duplicates are
      harmless anyway, since they are never newer than what the cache holds);
    - FLAG_DELETED of an environment default at time T removes the feature and all its overrides in that
      environment, and hides every event for that feature in that environment older than T, including ones
      that arrive later, even after the feature has been created again after T;
    - FLAG_DELETED of an override removes just that override, with the same rule for its target; a deleted
      identity override is remembered while its deletion is among the last 65,536 events applied; after that,
      an identity-override creation or update of that feature in that environment no newer than the deletion
      is ignored (a late retry never brings a deleted override back; docs/receiving.md states the bound);
    - a feature's name is the one its newest event carries; a name finds, among the features whose name it
      is, the one whose newest event is newest;
    - audit events, and events of types flaghooks does not know, change nothing.

    Lookups take an environment id or an :class:`Environment`, a feature name, id or :class:`Feature`, and an
    identity's identifier or an :class:`Identity`; anything else is a ``TypeError`` naming the argument.
    Applying an event costs the same whatever the cache holds (a deletion of an environment default also looks
    at that feature's overrides), and reads never wait for more than one apply.
    """

    _REMEMBERED_IDS = 65536

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._features: dict[tuple[int, int], _Feature] = {}
        # (environment id, name) -> the ids of the features in that environment whose name it is.
        self._names: dict[tuple[int, str], list[int]] = {}
        # The recent event ids, oldest first; an identity-override deletion's id carries its tombstone, which
        # is forgotten with the id (a dead entry per deleted override would otherwise be kept forever).
        self._recent: OrderedDict[str, tuple[_Feature, str, _Entry] | None] = OrderedDict()
        self._live = 0
        self._claims = Claims(self._REMEMBERED_IDS)

    # --- claiming: who handles an event ----------------------------------------------------------------

    def claim(self, event_id: str) -> bool | None:
        """Claim the handling of ``event_id`` before applying it and running side effects (``on_event``).

        True: claimed, the caller handles the event, then calls :meth:`release`. False: handled already (a
        retry after a lost response). None: another caller is handling it right now (answer "try again").
        Of concurrent claims of one id exactly one gets True.
        """
        return self._claims.claim(event_id)

    def release(self, event_id: str, *, handled: bool) -> None:
        """End a claim: remembered as handled, or (``handled=False``, the handling failed) free to be claimed
        again, so that the sender's retry runs it."""
        self._claims.release(event_id, handled)

    # --- feeding ---------------------------------------------------------------------------------------

    def apply(self, event: WebhookEvent) -> bool:
        """Apply one event; True when the cache's contents changed."""
        if type(event) is not WebhookEvent and not isinstance(event, WebhookEvent):
            raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
        data = event.data
        if type(data) is not FlagChange and not isinstance(data, FlagChange):
            return False
        new = data.new_state
        state = new if new is not None else data.previous_state
        assert state is not None  # a FlagChange always has one
        event_id = event.id
        timestamp = data.timestamp
        when: _Time = timestamp if timestamp is not None else _UNDATED
        key: _Key = (when, event_id)
        name = state.feature.name
        scope = (state.environment.id, state.feature.id)
        identity = state.identity
        with self._lock:
            recent = self._recent
            held = len(recent)
            recent.setdefault(event_id)
            if len(recent) == held:
                return False  # applied already
            if held == self._REMEMBERED_IDS:
                forgotten = recent.popitem(last=False)[1]
                if forgotten is not None:
                    self._forget(*forgotten)
            feature = self._features.get(scope)
            if feature is None:
                feature = self._features[scope] = _Feature(name, key)
                self._names.setdefault((scope[0], name), []).append(scope[1])
            elif key > feature.name_key:
                if name != feature.name:
                    self._rename(scope, feature, name)
                feature.name_key = key
            tombstone = feature.tombstone
            if tombstone is not None and key < tombstone:
                return False  # hidden by a later deletion of the feature in this environment
            if key > feature.newest:
                feature.newest = key
            if identity is not None:
                identifier = identity.identifier
                table = feature.identities
                current = table.get(identifier)
                # Not newer than what the target holds (the key compared in place, not rebuilt as a tuple).
                if current is not None and (when < current[0] or (when == current[0] and event_id <= current[1])):
                    return False
                floor = feature.floor
                if new is None:
                    if floor is not None and key <= floor:
                        # Older than a forgotten deletion: remove an older state, but keep no tombstone (the
                        # floor already hides everything older for this identity).
                        if current is None:
                            return False
                        del table[identifier]
                    else:
                        entry = table[identifier] = (when, event_id, None)
                        recent[event_id] = (feature, identifier, entry)
                    if current is None or current[2] is None:
                        return False
                    feature.live -= 1
                    self._live -= 1
                    return True
                if floor is not None and key <= floor:
                    return False
                table[identifier] = (when, event_id, new)
            elif state.feature_segment is not None:
                segment = state.feature_segment
                where: Hashable = (
                    ("segment", segment.segment.id) if segment.segment is not None else ("feature_segment", segment.id)
                )
                table_s = feature.segments
                current = table_s.get(where)
                if current is not None and (when < current[0] or (when == current[0] and event_id <= current[1])):
                    return False
                table_s[where] = (when, event_id, new)
                if new is None:
                    if current is None or current[2] is None:
                        return False
                    feature.live -= 1
                    self._live -= 1
                    return True
            elif new is None:
                # Held here until the lock is released, so that freeing a million overrides keeps no reader waiting.
                dropped = (feature.segments, feature.identities)  # noqa: F841
                return self._delete_feature(feature, key)
            else:
                current = feature.default
                if current is not None and (when < current[0] or (when == current[0] and event_id <= current[1])):
                    return False
                feature.default = (when, event_id, new)
            # An update of a target: changed unless the target already showed an equal state.
            if current is None or current[2] is None:
                feature.live += 1
                self._live += 1
                return True
            old = current[2]
            # The cheap fields first: an update usually changes one of them, and the old state is rarely in cache.
            return old.enabled is not new.enabled or old.value != new.value or (old is not new and old != new)

    def _delete_feature(self, feature: _Feature, key: _Key) -> bool:
        """FLAG_DELETED of the environment default: drop everything of the feature older than ``key``."""
        feature.tombstone = key
        # The tombstone replaces the targets' own: an entry older than it can go, dead or alive.
        before = feature.live
        if feature.newest <= key:  # the common case, nothing newer arrived first: no need to look at each
            feature.default = None
            feature.segments = {}
            feature.identities = {}
            feature.live = 0
        else:
            default = feature.default
            if default is not None and (default[0], default[1]) < key:
                feature.default = None
                feature.live -= default[2] is not None
            segments, identities = feature.segments, feature.identities
            for where in [where for where, entry in segments.items() if (entry[0], entry[1]) < key]:
                feature.live -= segments.pop(where)[2] is not None
            for identifier in [identifier for identifier, entry in identities.items() if (entry[0], entry[1]) < key]:
                feature.live -= identities.pop(identifier)[2] is not None
        self._live -= before - feature.live
        return feature.live != before

    def _forget(self, feature: _Feature, identifier: str, entry: _Entry) -> None:
        """The deletion of an identity override left the recent ids: fold its tombstone into the floor."""
        if feature.identities.get(identifier) is entry:  # else a newer event or a feature deletion replaced it
            del feature.identities[identifier]
            forgotten = (entry[0], entry[1])
            if feature.floor is None or feature.floor < forgotten:
                feature.floor = forgotten

    def _rename(self, scope: tuple[int, int], feature: _Feature, name: str) -> None:
        environment, feature_id = scope
        owners = self._names[(environment, feature.name)]
        owners.remove(feature_id)
        if not owners:
            del self._names[(environment, feature.name)]
        self._names.setdefault((environment, name), []).append(feature_id)
        feature.name = name

    # --- reading ---------------------------------------------------------------------------------------

    def _find(self, environment: int | Environment, feature: str | int | Feature) -> _Feature | None:
        """The feature's record; called with the lock held."""
        if type(environment) is not int:
            environment = _environment_id(environment)
        if type(feature) is not str and type(feature) is not int:
            feature = _feature_key(feature)
        if isinstance(feature, str):
            owners = self._names.get((environment, feature))
            if not owners:
                return None
            if len(owners) == 1:
                return self._features[(environment, owners[0])]
            return max((self._features[(environment, owner)] for owner in owners), key=_named_at)
        return self._features.get((environment, feature))

    def get(
        self,
        environment: int | Environment,
        feature: str | int | Feature,
        *,
        identity: str | Identity | None = None,
    ) -> FeatureState | None:
        """The state of ``feature`` (a name, an id or a :class:`Feature`) in ``environment`` (an id or an
        :class:`Environment`): the identity's override when ``identity`` (an identifier or an
        :class:`Identity`) is given and has one, else the environment default; None if unknown.

        Raises ``TypeError`` naming the argument that is none of these (an identity's numeric id, say)."""
        if identity is not None and type(identity) is not str:
            identity = _identifier(identity)
        with self._lock:
            found = self._find(environment, feature)
            if found is None:
                return None
            if identity is not None:
                override = found.identities.get(identity)
                if override is not None and override[2] is not None:
                    return override[2]
            default = found.default
            return None if default is None else default[2]

    def is_enabled(
        self,
        environment: int | Environment,
        feature: str | int | Feature,
        *,
        identity: str | Identity | None = None,
        default: bool = False,
    ) -> bool:
        """Whether the flag is on (``default`` when the cache does not know it); arguments as for :meth:`get`."""
        state = self.get(environment, feature, identity=identity)
        return default if state is None else state.enabled

    def value(
        self,
        environment: int | Environment,
        feature: str | int | Feature,
        *,
        identity: str | Identity | None = None,
        default: Any = None,
    ) -> FlagValue | Any:
        """The flag's value (``default`` when the cache does not know the flag); arguments as for :meth:`get`."""
        state = self.get(environment, feature, identity=identity)
        return default if state is None else state.value

    def segment_overrides(self, environment: int | Environment, feature: str | int | Feature) -> list[FeatureState]:
        """The feature's segment overrides in ``environment``, by priority (unknown priorities last)."""
        with self._lock:
            found = self._find(environment, feature)
            entries = [] if found is None else list(found.segments.items())
        overrides = [(where, entry[2]) for where, entry in entries if entry[2] is not None]

        def order(item: tuple[Hashable, FeatureState]) -> tuple[bool, int, str]:
            fs = item[1].feature_segment
            assert fs is not None
            priority = fs.priority
            return (priority is None, priority or 0, repr(item[0]))

        return [state for _, state in sorted(overrides, key=order)]

    def states(self) -> list[FeatureState]:
        """Every state the cache holds, in a stable order (environment, feature, scope, override)."""
        # Copy under the lock (C-speed copies of each feature's tables), sort without it.
        with self._lock:
            copied = [
                (scope, feature.default, list(feature.segments.items()), list(feature.identities.items()))
                for scope, feature in self._features.items()
            ]
        items: list[tuple[tuple[int, int, int, str], FeatureState]] = []
        for (environment, feature_id), default, segments, identities in copied:
            if default is not None and default[2] is not None:
                items.append(((environment, feature_id, 0, "None"), default[2]))
            for rank, table in ((_SCOPES.index(Scope.SEGMENT), segments), (_SCOPES.index(Scope.IDENTITY), identities)):
                items.extend(
                    ((environment, feature_id, rank, repr(where)), entry[2])
                    for where, entry in table
                    if entry[2] is not None
                )
        items.sort(key=lambda item: item[0])
        return [state for _, state in items]

    def __len__(self) -> int:
        return self._live


def _named_at(feature: _Feature) -> _Key:
    return feature.name_key


def _environment_id(environment: object) -> int:
    if isinstance(environment, Environment):
        return environment.id
    if isinstance(environment, int) and not isinstance(environment, bool):
        return int(environment)
    raise TypeError(f"environment must be an environment id (int) or an Environment, got {type(environment).__name__}")


def _feature_key(feature: object) -> str | int:
    if isinstance(feature, Feature):
        return feature.id
    if isinstance(feature, str):
        return str(feature)
    if isinstance(feature, int) and not isinstance(feature, bool):
        return int(feature)
    raise TypeError(f"feature must be a name or an id (or a Feature), got {type(feature).__name__}")


def _identifier(identity: object) -> str:
    if isinstance(identity, Identity):
        return identity.identifier
    if isinstance(identity, str):
        return str(identity)
    hint = " (an identity's id is not its identifier)" if isinstance(identity, int) else ""
    raise TypeError(f"identity must be an identifier (str) or an Identity, got {type(identity).__name__}{hint}")

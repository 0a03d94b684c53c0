"""FlagCache: a local mirror of flag state, fed with web hook events in any order."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import UTC, datetime
from typing import Any

import attrs

from ._changes import Scope, target_of
from ._events import EventType, FlagChange, WebhookEvent
from ._models import FeatureState, FlagValue

__all__ = ["FlagCache"]

# An event's place in the total order that decides every conflict: newest timestamp wins, ties by event id.
_Key = tuple[datetime, str]
_OLDEST = datetime.min.replace(tzinfo=UTC)
# A target: (environment id, feature id, scope, override key); identity overrides are keyed by identifier.
_Target = tuple[int, int, Scope, Hashable]


def _target(state: FeatureState) -> _Target:
    return target_of(state, by_identifier=True)


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


@attrs.frozen
class _Entry:
    key: _Key
    state: FeatureState | None  # None: deleted (kept so that older events for the target stay ignored)


class FlagCache:
    """A thread-safe local mirror of flag state, fed with :class:`WebhookEvent` s.

    Events may arrive late, out of order, or more than once (retries); the cache ends in the same state as if
    every event had been applied once, in timestamp order:

    - each target (an environment default, a segment override or an identity override of one feature in one
      environment) keeps its newest event by ``timestamp``; an older one is ignored; equal timestamps are
      broken by the event id, so every cache decides alike;
    - an event id already applied is ignored (the last 65,536 ids are remembered; older duplicates are
      harmless anyway, since they are never newer than what the cache holds);
    - FLAG_DELETED of an environment default at time T removes the feature and all its overrides in that
      environment, and hides every event for that feature in that environment older than T, including ones
      that arrive later, even after the feature has been created again after T;
    - FLAG_DELETED of an override removes just that override, with the same rule for its target;
    - audit events change nothing.
    """

    _REMEMBERED_IDS = 65536

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entries: dict[_Target, _Entry] = {}
        self._tombstones: dict[tuple[int, int], _Key] = {}  # (environment, feature) -> newest deletion
        self._names: dict[tuple[int, str], int] = {}  # (environment, feature name) -> feature id
        self._applied = RecentIds(self._REMEMBERED_IDS)

    # --- feeding ---------------------------------------------------------------------------------------

    def apply(self, event: WebhookEvent) -> bool:
        """Apply one event; True when the cache's contents changed."""
        if not isinstance(event, WebhookEvent):
            raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
        data = event.data
        if not isinstance(data, FlagChange):
            return False
        state = data.new_state if data.new_state is not None else data.previous_state
        assert state is not None  # a FlagChange always has one
        # An unknown timestamp (Flagsmith sent "") sorts before every known one: it never wins over a dated event.
        key: _Key = (data.timestamp or _OLDEST, event.id)
        target = _target(state)
        scope = (target[0], target[1])
        with self._lock:
            if not self._applied.add(event.id):
                return False
            tombstone = self._tombstones.get(scope)
            if tombstone is not None and key < tombstone:
                return False  # hidden by a later deletion of the feature in this environment
            before = self._visible(scope)
            deleted = event.event_type is EventType.FLAG_DELETED
            if deleted and target[2] is Scope.ENVIRONMENT:
                # The deletion hides everything older for the feature here, even if its own target already
                # holds something newer (a re-creation that arrived first).
                self._tombstones[scope] = key
                for other in [t for t, entry in self._entries.items() if t[:2] == scope and entry.key < key]:
                    del self._entries[other]
            current = self._entries.get(target)
            if current is None or current.key < key:
                self._entries[target] = _Entry(key, None if deleted else data.new_state)
                if not deleted:
                    self._names[(state.environment.id, state.feature.name)] = state.feature.id
            return self._visible(scope) != before

    def _visible(self, scope: tuple[int, int]) -> dict[_Target, FeatureState]:
        return {
            target: entry.state
            for target, entry in self._entries.items()
            if target[:2] == scope and entry.state is not None
        }

    # --- reading ---------------------------------------------------------------------------------------

    def _feature_id(self, environment: int, feature: str | int) -> int | None:
        if isinstance(feature, bool) or not isinstance(feature, str | int):
            raise TypeError(f"feature must be a name or an id, got {type(feature).__name__}")
        if isinstance(feature, int):
            return feature
        return self._names.get((environment, feature))

    def _lookup(self, environment: int, feature: str | int, target_scope: Scope, key: Hashable) -> FeatureState | None:
        feature_id = self._feature_id(environment, feature)
        if feature_id is None:
            return None
        entry = self._entries.get((environment, feature_id, target_scope, key))
        if entry is None or entry.state is None:
            return None
        if isinstance(feature, str) and entry.state.feature.name != feature:
            return None  # renamed since: the name no longer means this feature
        return entry.state

    def get(self, environment: int, feature: str | int, *, identity: str | None = None) -> FeatureState | None:
        """The state of ``feature`` (a name or an id) in ``environment``: the identity's override (by
        identifier) when ``identity`` is given and has one, else the environment default; None if unknown."""
        with self._lock:
            if identity is not None:
                override = self._lookup(environment, feature, Scope.IDENTITY, identity)
                if override is not None:
                    return override
            return self._lookup(environment, feature, Scope.ENVIRONMENT, None)

    def is_enabled(
        self, environment: int, feature: str | int, *, identity: str | None = None, default: bool = False
    ) -> bool:
        """Whether the flag is on (``default`` when the cache does not know it)."""
        state = self.get(environment, feature, identity=identity)
        return default if state is None else state.enabled

    def value(
        self, environment: int, feature: str | int, *, identity: str | None = None, default: Any = None
    ) -> FlagValue | Any:
        """The flag's value (``default`` when the cache does not know the flag)."""
        state = self.get(environment, feature, identity=identity)
        return default if state is None else state.value

    def segment_overrides(self, environment: int, feature: str | int) -> list[FeatureState]:
        """The feature's segment overrides in ``environment``, by priority (unknown priorities last)."""
        with self._lock:
            feature_id = self._feature_id(environment, feature)
            found = [
                entry.state
                for target, entry in self._entries.items()
                if target[:3] == (environment, feature_id, Scope.SEGMENT) and entry.state is not None
            ]

        def order(state: FeatureState) -> tuple[int, int, str]:
            fs = state.feature_segment
            assert fs is not None
            priority = fs.priority
            return (priority is None, priority or 0, repr(_target(state)[3]))

        return sorted(found, key=order)

    def states(self) -> list[FeatureState]:
        """Every state the cache holds, in a stable order (environment, feature, scope, override)."""
        with self._lock:
            items = [(target, entry.state) for target, entry in self._entries.items() if entry.state is not None]
        items.sort(key=lambda item: (item[0][0], item[0][1], list(Scope).index(item[0][2]), repr(item[0][3])))
        return [state for _, state in items]

    def __len__(self) -> int:
        with self._lock:
            return sum(entry.state is not None for entry in self._entries.values())

"""The seam between FlagCache and where it keeps flag state: the FlagStore interface every store implements."""

from __future__ import annotations

import abc
import threading
from collections.abc import Hashable, Mapping
from datetime import datetime

from .._models import FeatureState

__all__ = ["Entry", "FlagStore", "HeldClaims", "Loaded", "target_of", "target_text"]

# What a store lists: (environment id, feature id, scope rank (0 default, 1 segment, 2 identity), target, state);
# the target is None for the default, a segment key (("segment", id) or ("feature_segment", id)) or an identifier.
Entry = tuple[int, int, int, Hashable, FeatureState]
# What a load gives a store: feature id -> (its name, {target: state}), targets as rules.load takes them.
Loaded = Mapping[int, tuple[str, Mapping[Hashable, FeatureState]]]


class FlagStore(abc.ABC):
    """Where a :class:`~flaghooks.cache.FlagCache` keeps its states, tombstones, names, recent event ids and claims.

    :class:`~flaghooks.cache.MemoryFlagStore` (the default), :class:`~flaghooks.cache.SqliteFlagStore` and
    :class:`~flaghooks.cache.RedisFlagStore` implement it; the cache normalizes arguments and calls these. Each
    call is atomic on its own: ``apply`` applies one event's change to one feature's record, all or nothing, and
    raises :class:`~flaghooks.exceptions.StoreError` on a fault.
    """

    @abc.abstractmethod
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
        """Apply one event's change (``new`` None: a deletion) unless its id was applied already; True when the
        contents changed."""

    @abc.abstractmethod
    def find(self, environment: int, feature: str | int, identifier: str | None) -> FeatureState | None:
        """The identity's override of the feature (by name or id), else its default; None if unknown."""

    @abc.abstractmethod
    def segments(self, environment: int, feature: str | int) -> list[tuple[Hashable, FeatureState]]:
        """The feature's live segment overrides, with their keys, in no particular order."""

    @abc.abstractmethod
    def entries(self) -> list[Entry]:
        """Every live state, in no particular order."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many targets hold a state."""

    @abc.abstractmethod
    def claim(self, event_id: str) -> bool | None:
        """Claim the handling of an event id (see FlagCache.claim)."""

    @abc.abstractmethod
    def release(self, event_id: str, handled: bool) -> None:
        """End a claim (see FlagCache.release)."""

    @abc.abstractmethod
    def load(self, environment: int, features: Loaded, when: datetime) -> int:
        """Make ``features`` the whole truth about ``environment`` as of ``(when, "")`` (see
        FlagCache.load_environment_document); how many targets changed what they show."""

    def close(self) -> None:  # noqa: B027 - a store without resources has nothing to close
        """Release the store's connections (the data stays)."""


def target_text(identifier: str | None, where: Hashable | None) -> str:
    """A target as the store names it: ``d`` (default), ``s:ID``/``f:ID`` (segment), ``i:IDENTIFIER``."""
    if identifier is not None:
        return "i:" + identifier
    if where is None:
        return "d"
    kind, number = where  # type: ignore[misc]
    return f"{'s' if kind == 'segment' else 'f'}:{number}"  # type: ignore[has-type]


def target_of(text: str) -> tuple[int, Hashable]:
    """The (scope rank, target) a stored target name stands for (as FlagCache.states orders them)."""
    if text == "d":
        return 0, None
    kind, _, rest = text.partition(":")
    if kind == "i":
        return 2, rest
    return 1, ("segment" if kind == "s" else "feature_segment", int(rest))


class HeldClaims:
    """The tokens of the claims one store object holds, so that a release ends only the claim its caller made.

    A claim is held by the thread that made it (a receiver claims, applies and releases in one thread): once a slow
    holder's lease expired, another thread of the same process may claim the event again, and the slow one's
    release must not end that claim. A release from a thread that made no claim of the id ends the claim only when
    it is the only one this store object holds of that id (claim and release called from different threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, dict[int, object]] = {}

    def add(self, event_id: str, token: object) -> None:
        with self._lock:
            self._tokens.setdefault(event_id, {})[threading.get_ident()] = token

    def pop(self, event_id: str) -> object | None:
        """The token of the claim a release by this thread ends; None when there is none to end."""
        with self._lock:
            holders = self._tokens.get(event_id)
            if not holders:
                return None
            thread = threading.get_ident()
            if thread not in holders:
                if len(holders) != 1:
                    return None
                thread = next(iter(holders))
            token = holders.pop(thread)
            if not holders:
                del self._tokens[event_id]
            return token

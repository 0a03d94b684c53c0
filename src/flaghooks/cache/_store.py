"""The seam between FlagCache and where it keeps flag state: the FlagStore interface every store implements."""

from __future__ import annotations

import abc
from collections.abc import Hashable, Mapping
from datetime import datetime

from .._models import FeatureState

__all__ = ["Entry", "FlagStore", "Loaded", "target_of", "target_text"]

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

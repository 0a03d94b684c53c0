"""FlagCache: a local mirror of flag state, fed with web hook events in any order, kept in a store."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from typing import Any

from .._document import parse_environment_document
from .._events import FlagChange, WebhookEvent
from .._models import Environment, Feature, FeatureState, FlagValue, Identity
from ..exceptions import ConfigError
from ._memory import MemoryFlagStore
from ._store import FlagStore

__all__ = ["FlagCache"]


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

    ``store`` is where the state is kept: a :class:`~flaghooks.cache.MemoryFlagStore` of its own by default (one
    process), a :class:`~flaghooks.cache.SqliteFlagStore` for every process of a host, a
    :class:`~flaghooks.cache.RedisFlagStore` for many hosts; every store follows these rules alike (see
    docs/caching.md). A shared store raises :class:`~flaghooks.exceptions.StoreError` when it cannot be used.

    Lookups take an environment id or an :class:`Environment`, a feature name, id or :class:`Feature`, and an
    identity's identifier or an :class:`Identity`; anything else is a ``TypeError`` naming the argument.
    Applying an event costs the same whatever the cache holds (a deletion of an environment default also looks
    at that feature's overrides), and reads never wait for more than one apply.
    """

    _REMEMBERED_IDS = 65536

    def __init__(self, store: FlagStore | None = None) -> None:
        if store is None:
            store = MemoryFlagStore(remembered=self._REMEMBERED_IDS)
        elif not isinstance(store, FlagStore):
            raise ConfigError(
                f"store must be a MemoryFlagStore, SqliteFlagStore or RedisFlagStore, got {type(store).__name__}"
            )
        self._store = store

    @property
    def store(self) -> FlagStore:
        """Where the cache keeps its states (a :class:`MemoryFlagStore` unless one was given)."""
        return self._store

    def __repr__(self) -> str:
        return f"FlagCache(store={self._store!r})"

    def close(self) -> None:
        """Close the store's connections (a shared store's data stays)."""
        self._store.close()

    # --- claiming: who handles an event ----------------------------------------------------------------

    def claim(self, event_id: str) -> bool | None:
        """Claim the handling of ``event_id`` before applying it and running side effects (``on_event``).

        True: claimed, the caller handles the event, then calls :meth:`release`. False: handled already (a
        retry after a lost response). None: another caller is handling it right now (answer "try again").
        Of concurrent claims of one id exactly one gets True, across every process and host sharing the store;
        a shared store's claim is a lease that expires (60 s) if its holder dies without releasing it.
        Raises :class:`~flaghooks.exceptions.StoreError` when the store cannot be used.
        """
        return self._store.claim(event_id)

    def release(self, event_id: str, *, handled: bool) -> None:
        """End a claim: remembered as handled, or (``handled=False``, the handling failed) free to be claimed
        again, so that the sender's retry runs it."""
        self._store.release(event_id, handled)

    # --- feeding ---------------------------------------------------------------------------------------

    def apply(self, event: WebhookEvent) -> bool:
        """Apply one event; True when the cache's contents changed.

        Raises :class:`~flaghooks.exceptions.StoreError` when the store cannot be used (nothing of the event is
        applied then: apply it again later)."""
        if type(event) is not WebhookEvent and not isinstance(event, WebhookEvent):
            raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
        data = event.data
        if type(data) is not FlagChange and not isinstance(data, FlagChange):
            return False
        new = data.new_state
        state = new if new is not None else data.previous_state
        assert state is not None  # a FlagChange always has one
        identity = state.identity
        segment = state.feature_segment
        where: Hashable | None = None
        if identity is None and segment is not None:
            where = ("segment", segment.segment.id) if segment.segment is not None else ("feature_segment", segment.id)
        feature = state.feature
        return self._store.apply(
            event.id,
            data.timestamp,
            state.environment.id,
            feature.id,
            feature.name,
            None if identity is None else identity.identifier,
            where,
            new,
        )

    def load_environment_document(self, document: Mapping[str, Any], *, as_of: datetime | None = None) -> int:
        """Load Flagsmith's environment document (the JSON of ``GET /api/v1/environment-document/``) as the whole
        truth about its environment as of ``as_of`` (default: the document's ``updated_at``); returns how many
        targets changed what they show.

        The document carries no per-state times: every state in it counts as if applied by an event at
        ``(as_of, "")``, so a web hook at or after ``as_of`` wins over it (any real event id sorts after ``""``)
        and an older one loses. Targets of that environment the cache holds that the document lacks, and are
        older than that, are removed (identity-override events older than ``as_of`` stay hidden); a feature of
        that environment absent from the document is deleted as of ``as_of``, so older late events for it stay
        hidden. Claims and recent event ids are not touched.

        Raises :class:`~flaghooks.exceptions.PayloadError` (with the JSON path) for a document that cannot be
        read, :class:`~flaghooks.exceptions.ConfigError` when neither ``as_of`` nor ``updated_at`` is known, and
        :class:`~flaghooks.exceptions.StoreError` when the store cannot be used.
        """
        if as_of is not None and (not isinstance(as_of, datetime) or as_of.utcoffset() is None):
            raise ConfigError(f"as_of must be a timezone-aware datetime, got {as_of!r}")
        if as_of is not None:
            try:
                as_of = as_of.astimezone(UTC)  # as every store keeps it
            except OverflowError:
                raise ConfigError(f"as_of {as_of.isoformat()} is out of the range of datetimes in UTC") from None
        parsed = parse_environment_document(document)
        when = as_of if as_of is not None else parsed.updated_at
        if when is None:
            raise ConfigError("the environment document has no updated_at: pass as_of= (when the document was fetched)")
        features: dict[int, tuple[str, dict[Hashable, FeatureState]]] = {}
        for state in parsed.states:
            feature = state.feature
            targets = features.setdefault(feature.id, (feature.name, {}))[1]
            identity, segment = state.identity, state.feature_segment
            target: Hashable = None
            if identity is not None:
                target = ("identity", identity.identifier)
            elif segment is not None:
                target = (
                    ("segment", segment.segment.id) if segment.segment is not None else ("feature_segment", segment.id)
                )
            targets[target] = state
        return self._store.load(parsed.environment.id, features, when)

    # --- reading ---------------------------------------------------------------------------------------

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
        if type(environment) is not int:
            environment = _environment_id(environment)
        if type(feature) is not str and type(feature) is not int:
            feature = _feature_key(feature)
        if identity is not None and type(identity) is not str:
            identity = _identifier(identity)
        return self._store.find(environment, feature, identity)

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
        if type(environment) is not int:
            environment = _environment_id(environment)
        if type(feature) is not str and type(feature) is not int:
            feature = _feature_key(feature)
        overrides = self._store.segments(environment, feature)

        def order(item: tuple[Hashable, FeatureState]) -> tuple[bool, int, str]:
            fs = item[1].feature_segment
            assert fs is not None
            priority = fs.priority
            return (priority is None, priority or 0, repr(item[0]))

        return [state for _, state in sorted(overrides, key=order)]

    def states(self) -> list[FeatureState]:
        """Every state the cache holds, in a stable order (environment, feature, scope, override)."""
        items = [
            ((environment, feature, rank, repr(where)), state)
            for environment, feature, rank, where, state in self._store.entries()
        ]
        items.sort(key=lambda item: item[0])
        return [state for _, state in items]

    def __len__(self) -> int:
        return self._store.count()


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

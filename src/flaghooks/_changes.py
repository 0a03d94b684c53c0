"""What changed between a previous and a new feature state."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ._models import Feature, FeatureState, FlagValue, MultivariateValue

__all__ = ["Action", "Scope", "StateChange", "diff_states"]


class Scope(enum.StrEnum):
    """Which kind of state changed: the environment default, a segment override or an identity override."""

    ENVIRONMENT = "environment"
    SEGMENT = "segment"
    IDENTITY = "identity"


class Action(enum.StrEnum):
    """Whether a state appeared, changed or went away."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@attrs.frozen
class StateChange:
    """The result of :func:`diff_states`.

    ``changed`` names what differs for an UPDATED change: any of ``"enabled"``, ``"value"``,
    ``"multivariate_values"`` and ``"feature"``. It is empty for CREATED and DELETED.
    """

    scope: Scope
    action: Action
    changed: frozenset[str] = frozenset()

    @property
    def is_noop(self) -> bool:
        """True for an update that changed nothing a web hook carries."""
        return self.action is Action.UPDATED and not self.changed


def scope_of(state: FeatureState) -> Scope:
    if state.identity is not None:
        return Scope.IDENTITY
    if state.feature_segment is not None:
        return Scope.SEGMENT
    return Scope.ENVIRONMENT


def target_of(state: FeatureState, *, by_identifier: bool = False) -> tuple[Any, ...]:
    """The thing a state is the state of: (environment id, feature id, scope, override key).

    Two states of the same target can be compared. The override key of an identity override is the identity's
    id, or its identifier with ``by_identifier`` (how a receiver's cache, looked up by identifier, keys it).
    """
    identity = state.identity
    if identity is not None:
        who = identity.identifier if by_identifier else identity.id
        return (state.environment.id, state.feature.id, Scope.IDENTITY, who)
    fs = state.feature_segment
    if fs is not None:
        segment = ("segment", fs.segment.id) if fs.segment is not None else ("feature_segment", fs.id)
        return (state.environment.id, state.feature.id, Scope.SEGMENT, segment)
    return (state.environment.id, state.feature.id, Scope.ENVIRONMENT, None)


_TARGET_PARTS = ("environment id", "feature id", "scope", "override")


def _describe_key(key: Any) -> str:
    if isinstance(key, tuple):
        return f"{key[0].replace('_', '-')} {key[1]!r}"
    return repr(key)


def check_same_target(previous: FeatureState, new: FeatureState) -> None:
    """Raise ``ValueError`` naming what differs when two states are not of the same target."""
    # Fast path for the common case, environment defaults of one feature in one environment.
    # Also when both states share one override object (as decoding builds them).
    if (
        previous.identity is new.identity
        and previous.feature_segment is new.feature_segment
        and previous.environment.id == new.environment.id
        and previous.feature.id == new.feature.id
    ):
        return
    before, after = target_of(previous), target_of(new)
    if before == after:
        return
    differences = []
    for name, a, b in zip(_TARGET_PARTS, before, after, strict=True):
        if a != b:
            if name == "override":
                differences.append(f"{before[2]} override {_describe_key(a)} != {_describe_key(b)}")
            else:
                differences.append(f"{name} {a!s} != {b!s}")
    raise ValueError("previous and new are not states of the same target: " + "; ".join(differences))


def json_key(value: FlagValue) -> tuple[str, FlagValue]:
    """A key under which two flag values are equal exactly when their JSON values are (``True`` != ``1``)."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    return ("str", str(value))


def _feature_key(feature: Feature) -> tuple[Any, ...]:
    return (
        feature.id,
        feature.name,
        feature.project,
        feature.created_date,
        feature.type,
        json_key(feature.initial_value),
        feature.default_enabled,
        feature.description,
    )


def _multivariate_key(values: tuple[MultivariateValue, ...]) -> tuple[Any, ...]:
    # Allocations compare as numbers: 50 and 50.0 are the same share.
    return tuple((v.id, v.option.id, json_key(v.option.value), float(v.percentage_allocation)) for v in values)


def diff_states(previous: FeatureState | None, new: FeatureState | None) -> StateChange:
    """Compare two states of one target (either may be ``None``, not both).

    ``None`` before means the state was CREATED, ``None`` after means it was DELETED.

    Raises ``ValueError`` when both are ``None`` or when the two states are not of the same target
    (environment, feature, scope, segment or identity), saying what differs.

    >>> from datetime import datetime, timezone
    >>> from flaghooks import Environment, Feature, FeatureState, Project, diff_states
    >>> feature = Feature(id=1, name="banner", project=Project(1),
    ...                   created_date=datetime(2024, 1, 1, tzinfo=timezone.utc))
    >>> off = FeatureState(feature=feature, environment=Environment(1), enabled=False)
    >>> on = FeatureState(feature=feature, environment=Environment(1), enabled=True)
    >>> sorted(diff_states(off, on).changed)
    ['enabled']
    """
    if previous is None:
        if new is None:
            raise ValueError("previous and new are both None: there is no state to compare")
        return StateChange(scope_of(new), Action.CREATED)
    if new is None:
        return StateChange(scope_of(previous), Action.DELETED)
    check_same_target(previous, new)
    changed = set()
    if previous.enabled != new.enabled:
        changed.add("enabled")
    if json_key(previous.value) != json_key(new.value):
        changed.add("value")
    if _multivariate_key(previous.multivariate_values) != _multivariate_key(new.multivariate_values):
        changed.add("multivariate_values")
    if previous.feature is not new.feature and _feature_key(previous.feature) != _feature_key(new.feature):
        changed.add("feature")
    return StateChange(scope_of(new), Action.UPDATED, frozenset(changed))

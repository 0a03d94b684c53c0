"""The NEW_VERSION_PUBLISHED event's data: a version of a feature's states published in an environment (Flagsmith's
feature versioning v2). Its payload names the feature and the publisher by id and name or email only, and
carries no environment id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._extra import NO_EXTRA
from ._models import (
    FlagValue,
    MultivariateValue,
    _bool,
    _describe,
    _fail,
    _flag_value,
    _id,
    _instance_of,
    _multivariate_values,
    _nonempty_str,
    _set_extra,
    _str,
)

__all__ = ["VersionFeature", "VersionFeatureState", "VersionPublished", "VersionPublisher"]


@attrs.frozen
class VersionFeature:
    """The feature a published version belongs to, as NEW_VERSION_PUBLISHED names it: its id and name.
    ``extra``: keys of a decoded feature object that flaghooks does not model (written back)."""

    id: int = attrs.field(validator=_id)
    name: str = attrs.field(validator=_str)
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.extra is not NO_EXTRA:
            _set_extra(self, "VersionFeature", VERSION_FEATURE_KEYS)


VERSION_FEATURE_KEYS = frozenset({"id", "name"})


@attrs.frozen
class VersionPublisher:
    """The user who published a version (NEW_VERSION_PUBLISHED's ``published_by``). ``extra``: keys of a decoded
    user object that flaghooks does not model (written back)."""

    id: int = attrs.field(validator=_id)
    email: str = attrs.field(validator=_str)
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.extra is not NO_EXTRA:
            _set_extra(self, "VersionPublisher", VERSION_PUBLISHER_KEYS)


VERSION_PUBLISHER_KEYS = frozenset({"id", "email"})


@attrs.frozen(kw_only=True)
class VersionFeatureState:
    """One feature state of a published version: the environment default or a segment override (the payload
    does not say which). ``value`` is the payload's ``value``; multivariate allocations total at most 100.
    ``extra``: keys of a decoded state object that flaghooks does not model (written back)."""

    enabled: bool = attrs.field(validator=_bool)
    value: FlagValue = attrs.field(default=None, validator=_flag_value)
    multivariate_values: tuple[MultivariateValue, ...] = attrs.field(default=(), validator=_multivariate_values)
    extra: Mapping[str, Any] = NO_EXTRA

    def __attrs_post_init__(self) -> None:
        if self.extra is not NO_EXTRA:
            _set_extra(self, "VersionFeatureState", VERSION_STATE_KEYS)


VERSION_STATE_KEYS = frozenset({"enabled", "value", "multivariate_feature_state_values"})


def _version_states(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not tuple:
        raise _fail(TypeError, inst, attribute.name, f"must be a tuple of VersionFeatureState, got {_describe(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, VersionFeatureState):
            raise _fail(
                TypeError, inst, attribute.name, f"[{index}] must be a VersionFeatureState, got {_describe(item)}"
            )


@attrs.frozen(kw_only=True)
class VersionPublished:
    """The ``data`` of a NEW_VERSION_PUBLISHED event: a new version of a feature's states was published in an
    environment (Flagsmith's feature versioning v2).

    ``uuid`` is the version's id; ``published_by`` is ``None`` when no user published it (an API key, a
    scheduled change). The payload carries no environment id: ``Webhooks.publish`` needs ``environment=``.
    ``extra`` holds the keys of a decoded ``data`` object that flaghooks does not model (written back).
    """

    uuid: str = attrs.field(validator=_nonempty_str)
    feature: VersionFeature = attrs.field(validator=_instance_of(VersionFeature))
    published_by: VersionPublisher | None = attrs.field(
        default=None, validator=_instance_of(VersionPublisher, optional=True)
    )
    feature_states: tuple[VersionFeatureState, ...] = attrs.field(default=(), validator=_version_states)
    extra: Mapping[str, Any] = NO_EXTRA

    def __attrs_post_init__(self) -> None:
        if self.extra is not NO_EXTRA:
            _set_extra(self, "VersionPublished", VERSION_KEYS)


VERSION_KEYS = frozenset({"uuid", "feature", "published_by", "feature_states"})

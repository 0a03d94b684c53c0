"""The fast path of decoding: FLAG_UPDATED and FLAG_DELETED data in the shapes Flagsmith sends, built with as
few calls as possible (decoding runs once per received event, and building the objects was most of its cost).

It is optimistic. It reads keys directly and lets the models validate the values; anything unusual (a missing
key, a wrong type, an object with more keys than its shape has, which the careful path keeps in the model's
``extra``, a datetime in another spelling) raises some exception, and ``decode`` then starts again on its careful
path, which either decodes the rarer shape or says precisely what is wrong. So this path never decides that a
payload is bad, and it must never accept one that the careful path refuses, nor build a different event from it
(tests compare the two paths).

Models are immutable, so equal ones can be shared: features, projects, environments, feature segments and
identities are remembered by their raw values (with the types of every value that JSON lets compare equal across
types, ``1 == 1.0 == True``, pinned), so that the same feature in the next event, or in the other state of this
one, is not built and validated again.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

from ._events import FlagChange
from ._extra import NO_EXTRA
from ._models import (
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    MultivariateOption,
    MultivariateValue,
    Project,
    Segment,
)

__all__ = ["CHANGE_FIELDS", "FROM_ISO", "ZULU", "fast_flag_change"]

T = TypeVar("T")

# The shape Flagsmith writes (UTC, "Z"): checked strictly here, then parsed by the C parser, which alone would
# accept more spellings than the careful parser does.
ZULU = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z", re.ASCII).fullmatch
FROM_ISO = datetime.fromisoformat

# A FlagChange of one state is set up without its constructor (which would check again what this path has just
# built): these are its fields, in order (a test checks them against the class).
CHANGE_FIELDS = ("changed_by", "new_state", "previous_state", "timestamp", "extra")
_new = object.__new__
_set = object.__setattr__

_ABSENT: Any = object()


class _Unusual(Exception):
    """Not a shape this path handles."""


def _datetime(text: str) -> datetime:
    if ZULU(text) is None:
        raise _Unusual
    return FROM_ISO(text)


# Remembered models, by raw value. Bounded: a cache that fills up starts again (one dict per kind, so that many
# identities do not push the few features and environments out).
_LIMIT = 4096
_PROJECTS: dict[Any, Project] = {}
_ENVIRONMENTS: dict[Any, Environment] = {}
_FEATURES: dict[Any, Feature] = {}
_SEGMENTS: dict[Any, FeatureSegment] = {}
_IDENTITIES: dict[Any, Identity] = {}


def _remember(cache: dict[Any, T], key: Any, model: T) -> T:
    if len(cache) >= _LIMIT:
        cache.clear()
    cache[key] = model
    return model


def _id_object_key(value: Any) -> Any:
    """The key of a project or environment: its int id (CLASSIC) or (id, name) of a two-key object (MODERN)."""
    if type(value) is int:
        return value
    if type(value) is not dict or len(value) != 2:  # more keys: the careful path keeps them in extra
        raise _Unusual
    key = (value["id"], value["name"])
    if type(key[0]) is not int:
        raise _Unusual
    return key


def _project(value: Any, key: Any) -> Project:
    project = _PROJECTS.get(key)
    if project is None:
        project = _remember(_PROJECTS, key, Project(value) if type(value) is int else Project(key[0], key[1]))
    return project


def _environment(value: Any) -> Environment:
    key = _id_object_key(value)
    environment = _ENVIRONMENTS.get(key)
    if environment is None:
        built = Environment(value) if type(value) is int else Environment(key[0], key[1])
        environment = _remember(_ENVIRONMENTS, key, built)
    return environment


def _feature(value: Any) -> Feature:
    if type(value) is not dict or len(value) != 8:  # more keys: the careful path keeps them in Feature.extra
        raise _Unusual
    feature_id = value["id"]
    default_enabled = value["default_enabled"]
    initial_value = value["initial_value"]
    raw_project = value["project"]
    if type(feature_id) is not int or type(default_enabled) is not bool:
        raise _Unusual
    project_key = _id_object_key(raw_project)
    key = (
        feature_id,
        value["name"],
        project_key,
        value["created_date"],
        value["type"],
        initial_value,
        type(initial_value),
        default_enabled,
        value["description"],
    )
    feature = _FEATURES.get(key)
    if feature is None:
        feature = Feature(
            id=feature_id,
            name=key[1],
            project=_project(raw_project, project_key),
            created_date=_datetime(key[3]),
            type=key[4],
            initial_value=initial_value,
            default_enabled=default_enabled,
            description=key[8],
        )
        _remember(_FEATURES, key, feature)
    return feature


def _feature_segment(value: Any) -> FeatureSegment:
    if type(value) is int:
        key: Any = value
    else:
        if type(value) is not dict or len(value) != 2:
            raise _Unusual
        segment, priority = value["segment"], value["priority"]
        if type(segment) is not dict or len(segment) != 3:
            raise _Unusual
        key = (segment["id"], segment["name"], segment["description"], priority)
        if type(key[0]) is not int or (priority is not None and type(priority) is not int):
            raise _Unusual
    feature_segment = _SEGMENTS.get(key)
    if feature_segment is None:
        if type(value) is int:
            built = FeatureSegment(id=value)
        else:
            built = FeatureSegment(segment=Segment(key[0], key[1], key[2]), priority=key[3])
        feature_segment = _remember(_SEGMENTS, key, built)
    return feature_segment


def _identity(identity_id: Any, identifier: Any) -> Identity:
    kind = type(identity_id)
    if kind is not int and kind is not str:
        raise _Unusual
    key = (identity_id, identifier)
    identity = _IDENTITIES.get(key)
    if identity is None:
        identity = _remember(_IDENTITIES, key, Identity(identity_id, identifier))
    return identity


def _multivariate_value(value: Any) -> MultivariateValue:
    option = value["multivariate_feature_option"]
    if len(value) != 3 or len(option) != 2:  # more keys: the careful path keeps them in extra
        raise _Unusual
    return MultivariateValue(
        value["id"], MultivariateOption(option["id"], option["value"]), value["percentage_allocation"]
    )


def _state(value: Any) -> FeatureState:
    if type(value) is not dict:
        raise _Unusual
    # Seven keys always, "id" (CLASSIC) and "multivariate_feature_state_values" (MODERN) when sent; any other
    # key belongs in FeatureState.extra, which the careful path fills.
    keys = 7
    state_id = value.get("id", _ABSENT)
    if state_id is _ABSENT:
        state_id = None
    else:
        keys += 1
    values = value.get("multivariate_feature_state_values", _ABSENT)
    if values is _ABSENT:
        multivariate_values: tuple[MultivariateValue, ...] = ()
    elif type(values) is list:
        keys += 1
        multivariate_values = tuple([_multivariate_value(item) for item in values]) if values else ()
    else:
        raise _Unusual
    if len(value) != keys:
        raise _Unusual
    identity_id = value["identity"]
    identifier = value["identity_identifier"]
    if identity_id is None and identifier is None:
        identity = None
    elif identity_id is None or identifier is None:
        raise _Unusual
    else:
        identity = _identity(identity_id, identifier)
    raw_segment = value["feature_segment"]
    return FeatureState(
        feature=_feature(value["feature"]),
        environment=_environment(value["environment"]),
        enabled=value["enabled"],
        value=value["feature_state_value"],
        id=state_id,
        feature_segment=None if raw_segment is None else _feature_segment(raw_segment),
        identity=identity,
        multivariate_values=multivariate_values,
    )


def fast_flag_change(data: dict[str, Any]) -> FlagChange:
    """The ``data`` of a FLAG_UPDATED or FLAG_DELETED event; raises anything on an unusual shape."""
    raw_new = data["new_state"]
    raw_previous = data.get("previous_state")
    changed_by = data["changed_by"]
    stamp = data["timestamp"]
    # changed_by, new_state, timestamp, and previous_state when set: any other key (a null previous_state too) is
    # kept in FlagChange.extra by the careful path.
    if len(data) != (3 if raw_previous is None else 4):
        raise _Unusual
    if changed_by is None:
        changed_by = ""
    elif type(changed_by) is not str:
        raise _Unusual
    new = None if raw_new is None else _state(raw_new)
    previous = None if raw_previous is None else _state(raw_previous)
    timestamp = None if stamp == "" else _datetime(stamp)  # an aware datetime in UTC, as FlagChange wants
    if new is not None and previous is not None:
        return FlagChange(changed_by, new, previous, timestamp)  # which checks that both have one target
    if new is None and previous is None:
        raise _Unusual
    change = _new(FlagChange)
    _set(change, "changed_by", changed_by)
    _set(change, "new_state", new)
    _set(change, "previous_state", previous)
    _set(change, "timestamp", timestamp)
    _set(change, "extra", NO_EXTRA)
    return change

"""The fast path of decoding: FLAG_UPDATED and FLAG_DELETED data in the shapes Flagsmith sends, built with as
few calls as possible (decoding runs once per received event, and building the objects was most of its cost).

It is optimistic. It reads keys directly and lets the models validate the values; anything unusual (a missing
key, a wrong type, an object with keys that a model keeps in ``extra``, a datetime in another spelling) raises
some exception, and ``decode`` then starts again on its careful path, which either decodes the rarer shape or
says precisely what is wrong. So this path never decides that a payload is bad, and it must never accept one
that the careful path refuses, nor build a different event from it (tests compare the two paths).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ._events import FlagChange
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

__all__ = ["FROM_ISO", "ZULU", "fast_flag_change"]

# The shape Flagsmith writes (UTC, "Z"): checked strictly here, then parsed by the C parser, which alone would
# accept more spellings than the careful parser does.
ZULU = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z", re.ASCII).fullmatch
FROM_ISO = datetime.fromisoformat


class _Unusual(Exception):
    """Not a shape this path handles."""


def _datetime(text: str) -> datetime:
    if ZULU(text) is None:
        raise _Unusual
    return FROM_ISO(text)


def _project(value: Any) -> Project:
    if type(value) is int:
        return Project(value)
    if len(value) != 2:  # more keys: the careful path keeps them in Project.extra
        raise _Unusual
    return Project(value["id"], value["name"])


def _environment(value: Any) -> Environment:
    if type(value) is int:
        return Environment(value)
    if len(value) != 2:  # more keys: the careful path keeps them in Environment.extra
        raise _Unusual
    return Environment(value["id"], value["name"])


def _feature(value: dict[str, Any]) -> Feature:
    return Feature(
        id=value["id"],
        name=value["name"],
        project=_project(value["project"]),
        created_date=_datetime(value["created_date"]),
        type=value["type"],
        initial_value=value["initial_value"],
        default_enabled=value["default_enabled"],
        description=value["description"],
    )


def _feature_segment(value: Any) -> FeatureSegment:
    if type(value) is int:
        return FeatureSegment(id=value)
    if type(value) is not dict or len(value) != 2:
        raise _Unusual
    segment = value["segment"]
    if type(segment) is not dict or len(segment) != 3:
        raise _Unusual
    return FeatureSegment(
        segment=Segment(segment["id"], segment["name"], segment["description"]), priority=value["priority"]
    )


def _multivariate_value(value: dict[str, Any]) -> MultivariateValue:
    option = value["multivariate_feature_option"]
    return MultivariateValue(
        value["id"], MultivariateOption(option["id"], option["value"]), value["percentage_allocation"]
    )


_NONE: list[Any] = []


def _same_id_object(raw: Any, built_from: Any) -> bool:
    """``raw`` is the same environment (or project) as ``built_from``, which built a valid model: the same int, or
    an equal object whose id is an int (``{"id": True}`` equals ``{"id": 1}``)."""
    kind = type(raw)
    if kind is not type(built_from) or raw != built_from:
        return False
    return kind is int or (kind is dict and type(raw["id"]) is int)


def _same_feature_segment(raw: Any, built_from: Any) -> bool:
    """``raw`` is the same feature segment as ``built_from``, which built a valid model (ints and bools compare
    equal, so the types of the ints are checked too)."""
    kind = type(raw)
    if kind is not type(built_from) or raw != built_from:
        return False
    if kind is int:
        return True
    segment = raw["segment"]
    return type(raw["priority"]) is type(built_from["priority"]) and type(segment["id"]) is int


def _same_feature(raw: Any, built_from: Any) -> bool:
    """``raw`` is the same feature object as ``built_from`` (which built a valid Feature), so the Feature can be
    shared. Equal dicts may still differ where JSON numbers and booleans compare equal (``1 == 1.0 == True``):
    the types of the fields where that can happen must match too."""
    if raw != built_from:
        return False
    project = raw["project"]
    return (
        type(raw["id"]) is int
        and type(raw["default_enabled"]) is bool
        and type(raw["initial_value"]) is type(built_from["initial_value"])
        and (type(project) is int or (type(project) is dict and type(project["id"]) is int))
    )


class _Shared:
    """What the first state built that the second may reuse: raw values and the models built from them."""

    __slots__ = (
        "environment",
        "feature",
        "feature_segment",
        "identity",
        "raw_environment",
        "raw_feature",
        "raw_identity",
        "raw_segment",
    )
    feature: Feature
    environment: Environment
    identity: Identity
    feature_segment: FeatureSegment | None

    def __init__(self) -> None:
        self.raw_feature: Any = _NOTHING
        self.raw_environment: Any = _NOTHING
        self.raw_identity: Any = _NOTHING
        self.raw_segment: Any = _NOTHING


_NOTHING = object()


def _state(value: Any, shared: _Shared) -> FeatureState:
    """A state; ``shared`` lends the first state's models to the second where the raw values are the same."""
    raw_feature = value["feature"]
    if shared.raw_feature is not _NOTHING and _same_feature(raw_feature, shared.raw_feature):
        feature = shared.feature
    else:
        if type(raw_feature) is not dict:
            raise _Unusual
        feature = shared.feature = _feature(raw_feature)
        shared.raw_feature = raw_feature
    raw_environment = value["environment"]
    if _same_id_object(raw_environment, shared.raw_environment):
        environment = shared.environment
    else:
        environment = shared.environment = _environment(raw_environment)
        shared.raw_environment = raw_environment
    identity_id = value["identity"]
    identifier = value["identity_identifier"]
    if identity_id is None and identifier is None:
        identity = None
    elif identity_id is None or identifier is None:
        raise _Unusual
    elif (identity_id, identifier) == shared.raw_identity and type(identity_id) is type(shared.raw_identity[0]):
        identity = shared.identity
    else:
        identity = shared.identity = Identity(identity_id, identifier)
        shared.raw_identity = (identity_id, identifier)
    raw_segment = value["feature_segment"]
    if raw_segment is None:
        feature_segment = None
    elif _same_feature_segment(raw_segment, shared.raw_segment):
        feature_segment = shared.feature_segment
    else:
        feature_segment = shared.feature_segment = _feature_segment(raw_segment)
        shared.raw_segment = raw_segment
    values = value.get("multivariate_feature_state_values", _NONE)
    if type(values) is not list:
        raise _Unusual
    return FeatureState(
        feature=feature,
        environment=environment,
        enabled=value["enabled"],
        value=value["feature_state_value"],
        id=value.get("id"),
        feature_segment=feature_segment,
        identity=identity,
        multivariate_values=tuple([_multivariate_value(item) for item in values]) if values else (),
    )


def fast_flag_change(data: dict[str, Any]) -> FlagChange:
    """The ``data`` of a FLAG_UPDATED or FLAG_DELETED event; raises anything on an unusual shape."""
    raw_new = data["new_state"]
    raw_previous = data.get("previous_state")
    shared = _Shared()
    new = None if raw_new is None else _state(raw_new, shared)
    previous = None if raw_previous is None else _state(raw_previous, shared)
    changed_by = data["changed_by"]
    stamp = data["timestamp"]
    return FlagChange(
        "" if changed_by is None else changed_by,
        new,
        previous,
        None if stamp == "" else _datetime(stamp),
    )

"""Typed value objects for projects, features, feature states and audit-log entries.

Every class is a frozen, slotted attrs class. Validation happens at construction so that nothing downstream
(diffing, encoding, delivery) has to re-check a value: a bad value raises ``TypeError`` or ``ValueError``
whose message starts with ``Class.field``. The exception also carries the field's name in ``.field``, so
that the decoder can point a ``PayloadError`` at the offending key.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, TypeAlias

import attrs

__all__ = [
    "AuditLogEntry",
    "Author",
    "Environment",
    "Feature",
    "FeatureSegment",
    "FeatureState",
    "FlagValue",
    "Identity",
    "MultivariateOption",
    "MultivariateValue",
    "Project",
    "Segment",
]

FlagValue: TypeAlias = str | int | bool | None
"""A flag's value as Flagsmith stores it: a string, an integer, a boolean or nothing."""

_UTC = UTC


def _fail(exc_type: type[Exception], inst: Any, name: str, message: str) -> Exception:
    exc = exc_type(f"{type(inst).__name__}.{name} {message}")
    exc.field = name  # type: ignore[attr-defined]
    return exc


def clip(value: object) -> str:
    """``repr(value)``, cut to 60 characters, so that a huge bad value cannot flood an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(value: object) -> str:
    return f"{type(value).__name__} {clip(value)}"


# Validators. Each takes attrs' (instance, attribute, value) and raises with the field named.


def _id(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(TypeError, inst, attribute.name, f"must be an int id, got {_describe(value)}")


def _optional_id(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _id(inst, attribute, value)


def _optional_int(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _fail(TypeError, inst, attribute.name, f"must be an int or None, got {_describe(value)}")


def _str(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _fail(TypeError, inst, attribute.name, f"must be a str, got {_describe(value)}")


def _nonempty_str(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    _str(inst, attribute, value)
    if not value:
        raise _fail(ValueError, inst, attribute.name, "must not be empty")


def _optional_str(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _str(inst, attribute, value)


def _bool(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bool:
        raise _fail(TypeError, inst, attribute.name, f"must be a bool, got {_describe(value)}")


def _flag_value(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None or isinstance(value, str | int):  # bool is an int
        return
    if isinstance(value, float):
        raise _fail(
            TypeError,
            inst,
            attribute.name,
            f"must be a str, int, bool or None, got float {value!r}: Flagsmith has no float values, "
            f"pass a string such as {str(value)!r}",
        )
    raise _fail(TypeError, inst, attribute.name, f"must be a str, int, bool or None, got {_describe(value)}")


def _aware_datetime(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, datetime):
        raise _fail(TypeError, inst, attribute.name, f"must be a datetime, got {_describe(value)}")
    offset = value.utcoffset()
    if offset is None:
        raise _fail(
            ValueError,
            inst,
            attribute.name,
            f"must be timezone-aware, got naive {value.isoformat()} "
            "(pass tzinfo=datetime.timezone.utc or another zone)",
        )
    if offset:
        # Payloads render datetimes in UTC; one that has no UTC equivalent (year 1 at +01:00) cannot travel.
        try:
            value.astimezone(_UTC)
        except OverflowError:
            raise _fail(ValueError, inst, attribute.name, f"{value.isoformat()} is out of range in UTC") from None


def _instance_of(cls: type, *, optional: bool = False) -> Any:
    what = cls.__name__ + (" or None" if optional else "")

    def check(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, cls) and not (optional and value is None):
            raise _fail(TypeError, inst, attribute.name, f"must be a {what}, got {_describe(value)}")

    return check


def _percentage(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(TypeError, inst, attribute.name, f"must be an int or float, got {_describe(value)}")
    if not (0 <= value <= 100) or (isinstance(value, float) and not math.isfinite(value)):
        raise _fail(ValueError, inst, attribute.name, f"must be between 0 and 100, got {value!r}")


def _identity_id(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, str):
        if not value:
            raise _fail(ValueError, inst, attribute.name, "must not be empty")
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(TypeError, inst, attribute.name, f"must be an int or str id, got {_describe(value)}")


@attrs.frozen
class Project:
    """A Flagsmith project; ``organisation`` is its organisation's id, which routes organisation web hooks."""

    id: int = attrs.field(validator=_id)
    name: str | None = attrs.field(default=None, validator=_optional_str)
    organisation: int | None = attrs.field(default=None, validator=_optional_id)


@attrs.frozen
class Environment:
    """An environment of a project (Development, Production, ...)."""

    id: int = attrs.field(validator=_id)
    name: str | None = attrs.field(default=None, validator=_optional_str)


@attrs.frozen(kw_only=True)
class Feature:
    """A feature (flag or remote config) of a project.

    ``type`` is Flagsmith's feature type (``FLAG``, ``CONFIG``, ``STANDARD``, ``MULTIVARIATE``); any non-empty
    string is accepted. ``created_date`` must be timezone-aware.
    """

    id: int = attrs.field(validator=_id)
    name: str = attrs.field(validator=_nonempty_str)
    project: Project = attrs.field(validator=_instance_of(Project))
    created_date: datetime = attrs.field(validator=_aware_datetime)
    type: str = attrs.field(default="FLAG", validator=_nonempty_str)
    initial_value: FlagValue = attrs.field(default=None, validator=_flag_value)
    default_enabled: bool = attrs.field(default=False, validator=_bool)
    description: str | None = attrs.field(default=None, validator=_optional_str)


@attrs.frozen
class Segment:
    """A segment of identities, the target of segment overrides."""

    id: int = attrs.field(validator=_id)
    name: str = attrs.field(validator=_str)
    description: str | None = attrs.field(default=None, validator=_optional_str)


@attrs.frozen
class FeatureSegment:
    """The link between a feature and a segment that a segment override hangs on.

    ``id`` is the feature-segment's own id (what the classic payload carries); ``segment`` is the segment
    (what the modern payload carries). At least one of the two is required.
    """

    id: int | None = attrs.field(default=None, validator=_optional_id)
    segment: Segment | None = attrs.field(default=None, validator=_instance_of(Segment, optional=True))
    priority: int | None = attrs.field(default=None, validator=_optional_int)

    def __attrs_post_init__(self) -> None:
        if self.id is None and self.segment is None:
            raise _fail(ValueError, self, "id", "or FeatureSegment.segment is required (both are None)")


@attrs.frozen
class Identity:
    """An identity (a user of the flagged application). Edge identities have string ids."""

    id: int | str = attrs.field(validator=_identity_id)
    identifier: str = attrs.field(validator=_nonempty_str)


@attrs.frozen
class MultivariateOption:
    """One of a multivariate feature's possible values."""

    id: int = attrs.field(validator=_id)
    value: FlagValue = attrs.field(validator=_flag_value)


@attrs.frozen
class MultivariateValue:
    """The share of identities that get one option, in percent: 0 to 100, kept as given (``50``, ``30.0``)."""

    id: int = attrs.field(validator=_id)
    option: MultivariateOption = attrs.field(validator=_instance_of(MultivariateOption))
    percentage_allocation: float | int = attrs.field(validator=_percentage)


def _multivariate_values(inst: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not tuple:
        raise _fail(
            TypeError,
            inst,
            attribute.name,
            f"must be a tuple of MultivariateValue, got {_describe(value)}",
        )
    for index, item in enumerate(value):
        if not isinstance(item, MultivariateValue):
            raise _fail(
                TypeError,
                inst,
                attribute.name,
                f"[{index}] must be a MultivariateValue, got {_describe(item)}",
            )


@attrs.frozen(kw_only=True)
class FeatureState:
    """The state of one feature in one environment: the environment default, a segment override or an identity
    override (never both of the last two).

    ``value`` is Flagsmith's ``feature_state_value``; ``id`` is the feature state's database id when known.
    """

    # Validated in one pass in __attrs_post_init__: two states are built per event, and per-field validator
    # calls were a measurable share of the encoding benchmark.
    feature: Feature
    environment: Environment
    enabled: bool
    value: FlagValue = None
    id: int | None = None
    feature_segment: FeatureSegment | None = None
    identity: Identity | None = None
    multivariate_values: tuple[MultivariateValue, ...] = ()

    def __attrs_post_init__(self) -> None:
        fields = _STATE_FIELDS
        if type(self.feature) is not Feature:
            _instance_of(Feature)(self, fields.feature, self.feature)
        if type(self.environment) is not Environment:
            _instance_of(Environment)(self, fields.environment, self.environment)
        if type(self.enabled) is not bool:
            _bool(self, fields.enabled, self.enabled)
        value = self.value
        if value is not None and type(value) not in _PLAIN_VALUES:
            _flag_value(self, fields.value, value)
        if self.id is not None and type(self.id) is not int:
            _id(self, fields.id, self.id)
        fs, identity = self.feature_segment, self.identity
        if fs is not None:
            _instance_of(FeatureSegment)(self, fields.feature_segment, fs)
        if identity is not None:
            _instance_of(Identity)(self, fields.identity, identity)
            if fs is not None:
                raise _fail(
                    ValueError,
                    self,
                    "identity",
                    "and FeatureState.feature_segment are both set: a state is a segment override or "
                    "an identity override, never both",
                )
        values = self.multivariate_values
        if values or type(values) is not tuple:
            _multivariate_values(self, fields.multivariate_values, values)


_STATE_FIELDS = attrs.fields(FeatureState)
_PLAIN_VALUES = (str, int, bool)


@attrs.frozen
class Author:
    """The user who made an audited change."""

    id: int = attrs.field(validator=_id)
    email: str = attrs.field(validator=_str)
    first_name: str = attrs.field(default="", validator=_str)
    last_name: str = attrs.field(default="", validator=_str)


@attrs.frozen(kw_only=True)
class AuditLogEntry:
    """One entry of an organisation's audit log (the AUDIT_LOG_CREATED web hook)."""

    created_date: datetime = attrs.field(validator=_aware_datetime)
    log: str = attrs.field(validator=_str)
    related_object_type: str = attrs.field(validator=_str)
    author: Author | None = attrs.field(default=None, validator=_instance_of(Author, optional=True))
    project: Project | None = attrs.field(default=None, validator=_instance_of(Project, optional=True))
    environment: Environment | None = attrs.field(default=None, validator=_instance_of(Environment, optional=True))
    related_object_id: int | None = attrs.field(default=None, validator=_optional_id)
    id: int | None = attrs.field(default=None, validator=_optional_id)
    related_object_uuid: str | None = attrs.field(default=None, validator=_optional_str)
    is_system_event: bool = attrs.field(default=False, validator=_bool)

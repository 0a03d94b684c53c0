"""Typed value objects for projects, features, feature states and audit-log entries.

Every class is a frozen, slotted attrs class. Validation happens at construction so that nothing downstream
(diffing, encoding, delivery) has to re-check a value: a bad value raises ``TypeError`` or ``ValueError``
whose message starts with ``Class.field``. The exception also carries the field's name in ``.field``, so
that the decoder can point a ``PayloadError`` at the offending key.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

import attrs

from ._extra import NO_EXTRA, Extra, to_extra

__all__ = [
    "AuditLogEntry",
    "Author",
    "Environment",
    "Extra",
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


def _set_extra(inst: Any, owner: str, reserved: frozenset[str], optional: tuple[str, ...] = ()) -> None:
    """Freeze ``inst.extra`` and refuse keys the model writes itself: its fields, and an optional field's key
    unless the field is unset and the extra value is null (a key the sender sent as null, written back)."""
    try:
        extra = to_extra(inst.extra, owner, reserved)
        for name in optional:
            if name in extra and (getattr(inst, name) is not None or extra[name] is not None):
                raise ValueError(
                    f"{owner}.extra must not contain {name!r} (only as null, with {owner}.{name} None): "
                    f"set {owner}.{name} instead"
                )
    except (TypeError, ValueError) as exc:
        exc.field = "extra"  # type: ignore[union-attr]
        raise
    object.__setattr__(inst, "extra", extra)


@attrs.frozen
class Project:
    """A Flagsmith project; ``organisation`` is its organisation's id, which routes organisation web hooks.

    ``uuid`` is written only when set. ``extra`` holds the keys of a decoded project object that flaghooks does
    not model (Flagsmith's audit payload has many: ``hide_disabled_flags``, ``migration_status``, ...); encoding
    writes them back beside the modelled ones.
    """

    # Validated in one pass in __attrs_post_init__: decoding builds projects per event.
    id: int
    name: str | None = None
    organisation: int | None = None
    uuid: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        fields = _PROJECT_FIELDS
        if type(self.id) is not int:
            _id(self, fields.id, self.id)
        if self.name is not None and type(self.name) is not str:
            _optional_str(self, fields.name, self.name)
        if self.organisation is not None and type(self.organisation) is not int:
            _optional_id(self, fields.organisation, self.organisation)
        if self.uuid is not None and type(self.uuid) is not str:
            _optional_str(self, fields.uuid, self.uuid)
        if self.extra is not NO_EXTRA:
            _set_extra(self, "Project", _PROJECT_KEYS, ("uuid",))


_PROJECT_FIELDS = attrs.fields(Project)
_PROJECT_KEYS = frozenset({"id", "name", "organisation"})


@attrs.frozen
class Environment:
    """An environment of a project (Development, Production, ...).

    ``uuid`` and ``api_key`` (the environment's client-side key, which Flagsmith's audit payload carries) are
    written only when set; ``extra`` holds the keys of a decoded environment object that flaghooks does not model.
    """

    # Validated in one pass in __attrs_post_init__: decoding builds environments per state.
    id: int
    name: str | None = None
    uuid: str | None = attrs.field(default=None, kw_only=True)
    api_key: str | None = attrs.field(default=None, kw_only=True)
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        fields = _ENVIRONMENT_FIELDS
        if type(self.id) is not int:
            _id(self, fields.id, self.id)
        if self.name is not None and type(self.name) is not str:
            _optional_str(self, fields.name, self.name)
        if self.uuid is not None and type(self.uuid) is not str:
            _optional_str(self, fields.uuid, self.uuid)
        if self.api_key is not None and type(self.api_key) is not str:
            _optional_str(self, fields.api_key, self.api_key)
        if self.extra is not NO_EXTRA:
            _set_extra(self, "Environment", _ENVIRONMENT_KEYS, ("uuid", "api_key"))


_ENVIRONMENT_FIELDS = attrs.fields(Environment)
_ENVIRONMENT_KEYS = frozenset({"id", "name"})


@attrs.frozen(kw_only=True)
class Feature:
    """A feature (flag or remote config) of a project.

    ``type`` is Flagsmith's feature type: ``STANDARD`` or ``MULTIVARIATE`` today, ``FLAG`` and ``CONFIG`` in older
    versions; any string is accepted, ``""`` included (Flagsmith's column allows it). ``created_date`` must be
    timezone-aware. ``extra`` holds the keys of a decoded feature object that flaghooks does not model (MODERN
    writes them back).
    """

    # Validated in one pass in __attrs_post_init__: decoding builds a feature per event.
    id: int
    name: str
    project: Project
    created_date: datetime
    type: str = "FLAG"
    initial_value: FlagValue = None
    default_enabled: bool = False
    description: str | None = None
    extra: Mapping[str, Any] = NO_EXTRA

    def __attrs_post_init__(self) -> None:
        fields = _FEATURE_FIELDS
        if type(self.id) is not int:
            _id(self, fields.id, self.id)
        if type(self.name) is not str or not self.name:
            _nonempty_str(self, fields.name, self.name)
        if type(self.project) is not Project:
            _instance_of(Project)(self, fields.project, self.project)
        created = self.created_date
        if created.__class__ is not datetime or created.tzinfo is not _UTC:
            _aware_datetime(self, fields.created_date, created)
        if type(self.type) is not str:
            _str(self, fields.type, self.type)
        value = self.initial_value
        if value is not None and type(value) not in _PLAIN_VALUES:
            _flag_value(self, fields.initial_value, value)
        if type(self.default_enabled) is not bool:
            _bool(self, fields.default_enabled, self.default_enabled)
        if self.description is not None and type(self.description) is not str:
            _optional_str(self, fields.description, self.description)
        if self.extra is not NO_EXTRA:
            _set_extra(self, "Feature", FEATURE_KEYS)


_FEATURE_FIELDS = attrs.fields(Feature)
FEATURE_KEYS = frozenset(
    {"created_date", "default_enabled", "description", "id", "initial_value", "name", "project", "type"}
)
_PLAIN_VALUES = (str, int, bool)


@attrs.frozen
class Segment:
    """A segment of identities, the target of segment overrides. ``extra`` holds the keys of a decoded segment
    object that flaghooks does not model (MODERN writes them back)."""

    # Validated in one pass in __attrs_post_init__ (decoding builds one per segment override).
    id: int
    name: str
    description: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        fields = _SEGMENT_FIELDS
        if type(self.id) is not int:
            _id(self, fields.id, self.id)
        if type(self.name) is not str:
            _str(self, fields.name, self.name)
        if self.description is not None and type(self.description) is not str:
            _optional_str(self, fields.description, self.description)
        if self.extra is not NO_EXTRA:
            _set_extra(self, "Segment", SEGMENT_KEYS)


_SEGMENT_FIELDS = attrs.fields(Segment)
SEGMENT_KEYS = frozenset({"id", "name", "description"})


@attrs.frozen
class FeatureSegment:
    """The link between a feature and a segment that a segment override hangs on.

    ``id`` is the feature-segment's own id (what the classic payload carries); ``segment`` is the segment
    (what the modern payload carries). At least one of the two is required. ``extra`` holds the keys of a decoded
    feature-segment object that flaghooks does not model: MODERN writes them back, CLASSIC (an id) cannot.
    """

    # Validated in one pass in __attrs_post_init__ (decoding builds one per segment override).
    id: int | None = None
    segment: Segment | None = None
    priority: int | None = None
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        fields = _FEATURE_SEGMENT_FIELDS
        fs_id, segment, priority = self.id, self.segment, self.priority
        if fs_id is not None and type(fs_id) is not int:
            _optional_id(self, fields.id, fs_id)
        if segment is not None and type(segment) is not Segment:
            _instance_of(Segment, optional=True)(self, fields.segment, segment)
        if priority is not None and type(priority) is not int:
            _optional_int(self, fields.priority, priority)
        if fs_id is None and segment is None:
            raise _fail(ValueError, self, "id", "or FeatureSegment.segment is required (both are None)")
        if self.extra is not NO_EXTRA:
            _set_extra(self, "FeatureSegment", FEATURE_SEGMENT_KEYS)


_FEATURE_SEGMENT_FIELDS = attrs.fields(FeatureSegment)
FEATURE_SEGMENT_KEYS = frozenset({"id", "segment", "priority"})


@attrs.frozen
class Identity:
    """An identity (a user of the flagged application). Edge identities have string ids."""

    # Validated in one pass in __attrs_post_init__: decoding builds one per identity override.
    id: int | str
    identifier: str

    def __attrs_post_init__(self) -> None:
        kind = type(self.id)
        if (kind is not int and kind is not str) or (kind is str and not self.id):
            _identity_id(self, _IDENTITY_FIELDS.id, self.id)
        if type(self.identifier) is not str or not self.identifier:
            _nonempty_str(self, _IDENTITY_FIELDS.identifier, self.identifier)


_IDENTITY_FIELDS = attrs.fields(Identity)


@attrs.frozen
class MultivariateOption:
    """One of a multivariate feature's possible values. ``extra``: keys of a decoded option flaghooks does not
    model (MODERN writes them back)."""

    # Validated in one pass in __attrs_post_init__ (decoding builds one per multivariate value).
    id: int
    value: FlagValue
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if type(self.id) is not int:
            _id(self, _OPTION_FIELDS.id, self.id)
        if self.value is not None and type(self.value) not in _PLAIN_VALUES:
            _flag_value(self, _OPTION_FIELDS.value, self.value)
        if self.extra is not NO_EXTRA:
            _set_extra(self, "MultivariateOption", OPTION_KEYS)


_OPTION_FIELDS = attrs.fields(MultivariateOption)
OPTION_KEYS = frozenset({"id", "value"})


@attrs.frozen
class MultivariateValue:
    """The share of identities that get one option, in percent: 0 to 100, kept as given (``50``, ``30.0``).
    ``extra``: keys of a decoded value flaghooks does not model (MODERN writes them back)."""

    # Validated in one pass in __attrs_post_init__ (decoding builds several per state).
    id: int
    option: MultivariateOption
    percentage_allocation: float | int
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        fields = _MV_FIELDS
        if type(self.id) is not int:
            _id(self, fields.id, self.id)
        if type(self.option) is not MultivariateOption:
            _instance_of(MultivariateOption)(self, fields.option, self.option)
        share = self.percentage_allocation
        kind = type(share)
        if (kind is not int and kind is not float) or not 0 <= share <= 100:  # NaN fails the range too
            _percentage(self, fields.percentage_allocation, share)
        if self.extra is not NO_EXTRA:
            _set_extra(self, "MultivariateValue", MV_KEYS)


_MV_FIELDS = attrs.fields(MultivariateValue)
# The keys a multivariate value writes (the option travels as multivariate_feature_option).
MV_KEYS = frozenset({"id", "multivariate_feature_option", "percentage_allocation"})


# Float allocations such as 33.33 + 33.33 + 33.34 may sum to a hair over 100.
_TOTAL_SLACK = 1e-9


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
    total = sum(item.percentage_allocation for item in value)
    if total > 100 + _TOTAL_SLACK:
        raise _fail(
            ValueError,
            inst,
            attribute.name,
            f"allocate {total:g} % in total (percentage_allocation of each value), more than 100 %",
        )


@attrs.frozen(kw_only=True)
class FeatureState:
    """The state of one feature in one environment: the environment default, a segment override or an identity
    override (never both of the last two).

    ``value`` is Flagsmith's ``feature_state_value``; ``id`` is the feature state's database id when known.
    ``extra`` holds the keys of a decoded state object that flaghooks does not model (MODERN writes them back).
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
    extra: Mapping[str, Any] = NO_EXTRA

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
        if fs is not None and type(fs) is not FeatureSegment:
            _instance_of(FeatureSegment)(self, fields.feature_segment, fs)
        if identity is not None:
            if type(identity) is not Identity:
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
        if self.extra is not NO_EXTRA:
            _set_extra(self, "FeatureState", STATE_KEYS)


_STATE_FIELDS = attrs.fields(FeatureState)
# The keys a state writes in either format (the value travels as feature_state_value, ...).
STATE_KEYS = frozenset(
    {
        "enabled",
        "environment",
        "feature",
        "feature_segment",
        "feature_state_value",
        "id",
        "identity",
        "identity_identifier",
        "multivariate_feature_state_values",
    }
)


@attrs.frozen
class Author:
    """The user who made an audited change. ``uuid`` is written only when set; ``extra`` holds the keys of a
    decoded user object that flaghooks does not model (``last_login``, ...)."""

    id: int = attrs.field(validator=_id)
    email: str = attrs.field(validator=_str)
    first_name: str = attrs.field(default="", validator=_str)
    last_name: str = attrs.field(default="", validator=_str)
    uuid: str | None = attrs.field(default=None, kw_only=True, validator=_optional_str)
    extra: Mapping[str, Any] = attrs.field(default=NO_EXTRA, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.extra is not NO_EXTRA:
            _set_extra(self, "Author", _AUTHOR_KEYS, ("uuid",))


_AUTHOR_KEYS = frozenset({"id", "email", "first_name", "last_name"})


@attrs.frozen(kw_only=True)
class AuditLogEntry:
    """One entry of an organisation's audit log (the AUDIT_LOG_CREATED web hook).

    ``related_object_type`` may be ``None`` (Flagsmith sends ``null`` for entries about no particular object).
    ``extra`` holds the keys of a decoded entry that flaghooks does not model; encoding writes them back.
    """

    created_date: datetime = attrs.field(validator=_aware_datetime)
    log: str = attrs.field(validator=_str)
    related_object_type: str | None = attrs.field(validator=_optional_str)
    author: Author | None = attrs.field(default=None, validator=_instance_of(Author, optional=True))
    project: Project | None = attrs.field(default=None, validator=_instance_of(Project, optional=True))
    environment: Environment | None = attrs.field(default=None, validator=_instance_of(Environment, optional=True))
    related_object_id: int | None = attrs.field(default=None, validator=_optional_id)
    id: int | None = attrs.field(default=None, validator=_optional_id)
    related_object_uuid: str | None = attrs.field(default=None, validator=_optional_str)
    is_system_event: bool = attrs.field(default=False, validator=_bool)
    extra: Mapping[str, Any] = NO_EXTRA

    def __attrs_post_init__(self) -> None:
        if self.extra is not NO_EXTRA:
            _set_extra(self, "AuditLogEntry", _AUDIT_KEYS)


_AUDIT_KEYS = frozenset(field.name for field in attrs.fields(AuditLogEntry)) - {"extra"}

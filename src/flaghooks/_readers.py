"""The careful readers of decoding: cattrs structure hooks that accept both payload shapes field by field (an id or
an object for an environment, a project, a feature segment) and report every problem as a :class:`PayloadError`
whose path locates it in the document. ``decode`` uses them for everything its fast path does not take, and to
say what is wrong with a payload.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import cattrs

from ._decode_fast import FROM_ISO, ZULU
from ._events import _TYPE_NAME, CHANGE_KEYS, EventType, FlagChange
from ._extra import NO_EXTRA
from ._models import (
    FEATURE_KEYS,
    FEATURE_SEGMENT_KEYS,
    MV_KEYS,
    OPTION_KEYS,
    SEGMENT_KEYS,
    STATE_KEYS,
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    FlagValue,
    Identity,
    MultivariateOption,
    MultivariateValue,
    Project,
    Segment,
    clip,
)
from ._versions import (
    VERSION_FEATURE_KEYS,
    VERSION_KEYS,
    VERSION_PUBLISHER_KEYS,
    VERSION_STATE_KEYS,
    VersionFeature,
    VersionFeatureState,
    VersionPublished,
    VersionPublisher,
)
from .exceptions import PayloadError

__all__ = ["parse_datetime"]

_UTC = UTC
T = TypeVar("T")

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_datetime(text: str) -> datetime:
    """Parse ISO-8601 with ``Z`` or an offset and 0 to 6 fraction digits into an aware UTC datetime."""
    if ZULU(text) is not None:  # the spelling Flagsmith writes: the C parser, after a strict check
        try:
            return FROM_ISO(text)
        except ValueError:
            pass  # the careful parse below says what is wrong
    match = _DATETIME.fullmatch(text)
    if match is None:
        raise PayloadError(f"expected an ISO-8601 datetime such as '2020-03-07T13:59:07.040Z', got {clip(text)}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        if zulu:
            tz = _UTC
        else:
            offset = timedelta(hours=int(off_h), minutes=int(off_m))
            tz = timezone(-offset if sign == "-" else offset)
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")),
            tzinfo=tz,
        )
        return value if zulu else value.astimezone(_UTC)
    except (ValueError, OverflowError) as exc:
        raise PayloadError(f"invalid datetime {clip(text)}: {exc}") from None


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number with a fraction",
    bool: "a boolean",
    type(None): "null",
}


def _got(value: object) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    return f"{kind} ({clip(value)})" if value is not None else kind


def _object(value: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise PayloadError(f"expected an object, got {_got(value)}")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise PayloadError(f"expected an integer, got {_got(value)}")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise PayloadError(f"expected a string, got {_got(value)}")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise PayloadError(f"expected a boolean, got {_got(value)}")
    return value


def _datetime(value: Any) -> datetime:
    return parse_datetime(_str(value))


def _timestamp(value: Any) -> datetime | None:
    """``data.timestamp``: ``""`` when Flagsmith has no history record for the state (the time is unknown)."""
    return None if value == "" else _datetime(value)


def _extra(obj: dict[str, Any], modelled: frozenset[str], optional: tuple[str, ...] = ()) -> Any:
    """The keys of ``obj`` a model does not hold: not ``modelled``, and not an ``optional`` field that is set.
    (An optional field sent as null is kept here, so that encoding writes the null back.)"""
    extra = {key: value for key, value in obj.items() if key not in modelled and (key not in optional or value is None)}
    return extra if extra else NO_EXTRA


_PROJECT_KEYS = frozenset({"id", "name", "organisation"})
_ENVIRONMENT_KEYS = frozenset({"id", "name"})
_AUTHOR_KEYS = frozenset({"id", "email", "first_name", "last_name"})
_AUDIT_KEYS = frozenset(
    {
        "created_date",
        "log",
        "related_object_type",
        "author",
        "project",
        "environment",
        "related_object_id",
        "id",
        "related_object_uuid",
        "is_system_event",
    }
)


def _flag_value(value: Any) -> FlagValue:
    if value is None or type(value) in (str, int, bool):
        return value  # type: ignore[no-any-return]
    raise PayloadError(f"expected a string, integer, boolean or null, got {_got(value)}")


def _percentage(value: Any) -> float | int:
    if type(value) not in (int, float):
        raise PayloadError(f"expected a number, got {_got(value)}")
    return value  # type: ignore[no-any-return]


def _identity_id(value: Any) -> int | str:
    if type(value) not in (int, str):
        raise PayloadError(f"expected an integer or a string, got {_got(value)}")
    return value  # type: ignore[no-any-return]


def _optional(read: Callable[[Any], T]) -> Callable[[Any], T | None]:
    def read_optional(value: Any) -> T | None:
        return None if value is None else read(value)

    return read_optional


_MISSING: Any = object()


def _get(obj: dict[str, Any], key: str, read: Callable[[Any], T], default: Any = _MISSING) -> T:
    """Read ``obj[key]`` with ``read``; a problem is reported at ``key``."""
    try:
        value = obj[key]
    except KeyError:
        if default is _MISSING:
            raise PayloadError("required key is missing", key) from None
        return default  # type: ignore[no-any-return]
    try:
        return read(value)
    except PayloadError as exc:
        raise exc.within(key) from None


# Where a model field travels under another name, its errors point at the wire name.
_WIRE_NAMES = {
    "value": "feature_state_value",
    "option": "multivariate_feature_option",
    "multivariate_values": "multivariate_feature_state_values",
}


def _build(cls: Callable[..., T], **fields: Any) -> T:
    """Construct a model, turning its validation errors into a PayloadError at the offending field."""
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        field = getattr(exc, "field", "")
        raise PayloadError(str(exc), _WIRE_NAMES.get(field, field)) from None


def _array(value: Any, read: Callable[[Any], T]) -> tuple[T, ...]:
    if type(value) is not list:
        raise PayloadError(f"expected an array, got {_got(value)}")
    items = []
    for index, item in enumerate(value):
        try:
            items.append(read(item))
        except PayloadError as exc:
            raise exc.within(index) from None
    return tuple(items)


def _reader(conv: cattrs.Converter, cls: type[T]) -> Callable[[Any], T]:
    """A one-argument reader for ``cls`` that dispatches through ``conv``'s structure hook."""
    hook = conv.get_structure_hook(cls)
    return lambda value: hook(value, cls)


def _build_decoder() -> cattrs.Converter:
    conv = cattrs.Converter()

    def project(value: Any, _: type) -> Project:
        if type(value) is int:
            return Project(value)
        obj = _object(value)
        return _build(
            Project,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _optional(_str), None),
            organisation=_get(obj, "organisation", _optional(_int), None),
            uuid=_get(obj, "uuid", _optional(_str), None),
            extra=_extra(obj, _PROJECT_KEYS, ("uuid",)),
        )

    def environment(value: Any, _: type) -> Environment:
        if type(value) is int:
            return Environment(value)
        obj = _object(value)
        return _build(
            Environment,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _optional(_str), None),
            uuid=_get(obj, "uuid", _optional(_str), None),
            api_key=_get(obj, "api_key", _optional(_str), None),
            extra=_extra(obj, _ENVIRONMENT_KEYS, ("uuid", "api_key")),
        )

    def feature(value: Any, _: type) -> Feature:
        obj = _object(value)
        return _build(
            Feature,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _str),
            project=_get(obj, "project", read_project),
            created_date=_get(obj, "created_date", _datetime),
            type=_get(obj, "type", _str),
            initial_value=_get(obj, "initial_value", _flag_value),
            default_enabled=_get(obj, "default_enabled", _bool),
            description=_get(obj, "description", _optional(_str)),
            extra=_extra(obj, FEATURE_KEYS),
        )

    def segment(value: Any, _: type) -> Segment:
        obj = _object(value)
        return _build(
            Segment,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _str),
            description=_get(obj, "description", _optional(_str), None),
            extra=_extra(obj, SEGMENT_KEYS),
        )

    def feature_segment(value: Any, _: type) -> FeatureSegment:
        if type(value) is int:
            return FeatureSegment(id=value)
        obj = _object(value)
        fs_id = _get(obj, "id", _optional(_int), None)
        seg = _get(obj, "segment", _optional(read_segment), None)
        if fs_id is None and seg is None:
            raise PayloadError("a feature segment needs an 'id' or a 'segment'")
        return _build(
            FeatureSegment,
            id=fs_id,
            segment=seg,
            priority=_get(obj, "priority", _optional(_int), None),
            extra=_extra(obj, FEATURE_SEGMENT_KEYS),
        )

    def multivariate_option(value: Any, _: type) -> MultivariateOption:
        obj = _object(value)
        return _build(
            MultivariateOption,
            id=_get(obj, "id", _int),
            value=_get(obj, "value", _flag_value),
            extra=_extra(obj, OPTION_KEYS),
        )

    def multivariate_value(value: Any, _: type) -> MultivariateValue:
        obj = _object(value)
        return _build(
            MultivariateValue,
            id=_get(obj, "id", _int),
            option=_get(obj, "multivariate_feature_option", read_option),
            percentage_allocation=_get(obj, "percentage_allocation", _percentage),
            extra=_extra(obj, MV_KEYS),
        )

    def multivariate_values(value: Any) -> tuple[MultivariateValue, ...]:
        return _array(value, read_mv)

    def state(value: Any, _: type) -> FeatureState:
        obj = _object(value)
        identity_id = _get(obj, "identity", _optional(_identity_id))
        # Payloads of Flagsmith's 2019 documentation have no identity_identifier key: it reads as null.
        identifier = _get(obj, "identity_identifier", _optional(_str), None)
        if identity_id is None:
            if identifier is not None:
                raise PayloadError("identity_identifier is set but identity is null", "identity_identifier")
            identity = None
        elif identifier is None:
            raise PayloadError("identity is set but identity_identifier is null", "identity_identifier")
        else:
            identity = _build(Identity, id=identity_id, identifier=identifier)
        return _build(
            FeatureState,
            feature=_get(obj, "feature", read_feature),
            environment=_get(obj, "environment", read_environment),
            enabled=_get(obj, "enabled", _bool),
            value=_get(obj, "feature_state_value", _flag_value),
            id=_get(obj, "id", _optional(_int), None),
            feature_segment=_get(obj, "feature_segment", _optional(read_feature_segment)),
            identity=identity,
            multivariate_values=_get(obj, "multivariate_feature_state_values", _optional_mvs, ()),
            extra=_extra(obj, STATE_KEYS),
        )

    def author(value: Any, _: type) -> Author:
        obj = _object(value)
        return _build(
            Author,
            id=_get(obj, "id", _int),
            email=_get(obj, "email", _str),
            first_name=_get(obj, "first_name", _optional(_str), None) or "",
            last_name=_get(obj, "last_name", _optional(_str), None) or "",
            uuid=_get(obj, "uuid", _optional(_str), None),
            extra=_extra(obj, _AUTHOR_KEYS, ("uuid",)),
        )

    def audit(value: Any, _: type) -> AuditLogEntry:
        obj = _object(value)
        return _build(
            AuditLogEntry,
            created_date=_get(obj, "created_date", _datetime),
            log=_get(obj, "log", _str),
            related_object_type=_get(obj, "related_object_type", _optional(_str)),
            author=_get(obj, "author", _optional(read_author), None),
            project=_get(obj, "project", _optional(read_project), None),
            environment=_get(obj, "environment", _optional(read_environment), None),
            related_object_id=_get(obj, "related_object_id", _optional(_int), None),
            id=_get(obj, "id", _optional(_int), None),
            related_object_uuid=_get(obj, "related_object_uuid", _optional(_str), None),
            is_system_event=_get(obj, "is_system_event", _optional(_bool), None) or False,
            extra=_extra(obj, _AUDIT_KEYS),
        )

    def version_feature(value: Any) -> VersionFeature:
        obj = _object(value)
        return _build(
            VersionFeature,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _str),
            extra=_extra(obj, VERSION_FEATURE_KEYS),
        )

    def version_publisher(value: Any) -> VersionPublisher:
        obj = _object(value)
        return _build(
            VersionPublisher,
            id=_get(obj, "id", _int),
            email=_get(obj, "email", _str),
            extra=_extra(obj, VERSION_PUBLISHER_KEYS),
        )

    def version_state(value: Any) -> VersionFeatureState:
        obj = _object(value)
        return _build(
            VersionFeatureState,
            enabled=_get(obj, "enabled", _bool),
            value=_get(obj, "value", _flag_value),
            multivariate_values=_get(obj, "multivariate_feature_state_values", _optional_mvs, ()),
            extra=_extra(obj, VERSION_STATE_KEYS),
        )

    def version_states(value: Any) -> tuple[VersionFeatureState, ...]:
        return _array(value, version_state)

    def version_published(value: Any, _: type) -> VersionPublished:
        obj = _object(value)
        return _build(
            VersionPublished,
            uuid=_get(obj, "uuid", _str),
            feature=_get(obj, "feature", version_feature),
            published_by=_get(obj, "published_by", _optional(version_publisher), None),
            feature_states=_get(obj, "feature_states", version_states),
            extra=_extra(obj, VERSION_KEYS),
        )

    def flag_change(value: Any, _: type) -> FlagChange:
        obj = _object(value)
        new = _get(obj, "new_state", _optional(read_state))
        previous = _get(obj, "previous_state", _optional(read_state), None)
        return _build(
            FlagChange,
            changed_by=_get(obj, "changed_by", _optional(_str)) or "",
            new_state=new,
            previous_state=previous,
            timestamp=_get(obj, "timestamp", _timestamp),
            extra=_extra(obj, CHANGE_KEYS, ("previous_state",)),
        )

    for cls, hook in (
        (Project, project),
        (Environment, environment),
        (Feature, feature),
        (Segment, segment),
        (FeatureSegment, feature_segment),
        (MultivariateOption, multivariate_option),
        (MultivariateValue, multivariate_value),
        (FeatureState, state),
        (Author, author),
        (AuditLogEntry, audit),
        (FlagChange, flag_change),
        (VersionPublished, version_published),
    ):
        conv.register_structure_hook(cls, hook)

    read_project = _reader(conv, Project)
    read_environment = _reader(conv, Environment)
    read_feature = _reader(conv, Feature)
    read_segment = _reader(conv, Segment)
    read_feature_segment = _reader(conv, FeatureSegment)
    read_option = _reader(conv, MultivariateOption)
    read_mv = _reader(conv, MultivariateValue)
    read_state = _reader(conv, FeatureState)
    read_author = _reader(conv, Author)
    _optional_mvs = _optional(multivariate_values)
    return conv


_DECODER = _build_decoder()
_KINDS = {kind.value: kind for kind in EventType}
_FLAG_KINDS = (EventType.FLAG_UPDATED, EventType.FLAG_DELETED)


def _event_type(value: Any) -> EventType | str:
    text = _str(value)
    kind = _KINDS.get(text)
    if kind is not None:
        return kind
    if _TYPE_NAME.fullmatch(text) is None:
        raise PayloadError(
            f"an event type is 1 to 128 printable ASCII characters without spaces, got {clip(text)} "
            f"(known types: {', '.join(EventType)})"
        )
    return text  # a type flaghooks does not know: its data is kept as the raw object


def _check_agreement(kind: EventType, data: dict[str, Any]) -> None:
    """The event type and the states must agree; checked on the raw values, before anything is built."""
    new = data.get("new_state", _MISSING)
    previous = data.get("previous_state")
    if kind is EventType.FLAG_UPDATED and new is None:
        raise PayloadError("FLAG_UPDATED needs a new state (a removed state is sent as FLAG_DELETED)", "data.new_state")
    if kind is EventType.FLAG_DELETED:
        if new is not None and new is not _MISSING:
            raise PayloadError("FLAG_DELETED must have a null new_state", "data.new_state")
        if previous is None:
            raise PayloadError("FLAG_DELETED needs the previous_state that was deleted", "data.previous_state")


_READ_AUDIT = _reader(_DECODER, AuditLogEntry)
_READ_FLAG_CHANGE = _reader(_DECODER, FlagChange)
_READ_VERSION = _reader(_DECODER, VersionPublished)

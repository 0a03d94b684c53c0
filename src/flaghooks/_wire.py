"""The wire format: events to Flagsmith-compatible JSON bytes and back.

The cattrs converters built here and in ``_decode`` are the one place that knows the payload shapes. Encoding
builds a dict with the format's converter and serialises it exactly as Flagsmith does
(``json.dumps(obj, sort_keys=True)``). Decoding lives in ``_decode``.
"""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import cattrs

from ._events import EventType, FlagChange, WebhookEvent
from ._extra import NO_EXTRA, thaw
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureState,
    MultivariateValue,
    Project,
    Segment,
)
from ._versions import VersionFeatureState, VersionPublished
from .exceptions import PayloadError

__all__ = ["PayloadFormat", "encode", "format_datetime", "format_drf_datetime", "format_timestamp"]

_UTC = UTC


class PayloadFormat(enum.StrEnum):
    """The two payload shapes.

    ``CLASSIC`` is the shape in Flagsmith's documentation (environment, project and feature segment as ids);
    ``MODERN`` is what Flagsmith sends today (nested objects, multivariate values, no state id, and the keys of
    decoded objects that flaghooks does not model). NEW_VERSION_PUBLISHED and event types flaghooks does not
    know have one shape, written the same in both formats.
    """

    CLASSIC = "classic"
    MODERN = "modern"


# --- datetimes ------------------------------------------------------------------------------------------


def format_datetime(value: datetime) -> str:
    """``2020-02-25T22:11:16.355547Z``: UTC, always six fraction digits."""
    if value.tzinfo is not _UTC and value.utcoffset():
        value = value.astimezone(_UTC)
    # An aware datetime at offset zero ends in "+00:00"; slicing it off is cheaper than a naive copy.
    return value.isoformat(timespec="microseconds")[:-6] + "Z"


def format_drf_datetime(value: datetime) -> str:
    """``2024-06-01T12:00:00.987654Z``, or ``2024-06-01T12:00:00Z`` when the microseconds are zero: UTC, as
    Django REST framework renders ``created_date`` in Flagsmith's audit payload."""
    if value.tzinfo is not _UTC and value.utcoffset():
        value = value.astimezone(_UTC)
    return value.isoformat()[:-6] + "Z"


def format_timestamp(value: datetime) -> str:
    """``2020-03-07T13:59:07.040Z``: UTC, milliseconds truncated (not rounded), as ``data.timestamp`` has."""
    if value.tzinfo is not _UTC and value.utcoffset():
        value = value.astimezone(_UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


# --- encoding -------------------------------------------------------------------------------------------


def _with_extra(obj: dict[str, Any], uuid: str | None, extra: Any) -> dict[str, Any]:
    if uuid is not None:
        obj["uuid"] = uuid
    if extra is not NO_EXTRA:
        obj.update(thaw(extra))
    return obj


def _environment(environment: Environment) -> dict[str, Any]:
    """An environment object (MODERN): id and name, then what is set of uuid, api_key and extra."""
    obj = {"id": environment.id, "name": environment.name}
    if environment.api_key is not None:
        obj["api_key"] = environment.api_key
    return _with_extra(obj, environment.uuid, environment.extra)


def _project(project: Project, organisation: bool) -> dict[str, Any]:
    """A project object (MODERN): the organisation is written in an audit entry, not in a feature."""
    obj: dict[str, Any] = {"id": project.id, "name": project.name}
    if organisation:
        obj["organisation"] = project.organisation
    return _with_extra(obj, project.uuid, project.extra)


def _author(author: Author) -> dict[str, Any]:
    obj = {"email": author.email, "first_name": author.first_name, "id": author.id, "last_name": author.last_name}
    return _with_extra(obj, author.uuid, author.extra)


def _segment(segment: Segment) -> dict[str, Any]:
    obj = {"description": segment.description, "id": segment.id, "name": segment.name}
    return obj if segment.extra is NO_EXTRA else _with_extra(obj, None, segment.extra)


def _multivariate_value(value: MultivariateValue) -> dict[str, Any]:
    """A multivariate value object: written only by MODERN states and NEW_VERSION_PUBLISHED, so with its extra."""
    option = value.option
    option_obj = {"id": option.id, "value": option.value}
    if option.extra is not NO_EXTRA:
        option_obj.update(thaw(option.extra))
    obj = {
        "id": value.id,
        "multivariate_feature_option": option_obj,
        "percentage_allocation": value.percentage_allocation,
    }
    return obj if value.extra is NO_EXTRA else _with_extra(obj, None, value.extra)


def _version_state(fs: VersionFeatureState) -> dict[str, Any]:
    obj = {
        "enabled": fs.enabled,
        "multivariate_feature_state_values": [_multivariate_value(value) for value in fs.multivariate_values],
        "value": fs.value,
    }
    return obj if fs.extra is NO_EXTRA else _with_extra(obj, None, fs.extra)


def _version_published(version: VersionPublished) -> dict[str, Any]:
    """NEW_VERSION_PUBLISHED's data: one shape, the same in both formats, extra keys included (it has no seed
    shape to keep)."""
    publisher, feature = version.published_by, version.feature
    if publisher is None:
        publisher_obj = None
    else:
        publisher_obj = _with_extra({"email": publisher.email, "id": publisher.id}, None, publisher.extra)
    return _with_extra(
        {
            "feature": _with_extra({"id": feature.id, "name": feature.name}, None, feature.extra),
            "feature_states": [_version_state(fs) for fs in version.feature_states],
            "published_by": publisher_obj,
            "uuid": version.uuid,
        },
        None,
        version.extra,
    )


def _build_encoder(fmt: PayloadFormat) -> cattrs.Converter:
    conv = cattrs.Converter()
    classic = fmt is PayloadFormat.CLASSIC
    conv.register_unstructure_hook(datetime, format_datetime)
    conv.register_unstructure_hook(Segment, _segment)
    conv.register_unstructure_hook(MultivariateValue, _multivariate_value)

    # Hand-tuned: features are encoded twice per event. The project is reduced as the format wants.
    def unstructure_feature(feature: Feature) -> dict[str, Any]:
        project = feature.project
        if classic:
            project_obj: Any = project.id
        elif project.uuid is None and project.extra is NO_EXTRA:
            project_obj = {"id": project.id, "name": project.name}
        else:
            project_obj = _project(project, organisation=False)
        obj = {
            "created_date": format_datetime(feature.created_date),
            "default_enabled": feature.default_enabled,
            "description": feature.description,
            "id": feature.id,
            "initial_value": feature.initial_value,
            "name": feature.name,
            "project": project_obj,
            "type": feature.type,
        }
        if feature.extra is not NO_EXTRA and not classic:
            obj.update(thaw(feature.extra))
        return obj

    conv.register_unstructure_hook(Feature, unstructure_feature)

    def unstructure_audit(entry: AuditLogEntry) -> dict[str, Any]:
        author, project, environment = entry.author, entry.project, entry.environment
        if classic:
            # The seed shape: no uuids, no api_key, no extra keys, no id, related_object_uuid or is_system_event.
            return {
                "author": None
                if author is None
                else {
                    "email": author.email,
                    "first_name": author.first_name,
                    "id": author.id,
                    "last_name": author.last_name,
                },
                "created_date": format_datetime(entry.created_date),
                "environment": None if environment is None else {"id": environment.id, "name": environment.name},
                "log": entry.log,
                "project": None
                if project is None
                else {"id": project.id, "name": project.name, "organisation": project.organisation},
                "related_object_id": entry.related_object_id,
                "related_object_type": entry.related_object_type,
            }
        return _with_extra(
            {
                "author": None if author is None else _author(author),
                "created_date": format_drf_datetime(entry.created_date),
                "environment": None if environment is None else _environment(environment),
                "id": entry.id,
                "is_system_event": entry.is_system_event,
                "log": entry.log,
                "project": None if project is None else _project(project, organisation=True),
                "related_object_id": entry.related_object_id,
                "related_object_type": entry.related_object_type,
                "related_object_uuid": entry.related_object_uuid,
            },
            None,
            entry.extra,
        )

    conv.register_unstructure_hook(AuditLogEntry, unstructure_audit)

    # Hand-tuned: a state is encoded twice per event, the hot path of every delivery.
    def classic_state(state: FeatureState) -> dict[str, Any]:
        fs = state.feature_segment
        if fs is not None and fs.id is None:
            raise PayloadError(
                "the CLASSIC format carries a segment override as its feature-segment id, and "
                "FeatureSegment.id is None (set it, or use PayloadFormat.MODERN)",
                "feature_segment",
            )
        identity = state.identity
        return {
            "enabled": state.enabled,
            "environment": state.environment.id,
            "feature": unstructure_feature(state.feature),
            "feature_segment": None if fs is None else fs.id,
            "feature_state_value": state.value,
            "id": state.id,
            "identity": None if identity is None else identity.id,
            "identity_identifier": None if identity is None else identity.identifier,
        }

    def modern_state(state: FeatureState) -> dict[str, Any]:
        fs = state.feature_segment
        if fs is None:
            feature_segment = None
        elif fs.segment is None:
            raise PayloadError(
                "the MODERN format carries a segment override as its segment, and "
                "FeatureSegment.segment is None (set it, or use PayloadFormat.CLASSIC)",
                "feature_segment",
            )
        else:
            feature_segment = {"segment": _segment(fs.segment), "priority": fs.priority}
            if fs.extra is not NO_EXTRA:
                feature_segment.update(thaw(fs.extra))
        identity = state.identity
        environment = state.environment
        if environment.extra is NO_EXTRA and environment.uuid is None and environment.api_key is None:
            environment_obj = {"id": environment.id, "name": environment.name}
        else:
            environment_obj = _environment(environment)
        obj = {
            "enabled": state.enabled,
            "environment": environment_obj,
            "feature": unstructure_feature(state.feature),
            "feature_segment": feature_segment,
            "feature_state_value": state.value,
            "identity": None if identity is None else identity.id,
            "identity_identifier": None if identity is None else identity.identifier,
            "multivariate_feature_state_values": [_multivariate_value(value) for value in state.multivariate_values],
        }
        if state.extra is not NO_EXTRA:
            obj.update(thaw(state.extra))
        return obj

    state_hook = classic_state if classic else modern_state
    timestamp = format_timestamp if classic else format_datetime
    conv.register_unstructure_hook(FeatureState, state_hook)

    def flag_change(change: FlagChange) -> dict[str, Any]:
        new, previous, stamp = change.new_state, change.previous_state, change.timestamp
        try:
            data = {
                "changed_by": change.changed_by,
                "new_state": None if new is None else state_hook(new),
                # Flagsmith sends "" when it has no history record for the state; so do we.
                "timestamp": "" if stamp is None else timestamp(stamp),
            }
        except PayloadError as exc:
            raise exc.within("new_state") from None
        if previous is not None:
            try:
                data["previous_state"] = state_hook(previous)
            except PayloadError as exc:
                raise exc.within("previous_state") from None
        if change.extra is not NO_EXTRA and not classic:
            data.update(thaw(change.extra))
        return data

    conv.register_unstructure_hook(FlagChange, flag_change)

    conv.register_unstructure_hook(VersionPublished, _version_published)

    def event(event: WebhookEvent) -> dict[str, Any]:
        data, kind = event.data, event.event_type
        try:
            if type(data) is FlagChange:
                body: Any = flag_change(data)
            elif type(kind) is not EventType:
                body = data  # a type flaghooks does not know: the raw object, as received
            elif type(data) is AuditLogEntry:
                body = unstructure_audit(data)
            else:
                body = _version_published(data)  # type: ignore[arg-type]
        except PayloadError as exc:
            raise exc.within("data") from None
        obj = {"data": body, "event_type": kind.value if type(kind) is EventType else kind}
        if event.extra is not NO_EXTRA and not classic:
            obj.update(thaw(event.extra))
        return obj

    conv.register_unstructure_hook(WebhookEvent, event)
    return conv


_ENCODERS = {fmt: _build_encoder(fmt) for fmt in PayloadFormat}
# Bound once: encode() is called per event and per format.
_ENCODE_EVENT = {fmt: conv.get_unstructure_hook(WebhookEvent) for fmt, conv in _ENCODERS.items()}


# Exactly the bytes of json.dumps(obj, sort_keys=True), built without a new JSONEncoder per call and
# without the circular-reference check (the converter builds trees, never cycles).
_JSON = json.JSONEncoder(sort_keys=True, check_circular=False).encode


def encode(event: WebhookEvent, format: PayloadFormat = PayloadFormat.CLASSIC) -> bytes:
    """The exact bytes of ``event`` in ``format``: ``json.dumps(payload, sort_keys=True).encode()``.

    These are the bytes that are signed and sent. ``MODERN`` is what Flagsmith sends today: for any body
    Flagsmith sends, ``encode(decode(body), MODERN) == body``. ``CLASSIC`` is the documented seed shape and
    cannot express:

    - a segment override whose ``FeatureSegment`` has no ``id`` (raises :class:`PayloadError`);
    - multivariate values of a state (dropped), and the segment, its priority and names of the environment and
      of the feature's project (only ids travel);
    - an audit entry's ``id``, ``related_object_uuid`` and ``is_system_event``;
    - ``uuid``, ``api_key`` and ``extra`` keys of any object (of the event, a flag change, its states and their
      feature, project, environment, segment and multivariate values, or of an audit entry and the objects in it);
    - a ``data.timestamp`` below milliseconds (truncated).

    ``MODERN`` cannot express a segment override without a ``segment`` (raises :class:`PayloadError`), a state's
    ``id`` nor a ``FeatureSegment.id``. NEW_VERSION_PUBLISHED (its ``extra`` keys included) and event types
    flaghooks does not know are written the same in both formats. An unknown ``timestamp`` (``None``) is written
    as ``""``. Raises ``TypeError`` when ``event`` is not a :class:`WebhookEvent`.
    """
    try:
        unstructure = _ENCODE_EVENT[format]
    except KeyError:
        raise ValueError(f"format must be a PayloadFormat, got {format!r}") from None
    if type(event) is not WebhookEvent:
        raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
    return _JSON(unstructure(event)).encode()

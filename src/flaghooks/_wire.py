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
from cattrs.gen import make_dict_unstructure_fn, override

from ._events import FlagChange, WebhookEvent
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureState,
    MultivariateOption,
    MultivariateValue,
    Project,
    Segment,
)
from .exceptions import PayloadError

__all__ = ["PayloadFormat", "encode", "format_datetime", "format_timestamp"]

_UTC = UTC


class PayloadFormat(enum.StrEnum):
    """The two payload shapes.

    ``CLASSIC`` is the shape in Flagsmith's documentation (environment, project and feature segment as ids);
    ``MODERN`` is what Flagsmith sends today (nested objects, multivariate values, no state id).
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


def format_timestamp(value: datetime) -> str:
    """``2020-03-07T13:59:07.040Z``: UTC, milliseconds truncated (not rounded), as ``data.timestamp`` has."""
    if value.tzinfo is not _UTC and value.utcoffset():
        value = value.astimezone(_UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"


# --- encoding -------------------------------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _build_encoder(fmt: PayloadFormat) -> cattrs.Converter:
    conv = cattrs.Converter()
    classic = fmt is PayloadFormat.CLASSIC
    conv.register_unstructure_hook(datetime, format_datetime)
    plain = override(unstruct_hook=_identity)
    for cls in (Author, Segment, Environment, Project):
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv))
    conv.register_unstructure_hook(MultivariateOption, make_dict_unstructure_fn(MultivariateOption, conv, value=plain))
    conv.register_unstructure_hook(
        MultivariateValue,
        make_dict_unstructure_fn(
            MultivariateValue,
            conv,
            option=override(rename="multivariate_feature_option"),
            percentage_allocation=plain,
        ),
    )

    # Hand-tuned: features are encoded twice per event. The shape is the same as the generated hook's
    # (tests compare the two), with the project reduced as the format wants.
    def unstructure_feature(feature: Feature) -> dict[str, Any]:
        project = feature.project
        return {
            "created_date": format_datetime(feature.created_date),
            "default_enabled": feature.default_enabled,
            "description": feature.description,
            "id": feature.id,
            "initial_value": feature.initial_value,
            "name": feature.name,
            "project": project.id if classic else {"id": project.id, "name": project.name},
            "type": feature.type,
        }

    conv.register_unstructure_hook(Feature, unstructure_feature)
    conv.register_unstructure_hook(
        AuditLogEntry,
        make_dict_unstructure_fn(
            AuditLogEntry,
            conv,
            id=override(omit=classic),
            related_object_uuid=override(omit=classic),
            is_system_event=override(omit=classic),
        ),
    )
    unstructure_mv = conv.get_unstructure_hook(MultivariateValue)
    unstructure_segment = conv.get_unstructure_hook(Segment)

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
            feature_segment = {"segment": unstructure_segment(fs.segment), "priority": fs.priority}
        identity = state.identity
        environment = state.environment
        return {
            "enabled": state.enabled,
            "environment": {"id": environment.id, "name": environment.name},
            "feature": unstructure_feature(state.feature),
            "feature_segment": feature_segment,
            "feature_state_value": state.value,
            "identity": None if identity is None else identity.id,
            "identity_identifier": None if identity is None else identity.identifier,
            "multivariate_feature_state_values": [unstructure_mv(value) for value in state.multivariate_values],
        }

    state_hook = classic_state if classic else modern_state
    timestamp = format_timestamp if classic else format_datetime
    conv.register_unstructure_hook(FeatureState, state_hook)

    def flag_change(change: FlagChange) -> dict[str, Any]:
        new, previous = change.new_state, change.previous_state
        try:
            data = {
                "changed_by": change.changed_by,
                "new_state": None if new is None else state_hook(new),
                "timestamp": timestamp(change.timestamp),
            }
        except PayloadError as exc:
            raise exc.within("new_state") from None
        if previous is not None:
            try:
                data["previous_state"] = state_hook(previous)
            except PayloadError as exc:
                raise exc.within("previous_state") from None
        return data

    conv.register_unstructure_hook(FlagChange, flag_change)
    unstructure_audit = conv.get_unstructure_hook(AuditLogEntry)

    def event(event: WebhookEvent) -> dict[str, Any]:
        data = event.data
        try:
            body = flag_change(data) if type(data) is FlagChange else unstructure_audit(data)
        except PayloadError as exc:
            raise exc.within("data") from None
        return {"data": body, "event_type": event.event_type.value}

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

    These are the bytes that are signed and sent. Raises :class:`PayloadError` when the format cannot express
    the event (a CLASSIC segment override whose ``FeatureSegment`` has no ``id``; a MODERN one with no
    ``segment``), and ``TypeError`` when ``event`` is not a :class:`WebhookEvent`.
    """
    try:
        unstructure = _ENCODE_EVENT[format]
    except KeyError:
        raise ValueError(f"format must be a PayloadFormat, got {format!r}") from None
    if type(event) is not WebhookEvent:
        raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
    return _JSON(unstructure(event)).encode()

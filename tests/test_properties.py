"""Properties of the wire format: round trips, and a decoder that only ever raises PayloadError."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cases import VARIANTS, flagsmith_corpus, vector_bytes
from flaghooks import (
    AuditLogEntry,
    Author,
    Environment,
    FeatureSegment,
    FeatureState,
    FlagChange,
    PayloadError,
    PayloadFormat,
    Project,
    WebhookEvent,
    decode,
    encode,
)
from flaghooks._decode import _decode_carefully
from strategies import events
from strategies import json_values as finite_json_values

SEEDS = (
    [vector_bytes("flag_updated.classic.json"), vector_bytes("audit_log_created.classic.json")]
    + [encode(build(), fmt) for build in VARIANTS.values() for fmt in PayloadFormat]
    + [body for _, body in flagsmith_corpus()]
)


def _truncate_to_ms(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _carried_state(state: FeatureState | None, fmt: PayloadFormat) -> FeatureState | None:
    """What a format carries of a state."""
    if state is None:
        return None
    feature = state.feature
    fs = state.feature_segment
    if fmt is PayloadFormat.CLASSIC:  # ids for the environment, project and segment; no extra keys anywhere
        return attrs.evolve(
            state,
            feature=attrs.evolve(feature, project=Project(feature.project.id), extra={}),
            environment=Environment(state.environment.id),
            feature_segment=None if fs is None else FeatureSegment(id=fs.id),
            multivariate_values=(),
            extra={},
        )
    return attrs.evolve(
        state,
        id=None,
        feature=attrs.evolve(feature, project=attrs.evolve(feature.project, organisation=None)),
        feature_segment=None if fs is None else attrs.evolve(fs, id=None),
    )


def carried(event: WebhookEvent, fmt: PayloadFormat, event_id: str) -> WebhookEvent:
    """``event`` reduced to what ``fmt`` carries (the expected result of a round trip)."""
    if fmt is PayloadFormat.CLASSIC:  # the seed envelope: event_type and data only
        event = attrs.evolve(event, extra={})
    data = event.data
    if isinstance(data, AuditLogEntry):
        if fmt is PayloadFormat.CLASSIC:
            author, project, environment = data.author, data.project, data.environment
            data = attrs.evolve(
                data,
                id=None,
                related_object_uuid=None,
                is_system_event=False,
                extra={},
                author=None if author is None else Author(author.id, author.email, author.first_name, author.last_name),
                project=None if project is None else Project(project.id, project.name, project.organisation),
                environment=None if environment is None else Environment(environment.id, environment.name),
            )
        return attrs.evolve(event, id=event_id, data=data)
    if not isinstance(data, FlagChange):  # NEW_VERSION_PUBLISHED, unknown types: one shape, carried whole
        return attrs.evolve(event, id=event_id)
    timestamp = data.timestamp
    if timestamp is not None and fmt is PayloadFormat.CLASSIC:
        timestamp = _truncate_to_ms(timestamp)
    return attrs.evolve(
        event,
        id=event_id,
        data=FlagChange(
            data.changed_by,
            _carried_state(data.new_state, fmt),
            _carried_state(data.previous_state, fmt),
            timestamp,
            extra=data.extra if fmt is PayloadFormat.MODERN else {},
        ),
    )


@settings(max_examples=400)
@given(events, st.sampled_from(list(PayloadFormat)))
def test_round_trip(event: WebhookEvent, fmt: PayloadFormat) -> None:
    """For events of every type (flag changes, with unknown timestamps too, audit entries, NEW_VERSION_PUBLISHED,
    unknown types), with uuids and extra keys on every model that keeps them: decode(encode(e, f)) equals e up to
    what format f carries (MODERN carries the extra keys, CLASSIC none), and encode(decode(encode(e, f)), f) ==
    encode(e, f)."""
    body = encode(event, fmt)
    decoded = decode(body, event_id=event.id)
    assert decoded == carried(event, fmt, event.id)
    assert encode(decoded, fmt) == body


@settings(max_examples=300)
@given(events, st.sampled_from(list(PayloadFormat)))
def test_fast_and_careful_paths_agree(event: WebhookEvent, fmt: PayloadFormat) -> None:
    """decode's fast path builds exactly the event its careful path builds."""
    body = encode(event, fmt)
    assert decode(body, event_id="evt_x") == _decode_carefully(json.loads(body), "evt_x")


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes(body: bytes) -> None:
    """Arbitrary bytes decode or raise PayloadError, nothing else."""
    with contextlib.suppress(PayloadError):
        decode(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500)
@given(json_values)
def test_arbitrary_json(document: Any) -> None:
    """Arbitrary JSON decodes or raises PayloadError, nothing else."""
    with contextlib.suppress(PayloadError):
        decode(json.dumps(document).encode())


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["data", "event_type", "x"]), json_values, max_size=3))
def test_arbitrary_envelopes(document: Any) -> None:
    """Envelopes with arbitrary data decode or raise PayloadError, nothing else."""
    for event_type in ("FLAG_UPDATED", "FLAG_DELETED", "AUDIT_LOG_CREATED", "NEW_VERSION_PUBLISHED", "SOMETHING_NEW"):
        document["event_type"] = event_type
        with contextlib.suppress(PayloadError):
            decode(json.dumps(document).encode())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    if value is _REMOVE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_REMOVE = object()


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_valid_payloads_mutated(data: st.DataObject) -> None:
    """A valid payload with a key removed or a value swapped for another JSON type decodes or raises
    PayloadError (with a path), nothing else."""
    document = json.loads(data.draw(st.sampled_from(SEEDS)))
    path = data.draw(st.sampled_from(_paths(document)))
    replacement = data.draw(st.just(_REMOVE) | json_values)
    if replacement is _REMOVE and isinstance(path[-1], int):
        replacement = None
    _replace(document, path, replacement)
    body = json.dumps(document).encode()
    decoded: WebhookEvent | PayloadError
    try:
        decoded = decode(body, event_id="evt_x")
    except PayloadError as error:
        decoded = error
    careful: WebhookEvent | None
    try:
        careful = _decode_carefully(json.loads(body), "evt_x")
    except PayloadError:
        careful = None
    if isinstance(decoded, PayloadError):
        assert isinstance(decoded.path, str)
        # The fast path never refuses what the careful path accepts (it falls back to it) ...
        assert careful is None
    else:
        # ... and never accepts what the careful path refuses, nor builds anything else.
        assert decoded == careful


def _objects(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every JSON object in ``node``, ``node`` itself included."""
    found = [prefix] if isinstance(node, dict) else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in children:
        found += _objects(value, (*prefix, key))
    return found


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.data())
def test_a_new_key_anywhere_is_kept(event: WebhookEvent, data: st.DataObject) -> None:
    """A key flaghooks does not know, added to any object of a MODERN body (the envelope and ``data`` included), is
    kept: both decode paths build the same event, and MODERN writes the body back byte for byte."""
    document = json.loads(encode(event, PayloadFormat.MODERN))
    path = data.draw(st.sampled_from(_objects(document)))
    target = document
    for key in path:
        target = target[key]
    target["zz_" + data.draw(st.text(max_size=4))] = data.draw(finite_json_values)
    body = json.dumps(document, sort_keys=True).encode()
    decoded = decode(body, event_id="evt_x")
    assert decoded == _decode_carefully(json.loads(body), "evt_x")
    assert encode(decoded, PayloadFormat.MODERN) == body

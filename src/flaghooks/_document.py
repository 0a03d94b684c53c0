"""Flagsmith's environment document, read into flaghooks' models.

The environment document is the JSON that Flagsmith's server-side SDKs fetch from
``GET /api/v1/environment-document/`` to evaluate flags locally: the environment's defaults (``feature_states``),
its identity overrides (``identity_overrides``) and its project's segments with their overrides
(``project.segments[].feature_states``). :func:`parse_environment_document` turns it into
:class:`EnvironmentDocument`, the states a :class:`~flaghooks.cache.FlagCache` loads.

Liberal in what the document may contain (keys flaghooks does not model are kept in the ``extra`` of the model
of their object, or ignored where no model holds them), strict on what a state needs (ids, names, booleans):
anything else is a :class:`PayloadError` whose ``path`` locates the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs

from ._extra import NO_EXTRA, Extra
from ._models import (
    FEATURE_KEYS,
    FEATURE_SEGMENT_KEYS,
    MV_KEYS,
    OPTION_KEYS,
    SEGMENT_KEYS,
    STATE_KEYS,
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
from ._readers import _bool, _build, _flag_value, _got, _int, _optional, _percentage, _str, parse_datetime
from .exceptions import PayloadError

__all__ = ["UNKNOWN_CREATED_DATE", "EnvironmentDocument", "parse_environment_document"]

T = TypeVar("T")

UNKNOWN_CREATED_DATE = datetime(1970, 1, 1, tzinfo=UTC)
"""The ``created_date`` of a :class:`Feature` read from an environment document, which carries none: the Unix
epoch, meaning "unknown" (a document that does carry a feature's ``created_date`` gives that instead)."""


def _states_repr(states: tuple[FeatureState, ...]) -> str:
    return f"<{len(states)} states>"


@attrs.frozen
class EnvironmentDocument:
    """An environment document, read: the environment, when the document was last updated, and every state in it.

    ``states`` holds the environment defaults (``identity`` and ``feature_segment`` None), then the segment
    overrides (``feature_segment.segment`` is the segment, with its id and name, and ``feature_segment.priority``
    the override's priority; the document carries no feature-segment id, so ``feature_segment.id`` is None), then
    the identity overrides (``identity.identifier`` set). Every state shares one :class:`Environment` (its id,
    name and client-side ``api_key``).

    The document is a snapshot without per-state times: a state's ``id`` is None (the document's ``django_id`` is
    the multivariate hashing seed, not necessarily the state's id; it is kept in ``extra`` with
    ``featurestate_uuid``), and each feature's ``created_date`` is :data:`UNKNOWN_CREATED_DATE`. Segment rules and
    identity traits are not kept: a flag cache does not evaluate them.
    """

    environment: Environment
    updated_at: datetime | None
    states: tuple[FeatureState, ...] = attrs.field(repr=_states_repr)


# The keys a document's objects carry that the readers below turn into model fields (or drop on purpose); every
# other key goes to the model's extra, minus the keys a model reserves for its own fields.
_DOC_STATE_KEYS = frozenset(
    {"feature", "enabled", "feature_state_value", "multivariate_feature_state_values", "feature_segment"}
)
_DOC_FEATURE_KEYS = frozenset({"id", "name", "type", "created_date", "description"})
_PLAIN_FEATURE_KEYS = frozenset({"id", "name", "type"})
_DOC_SEGMENT_KEYS = frozenset({"id", "name", "description", "rules", "feature_states"})


_MISSING: Any = object()


def _get(obj: Mapping[str, Any], key: str, read: Callable[[Any], T], default: Any = _MISSING) -> T:
    """Read ``obj[key]`` with ``read``; a problem is reported at ``key``."""
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise PayloadError("required key is missing", key)
        return default  # type: ignore[no-any-return]
    try:
        return read(value)
    except PayloadError as exc:
        raise exc.within(key) from None


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(f"expected an object, got {_got(value)}")
    return value


def _array(value: Any, read: Callable[[Any], T]) -> list[T]:
    if not isinstance(value, list | tuple):
        raise PayloadError(f"expected an array, got {_got(value)}")
    items = []
    for index, item in enumerate(value):
        try:
            items.append(read(item))
        except PayloadError as exc:
            raise exc.within(index) from None
    return items


def _array_of(read: Callable[[Any], T]) -> Callable[[Any], list[T]]:
    """A reader of an optional array (null or missing reads as empty)."""

    def read_array(value: Any) -> list[T]:
        return [] if value is None else _array(value, read)

    return read_array


def _extra(obj: Mapping[str, Any], read: frozenset[str], reserved: frozenset[str]) -> Extra:
    """The keys of ``obj`` that nothing reads and that the model does not reserve for a field, frozen; a value
    that cannot be kept (infinity, nesting deeper than extra allows) is reported at its key."""
    extra = {key: value for key, value in obj.items() if key not in read and key not in reserved}
    if not extra:
        return NO_EXTRA
    try:
        return Extra(extra)
    except (TypeError, ValueError):
        for key, value in extra.items():
            try:
                Extra({key: value})
            except (TypeError, ValueError) as exc:
                raise PayloadError(f"cannot be kept: {exc}", key) from None
        raise  # pragma: no cover - a mapping fails only through one of its keys


def _nonempty(value: Any) -> str:
    text = _str(value)
    if not text:
        raise PayloadError("expected a non-empty string, got an empty string")
    return text


def _updated_at(value: Any) -> datetime | None:
    """``updated_at``: ISO-8601; without an offset it is UTC (as Flagsmith's SDK reads it)."""
    if value is None:
        return None
    text = _str(value)
    try:
        return parse_datetime(text)
    except PayloadError:
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except ValueError:
            raise PayloadError(
                f"expected an ISO-8601 datetime such as '2024-06-01T12:00:00.000Z', got {_got(text)}"
            ) from None
        except OverflowError:  # an offset that moves the time out of the years 1 to 9999 in UTC
            raise PayloadError(f"{_got(text)} is out of the range of datetimes in UTC") from None


def _organisation(value: Any) -> int | None:
    """``project.organisation``: an object with an ``id`` in the document, an id elsewhere."""
    if value is None or type(value) is int:
        return value
    return _get(_mapping(value), "id", _int)


def _project(value: Any) -> Project:
    obj = _mapping(value)
    return _build(
        Project,
        id=_get(obj, "id", _int),
        name=_get(obj, "name", _optional(_str), None),
        organisation=_get(obj, "organisation", _organisation, None),
    )


class _Reader:
    """Reads one document; shares one Feature per feature across the states that name it alike."""

    def __init__(self, environment: Environment, project: Project) -> None:
        self.environment = environment
        self.project = project
        # Features seen, by their objects' (id, name, type) when that is all the object holds (as in Flagsmith's
        # documents): a feature named again is found without reading its object again.
        self.features: dict[tuple[Any, Any, Any], Feature] = {}

    def feature(self, value: Any) -> Feature:
        plain = type(value) is dict and value.keys() <= _PLAIN_FEATURE_KEYS
        if plain and type(value.get("id")) is int:
            try:
                found = self.features.get((value["id"], value.get("name"), value.get("type")))
            except TypeError:  # an unhashable name or type: read below, which says what is wrong
                found = None
            if found is not None:
                return found
        obj = _mapping(value)
        feature = _build(
            Feature,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _nonempty),
            project=self.project,
            created_date=_get(obj, "created_date", _optional(_updated_at), None) or UNKNOWN_CREATED_DATE,
            type=_get(obj, "type", _optional(_str), None) or "STANDARD",
            description=_get(obj, "description", _optional(_str), None),
            extra=_extra(obj, _DOC_FEATURE_KEYS, FEATURE_KEYS),
        )
        if plain:
            self.features[(value["id"], value["name"], value.get("type"))] = feature
        return feature

    def state(
        self, obj: Mapping[str, Any], feature_segment: FeatureSegment | None = None, identity: Identity | None = None
    ) -> FeatureState:
        return _build(
            FeatureState,
            feature=_get(obj, "feature", self.feature),
            environment=self.environment,
            enabled=_get(obj, "enabled", _bool),
            value=_get(obj, "feature_state_value", _flag_value, None),
            feature_segment=feature_segment,
            identity=identity,
            multivariate_values=tuple(_get(obj, "multivariate_feature_state_values", _array_of(_mv_value), [])),
            extra=_extra(obj, _DOC_STATE_KEYS, STATE_KEYS),
        )

    def default(self, value: Any) -> FeatureState:
        # An environment default's feature_segment is null; a value there is ignored (it is not a segment's).
        return self.state(_mapping(value))

    def segment(self, value: Any) -> tuple[int, list[FeatureState]]:
        obj = _mapping(value)
        segment = _build(
            Segment,
            id=_get(obj, "id", _int),
            name=_get(obj, "name", _str),
            description=_get(obj, "description", _optional(_str), None),
            extra=_extra(obj, _DOC_SEGMENT_KEYS, SEGMENT_KEYS),
        )

        def override(item: Any) -> FeatureState:
            state = _mapping(item)
            link = _get(state, "feature_segment", _optional(_mapping), None) or {}
            try:
                feature_segment = _build(
                    FeatureSegment,
                    segment=segment,
                    priority=_get(link, "priority", _optional(_int), None),
                    extra=_extra(link, frozenset(), FEATURE_SEGMENT_KEYS),
                )
            except PayloadError as exc:
                raise exc.within("feature_segment") from None
            return self.state(state, feature_segment=feature_segment)

        owner = f"segment {segment.id}"
        return segment.id, _get(obj, "feature_states", lambda items: _unique(_array_of(override)(items), owner), [])

    def identity_override(self, value: Any) -> tuple[str, list[FeatureState]]:
        obj = _mapping(value)
        identifier = _get(obj, "identifier", _nonempty)
        # Identity.id: Flagsmith's database id when the document has it, else the edge identity's uuid.
        django_id = obj.get("django_id")
        uuid = obj.get("identity_uuid")
        identity_id: int | str = (
            django_id if type(django_id) is int else uuid if type(uuid) is str and uuid else identifier
        )
        identity = Identity(identity_id, identifier)

        def override(item: Any) -> FeatureState:
            return self.state(_mapping(item), identity=identity)

        owner = f"identity {identifier!r}"
        return identifier, _get(obj, "identity_features", lambda items: _unique(_array_of(override)(items), owner), [])


def _unique(states: list[FeatureState], owner: str) -> list[FeatureState]:
    """``states`` of one target kind (defaults, one segment's, one identity's): one per feature, else an error
    (two states for one target leave the document's meaning undefined)."""
    seen: dict[int, int] = {}
    for index, state in enumerate(states):
        first = seen.setdefault(state.feature.id, index)
        if first != index:
            raise PayloadError(
                f"{owner} has two states of feature {state.feature.id} (at [{first}] and [{index}])"
            ).within(index)
    return states


def _groups(groups: list[tuple[T, list[FeatureState]]], what: str) -> list[FeatureState]:
    """The states of ``groups`` (one per segment, one per identity), each group's key appearing once."""
    seen: dict[Any, int] = {}
    states: list[FeatureState] = []
    for index, (key, group) in enumerate(groups):
        first = seen.setdefault(key, index)
        if first != index:
            raise PayloadError(f"{what} {key!r} appears twice (at [{first}] and [{index}])").within(index)
        states.extend(group)
    return states


def parse_environment_document(document: Mapping[str, Any]) -> EnvironmentDocument:
    """Read Flagsmith's environment document (the parsed JSON of ``GET /api/v1/environment-document/``).

    The document is the shape Flagsmith's SDK types as ``flagsmith.api.types.EnvironmentModel``, with the
    environment's ``id`` and ``updated_at`` that Flagsmith's API writes beside it. Required: ``id``,
    ``feature_states`` and ``project.id``; each state's ``feature`` (``id``, ``name``) and ``enabled``; each
    multivariate value's ``id``, ``percentage_allocation`` and ``multivariate_feature_option`` (``id``,
    ``value``); each segment's ``id`` and ``name``; each identity override's ``identifier``. Everything else is
    optional (``identity_overrides`` and ``project.segments`` default to none, ``updated_at`` to unknown).

    Segment overrides are keyed by their segment's id: the document has no feature-segment ids, which are all a
    CLASSIC web hook payload carries, so a cache converges with MODERN payloads (which carry the segment).

    Raises :class:`PayloadError` (``path`` locating the problem, such as
    ``"project.segments[0].feature_states[1].enabled"``) for a document that is not one, and for one that gives a
    target two states (a feature twice among the defaults, in one segment or for one identity; an identifier or a
    segment id twice). Example::

        >>> doc = parse_environment_document({
        ...     "id": 1, "api_key": "env-key", "name": "Production", "updated_at": "2024-06-01T12:00:00Z",
        ...     "project": {"id": 7, "name": "Shop", "organisation": {"id": 3, "name": "Acme"}, "segments": []},
        ...     "feature_states": [{"feature": {"id": 12, "name": "banner", "type": "STANDARD"},
        ...                         "enabled": True, "feature_state_value": "blue"}],
        ... })
        >>> doc.states[0].feature.name, doc.states[0].value, doc.updated_at.isoformat()
        ('banner', 'blue', '2024-06-01T12:00:00+00:00')
    """
    top = _mapping(document)
    environment = _build(
        Environment,
        id=_get(top, "id", _int),
        name=_get(top, "name", _optional(_str), None),
        api_key=_get(top, "api_key", _optional(_str), None),
    )
    updated_at = _get(top, "updated_at", _updated_at, None)
    project_obj = _get(top, "project", _mapping)
    project = _get(top, "project", _project)
    reader = _Reader(environment, project)

    states = _get(top, "feature_states", lambda items: _unique(_array(items, reader.default), "the environment"))
    try:
        states += _get(project_obj, "segments", lambda items: _groups(_array_of(reader.segment)(items), "segment"), [])
    except PayloadError as exc:
        raise exc.within("project") from None
    states += _get(
        top, "identity_overrides", lambda items: _groups(_array_of(reader.identity_override)(items), "identity"), []
    )
    return EnvironmentDocument(environment, updated_at, tuple(states))


def _mv_value(value: Any) -> MultivariateValue:
    obj = _mapping(value)
    return _build(
        MultivariateValue,
        id=_get(obj, "id", _int),
        option=_get(obj, "multivariate_feature_option", _mv_option),
        percentage_allocation=_get(obj, "percentage_allocation", _percentage),
        extra=_extra(obj, MV_KEYS, MV_KEYS),
    )


def _mv_option(value: Any) -> MultivariateOption:
    obj = _mapping(value)
    return _build(
        MultivariateOption,
        id=_get(obj, "id", _int),
        value=_get(obj, "value", _flag_value),
        extra=_extra(obj, OPTION_KEYS, OPTION_KEYS),
    )

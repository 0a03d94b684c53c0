"""A feature state as compact JSON bytes and back, losslessly: what the SQLite and Redis stores keep per target.

Not a payload format: every field of every model is kept (ids, uuids, ``extra``), so that a state read back equals
the state applied, and two equal states encode to equal bytes (stores compare bytes to tell a real change). JSON
rather than pickle: a shared store is written by other processes and, for Redis, other hosts, and reading it must
not run code.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .._extra import NO_EXTRA, thaw
from .._models import (
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

__all__ = ["decode_state", "encode_state"]

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False).encode
_LOADS = json.loads


def _extra(extra: Any) -> Any:
    return thaw(extra) if extra else 0


def _project(project: Project) -> list[Any]:
    return [project.id, project.name, project.organisation, project.uuid, _extra(project.extra)]


def _segment(segment: Segment | None) -> list[Any] | None:
    if segment is None:
        return None
    return [segment.id, segment.name, segment.description, _extra(segment.extra)]


def encode_state(state: FeatureState) -> bytes:
    """``state`` as JSON bytes (equal states give equal bytes)."""
    feature, environment, fs, identity = state.feature, state.environment, state.feature_segment, state.identity
    return _DUMPS(
        [
            [
                feature.id,
                feature.name,
                _project(feature.project),
                feature.created_date.isoformat(),
                feature.type,
                feature.initial_value,
                feature.default_enabled,
                feature.description,
                _extra(feature.extra),
            ],
            [environment.id, environment.name, environment.uuid, environment.api_key, _extra(environment.extra)],
            state.enabled,
            state.value,
            state.id,
            None if fs is None else [fs.id, _segment(fs.segment), fs.priority, _extra(fs.extra)],
            None if identity is None else [identity.id, identity.identifier],
            [
                [
                    mv.id,
                    [mv.option.id, mv.option.value, _extra(mv.option.extra)],
                    mv.percentage_allocation,
                    _extra(mv.extra),
                ]
                for mv in state.multivariate_values
            ],
            _extra(state.extra),
        ]
    ).encode()


def _thawed(value: Any) -> Any:
    return value or NO_EXTRA


def decode_state(data: bytes | str) -> FeatureState:
    """The state :func:`encode_state` encoded."""
    f, e, enabled, value, state_id, fs, identity, mvs, extra = _LOADS(data)
    p = f[2]
    feature = Feature(
        id=f[0],
        name=f[1],
        project=Project(p[0], p[1], p[2], p[3], extra=_thawed(p[4])),
        created_date=datetime.fromisoformat(f[3]),
        type=f[4],
        initial_value=f[5],
        default_enabled=f[6],
        description=f[7],
        extra=_thawed(f[8]),
    )
    segment = None
    if fs is not None and fs[1] is not None:
        s = fs[1]
        segment = Segment(s[0], s[1], s[2], extra=_thawed(s[3]))
    return FeatureState(
        feature=feature,
        environment=Environment(e[0], e[1], uuid=e[2], api_key=e[3], extra=_thawed(e[4])),
        enabled=enabled,
        value=value,
        id=state_id,
        feature_segment=None if fs is None else FeatureSegment(fs[0], segment, fs[2], extra=_thawed(fs[3])),
        identity=None if identity is None else Identity(identity[0], identity[1]),
        multivariate_values=tuple(
            MultivariateValue(
                mv[0], MultivariateOption(mv[1][0], mv[1][1], extra=_thawed(mv[1][2])), mv[2], extra=_thawed(mv[3])
            )
            for mv in mvs
        ),
        extra=_thawed(extra),
    )

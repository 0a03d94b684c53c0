"""Extra: the keys of a payload object that flaghooks does not model, kept so that encoding can write them back.

Decoding is liberal and lossless (DESIGN invariant 8): an object's unknown keys land in its model's ``extra``.
Models are frozen and hashable, so ``extra`` is too: a read-only mapping whose nested objects are read-only
mappings and whose arrays are tuples. Encoding thaws it back into plain JSON values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "NO_EXTRA", "Extra", "thaw"]

MAX_DEPTH = 64
"""How deeply an extra value may nest (objects and arrays). The JSON parser accepts about 1,000 levels, and
freezing, hashing and encoding recurse: a bound that does not depend on the caller's stack keeps a hostile body
a PayloadError rather than a RecursionError. No Flagsmith payload nests more than a few levels."""


def _freeze(value: Any, where: str, depth: int = 0) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot carry")
        return value
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        raise ValueError(f"{where} nests objects or arrays deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        return value if kind is Extra else Extra(value, where=where, _depth=depth + 1)
    if kind is list or kind is tuple:
        return tuple(_freeze(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value))
    if isinstance(value, str):  # subclasses (a StrEnum, ...) travel as their plain value
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _freeze(float(value), where)
    raise TypeError(f"{where} must be a JSON value (None, bool, int, float, str, list, dict), got {kind.__name__}")


class Extra(Mapping[str, Any]):
    """A read-only, hashable mapping of JSON keys to JSON values: the keys of a payload object that flaghooks
    does not model (``Environment.extra``, ``AuditLogEntry.extra``, ...).

    Build it from any mapping with string keys and JSON values; nested objects become ``Extra`` and arrays become
    tuples, so the whole is immutable. ``encode`` writes the keys back beside the modelled ones. Equal when
    the keys and values are equal (as for dicts).
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | None = None, *, where: str = "extra", _depth: int = 0) -> None:
        frozen: dict[str, Any] = {}
        if data is not None:
            if not isinstance(data, Mapping):
                raise TypeError(f"{where} must be a mapping, got {type(data).__name__}")
            for key, value in data.items():
                if type(key) is not str:
                    raise TypeError(f"{where} keys must be strings, got {type(key).__name__} {key!r}")
                frozen[key] = _freeze(value, f"{where}[{key!r}]", _depth)
        self._data = frozen
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if type(other) is Extra:
            return self._data == other._data
        return super().__eq__(other)

    def __repr__(self) -> str:
        return f"Extra({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Extra, (thaw(self),))


NO_EXTRA = Extra()
"""The empty ``extra`` every model starts with (shared: it is immutable)."""


def thaw(value: Any) -> Any:
    """``value`` as plain JSON values again: ``Extra`` to dict, tuples to lists."""
    if type(value) is Extra:
        return {key: thaw(item) for key, item in value._data.items()}
    if type(value) is tuple:
        return [thaw(item) for item in value]
    return value


def to_extra(value: Any, owner: str, reserved: Any) -> Extra:
    """``value`` as an ``Extra`` for ``owner`` (``"Environment"``), refusing keys the model itself writes."""
    extra = value if type(value) is Extra else Extra(value, where=f"{owner}.extra")
    for key in extra:
        if key in reserved:
            raise ValueError(f"{owner}.extra must not contain {key!r}: it is a field of {owner}, set it there")
    return extra if extra else NO_EXTRA

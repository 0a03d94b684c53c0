"""The circuit breaker's settings, health changes, and time arguments given as seconds or a timedelta."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

import attrs

from ._endpoints import Endpoint
from .exceptions import ConfigError

__all__ = ["Breaker", "HealthChange", "seconds"]

HealthState = Literal["failing", "recovered", "disabled"]


def seconds(owner: str, name: str, value: object, *, zero: bool = False) -> float:
    """``value`` (a number of seconds or a ``timedelta``) as finite float seconds, > 0 (or >= 0 with ``zero``);
    a ``ConfigError`` naming ``owner.name`` otherwise."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{owner}.{name} must be a number of seconds or a timedelta, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(f"{owner}.{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


def _cooldown(value: object) -> float:
    return seconds("Breaker", "cooldown", value)


def _max_cooldown(value: object) -> float:
    return seconds("Breaker", "max_cooldown", value)


def _disable_after(value: object) -> float:
    return seconds("Breaker", "disable_after", value)


def _failures(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"Breaker.failures must be an int >= 1, got {value!r}")
    return value


@attrs.frozen
class Breaker:
    """When :class:`~flaghooks.BackgroundDelivery` pauses and disables a failing endpoint.

    After ``failures`` consecutive failed attempts (any attempt that did not deliver, a 429 or 503 included)
    the endpoint's lane pauses for ``cooldown`` seconds, doubling after each further failure up to
    ``max_cooldown``; then one probe attempt goes out, and a success closes the breaker. After
    ``disable_after`` seconds of failing without a success, or at once on a 410, the endpoint is disabled in
    its :class:`~flaghooks.Webhooks`. Times are seconds or a ``timedelta``; a bad value is a
    :class:`~flaghooks.ConfigError` naming it.

    >>> Breaker(cooldown=timedelta(minutes=1)).cooldown
    60.0
    """

    failures: int = attrs.field(default=5, converter=_failures)
    cooldown: float = attrs.field(default=30.0, converter=_cooldown)
    max_cooldown: float = attrs.field(default=600.0, converter=_max_cooldown)
    disable_after: float = attrs.field(default=432_000.0, converter=_disable_after)

    def __attrs_post_init__(self) -> None:
        if self.max_cooldown < self.cooldown:
            raise ConfigError(
                f"Breaker.max_cooldown must be >= cooldown ({self.cooldown:g} s), got {self.max_cooldown:g}"
            )


@attrs.frozen
class HealthChange:
    """An endpoint's health changed: ``state`` is ``"failing"`` (its breaker tripped: paused),
    ``"recovered"`` (a success closed it) or ``"disabled"`` (a 410, or failing for ``disable_after``);
    ``reason`` says why, ``at`` when (UTC)."""

    endpoint: Endpoint
    state: HealthState
    reason: str
    at: datetime

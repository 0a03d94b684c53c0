"""The circuit breaker's settings, health changes, and time arguments given as seconds or a timedelta."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal

import attrs

from ._endpoints import Endpoint
from ._retry import Outcome
from .exceptions import ConfigError

__all__ = ["Breaker", "HealthChange", "Verdict", "judge", "seconds"]

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


@attrs.frozen
class Verdict:
    """What the breaker makes of one attempt's outcome: the endpoint's new failure count, when it started failing
    and its last pause's length; ``pause`` (seconds) when the breaker trips now; ``disabled`` (the reason) when the
    endpoint is to be disabled; ``change`` and ``reason`` for the health change to announce, if any."""

    failures: int
    failing_since: float | None
    cooldown: float
    pause: float | None = None
    disabled: str | None = None
    change: HealthState | None = None
    reason: str = ""


_HEALTHY = Verdict(0, None, 0.0)


def judge(
    breaker: Breaker,
    failures: int,
    failing_since: float | None,
    cooldown: float,
    outcome: Outcome,
    now: float,
    may_trip: bool,
) -> Verdict:
    """The breaker's decision after an attempt, as a pure function of the endpoint's state: every executor (the
    in-process lanes, the PostgreSQL table of ``flaghooks.contrib.procrastinate``) decides with it.

    ``failures``, ``failing_since`` and ``cooldown`` are the endpoint's state before the attempt (``now`` and
    ``failing_since`` on any one clock, in seconds); ``may_trip`` is false while a pause is already in force for
    attempts that started before it (only a probe, or an attempt outside a pause, trips the breaker again).
    """
    if outcome is Outcome.DELIVERED:
        if not failures and not cooldown:
            return _HEALTHY  # the common case, on every delivered attempt: nothing to build
        change: HealthState | None = "recovered" if cooldown else None
        return Verdict(0, None, 0.0, change=change, reason=f"delivered after {failures} failed attempt(s)")
    failures += 1
    if failing_since is None:
        failing_since = now
    if outcome is Outcome.GONE:
        reason = "it answered 410 Gone"
        return Verdict(failures, failing_since, cooldown, disabled=reason, change="disabled", reason=reason)
    if now - failing_since >= breaker.disable_after:
        reason = f"failing for over {breaker.disable_after:g} s without a success"
        return Verdict(failures, failing_since, cooldown, disabled=reason, change="disabled", reason=reason)
    if failures < breaker.failures or not may_trip:
        return Verdict(failures, failing_since, cooldown)
    if cooldown:
        cooldown = min(breaker.max_cooldown, cooldown * 2)
        return Verdict(failures, failing_since, cooldown, pause=cooldown)
    cooldown = breaker.cooldown
    reason = f"{failures} consecutive failed attempts; paused for {cooldown:g} s"
    return Verdict(failures, failing_since, cooldown, pause=cooldown, change="failing", reason=reason)

"""The circuit breaker's settings, health changes, and time arguments given as seconds or a timedelta."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

import attrs

from ._endpoints import Endpoint
from ._retry import Outcome
from .exceptions import ConfigError

__all__ = ["Breaker", "BreakerState", "HealthChange", "Step", "Verdict", "breaker_step", "judge", "seconds"]

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


class BreakerState:
    """One endpoint's breaker, as an executor keeps it (in memory, or in a file): times are on the executor's
    clock (``time.monotonic()`` in one process, ``time.time()`` when several processes share the state)."""

    __slots__ = ("cooldown", "failing_since", "failures", "half_open", "paused_until")

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed attempts
        self.failing_since: float | None = None
        self.cooldown = 0.0  # the last pause's length; 0 while the breaker is closed
        self.paused_until: float | None = None
        self.half_open = False  # the pause is over: one probe decides


class Step(NamedTuple):
    """What one attempt's outcome did to an endpoint's breaker (:func:`breaker_step`)."""

    recovered: str | None  # a success closed a tripped breaker: the "recovered" reason
    failing: str | None  # the breaker tripped: the "failing" reason
    disable: str | None  # disable the endpoint now, for this reason (a 410, or failing for disable_after)
    paused: bool  # a pause started (``paused_until`` is set): the executor wakes the endpoint then


def breaker_step(state: BreakerState, breaker: Breaker, outcome: Outcome, now: float, was_probe: bool) -> Step:
    """Update ``state`` after an attempt that came to ``outcome`` at ``now``; ``was_probe`` when the attempt was
    the one let through after a pause. Pure: every executor applies the same rules, and does the rest (end the
    delivery, announce the health change, schedule the pause) its own way."""
    if outcome is Outcome.DELIVERED:
        recovered = f"delivered after {state.failures} failed attempt(s)" if state.cooldown else None
        state.failures, state.failing_since, state.cooldown = 0, None, 0.0
        state.paused_until, state.half_open = None, False
        return Step(recovered, None, None, False)
    state.failures += 1
    if state.failing_since is None:
        state.failing_since = now
    if outcome is Outcome.GONE:
        return Step(None, None, "it answered 410 Gone", False)
    if now - state.failing_since >= breaker.disable_after:
        return Step(None, None, f"failing for over {breaker.disable_after:g} s without a success", False)
    if state.failures >= breaker.failures and (was_probe or state.paused_until is None):
        failing = None
        if state.cooldown:
            state.cooldown = min(breaker.max_cooldown, state.cooldown * 2)
        else:
            state.cooldown = breaker.cooldown
            failing = f"{state.failures} consecutive failed attempts; paused for {state.cooldown:g} s"
        state.paused_until = now + state.cooldown
        state.half_open = False
        return Step(None, failing, None, True)
    return Step(None, None, None, False)


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
    """:func:`breaker_step` for an endpoint whose state is kept as plain values (a database row, as in
    ``flaghooks.contrib.procrastinate``): the same rules, nothing mutated.

    ``failures``, ``failing_since`` and ``cooldown`` are the endpoint's state before the attempt (``now`` and
    ``failing_since`` on any one clock, in seconds); ``may_trip`` is false while a pause is already in force for
    attempts that started before it (only a probe, or an attempt outside a pause, trips the breaker again).
    """
    if outcome is Outcome.DELIVERED and not failures and not cooldown:
        return _HEALTHY  # the common case, on every delivered attempt: nothing to build
    state = BreakerState()
    state.failures, state.failing_since, state.cooldown = failures, failing_since, cooldown
    # breaker_step trips a breaker when the attempt was a probe or no pause is in force: may_trip says which.
    state.paused_until = None if may_trip else now
    step = breaker_step(state, breaker, outcome, now, may_trip)
    if outcome is Outcome.DELIVERED:
        change: HealthState | None = "recovered" if step.recovered else None
        return Verdict(0, None, 0.0, change=change, reason=step.recovered or "")
    if step.disable is not None:
        return Verdict(
            state.failures,
            state.failing_since,
            state.cooldown,
            disabled=step.disable,
            change="disabled",
            reason=step.disable,
        )
    if step.paused:
        change = "failing" if step.failing else None
        return Verdict(
            state.failures,
            state.failing_since,
            state.cooldown,
            pause=state.cooldown,
            change=change,
            reason=step.failing or "",
        )
    return Verdict(state.failures, state.failing_since, state.cooldown)

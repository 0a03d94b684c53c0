"""The retry policy, and the one table that decides what an attempt's outcome means."""

from __future__ import annotations

import enum
import math
import random
from typing import TYPE_CHECKING, Any

import attrs

from .exceptions import ConfigError

if TYPE_CHECKING:
    from .transports import AttemptResult

__all__ = ["Outcome", "RetryPolicy", "classify"]


def _number(minimum: float, maximum: float | None = None) -> Any:
    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"RetryPolicy.{attribute.name} must be a number, got {type(value).__name__}")
        upper = math.inf if maximum is None else maximum
        if not (math.isfinite(value) and minimum <= value <= upper):
            bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise ConfigError(f"RetryPolicy.{attribute.name} must be finite and {bound}, got {value!r}")

    return check


def _attempts(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"RetryPolicy.attempts must be an int >= 1, got {value!r}")


def _flag(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if type(value) is not bool:
        raise ConfigError(f"RetryPolicy.{attribute.name} must be a bool, got {type(value).__name__}")


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a delivery is retried.

    ``attempts`` counts every try, the first included. The wait before attempt n+1 is
    ``min(max_delay, backoff * multiplier ** (n - 1))`` times a random factor in ``[1 - jitter, 1 + jitter]``
    (jitter spreads the retries of many deliveries that failed together). With ``honor_retry_after``, a
    ``Retry-After`` on a 429 or 503 makes the wait ``min(max_delay, max(computed wait, retry_after))``.

    The default (3 attempts, 2 s then 4 s, 20 % jitter) retries a little more patiently than Flagsmith, which
    retries connection errors only. Invalid values raise :class:`ConfigError`.
    """

    attempts: int = attrs.field(default=3, validator=_attempts)
    backoff: float = attrs.field(default=2.0, validator=_number(0))
    multiplier: float = attrs.field(default=2.0, validator=_number(1))
    max_delay: float = attrs.field(default=60.0, validator=_number(0))
    jitter: float = attrs.field(default=0.2, validator=_number(0, 1))
    honor_retry_after: bool = attrs.field(default=True, validator=_flag)

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt, no retries."""
        return cls(attempts=1)

    def computed_wait(self, attempt: int, rand: random.Random | None = None) -> float:
        """The wait before attempt ``attempt + 1`` without any Retry-After, jitter included."""
        try:
            base = self.backoff * self.multiplier ** (attempt - 1)
        except OverflowError:
            base = math.inf
        factor = 1.0
        if self.jitter:
            factor = (rand or random).uniform(1 - self.jitter, 1 + self.jitter)
        return min(self.max_delay, base) * factor

    def wait(
        self,
        attempt: int,
        status: int | None = None,
        retry_after: float | None = None,
        rand: random.Random | None = None,
    ) -> float:
        """The wait before attempt ``attempt + 1``, after an attempt that ended in ``status``."""
        computed = self.computed_wait(attempt, rand)
        if self.honor_retry_after and retry_after is not None and status in (429, 503):
            return min(self.max_delay, max(computed, retry_after))
        return computed


class Outcome(enum.Enum):
    """What one attempt's outcome means for the delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"  # 410: failed, not retried, and the endpoint is disabled


_RETRIED_STATUSES = frozenset({408, 425, 429})


def classify(result: AttemptResult) -> Outcome:
    """The outcome table (docs/delivery.md shows it):

    ============================================================ =========================================
    2xx status line                                              delivered
    3xx                                                          failed; not followed, not retried
    408, 425, 429, 5xx except 501 and 505                        retried
    410                                                          failed, not retried, endpoint disabled
    any other status                                             failed, not retried
    no status: connection refused or reset, timeout, TLS, DNS    retried
    ``permanent`` (an address the SSRF policy refused, ...)      failed, not retried
    the transport raised (the dispatcher records an error)       retried
    ============================================================ =========================================
    """
    status = result.status
    if status is not None:
        if 200 <= status < 300:
            return Outcome.DELIVERED
        if status == 410:
            return Outcome.GONE
        retryable = status in _RETRIED_STATUSES or (500 <= status < 600 and status not in (501, 505))
        if not retryable:
            return Outcome.FAILED
    # A transport that marks its result permanent knows better than the table: never retry it.
    return Outcome.FAILED if result.permanent else Outcome.RETRY

"""RetryPolicy and the outcome table."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flaghooks import ConfigError, RetryPolicy
from flaghooks._retry import Outcome, classify
from flaghooks.transports import AttemptResult


class TestPolicy:
    def test_defaults(self) -> None:
        """Three attempts, 2 s doubling, capped at 60 s, 20 % jitter, Retry-After honoured."""
        assert RetryPolicy() == RetryPolicy(3, 2.0, 2.0, 60.0, 0.2, True)

    def test_never(self) -> None:
        """RetryPolicy.never() makes one attempt."""
        assert RetryPolicy.never().attempts == 1

    def test_schedule_without_jitter(self) -> None:
        """The wait before attempt n+1 is min(max_delay, backoff * multiplier ** (n - 1))."""
        policy = RetryPolicy(attempts=10, backoff=2, multiplier=3, max_delay=100, jitter=0)
        assert [policy.wait(n) for n in range(1, 7)] == [2, 6, 18, 54, 100, 100]

    @given(st.integers(1, 2000), st.floats(0, 1), st.integers(0, 2**32))
    def test_jitter_bounds(self, attempt: int, jitter: float, seed: int) -> None:
        """Jitter multiplies the wait by a factor in [1 - jitter, 1 + jitter]; huge attempt numbers do not overflow."""
        policy = RetryPolicy(attempts=5, backoff=1.5, multiplier=2, max_delay=30, jitter=jitter)
        base = 30.0 if attempt > 60 else min(30.0, 1.5 * 2.0 ** (attempt - 1))
        wait = policy.wait(attempt, rand=random.Random(seed))
        assert base * (1 - jitter) - 1e-9 <= wait <= base * (1 + jitter) + 1e-9

    @pytest.mark.parametrize("status", [429, 503])
    def test_retry_after_raises_the_wait(self, status: int) -> None:
        """Retry-After on 429 or 503 lengthens the wait, up to max_delay."""
        policy = RetryPolicy(backoff=1, jitter=0, max_delay=10)
        assert policy.wait(1, status, 5.0) == 5.0
        assert policy.wait(1, status, 50.0) == 10.0  # clamped
        assert policy.wait(1, status, 0.5) == 1.0  # never shorter than computed

    def test_retry_after_only_on_429_and_503(self) -> None:
        """Retry-After on another status is ignored."""
        assert RetryPolicy(backoff=1, jitter=0).wait(1, 500, 30.0) == 1.0

    def test_retry_after_can_be_ignored(self) -> None:
        """honor_retry_after=False ignores it."""
        assert RetryPolicy(backoff=1, jitter=0, honor_retry_after=False).wait(1, 429, 30.0) == 1.0

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"attempts": 0}, "attempts"),
            ({"attempts": 1.5}, "attempts"),
            ({"attempts": True}, "attempts"),
            ({"backoff": -1}, "backoff"),
            ({"backoff": float("inf")}, "backoff"),
            ({"multiplier": 0.5}, "multiplier"),
            ({"max_delay": -0.1}, "max_delay"),
            ({"jitter": 1.5}, "jitter"),
            ({"jitter": -0.1}, "jitter"),
            ({"jitter": "0.2"}, "jitter"),
            ({"honor_retry_after": 1}, "honor_retry_after"),
        ],
    )
    def test_invalid(self, kwargs: dict[str, object], field: str) -> None:
        """Values outside the valid ranges are ConfigErrors naming the field."""
        with pytest.raises(ConfigError, match=f"RetryPolicy.{field}"):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]


def result(status: int | None, *, permanent: bool = False, error: str | None = None) -> AttemptResult:
    return AttemptResult(status, error, 0.01, permanent=permanent)


class TestOutcomeTable:
    @pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
    def test_2xx_delivered(self, status: int) -> None:
        """Any 2xx status line is delivered."""
        assert classify(result(status)) is Outcome.DELIVERED

    @pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
    def test_3xx_failed(self, status: int) -> None:
        """A redirect is a failure, neither followed nor retried."""
        assert classify(result(status)) is Outcome.FAILED

    @pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 507, 599])
    def test_retried_statuses(self, status: int) -> None:
        """408, 425, 429 and 5xx except 501 and 505 are retried."""
        assert classify(result(status)) is Outcome.RETRY

    def test_410_gone(self) -> None:
        """410 fails, is not retried, and disables the endpoint."""
        assert classify(result(410)) is Outcome.GONE

    @pytest.mark.parametrize("status", [100, 400, 401, 403, 404, 409, 413, 422, 501, 505])
    def test_other_statuses_fail(self, status: int) -> None:
        """Any other status fails without a retry."""
        assert classify(result(status)) is Outcome.FAILED

    def test_errors_are_retried(self) -> None:
        """No status (refused, reset, timeout, TLS, DNS, the transport raised) is retried."""
        assert classify(result(None, error="connection refused")) is Outcome.RETRY

    def test_permanent_errors_fail(self) -> None:
        """A permanent error (the SSRF policy) fails without a retry, even with a retryable status."""
        assert classify(result(None, permanent=True, error="refused")) is Outcome.FAILED
        assert classify(result(503, permanent=True)) is Outcome.FAILED
        assert classify(result(200, permanent=True)) is Outcome.DELIVERED

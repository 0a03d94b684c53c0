"""Test doubles for applications that use flaghooks.

:class:`RecordingTransport` stands in for :class:`~flaghooks.transports.HttpTransport` in your tests: it records
each request and answers with the outcomes you script, without any network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .transports import AttemptResult, DeliveryRequest, Transport

__all__ = ["RecordingTransport"]

Outcome = int | AttemptResult


class RecordingTransport(Transport):
    """Records every :class:`DeliveryRequest` in ``requests`` and answers without sending anything.

    ``outcomes`` scripts the answers: a list of HTTP statuses or :class:`AttemptResult` used in order (200
    once it runs out), or a callable from the request to either. ``closed`` becomes true after ``close()``.

    >>> from flaghooks import Endpoint, Webhooks, RetryPolicy
    >>> transport = RecordingTransport([503, 200])
    >>> hooks = Webhooks(transport=transport, retry=RetryPolicy(backoff=0))
    >>> result = hooks.ping(Endpoint("https://hooks.example.com/flags"))
    >>> result.status, len(transport.requests)
    (503, 1)
    """

    def __init__(self, outcomes: Sequence[Outcome] | Callable[[DeliveryRequest], Outcome] | None = None) -> None:
        self.requests: list[DeliveryRequest] = []
        self.closed = False
        self._lock = threading.Lock()
        self._script: Callable[[DeliveryRequest], Outcome] | None = None
        self._queue: list[Outcome] = []
        if callable(outcomes):
            self._script = outcomes
        elif outcomes is not None:
            self._queue = list(outcomes)
            for item in self._queue:
                _check(item)

    def send(self, request: DeliveryRequest) -> AttemptResult:
        with self._lock:
            self.requests.append(request)
            if self._script is None:
                outcome = self._queue.pop(0) if self._queue else 200
        if self._script is not None:
            outcome = self._script(request)  # outside the lock: a script may block or record itself
        return _check(outcome)

    def close(self) -> None:
        self.closed = True


def _check(outcome: object) -> AttemptResult:
    if isinstance(outcome, AttemptResult):
        return outcome
    if isinstance(outcome, int) and not isinstance(outcome, bool) and 100 <= outcome <= 599:
        return AttemptResult(outcome, None, 0.0)
    raise TypeError(f"an outcome is an HTTP status (100 to 599) or an AttemptResult, got {outcome!r}")

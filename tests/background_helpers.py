"""What the background delivery tests share: events, a results recorder, a transport that can be held."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cases import banner_state
from flaghooks import DeliveryResult, HealthChange, WebhookEvent, flag_changed
from flaghooks.transports import AttemptResult, DeliveryRequest, HttpTransport, Transport

ENV = 23  # banner_state's environment


def event(n: int) -> WebhookEvent:
    """A FLAG_UPDATED event for environment 23 whose id and value say which one it is."""
    return flag_changed(None, banner_state(value=f"v{n}"), event_id=f"evt_{n}")


def local() -> HttpTransport:
    """The real HTTP transport, allowed to reach the test servers on 127.0.0.1."""
    return HttpTransport(allowed_networks=["127.0.0.0/8"])


class Results:
    """Records every DeliveryResult (and HealthChange) with the moment it arrived; waits for a count."""

    def __init__(self) -> None:
        self.results: list[DeliveryResult] = []
        self.at: list[float] = []
        self.health: list[HealthChange] = []
        self._cond = threading.Condition()

    def __call__(self, result: DeliveryResult) -> None:
        with self._cond:
            self.results.append(result)
            self.at.append(time.monotonic())
            self._cond.notify_all()

    def on_health(self, change: HealthChange) -> None:
        with self._cond:
            self.health.append(change)
            self._cond.notify_all()

    def wait_for(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``check()`` holds, looking again at each result and every 10 ms (the bound is generous: a
        test that would hang fails instead)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not check():
                assert time.monotonic() < deadline, "waited too long"
                self._cond.wait(0.01)

    def by_delivery(self) -> dict[str | None, list[DeliveryResult]]:
        seen: dict[str | None, list[DeliveryResult]] = {}
        for result in list(self.results):
            seen.setdefault(result.delivery_id, []).append(result)
        return seen


class Gate(Transport):
    """Sends through ``inner`` once the gate is open; until then every attempt waits (a hung endpoint that the
    test can release). Records when each attempt started and ended."""

    def __init__(self, inner: Transport, hold: Callable[[DeliveryRequest], bool] = lambda request: True) -> None:
        self.inner = inner
        self.hold = hold
        self.open = threading.Event()
        self.started: list[tuple[str, float]] = []
        self.ended: list[tuple[str, float, AttemptResult]] = []
        self._lock = threading.Lock()

    def send(self, request: DeliveryRequest) -> AttemptResult:
        with self._lock:
            self.started.append((request.url, time.monotonic()))
        if self.hold(request):
            self.open.wait(60)
        result = self.inner.send(request)
        with self._lock:
            self.ended.append((request.url, time.monotonic(), result))
        return result

    def close(self) -> None:
        self.open.set()
        self.inner.close()


class Timed(Transport):
    """Sends through ``inner`` and records when each attempt ended and how (a real transport, observed)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.ended: list[tuple[str, float, AttemptResult]] = []
        self._lock = threading.Lock()

    def send(self, request: DeliveryRequest) -> AttemptResult:
        result = self.inner.send(request)
        with self._lock:
            self.ended.append((request.url, time.monotonic(), result))
        return result

    def close(self) -> None:
        self.inner.close()

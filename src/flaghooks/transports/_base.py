"""The transport extension point: one attempt to deliver one request."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import attrs

from .._endpoints import redact_url

if TYPE_CHECKING:
    from .._endpoints import Endpoint
    from .._events import WebhookEvent

__all__ = ["AttemptResult", "DeliveryRequest", "Transport"]


@attrs.frozen(repr=False)
class DeliveryRequest:
    """One attempt's request: POST ``body`` to ``url`` with ``headers``, within ``timeout`` seconds.

    ``body`` is the event's encoded bytes, exactly as signed; ``headers`` include the signatures; ``attempt``
    counts from 1. ``endpoint`` and ``event`` say what is being delivered, for transports that need more than
    the bytes (a chat message, say). The repr shows neither the body nor header values.
    """

    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float
    endpoint: Endpoint
    event: WebhookEvent
    attempt: int = 1

    def __repr__(self) -> str:
        return (
            f"DeliveryRequest(url={redact_url(self.url)!r}, event={self.event.id!r}, "
            f"attempt={self.attempt}, body=<{len(self.body)} bytes>, headers={sorted(self.headers)!r}, "
            f"timeout={self.timeout!r})"
        )


@attrs.frozen
class AttemptResult:
    """What one attempt came to.

    ``status`` is the HTTP status, or ``None`` when there was no response (then ``error`` says why).
    ``elapsed`` is the attempt's duration in seconds. ``retry_after`` is the response's ``Retry-After`` in
    seconds, when it had one. ``response_body`` is the start of the response body, for diagnostics
    (truncated). ``permanent`` marks an error that must not be retried (an address the SSRF policy refused).
    """

    status: int | None
    error: str | None
    elapsed: float
    retry_after: float | None = None
    response_body: bytes = attrs.field(default=b"", repr=lambda body: f"<{len(body)} bytes>")
    permanent: bool = False


class Transport(abc.ABC):
    """Delivers a :class:`DeliveryRequest`, one attempt per :meth:`send`.

    Subclass it to deliver anywhere: implement :meth:`send`, and :meth:`close` when there is something to
    release. A transport never retries by itself (the dispatcher's retry policy does) and should report
    failures in its :class:`AttemptResult` rather than raise; if it raises anyway, the dispatcher records the
    exception as a failed attempt and retries it.
    """

    @abc.abstractmethod
    def send(self, request: DeliveryRequest) -> AttemptResult:
        """Make exactly one attempt to deliver ``request``."""

    def close(self) -> None:  # noqa: B027 - a no-op default, overridden when there is something to release
        """Release what the transport holds (connections, files). The default does nothing."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

"""What every executor shares: a planned Delivery, its DeliveryResult, and one attempt's signed headers."""

from __future__ import annotations

import hmac
import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import attrs

from ._endpoints import Endpoint, Signing
from ._events import EventType, WebhookEvent
from ._signing import _standard_digest, standard_key
from ._version import VERSION
from .transports import AttemptResult

__all__ = ["Delivery", "DeliveryResult"]

USER_AGENT = f"flaghooks/{VERSION}"


class _IdSource:
    """Unique, time-ordered, unpredictable delivery ids, made in batches: taking one is a ``next()``.

    ``dlv_``, a time in milliseconds, a counter (one process's ids sort in creation order) and 64 random bits
    per id from ``os.urandom``. A batch is made at once with the time it is made; a batch older than a second
    is replaced, so an id's time is at most a second before its delivery was planned. A forked child makes
    its own batches and counter, so it never repeats its parent's ids. Like the event ids
    (``flaghooks._events``), but cheaper still: plan is on the hot path.
    """

    _BATCH = 256

    def __init__(self) -> None:
        self.reseed()
        if hasattr(os, "register_at_fork"):  # pragma: no branch - absent where there is no fork (Windows)
            os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._counter = itertools.count()
        self._ids: Iterator[str] = iter(())
        self._made = -(10**12)

    def _refill(self, now_ms: int) -> None:
        pool = os.urandom(8 * self._BATCH).hex()
        counter = self._counter
        stamp = f"dlv_{now_ms:012x}"
        # A list iterator hands each id to one caller only, even across threads (next() holds the GIL); two
        # threads that refill at once each install a fresh batch, which is harmless.
        self._ids = iter([f"{stamp}{next(counter):08x}{pool[i : i + 16]}" for i in range(0, len(pool), 16)])
        self._made = now_ms

    def __call__(self, now_ms: int) -> str:
        """A new id; ``now_ms`` is the caller's clock (``time.time_ns() // 1_000_000``)."""
        if now_ms - self._made > 1000:
            self._refill(now_ms)
        fresh = next(self._ids, None)
        while fresh is None:
            self._refill(now_ms)
            fresh = next(self._ids, None)
        return fresh


new_delivery_id = _IdSource()


@attrs.frozen
class Delivery:
    """One event's delivery to one endpoint, as :meth:`Webhooks.plan <flaghooks.Webhooks.plan>` made it.

    ``id`` is ``dlv_`` followed by letters, digits and ``_``, unique (time-ordered, with 64 random bits);
    ``event_id`` is what every attempt sends as ``webhook-id``; ``body`` the exact bytes that are signed and
    sent; ``created_at`` when it was planned (UTC). ``event`` is the event itself when the delivery was planned
    in this process (custom transports get it in :class:`~flaghooks.transports.DeliveryRequest`); a delivery
    rebuilt from storage may leave it ``None``, and :meth:`Webhooks.attempt <flaghooks.Webhooks.attempt>`
    then decodes ``body`` when the transport needs it. The repr never shows the body.
    """

    id: str
    event_id: str
    event_type: EventType | str
    endpoint: Endpoint
    body: bytes = attrs.field(repr=lambda body: f"<{len(body)} bytes>")
    created_at: datetime
    event: WebhookEvent | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)


@attrs.frozen
class DeliveryResult:
    """How the delivery of one event to one endpoint ended.

    ``event_type`` is the :class:`EventType`, or the type's name as a plain ``str`` for an event type
    flaghooks does not know. ``ok`` is true when an attempt got a 2xx. ``status`` and ``error`` are the last
    attempt's; ``attempts`` counts them (0 when the event could not be encoded for the endpoint).
    ``elapsed`` is the delivery's duration in seconds, waits between attempts included. ``endpoint_disabled``
    is true when the delivery disabled its endpoint (a 410), or ended because its endpoint was disabled.
    ``history`` has every attempt's :class:`AttemptResult`. ``delivery_id`` is the :class:`Delivery`'s id
    (``None`` when no delivery was made: an event the endpoint's format cannot express).
    """

    endpoint: Endpoint
    event_id: str
    event_type: EventType | str
    ok: bool
    status: int | None
    attempts: int
    error: str | None
    elapsed: float
    endpoint_disabled: bool = False
    history: tuple[AttemptResult, ...] = ()
    delivery_id: str | None = None


class Signer:
    """An endpoint's signing keys and static headers, worked out once and reused for every attempt."""

    __slots__ = ("extra", "flagsmith_key", "standard_keys")

    def __init__(self, endpoint: Endpoint) -> None:
        secret, signing = endpoint.secret, endpoint.signing
        self.flagsmith_key = secret.encode() if secret is not None and signing is not Signing.STANDARD else None
        self.standard_keys: tuple[bytes, ...] = ()
        if secret is not None and signing is not Signing.FLAGSMITH:
            self.standard_keys = tuple(standard_key(s) for s in (secret, *endpoint.previous_secrets))
        self.extra = dict(endpoint.headers)

    def flagsmith(self, body: bytes) -> str | None:
        """The ``X-Flagsmith-Signature`` of ``body`` (the same for every attempt), or ``None``."""
        key = self.flagsmith_key
        return None if key is None else hmac.digest(key, body, "sha256").hex()

    def headers(self, event_id: str, body: bytes, flagsmith: str | None) -> dict[str, str]:
        """One attempt's headers: a fresh ``webhook-timestamp`` and the signatures over it."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": event_id,
            "webhook-timestamp": str(timestamp),
        }
        if flagsmith is not None:
            headers["X-Flagsmith-Signature"] = flagsmith
        keys = self.standard_keys
        if keys:
            headers["webhook-signature"] = " ".join(
                "v1," + _standard_digest(key, event_id, timestamp, body) for key in keys
            )
        extra = self.extra
        if extra:
            headers.update(extra)
        return headers


def utc_from_ns(now_ns: int) -> datetime:
    """A UTC datetime from ``time.time_ns()``."""
    return datetime.fromtimestamp(now_ns / 1e9, UTC)

"""Webhooks: route an event to its endpoints, encode once, sign, retry, and report every result.

Every way of delivering is the same three steps: :meth:`Webhooks.plan` (routing and encoding, no I/O),
:meth:`Webhooks.attempt` (one signed attempt through the transport) and :func:`classify` (the outcome table).
An executor only decides when each attempt happens; how a delivery ends (the result, a 410 disabling its
endpoint, the log line and ``on_result``) is decided here, in :meth:`Webhooks._finish`, for all of them.
"""

from __future__ import annotations

import hmac
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType

import attrs

from ._decode import decode
from ._delivery import USER_AGENT, Delivery, DeliveryResult, Signer, new_delivery_id, utc_from_ns
from ._endpoints import Endpoint
from ._events import EventType, FlagChange, WebhookEvent, audit_log_created, flag_changed, version_published
from ._models import AuditLogEntry, FeatureState
from ._retry import Outcome, RetryPolicy, classify
from ._samples import _SAMPLES, sample_event, sample_event_types
from ._versions import VersionPublished
from ._wire import PayloadFormat, encode
from .exceptions import ConfigError, PayloadError
from .transports import AttemptResult, DeliveryRequest, HttpTransport, Transport
from .transports._base import withhold_secrets

__all__ = ["Delivery", "DeliveryResult", "Webhooks", "sample_event", "sample_event_types"]

logger = logging.getLogger("flaghooks")
_USER_AGENT = USER_AGENT  # where the tests read it

ScopeKey = tuple[str, int]
_SIGNERS_KEPT = 4096  # signers cached for endpoints; the cache is emptied when it grows past this
_ROUTES_KEPT = 4096  # routes cached by (event type, environment, organisation), likewise
_DEBUG = logging.DEBUG


def _scope_id(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int id, got {type(value).__name__}")
    return value


class Webhooks:
    """Delivers events to subscribed endpoints.

    Arguments (all keyword-only, all optional):

    - ``transport``: sends each attempt. Default: a new :class:`~flaghooks.transports.HttpTransport`, which
      refuses loopback and private addresses (the SSRF policy) and bounds each attempt by the endpoint's
      ``timeout`` (10 s by default).
    - ``retry``: the :class:`RetryPolicy`. Default ``RetryPolicy()``: 3 attempts, waiting about 2 s then 4 s
      (20 % jitter; a ``Retry-After`` on a 429 or 503 may stretch a wait up to ``max_delay``, 60 s).
    - ``format``: the :class:`PayloadFormat` for endpoints that do not choose one. Default ``CLASSIC``: the shape
      of Flagsmith's documented payloads, which this library was first built against and receivers written from
      those docs expect. ``MODERN`` is what Flagsmith's server sends today; choose it (here or per endpoint) for
      receivers written against real Flagsmith traffic. CLASSIC cannot express a segment override whose
      :class:`FeatureSegment` has no ``id``: such an event gets, for each CLASSIC endpoint, a failed
      :class:`DeliveryResult` with 0 attempts and a ``PayloadError`` in its ``error`` (nothing is sent there).
    - ``on_result``: called with every :class:`DeliveryResult`, failures included (an exception it raises is
      logged, never raised). Default ``None``. Failures are also logged as WARNING on the ``flaghooks`` logger,
      which has only a NullHandler: without ``on_result`` or logging configured, failures go unseen.
    - ``send_noop``: when true, :meth:`feature_state_changed` also sends updates that changed nothing. Default
      false.

    Invalid arguments raise :class:`ConfigError` naming the argument.

    :meth:`publish` runs in the calling thread, endpoint after endpoint in subscription order, each with its
    retries, and returns when every endpoint is done (:class:`~flaghooks.BackgroundDelivery` delivers from
    worker threads instead, and returns at once).
    With the defaults, the worst case for one endpoint that never answers is about 36 s: 3 attempts of 10 s
    plus waits of 2 s and 4 s (3 x 10 + 2 + 4 = 36; up to 37.2 s with the jitter), and a slow endpoint delays
    the ones after it. Lower ``Endpoint(timeout=...)`` or ``RetryPolicy(attempts=...)`` where the caller cannot
    wait that long.

    Subscriptions may change from any thread; :meth:`subscribe` and :meth:`unsubscribe` cost the same however
    many endpoints there are. ``close()`` (or leaving a ``with`` block) closes the transport.
    """

    def __init__(
        self,
        *,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        format: PayloadFormat = PayloadFormat.CLASSIC,
        on_result: Callable[[DeliveryResult], None] | None = None,
        send_noop: bool = False,
    ) -> None:
        if transport is not None and not isinstance(transport, Transport):
            raise ConfigError(f"Webhooks.transport must be a Transport, got {type(transport).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"Webhooks.retry must be a RetryPolicy, got {type(retry).__name__}")
        try:
            self._format = PayloadFormat(format)
        except ValueError:
            raise ConfigError(f"Webhooks.format must be a PayloadFormat, got {format!r}") from None
        if on_result is not None and not callable(on_result):
            raise ConfigError("Webhooks.on_result must be callable or None")
        if type(send_noop) is not bool:
            raise ConfigError("Webhooks.send_noop must be a bool")
        self._transport = transport if transport is not None else HttpTransport()
        self._retry = retry if retry is not None else RetryPolicy()
        self._on_result = on_result
        self._send_noop = send_noop
        self._lock = threading.Lock()
        # Both directions are indexed so that subscribe and unsubscribe cost O(1) however many endpoints a
        # scope has: a scope's endpoints in subscription order (an insertion-ordered dict is the routing
        # order), and each endpoint's scopes, so unsubscribe visits only the scopes it is in.
        self._scopes: dict[ScopeKey, dict[Endpoint, None]] = {}
        self._memberships: dict[Endpoint, dict[ScopeKey, None]] = {}
        self._gone: set[Endpoint] = set()  # disabled (a 410, a breaker) until subscribed again
        # Durable executors store a delivery's endpoint by its label (its name, else its URL without user
        # information) and find it again here at each attempt, so a rotated secret applies to queued deliveries.
        self._by_key: dict[str, Endpoint] = {}
        self._signers: dict[Endpoint, Signer] = {}
        self._routes: dict[tuple[EventType | str, int | None, int | None], tuple[Endpoint, ...]] = {}
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography

    # --- subscriptions -------------------------------------------------------------------------------

    @staticmethod
    def _scope(environment: int | None, organisation: int | None) -> ScopeKey:
        if (environment is None) == (organisation is None):
            raise ConfigError("give exactly one of environment= and organisation=")
        if environment is not None:
            return ("environment", _scope_id("environment", environment))
        return ("organisation", _scope_id("organisation", organisation))

    def subscribe(self, endpoint: Endpoint, *, environment: int | None = None, organisation: int | None = None) -> None:
        """Send the events of one environment, or of one organisation, to ``endpoint``.

        Exactly one of ``environment`` and ``organisation``. An endpoint may be subscribed to any number of
        scopes, and a scope may have any number of endpoints. Subscribing an endpoint again re-enables it if a
        410 disabled it.

        An endpoint's key is its :attr:`~flaghooks.Endpoint.label`: its ``name``, else its URL without user
        information. Durable executors store deliveries by that key, so two different endpoints subscribed at
        once may not share it: :class:`ConfigError` (unsubscribe the old one first, or give each a ``name``).
        """
        if not isinstance(endpoint, Endpoint):
            raise ConfigError(f"endpoint must be an Endpoint, got {type(endpoint).__name__}")
        scope = self._scope(environment, organisation)
        key = endpoint.label
        with self._lock:
            other = self._by_key.get(key)
            if other is not None and other != endpoint:
                raise ConfigError(
                    f"another endpoint with the key {key!r} is subscribed: an endpoint's key (its name, else its "
                    "URL) must be unique; unsubscribe the old endpoint first or give each a distinct name"
                )
            self._by_key[key] = endpoint
            self._scopes.setdefault(scope, {})[endpoint] = None  # again: keeps its place in the order
            self._memberships.setdefault(endpoint, {})[scope] = None
            self._gone.discard(endpoint)
            self._routes.clear()

    def unsubscribe(self, endpoint: Endpoint) -> None:
        """Remove ``endpoint`` from every scope (nothing happens if it was not subscribed)."""
        with self._lock:
            if self._by_key.get(endpoint.label) == endpoint:
                del self._by_key[endpoint.label]
            for scope in self._memberships.pop(endpoint, ()):
                endpoints = self._scopes[scope]
                del endpoints[endpoint]
                if not endpoints:
                    del self._scopes[scope]
            self._gone.discard(endpoint)
            self._routes.clear()
            self._signers.pop(endpoint, None)

    def endpoints(self, *, environment: int | None = None, organisation: int | None = None) -> list[Endpoint]:
        """One scope's endpoints, or, when neither is given, every subscribed endpoint once."""
        with self._lock:
            if environment is None and organisation is None:
                seen: dict[Endpoint, None] = {}
                for endpoints in self._scopes.values():
                    seen.update(endpoints)
                return list(seen)
            return list(self._scopes.get(self._scope(environment, organisation), ()))

    def _endpoint_for(self, key: str) -> Endpoint | None:
        """The subscribed endpoint whose key (label) is ``key``, or ``None``."""
        return self._by_key.get(key)

    # --- publishing ----------------------------------------------------------------------------------

    def _route(self, event: WebhookEvent, environment: int | None, organisation: int | None) -> tuple[Endpoint, ...]:
        data = event.data
        env: int | None = None
        org: int | None = None
        if isinstance(data, FlagChange):
            state = data.new_state if data.new_state is not None else data.previous_state
            assert state is not None  # a FlagChange always has one
            env = environment if environment is not None else state.environment.id
            org = organisation if organisation is not None else state.feature.project.organisation
        elif isinstance(data, AuditLogEntry):
            if environment is not None:
                raise ConfigError("AUDIT_LOG_CREATED goes to organisation endpoints; environment= does not apply")
            org = organisation
            if org is None and data.project is not None:
                org = data.project.organisation
            if org is None:
                raise ConfigError(
                    "AUDIT_LOG_CREATED goes to an organisation's endpoints and no organisation is known: "
                    "set the entry's project organisation or pass organisation="
                )
        elif event.event_type == "NEW_VERSION_PUBLISHED":
            # Flagsmith sends it to environment web hooks only, and its payload names no environment.
            if organisation is not None:
                raise ConfigError("NEW_VERSION_PUBLISHED goes to environment endpoints; organisation= does not apply")
            if environment is None:
                raise ConfigError("NEW_VERSION_PUBLISHED carries no environment id: pass environment= to publish it")
            env = environment
        else:
            # An event type flaghooks does not know: nothing in its data can be trusted to name a scope.
            if environment is None and organisation is None:
                raise ConfigError(
                    f"{event.event_type} is an event type flaghooks does not route by itself: "
                    "pass environment= or organisation= (or both) to publish it"
                )
            env, org = environment, organisation
        # Routes are cached by what decides them, and the cache is emptied under the lock whenever a
        # subscription or a disabled endpoint changes them: a publish reads one dict instead of taking the lock.
        key = (event.event_type, env, org)
        route = self._routes.get(key)
        return route if route is not None else self._compute_route(key)

    def _compute_route(self, key: tuple[EventType | str, int | None, int | None]) -> tuple[Endpoint, ...]:
        event_type, env, org = key
        scopes = []
        if env is not None:
            scopes.append(("environment", env))
        if org is not None:
            scopes.append(("organisation", org))
        chosen: dict[Endpoint, None] = {}
        with self._lock:
            for scope in scopes:
                for endpoint in self._scopes.get(scope, ()):
                    if not endpoint.enabled or endpoint in self._gone:
                        continue
                    # An endpoint's events holds EventType members, which equal their names as str; an
                    # unknown type (a plain str) is in no such set, so it reaches only endpoints taking all.
                    if endpoint.events is not None and event_type not in endpoint.events:
                        continue
                    chosen[endpoint] = None
            route = tuple(chosen)
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _plan(
        self, event: WebhookEvent, environment: int | None, organisation: int | None
    ) -> list[Delivery | DeliveryResult]:
        """Route and encode: a Delivery per endpoint, or (not yet reported) a failed result where the endpoint's
        format cannot express the event; in routing order."""
        if not isinstance(event, WebhookEvent):
            raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
        if environment is not None:
            _scope_id("environment", environment)
        if organisation is not None:
            _scope_id("organisation", organisation)
        endpoints = self._route(event, environment, organisation)
        if not endpoints:
            return []
        now_ns = time.time_ns()
        now_ms = now_ns // 1_000_000
        created = datetime.fromtimestamp(now_ns / 1e9, UTC)
        event_id, event_type, default = event.id, event.event_type, self._format
        bodies: dict[PayloadFormat, bytes | PayloadError] = {}
        planned: list[Delivery | DeliveryResult] = []
        last: PayloadFormat | None = None
        body: bytes | PayloadError | None = None
        for endpoint in endpoints:
            fmt = endpoint.format or default
            if fmt is not last:  # endpoints mostly share a format: the dict (an Enum hashes in Python) is rare
                last = fmt
                body = bodies.get(fmt)
                if body is None:
                    try:
                        body = encode(event, fmt)
                    except PayloadError as exc:
                        body = exc
                    bodies[fmt] = body
            if type(body) is bytes:
                planned.append(
                    Delivery(new_delivery_id(now_ms), event_id, event_type, endpoint, body, created, event=event)
                )
            else:
                planned.append(
                    DeliveryResult(endpoint, event_id, event_type, False, None, 0, f"PayloadError: {body!s}", 0.0)
                )
        return planned

    def plan(
        self, event: WebhookEvent, *, environment: int | None = None, organisation: int | None = None
    ) -> list[Delivery]:
        """Route ``event`` to its endpoints and encode it, once per payload format: one :class:`Delivery` per
        endpoint, in routing order. No I/O; nothing is sent.

        Routing is :meth:`publish`'s (below). An endpoint whose payload format cannot express the event gets no
        delivery: its failed :class:`DeliveryResult` (0 attempts, an ``error`` starting with ``PayloadError``)
        goes to ``on_result`` and the log at once, as :meth:`publish` reports it. Hand the deliveries to
        :meth:`deliver`, to a :class:`~flaghooks.BackgroundDelivery`, or to a queue of your own that calls
        :meth:`attempt` and :func:`~flaghooks.classify`.
        """
        deliveries: list[Delivery] = []
        for item in self._plan(event, environment, organisation):
            if type(item) is Delivery:
                deliveries.append(item)
            else:
                assert isinstance(item, DeliveryResult)
                self._report(item)
        return deliveries

    def publish(
        self, event: WebhookEvent, *, environment: int | None = None, organisation: int | None = None
    ) -> list[DeliveryResult]:
        """Deliver ``event`` to every endpoint it routes to, and return one result per endpoint.

        FLAG_UPDATED and FLAG_DELETED go to the endpoints of the state's environment and, as Flagsmith does, of
        its organisation (``feature.project.organisation``) when known; AUDIT_LOG_CREATED goes to the endpoints
        of the entry's organisation. A given ``environment`` or ``organisation`` replaces the one read from the
        event for that scope. Disabled endpoints and endpoints that do not take this event type are skipped;
        an endpoint subscribed to both scopes gets the event once. The event is encoded once per payload
        format. It is :meth:`plan`, then :meth:`deliver` for each delivery, in the calling thread.

        Raises :class:`ConfigError` when an audit event has no organisation to go to.
        """
        results = []
        policy = self._retry
        for item in self._plan(event, environment, organisation):
            if type(item) is Delivery:
                results.append(self._deliver(item, policy, True))
            else:
                assert isinstance(item, DeliveryResult)
                results.append(self._report(item))
        return results

    def _noop_suppressed(self, event: WebhookEvent) -> bool:
        return not self._send_noop and isinstance(event.data, FlagChange) and event.data.change.is_noop

    def feature_state_changed(
        self,
        previous: FeatureState | None,
        new: FeatureState | None,
        *,
        changed_by: str = "",
        timestamp: datetime | None = None,
    ) -> list[DeliveryResult]:
        """Build the event for a state change (see :func:`flaghooks.flag_changed`) and publish it.

        An update that changed nothing sends nothing and returns ``[]``, unless ``send_noop`` was set.
        """
        event = flag_changed(previous, new, changed_by=changed_by, timestamp=timestamp)
        if self._noop_suppressed(event):
            return []
        return self.publish(event)

    def audit_log_created(self, entry: AuditLogEntry, *, organisation: int | None = None) -> list[DeliveryResult]:
        """Publish an audit-log entry to its organisation's endpoints (``organisation`` overrides the entry's)."""
        return self.publish(audit_log_created(entry), organisation=organisation)

    def version_published(self, version: VersionPublished, *, environment: int) -> list[DeliveryResult]:
        """Publish a NEW_VERSION_PUBLISHED event to ``environment``'s endpoints (its payload names no
        environment, so the environment is required)."""
        return self.publish(version_published(version), environment=environment)

    def ping(self, endpoint: Endpoint | str, *, event_type: EventType = EventType.FLAG_UPDATED) -> DeliveryResult:
        """Send one realistic sample event of ``event_type``, like Flagsmith's "test web hook".

        One attempt, no retries; the endpoint need not be subscribed, and a 410 does not disable it. A URL
        string means an unsigned endpoint with default settings.
        """
        if not isinstance(endpoint, Endpoint):
            endpoint = Endpoint(endpoint)
        try:
            kind = EventType(event_type)
        except ValueError:
            raise ConfigError(f"event_type must be one of {', '.join(_SAMPLES)}, got {event_type!r}") from None
        event = sample_event(kind)
        body = encode(event, endpoint.format or self._format)
        now_ns = time.time_ns()
        delivery = Delivery(
            new_delivery_id(now_ns // 1_000_000),
            event.id,
            event.event_type,
            endpoint,
            body,
            utc_from_ns(now_ns),
            event=event,
        )
        return self._deliver(delivery, RetryPolicy.never(), False)

    # --- one attempt, one delivery -------------------------------------------------------------------

    def _signer(self, endpoint: Endpoint) -> Signer:
        signer = self._signers.get(endpoint)
        if signer is None:
            if len(self._signers) >= _SIGNERS_KEPT:
                self._signers.clear()
            signer = self._signers[endpoint] = Signer(endpoint)
        return signer

    def attempt(self, delivery: Delivery, attempt: int = 1) -> AttemptResult:
        """Make one attempt at ``delivery`` and return what it came to; nothing is retried or reported.

        A fresh ``webhook-timestamp`` and the signatures over it, the endpoint's headers, then the transport;
        ``webhook-id`` is the event id on every attempt. ``attempt`` (from 1) is passed on to the transport.
        Whatever the transport does (raise, return something else, quote a secret in its error) ends in an
        :class:`AttemptResult`; pass it to :func:`~flaghooks.classify` to know what to do next.
        """
        if type(delivery) is not Delivery:
            raise TypeError(f"delivery must be a Delivery, got {type(delivery).__name__}")
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise TypeError(f"attempt must be an int, got {type(attempt).__name__}")
        if attempt < 1:
            raise ConfigError(f"attempt counts from 1, got {attempt}")
        signer = self._signer(delivery.endpoint)
        return self._attempt(delivery, attempt, signer, signer.flagsmith(delivery.body))

    def _attempt(self, delivery: Delivery, number: int, signer: Signer, flagsmith: str | None) -> AttemptResult:
        endpoint, body = delivery.endpoint, delivery.body
        event = delivery.event
        if event is None:
            try:
                event = decode(body, event_id=delivery.event_id)
            except PayloadError as exc:
                return AttemptResult(None, f"PayloadError: the delivery's body is not an event: {exc}", permanent=True)
        request = DeliveryRequest(
            endpoint.url,
            body,
            signer.headers(delivery.event_id, body, flagsmith),
            endpoint.timeout,
            endpoint,
            event,
            number,
        )
        transport = self._transport
        started = time.monotonic()
        try:
            result = transport.send(request)
        except Exception as exc:  # a transport's bug must not stop the caller; it is a failed attempt
            error = withhold_secrets(f"{type(exc).__name__}: {exc}", request)
            return AttemptResult(None, error, time.monotonic() - started)
        if type(result) is not AttemptResult and not isinstance(result, AttemptResult):
            # A programming error in the transport: the same code returns the same junk on every retry, so
            # retrying only delays the caller. Permanent, and named so the author finds it.
            return AttemptResult(
                None,
                f"TypeError: {type(transport).__name__}.send returned {type(result).__name__}, not an AttemptResult",
                time.monotonic() - started,
                permanent=True,
            )
        if result.error is not None and type(transport) is not HttpTransport:
            # A custom transport's error text may quote what it was given (HttpTransport's never does).
            error = withhold_secrets(result.error, request)
            if error != result.error:
                result = attrs.evolve(result, error=error)
        return result

    def deliver(self, delivery: Delivery, *, retry: RetryPolicy | None = None) -> DeliveryResult:
        """Deliver ``delivery`` in the calling thread: attempts and retries by ``retry`` (default: this
        ``Webhooks``' policy), sleeping between them. The result goes to ``on_result`` and is returned; a 410
        disables the endpoint, as :meth:`publish` does."""
        if type(delivery) is not Delivery:
            raise TypeError(f"delivery must be a Delivery, got {type(delivery).__name__}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy or None, got {type(retry).__name__}")
        return self._deliver(delivery, self._retry if retry is None else retry, True)

    def _deliver(self, delivery: Delivery, policy: RetryPolicy, may_disable: bool) -> DeliveryResult:
        started = time.monotonic()
        signer = self._signers.get(delivery.endpoint) or self._signer(delivery.endpoint)
        key = signer.flagsmith_key
        flagsmith = None if key is None else hmac.digest(key, delivery.body, "sha256").hex()
        debug = logger.isEnabledFor(_DEBUG)
        history: list[AttemptResult] = []
        number = 0
        limit = policy.attempts
        while True:
            number += 1
            result = self._attempt(delivery, number, signer, flagsmith)
            history.append(result)
            outcome = classify(result)
            if debug:
                log_attempt(delivery, number, limit, result)
            if outcome is not Outcome.RETRY or number >= limit:
                break
            time.sleep(policy.wait(number, result.status, result.retry_after, self._random))
        return self._finish(delivery, history, outcome, time.monotonic() - started, None, may_disable)

    # --- how every delivery ends, whoever scheduled it -----------------------------------------------

    def _finish(
        self,
        delivery: Delivery,
        history: Sequence[AttemptResult],
        outcome: Outcome | None,
        elapsed: float,
        error: str | None = None,
        may_disable: bool = True,
        disabled: bool = False,
    ) -> DeliveryResult:
        """End ``delivery``: build its result, disable its endpoint on a 410, log a failure, call ``on_result``.

        ``outcome`` is the last attempt's (``None`` when the delivery ended without one deciding it: dropped,
        abandoned, its endpoint disabled); ``error`` then says why. Every executor ends every delivery here,
        exactly once.
        """
        last = history[-1] if history else None
        status = last.status if last is not None else None
        ok = outcome is Outcome.DELIVERED
        if outcome is Outcome.GONE and may_disable:
            self._disable(delivery.endpoint, "it answered 410 Gone")
            disabled = True
        if not ok and error is None:
            assert last is not None  # an outcome comes from an attempt
            error = last.error if last.error is not None else f"HTTP {last.status}"
        result = DeliveryResult(
            delivery.endpoint,
            delivery.event_id,
            delivery.event_type,
            ok,
            status,
            len(history),
            None if ok else error,
            elapsed,
            disabled,
            tuple(history),
            delivery.id,
        )
        return self._report(result)

    def _disable(self, endpoint: Endpoint, reason: str) -> None:
        """Skip ``endpoint`` in routing until it is subscribed again."""
        with self._lock:
            self._gone.add(endpoint)
            self._routes.clear()
        logger.warning("endpoint %s disabled until subscribed again: %s", endpoint.label, reason)

    def _enable(self, endpoint: Endpoint) -> None:
        """Route to ``endpoint`` again after :meth:`_disable` (a durable executor's file says it was enabled)."""
        with self._lock:
            self._gone.discard(endpoint)
            self._routes.clear()

    def _report(self, result: DeliveryResult) -> DeliveryResult:
        if not result.ok:
            logger.warning(
                "delivery of %s %s to %s failed after %d attempt(s): %s",
                result.event_type,
                result.event_id,
                result.endpoint.label,
                result.attempts,
                result.error,
            )
        callback = self._on_result
        if callback is not None:
            try:
                callback(result)
            except Exception:
                logger.exception("on_result callback raised for %s", result.event_id)
        return result

    # --- lifecycle -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the transport."""
        self._transport.close()

    def __enter__(self) -> Webhooks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def log_attempt(delivery: Delivery, number: int, limit: int, result: AttemptResult) -> None:
    """The DEBUG line for one attempt (callers check that DEBUG is enabled first)."""
    logger.debug(
        "attempt %d/%d of %s %s to %s: %s",
        number,
        limit,
        delivery.event_type,
        delivery.event_id,
        delivery.endpoint.label,
        result.status if result.status is not None else result.error,
    )

"""Webhooks: route an event to its endpoints, encode once, sign, retry, and report every result."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

import attrs

from ._endpoints import Endpoint, Signing
from ._events import EventType, FlagChange, WebhookEvent, audit_log_created, flag_changed, version_published
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureState,
    Project,
)
from ._retry import Outcome, RetryPolicy, classify
from ._signing import _standard_digest, sign_flagsmith, standard_key
from ._version import VERSION
from ._versions import VersionFeature, VersionFeatureState, VersionPublished, VersionPublisher
from ._wire import PayloadFormat, encode
from .exceptions import ConfigError, PayloadError
from .transports import AttemptResult, DeliveryRequest, HttpTransport, Transport
from .transports._base import withhold_secrets

__all__ = ["DeliveryResult", "Webhooks"]

logger = logging.getLogger("flaghooks")
_USER_AGENT = f"flaghooks/{VERSION}"

ScopeKey = tuple[str, int]


@attrs.frozen
class DeliveryResult:
    """How the delivery of one event to one endpoint ended.

    ``event_type`` is the :class:`EventType`, or the type's name as a plain ``str`` for an event type
    flaghooks does not know. ``ok`` is true when an attempt got a 2xx. ``status`` and ``error`` are the last
    attempt's; ``attempts`` counts them (0 when the event could not be encoded for the endpoint).
    ``elapsed`` is the delivery's duration in seconds, waits between attempts included. ``endpoint_disabled``
    is true when a 410 disabled the endpoint in its :class:`Webhooks`. ``history`` has every attempt's
    :class:`AttemptResult`.
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

    Delivery is synchronous: :meth:`publish` runs in the calling thread, endpoint after endpoint in subscription
    order, each with its retries, and returns when every endpoint is done (until background delivery exists).
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
        self._gone: set[Endpoint] = set()  # disabled by a 410 until subscribed again
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
        """
        if not isinstance(endpoint, Endpoint):
            raise ConfigError(f"endpoint must be an Endpoint, got {type(endpoint).__name__}")
        scope = self._scope(environment, organisation)
        with self._lock:
            self._scopes.setdefault(scope, {})[endpoint] = None  # again: keeps its place in the order
            self._memberships.setdefault(endpoint, {})[scope] = None
            self._gone.discard(endpoint)

    def unsubscribe(self, endpoint: Endpoint) -> None:
        """Remove ``endpoint`` from every scope (nothing happens if it was not subscribed)."""
        with self._lock:
            for scope in self._memberships.pop(endpoint, ()):
                endpoints = self._scopes[scope]
                del endpoints[endpoint]
                if not endpoints:
                    del self._scopes[scope]
            self._gone.discard(endpoint)

    def endpoints(self, *, environment: int | None = None, organisation: int | None = None) -> list[Endpoint]:
        """One scope's endpoints, or, when neither is given, every subscribed endpoint once."""
        with self._lock:
            if environment is None and organisation is None:
                seen: dict[Endpoint, None] = {}
                for endpoints in self._scopes.values():
                    seen.update(endpoints)
                return list(seen)
            return list(self._scopes.get(self._scope(environment, organisation), ()))

    # --- publishing ----------------------------------------------------------------------------------

    def _route(self, event: WebhookEvent, environment: int | None, organisation: int | None) -> list[Endpoint]:
        data = event.data
        scopes: list[ScopeKey] = []
        if isinstance(data, FlagChange):
            state = data.new_state if data.new_state is not None else data.previous_state
            assert state is not None  # a FlagChange always has one
            env = environment if environment is not None else state.environment.id
            org = organisation if organisation is not None else state.feature.project.organisation
            scopes.append(("environment", env))
            if org is not None:
                scopes.append(("organisation", org))
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
            scopes.append(("organisation", org))
        elif event.event_type == "NEW_VERSION_PUBLISHED":
            # Flagsmith sends it to environment web hooks only, and its payload names no environment.
            if organisation is not None:
                raise ConfigError("NEW_VERSION_PUBLISHED goes to environment endpoints; organisation= does not apply")
            if environment is None:
                raise ConfigError("NEW_VERSION_PUBLISHED carries no environment id: pass environment= to publish it")
            scopes.append(("environment", environment))
        else:
            # An event type flaghooks does not know: nothing in its data can be trusted to name a scope.
            if environment is None and organisation is None:
                raise ConfigError(
                    f"{event.event_type} is an event type flaghooks does not route by itself: "
                    "pass environment= or organisation= (or both) to publish it"
                )
            if environment is not None:
                scopes.append(("environment", environment))
            if organisation is not None:
                scopes.append(("organisation", organisation))
        chosen: dict[Endpoint, None] = {}
        with self._lock:
            for scope in scopes:
                for endpoint in self._scopes.get(scope, ()):
                    if not endpoint.enabled or endpoint in self._gone:
                        continue
                    # An endpoint's events holds EventType members, which equal their names as str; an
                    # unknown type (a plain str) is in no such set, so it reaches only endpoints taking all.
                    if endpoint.events is not None and event.event_type not in endpoint.events:
                        continue
                    chosen[endpoint] = None
        return list(chosen)

    def publish(
        self, event: WebhookEvent, *, environment: int | None = None, organisation: int | None = None
    ) -> list[DeliveryResult]:
        """Deliver ``event`` to every endpoint it routes to, and return one result per endpoint.

        FLAG_UPDATED and FLAG_DELETED go to the endpoints of the state's environment and, as Flagsmith does, of
        its organisation (``feature.project.organisation``) when known; AUDIT_LOG_CREATED goes to the endpoints
        of the entry's organisation. A given ``environment`` or ``organisation`` replaces the one read from the
        event for that scope. Disabled endpoints and endpoints that do not take this event type are skipped;
        an endpoint subscribed to both scopes gets the event once. The event is encoded once per payload
        format.

        Raises :class:`ConfigError` when an audit event has no organisation to go to.
        """
        if not isinstance(event, WebhookEvent):
            raise TypeError(f"event must be a WebhookEvent, got {type(event).__name__}")
        if environment is not None:
            _scope_id("environment", environment)
        if organisation is not None:
            _scope_id("organisation", organisation)
        bodies: dict[PayloadFormat, bytes | PayloadError] = {}
        results = []
        for endpoint in self._route(event, environment, organisation):
            fmt = endpoint.format or self._format
            body = bodies.get(fmt)
            if body is None:
                try:
                    body = encode(event, fmt)
                except PayloadError as exc:
                    body = exc
                bodies[fmt] = body
            if isinstance(body, PayloadError):
                result = DeliveryResult(
                    endpoint, event.id, event.event_type, False, None, 0, f"PayloadError: {body}", 0.0
                )
            else:
                result = self._deliver(endpoint, event, body, self._retry, may_disable=True)
            results.append(self._report(result))
        return results

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
        if not self._send_noop and isinstance(event.data, FlagChange) and event.data.change.is_noop:
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
        return self._report(self._deliver(endpoint, event, body, RetryPolicy.never(), may_disable=False))

    # --- one delivery --------------------------------------------------------------------------------

    def _deliver(
        self, endpoint: Endpoint, event: WebhookEvent, body: bytes, policy: RetryPolicy, *, may_disable: bool
    ) -> DeliveryResult:
        started = time.monotonic()
        signing, secret = endpoint.signing, endpoint.secret
        flagsmith = None
        if secret is not None and signing is not Signing.STANDARD:
            flagsmith = sign_flagsmith(body, secret)
        keys: list[bytes] = []
        if signing is not Signing.FLAGSMITH and secret is not None:
            keys = [standard_key(s) for s in (secret, *endpoint.previous_secrets)]
        history: list[AttemptResult] = []
        attempt = 0
        while True:
            attempt += 1
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": _USER_AGENT,
                "webhook-id": event.id,
                "webhook-timestamp": str(timestamp),
            }
            if flagsmith is not None:
                headers["X-Flagsmith-Signature"] = flagsmith
            if keys:
                headers["webhook-signature"] = " ".join(
                    "v1," + _standard_digest(key, event.id, timestamp, body) for key in keys
                )
            if endpoint.headers:
                headers.update(endpoint.headers)
            request = DeliveryRequest(endpoint.url, body, headers, endpoint.timeout, endpoint, event, attempt)
            result = self._attempt(request)
            history.append(result)
            outcome = classify(result)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "attempt %d/%d of %s %s to %s: %s",
                    attempt,
                    policy.attempts,
                    event.event_type,
                    event.id,
                    endpoint.label,
                    result.status if result.status is not None else result.error,
                )
            if outcome is not Outcome.RETRY or attempt >= policy.attempts:
                break
            time.sleep(policy.wait(attempt, result.status, result.retry_after, self._random))
        disabled = False
        if outcome is Outcome.GONE and may_disable:
            with self._lock:
                self._gone.add(endpoint)
            disabled = True
            logger.warning("endpoint %s answered 410 Gone: disabled until subscribed again", endpoint.label)
        last = history[-1]
        error = last.error
        if outcome is not Outcome.DELIVERED and error is None:
            error = f"HTTP {last.status}"
        return DeliveryResult(
            endpoint=endpoint,
            event_id=event.id,
            event_type=event.event_type,
            ok=outcome is Outcome.DELIVERED,
            status=last.status,
            attempts=len(history),
            error=None if outcome is Outcome.DELIVERED else error,
            elapsed=time.monotonic() - started,
            endpoint_disabled=disabled,
            history=tuple(history),
        )

    def _attempt(self, request: DeliveryRequest) -> AttemptResult:
        started = time.monotonic()
        try:
            result = self._transport.send(request)
        except Exception as exc:  # a transport's bug must not stop the caller; it is a failed attempt
            error = withhold_secrets(f"{type(exc).__name__}: {exc}", request)
            return AttemptResult(None, error, time.monotonic() - started)
        if not isinstance(result, AttemptResult):
            # A programming error in the transport: the same code returns the same junk on every retry, so
            # retrying only delays the caller. Permanent, and named so the author finds it.
            return AttemptResult(
                None,
                f"TypeError: {type(self._transport).__name__}.send returned {type(result).__name__}, "
                "not an AttemptResult",
                time.monotonic() - started,
                permanent=True,
            )
        if result.error is not None and not isinstance(self._transport, HttpTransport):
            # A custom transport's error text may quote what it was given (HttpTransport's never does).
            error = withhold_secrets(result.error, request)
            if error != result.error:
                result = attrs.evolve(result, error=error)
        return result

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
        if self._on_result is not None:
            try:
                self._on_result(result)
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


def _sample_feature() -> tuple[Project, Feature, FeatureState, FeatureState]:
    project = Project(1, "flaghooks", organisation=1)
    feature = Feature(
        id=1,
        name="flaghooks_ping",
        project=project,
        created_date=datetime(2024, 1, 1, tzinfo=UTC),
        description="A sample feature sent by a flaghooks ping",
    )
    before = FeatureState(id=1, feature=feature, environment=Environment(1, "Development"), enabled=False)
    return project, feature, before, attrs.evolve(before, enabled=True, value="ping")


def _sample_flag_updated(now: datetime) -> WebhookEvent:
    _, _, before, after = _sample_feature()
    return flag_changed(before, after, changed_by="flaghooks ping", timestamp=now)


def _sample_flag_deleted(now: datetime) -> WebhookEvent:
    _, _, _, after = _sample_feature()
    return flag_changed(after, None, changed_by="flaghooks ping", timestamp=now)


def _sample_audit_log_created(now: datetime) -> WebhookEvent:
    project, feature, _, _ = _sample_feature()
    entry = AuditLogEntry(
        created_date=now,
        log="Test web hook sent by flaghooks",
        related_object_type="FEATURE",
        related_object_id=feature.id,
        author=Author(1, "ping@flaghooks.invalid", "flaghooks", "ping"),
        project=project,
    )
    return audit_log_created(entry)


def _sample_new_version_published(now: datetime) -> WebhookEvent:
    _, feature, _, _ = _sample_feature()
    version = VersionPublished(
        uuid="00000000-0000-4000-8000-000000000001",
        feature=VersionFeature(feature.id, feature.name),
        published_by=VersionPublisher(1, "ping@flaghooks.invalid"),
        feature_states=(VersionFeatureState(enabled=True, value="ping"),),
    )
    return version_published(version)


# The event types ping can send, each with the builder of its sample (given the current time). ping and the
# command's --event choices offer exactly these keys: an event type becomes pingable by adding its builder here.
_SAMPLES: dict[EventType, Callable[[datetime], WebhookEvent]] = {
    EventType.FLAG_UPDATED: _sample_flag_updated,
    EventType.FLAG_DELETED: _sample_flag_deleted,
    EventType.AUDIT_LOG_CREATED: _sample_audit_log_created,
    EventType.NEW_VERSION_PUBLISHED: _sample_new_version_published,
}


def sample_event(event_type: EventType) -> WebhookEvent:
    """A realistic sample event of ``event_type``, for pings (``ConfigError`` for a type without a sample)."""
    builder = _SAMPLES.get(event_type)
    if builder is None:
        raise ConfigError(f"event_type must be one of {', '.join(_SAMPLES)}, got {event_type!r}")
    return builder(datetime.now(UTC))


def sample_event_types() -> tuple[EventType, ...]:
    """The event types :meth:`Webhooks.ping` can send, in the order offered."""
    return tuple(_SAMPLES)

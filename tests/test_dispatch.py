"""Webhooks: routing, subscriptions, no-ops, callbacks and logging, with RecordingTransport (no network)."""

from __future__ import annotations

import logging
import re
import threading

import attrs
import pytest

from cases import BANNER, PROJECT, VARIANTS, banner_state, documented_audit_entry, documented_flag_event, segment_state
from flaghooks import (
    AuditLogEntry,
    ConfigError,
    DeliveryResult,
    Endpoint,
    Environment,
    EventType,
    FeatureSegment,
    PayloadFormat,
    Project,
    RetryPolicy,
    Signing,
    WebhookEvent,
    Webhooks,
    audit_log_created,
    encode,
    flag_changed,
    generate_secret,
)
from flaghooks.testing import RecordingTransport
from flaghooks.transports import AttemptResult, DeliveryRequest, Transport

A = Endpoint("https://a.example/hook", name="a")
B = Endpoint("https://b.example/hook", name="b")
ORG = Endpoint("https://org.example/hook", name="org")


def make(outcomes: object = None, **kwargs: object) -> tuple[Webhooks, RecordingTransport]:
    transport = RecordingTransport(outcomes)  # type: ignore[arg-type]
    return Webhooks(transport=transport, retry=RetryPolicy(backoff=0), **kwargs), transport  # type: ignore[arg-type]


def urls(transport: RecordingTransport) -> list[str]:
    return [request.url for request in transport.requests]


class TestSubscriptions:
    def test_exactly_one_scope(self) -> None:
        """subscribe needs exactly one of environment and organisation."""
        webhooks, _ = make()
        with pytest.raises(ConfigError, match="exactly one"):
            webhooks.subscribe(A)
        with pytest.raises(ConfigError, match="exactly one"):
            webhooks.subscribe(A, environment=1, organisation=2)
        with pytest.raises(ConfigError, match="environment must be an int"):
            webhooks.subscribe(A, environment=True)
        with pytest.raises(ConfigError, match="Endpoint"):
            webhooks.subscribe("https://a.example/", environment=1)  # type: ignore[arg-type]

    def test_listing(self) -> None:
        """endpoints() lists one scope, or every subscribed endpoint once."""
        webhooks, _ = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(B, environment=23)
        webhooks.subscribe(A, environment=23)  # again: no duplicate
        webhooks.subscribe(A, organisation=7)
        webhooks.subscribe(ORG, organisation=7)
        assert webhooks.endpoints(environment=23) == [A, B]
        assert webhooks.endpoints(organisation=7) == [A, ORG]
        assert webhooks.endpoints() == [A, B, ORG]
        assert webhooks.endpoints(environment=99) == []
        with pytest.raises(ConfigError):
            webhooks.endpoints(environment=23, organisation=7)

    def test_unsubscribe_from_every_scope(self) -> None:
        """unsubscribe removes an endpoint everywhere; removing an unknown one does nothing."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(A, organisation=7)
        webhooks.subscribe(B, environment=23)
        webhooks.unsubscribe(A)
        webhooks.unsubscribe(A)
        assert webhooks.endpoints() == [B]
        webhooks.publish(documented_flag_event())
        assert urls(transport) == [B.url]

    def test_subscribe_and_unsubscribe_compare_no_other_endpoint(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """subscribe and unsubscribe cost O(1): they compare the endpoint with none of the thousands of others
        in its scope, and unsubscribe does not visit the scopes the endpoint is not in."""
        webhooks, _ = make()
        crowd = [Endpoint(f"https://e{i}.example/") for i in range(2000)]
        for index, endpoint in enumerate(crowd):
            webhooks.subscribe(endpoint, environment=23)
            webhooks.subscribe(endpoint, environment=1000 + index)  # 2,000 scopes the newcomer is not in
        comparisons = 0
        original = Endpoint.__eq__

        def counting(self: Endpoint, other: object) -> bool:
            nonlocal comparisons
            comparisons += 1
            return original(self, other)  # type: ignore[no-any-return]

        monkeypatch.setattr(Endpoint, "__eq__", counting)
        newcomer = Endpoint("https://new.example/")
        webhooks.subscribe(newcomer, environment=23)
        webhooks.subscribe(newcomer, environment=23)  # again: found, not appended twice
        webhooks.unsubscribe(newcomer)
        webhooks.unsubscribe(crowd[1000])
        monkeypatch.undo()
        assert comparisons <= 4  # hash lookups only (a comparison per hash collision at most)
        assert webhooks.endpoints(environment=23) == crowd[:1000] + crowd[1001:]
        assert webhooks.endpoints(environment=2000) == []

    def test_order_survives_resubscription_and_removal(self) -> None:
        """Routing follows subscription order; subscribing again keeps an endpoint's place, unsubscribing and
        subscribing again moves it to the end, and an emptied scope disappears."""
        webhooks, transport = make()
        c = Endpoint("https://c.example/hook", name="c")
        for endpoint in (A, B, c):
            webhooks.subscribe(endpoint, environment=23)
        webhooks.subscribe(A, environment=23)
        assert webhooks.endpoints(environment=23) == [A, B, c]
        webhooks.unsubscribe(A)
        webhooks.subscribe(A, environment=23)
        assert webhooks.endpoints(environment=23) == [B, c, A]
        webhooks.publish(documented_flag_event())
        assert urls(transport) == [B.url, c.url, A.url]
        webhooks.subscribe(ORG, organisation=7)
        webhooks.unsubscribe(ORG)
        assert webhooks.endpoints(organisation=7) == [] and ORG not in webhooks.endpoints()
        assert webhooks._scopes.keys() == {("environment", 23)}

    def test_many_endpoints_per_environment(self) -> None:
        """Any number of endpoints per environment, delivered in subscription order."""
        webhooks, transport = make()
        endpoints = [Endpoint(f"https://e{i}.example/") for i in range(5)]
        for endpoint in endpoints:
            webhooks.subscribe(endpoint, environment=23)
        assert [r.ok for r in webhooks.publish(documented_flag_event())] == [True] * 5
        assert urls(transport) == [e.url for e in endpoints]


class TestRouting:
    def test_environment_and_organisation(self) -> None:
        """Flag events go to the state's environment and to its organisation, each endpoint once."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(B, environment=24)
        webhooks.subscribe(ORG, organisation=7)
        webhooks.subscribe(A, organisation=7)
        results = webhooks.publish(VARIANTS["environment_state_updated"]())  # environment 23, organisation 7
        assert [r.endpoint for r in results] == [A, ORG]
        assert urls(transport) == [A.url, ORG.url]

    def test_without_organisation(self) -> None:
        """Without a known organisation, only the environment's endpoints get flag events."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(ORG, organisation=7)
        webhooks.publish(documented_flag_event())  # project 12 has no organisation
        assert urls(transport) == [A.url]

    def test_deleted_routes_by_previous_state(self) -> None:
        """FLAG_DELETED routes by the state that went away."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.publish(VARIANTS["feature_deleted"]())
        assert urls(transport) == [A.url]

    def test_overrides(self) -> None:
        """A given environment or organisation replaces the one read from the event."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=99)
        webhooks.subscribe(ORG, organisation=8)
        webhooks.publish(VARIANTS["feature_created"](), environment=99, organisation=8)
        assert urls(transport) == [A.url, ORG.url]

    def test_audit_goes_to_the_organisation(self) -> None:
        """AUDIT_LOG_CREATED goes to the entry's organisation's endpoints, never to environments."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(ORG, organisation=7)
        [result] = webhooks.publish(VARIANTS["audit_entry"]())
        assert result.endpoint == ORG and urls(transport) == [ORG.url]

    def test_audit_organisation_argument(self) -> None:
        """audit_log_created(entry, organisation=...) routes an entry without a project."""
        webhooks, _transport = make()
        webhooks.subscribe(ORG, organisation=7)
        entry = attrs.evolve(documented_audit_entry(), project=None)
        [result] = webhooks.audit_log_created(entry, organisation=7)
        assert result.ok and result.event_type is EventType.AUDIT_LOG_CREATED

    def test_audit_without_organisation(self) -> None:
        """An audit entry with no organisation known is a ConfigError."""
        webhooks, _ = make()
        entry = attrs.evolve(documented_audit_entry(), project=Project(6))
        with pytest.raises(ConfigError, match="no organisation is known"):
            webhooks.audit_log_created(entry)
        with pytest.raises(ConfigError, match="environment= does not apply"):
            webhooks.publish(audit_log_created(documented_audit_entry()), environment=1)

    def test_disabled_and_filtered_endpoints_are_skipped(self) -> None:
        """Disabled endpoints and event types outside an endpoint's events are skipped."""
        webhooks, transport = make()
        webhooks.subscribe(Endpoint("https://off.example/", enabled=False), environment=23)
        webhooks.subscribe(Endpoint("https://deleted-only.example/", events={EventType.FLAG_DELETED}), environment=23)
        webhooks.subscribe(A, environment=23)
        assert [r.endpoint for r in webhooks.publish(VARIANTS["feature_created"]())] == [A]
        webhooks.publish(VARIANTS["feature_deleted"]())
        assert urls(transport) == [A.url, "https://deleted-only.example/", A.url]

    def test_bad_arguments(self) -> None:
        """publish checks its arguments."""
        webhooks, _ = make()
        with pytest.raises(TypeError, match="WebhookEvent"):
            webhooks.publish({"event_type": "FLAG_UPDATED"})  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="organisation must be an int"):
            webhooks.publish(documented_flag_event(), organisation="7")  # type: ignore[arg-type]


class TestEncoding:
    def test_encoded_once_per_format(self) -> None:
        """Endpoints sharing a format get the very same bytes object; each format is encoded once."""
        webhooks, transport = make(format=PayloadFormat.MODERN)
        event = VARIANTS["segment_override_set"]()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(B, environment=23)
        webhooks.subscribe(Endpoint("https://c.example/", format=PayloadFormat.CLASSIC), environment=23)
        webhooks.publish(event)
        a, b, c = transport.requests
        assert a.body is b.body and a.body == encode(event, PayloadFormat.MODERN)
        assert c.body == encode(event, PayloadFormat.CLASSIC)

    def test_unencodable_for_one_format(self) -> None:
        """An event one endpoint's format cannot carry fails for that endpoint only, with the reason."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(Endpoint("https://m.example/", format=PayloadFormat.MODERN), environment=23)
        state = segment_state(feature_segment=FeatureSegment(id=77))
        classic, modern = webhooks.publish(flag_changed(None, state))
        assert classic.ok and not modern.ok
        assert modern.attempts == 0 and modern.error is not None and "PayloadError" in modern.error
        assert len(transport.requests) == 1

    def test_headers(self) -> None:
        """Every attempt carries the content type, user agent, webhook-id, timestamp and signatures."""
        secret = generate_secret()
        webhooks, transport = make()
        webhooks.subscribe(Endpoint("https://s.example/", secret=secret, signing=Signing.BOTH), environment=23)
        event = documented_flag_event()
        webhooks.publish(event)
        headers = transport.requests[0].headers
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"].startswith("flaghooks/")
        assert headers["webhook-id"] == event.id
        assert headers["webhook-timestamp"].isdigit()
        assert len(headers["X-Flagsmith-Signature"]) == 64
        assert headers["webhook-signature"].startswith("v1,")


class TestResults:
    def test_noop_updates_send_nothing(self) -> None:
        """feature_state_changed sends nothing for an update that changed nothing, unless send_noop."""
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        assert webhooks.feature_state_changed(banner_state(), banner_state(id=1)) == []
        assert transport.requests == []
        noisy, noisy_transport = make(send_noop=True)
        noisy.subscribe(A, environment=23)
        assert len(noisy.feature_state_changed(banner_state(), banner_state())) == 1
        assert len(noisy_transport.requests) == 1

    def test_result_fields(self) -> None:
        """A DeliveryResult says what happened, attempt by attempt."""
        webhooks, _ = make([503, 500, 200])
        webhooks.subscribe(A, environment=23)
        [result] = webhooks.publish(documented_flag_event())
        assert isinstance(result, DeliveryResult)
        assert (result.ok, result.status, result.attempts, result.error) == (True, 200, 3, None)
        assert [a.status for a in result.history] == [503, 500, 200]
        assert result.event_id == "evt_doc" and result.event_type is EventType.FLAG_UPDATED
        assert result.elapsed >= 0 and not result.endpoint_disabled

    def test_on_result_gets_every_result(self) -> None:
        """on_result is called with every result, failures included; its exceptions are logged, not raised."""
        seen: list[DeliveryResult] = []

        def callback(result: DeliveryResult) -> None:
            seen.append(result)
            raise RuntimeError("callback bug")

        webhooks, _ = make([404], on_result=callback)
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(B, environment=23)
        results = webhooks.publish(documented_flag_event())
        assert seen == results and [r.ok for r in results] == [False, True]

    def test_transport_returning_junk(self) -> None:
        """A transport that returns something other than an AttemptResult is a programming error: one failed
        attempt, not retried (it would only return the same junk again), with an error naming the class."""

        class Sloppy(Transport):
            def send(self, request: DeliveryRequest) -> AttemptResult:
                return 202  # type: ignore[return-value]

        webhooks = Webhooks(transport=Sloppy(), retry=RetryPolicy(attempts=5, backoff=0))
        webhooks.subscribe(A, environment=23)
        [result] = webhooks.publish(documented_flag_event())
        assert not result.ok and result.attempts == 1 and result.history[0].permanent
        assert result.error == "TypeError: Sloppy.send returned int, not an AttemptResult"

    def test_transport_raising_is_still_retried(self) -> None:
        """A transport that raises is a failed attempt that is retried (the failure may be passing)."""
        calls = iter([RuntimeError("flaky"), 200])

        def script(request: DeliveryRequest) -> int:
            outcome = next(calls)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        webhooks, _ = make(script)
        webhooks.subscribe(A, environment=23)
        [result] = webhooks.publish(documented_flag_event())
        assert result.ok and result.attempts == 2 and result.history[0].error == "RuntimeError: flaky"

    def test_close(self) -> None:
        """close() and leaving a with block close the transport."""
        webhooks, transport = make()
        with webhooks:
            pass
        assert transport.closed

    def test_ping_event_type_is_checked(self) -> None:
        """ping names the event types it knows when given another."""
        webhooks, transport = make()
        with pytest.raises(ConfigError, match="FLAG_UPDATED, FLAG_DELETED, AUDIT_LOG_CREATED"):
            webhooks.ping(A, event_type="FLAG_CREATED")  # type: ignore[arg-type]
        assert webhooks.ping(A, event_type="FLAG_DELETED").event_type is EventType.FLAG_DELETED  # type: ignore[arg-type]
        assert len(transport.requests) == 1

    def test_sample_events(self) -> None:
        """Every event type ping offers has a sample of that type; any other is a ConfigError naming them."""
        from flaghooks._dispatch import sample_event, sample_event_types

        for kind in sample_event_types():
            assert sample_event(kind).event_type is kind
        assert {EventType.FLAG_UPDATED, EventType.FLAG_DELETED, EventType.AUDIT_LOG_CREATED} <= set(
            sample_event_types()
        )
        with pytest.raises(ConfigError) as caught:
            sample_event("FLAG_RENAMED")  # type: ignore[arg-type]
        assert str(caught.value) == f"event_type must be one of {', '.join(sample_event_types())}, got 'FLAG_RENAMED'"

    def test_default_transport_is_http(self) -> None:
        """Without a transport, Webhooks uses HttpTransport."""
        from flaghooks.transports import HttpTransport

        with Webhooks() as webhooks:
            assert isinstance(webhooks._transport, HttpTransport)

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"transport": object()}, "transport"),
            ({"retry": 3}, "retry"),
            ({"format": "xml"}, "format"),
            ({"on_result": 5}, "on_result"),
            ({"send_noop": "yes"}, "send_noop"),
        ],
    )
    def test_bad_configuration(self, kwargs: dict[str, object], words: str) -> None:
        """Webhooks checks its configuration."""
        with pytest.raises(ConfigError, match=words):
            Webhooks(**kwargs)  # type: ignore[arg-type]

    def test_concurrent_subscriptions(self) -> None:
        """Subscriptions may change from other threads while events are published."""
        webhooks, _ = make()
        webhooks.subscribe(A, environment=23)
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                webhooks.subscribe(B, environment=23)
                webhooks.unsubscribe(B)

        thread = threading.Thread(target=churn)
        thread.start()
        try:
            for _ in range(200):
                assert A in [r.endpoint for r in webhooks.publish(documented_flag_event())]
        finally:
            stop.set()
            thread.join()


class TestSecrecy:
    def test_no_secret_or_signature_in_logs_reprs_or_results(self, caplog: pytest.LogCaptureFixture) -> None:
        """Secrets and signature values never appear in log lines, request or result reprs."""
        secret, old = generate_secret(), generate_secret()
        endpoint = Endpoint(
            "https://user:hunter2@s.example/", secret=secret, signing=Signing.BOTH, previous_secrets=(old,)
        )
        seen: list[DeliveryRequest] = []

        def script(request: DeliveryRequest) -> AttemptResult:
            seen.append(request)
            raise RuntimeError(f"transport failed on {request!r}")

        webhooks, _ = make(script)
        webhooks.subscribe(endpoint, environment=23)
        caplog.set_level(logging.DEBUG, logger="flaghooks")
        [result] = webhooks.publish(documented_flag_event())
        signatures = [seen[0].headers["X-Flagsmith-Signature"], *seen[0].headers["webhook-signature"].split(" ")]
        texts = [caplog.text, repr(result), str(result), repr(seen[0])]
        for text in texts:
            for value in [secret, old, "hunter2", *signatures, *(s.partition(",")[2] for s in signatures[1:])]:
                assert value not in text
        assert any(r.levelno == logging.WARNING and "failed after 3 attempt" in r.message for r in caplog.records)
        assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 3

    def test_callback_failure_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """An exception in on_result is logged with its traceback."""

        def callback(result: DeliveryResult) -> None:
            raise ValueError("bad callback")

        webhooks, _ = make(on_result=callback)
        webhooks.subscribe(A, environment=23)
        webhooks.publish(documented_flag_event())
        assert "on_result callback raised" in caplog.text and "bad callback" in caplog.text


def test_states_of_other_environments_route_separately() -> None:
    """Two environments' changes reach their own endpoints."""
    webhooks, transport = make()
    webhooks.subscribe(A, environment=23)
    webhooks.subscribe(B, environment=24)
    other = banner_state(environment=Environment(24), feature=attrs.evolve(BANNER, project=PROJECT))
    webhooks.feature_state_changed(None, other)
    assert urls(transport) == [B.url]


def test_audit_entry_event_type_filter() -> None:
    """An organisation endpoint that takes only audit events gets only those."""
    webhooks, transport = make()
    webhooks.subscribe(Endpoint("https://audit.example/", events={"AUDIT_LOG_CREATED"}), organisation=7)
    webhooks.publish(VARIANTS["environment_state_updated"]())
    webhooks.audit_log_created(
        AuditLogEntry(
            created_date=documented_audit_entry().created_date,
            log="x",
            related_object_type="FEATURE",
            project=PROJECT,
        )
    )
    assert urls(transport) == ["https://audit.example/"]


def foreign_event(event_type: str, data: dict[str, object]) -> WebhookEvent:
    """An event whose data is neither a FlagChange nor an AuditLogEntry: a NEW_VERSION_PUBLISHED (its
    VersionPublished built from ``data``) or an event type flaghooks does not know (``data`` as decoded)."""
    from flaghooks import VersionFeature, VersionPublished

    if event_type == "NEW_VERSION_PUBLISHED":
        return WebhookEvent(
            "evt_foreign", event_type, VersionPublished(uuid=str(data["uuid"]), feature=VersionFeature(1, "x"))
        )
    return WebhookEvent("evt_foreign", event_type, data)


class TestRoutingOtherKinds:
    """NEW_VERSION_PUBLISHED (no environment in its payload) and event types flaghooks does not know."""

    def setup_method(self) -> None:
        self.webhooks, _ = make()
        self.webhooks.subscribe(A, environment=23)
        self.webhooks.subscribe(B, environment=24)
        self.webhooks.subscribe(ORG, organisation=7)
        self.webhooks.subscribe(A, organisation=7)

    def route(self, event: WebhookEvent, **scope: int) -> list[Endpoint]:
        return list(self.webhooks._route(event, scope.get("environment"), scope.get("organisation")))

    def test_new_version_goes_to_the_given_environment_only(self) -> None:
        """NEW_VERSION_PUBLISHED goes to the endpoints of environment= and to no organisation's."""
        event = foreign_event("NEW_VERSION_PUBLISHED", {"uuid": "7d1c", "feature": {"id": 1, "name": "x"}})
        assert self.route(event, environment=24) == [B]
        assert self.route(event, environment=23) == [A]

    def test_new_version_needs_an_environment(self) -> None:
        """Without environment=, NEW_VERSION_PUBLISHED is a ConfigError naming it; organisation= does not apply."""
        event = foreign_event("NEW_VERSION_PUBLISHED", {"uuid": "7d1c"})
        with pytest.raises(ConfigError, match="pass environment="):
            self.webhooks.publish(event)
        with pytest.raises(ConfigError, match="organisation= does not apply"):
            self.webhooks.publish(event, environment=23, organisation=7)

    def test_unknown_type_goes_where_it_is_told(self) -> None:
        """An unknown event type goes to the endpoints of environment= and/or organisation=, each once."""
        event = foreign_event("FLAG_RENAMED", {"from": "a", "to": "b"})
        assert self.route(event, environment=24) == [B]
        assert self.route(event, organisation=7) == [ORG, A]
        assert self.route(event, environment=23, organisation=7) == [A, ORG]

    def test_unknown_type_needs_a_scope(self) -> None:
        """An unknown event type with neither environment= nor organisation= is a ConfigError naming both."""
        with pytest.raises(ConfigError, match=r"FLAG_RENAMED .*environment= or organisation="):
            self.webhooks.publish(foreign_event("FLAG_RENAMED", {}))

    def test_event_filters_skip_unknown_types(self) -> None:
        """An endpoint that takes only some known types never gets an unknown one; one that takes all does."""
        picky = Endpoint("https://picky.example/", events={EventType.FLAG_UPDATED})
        self.webhooks.subscribe(picky, environment=24)
        assert self.route(foreign_event("FLAG_RENAMED", {}), environment=24) == [B]
        assert self.route(documented_flag_event(), environment=24) == [B, picky]

    def test_results_and_logs_name_a_plain_str_type(self, caplog: pytest.LogCaptureFixture) -> None:
        """A failed delivery of an event whose type is a plain str is logged with that name."""
        event = foreign_event("FLAG_RENAMED", {})
        webhooks = Webhooks(transport=RecordingTransport([500]), retry=RetryPolicy.never())
        webhooks.subscribe(A, environment=1)
        caplog.set_level(logging.DEBUG, logger="flaghooks")
        [result] = webhooks.publish(event, environment=1)
        assert result.event_type == "FLAG_RENAMED" and not result.ok
        assert "attempt 1/1 of FLAG_RENAMED evt_foreign" in caplog.text
        assert "delivery of FLAG_RENAMED evt_foreign to a failed after 1 attempt(s): HTTP 500" in caplog.text


class TestEventsWithoutEnvironment:
    """NEW_VERSION_PUBLISHED (and a type flaghooks does not know) carry no environment id: publish needs one."""

    def version_event(self) -> object:
        from flaghooks import VersionFeature, VersionPublished, WebhookEvent

        return WebhookEvent(
            "evt_v", EventType.NEW_VERSION_PUBLISHED, VersionPublished(uuid="u", feature=VersionFeature(1, "f"))
        )

    def test_version_published_helpers(self) -> None:
        """flaghooks.version_published builds the event (given or fresh id); Webhooks.version_published publishes
        it to the environment given, and only there."""
        from flaghooks import VersionFeature, VersionPublished, version_published

        version = VersionPublished(uuid="u", feature=VersionFeature(1, "f"))
        event = version_published(version, event_id="evt_given")
        assert (event.id, event.event_type, event.data) == ("evt_given", EventType.NEW_VERSION_PUBLISHED, version)
        assert version_published(version).id.startswith("evt_")
        with pytest.raises(TypeError, match="version must be a VersionPublished"):
            version_published({"uuid": "u"})  # type: ignore[arg-type]
        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(B, environment=24)
        [result] = webhooks.version_published(version, environment=24)
        assert result.ok and result.event_type is EventType.NEW_VERSION_PUBLISHED and urls(transport) == [B.url]

    def test_environment_required(self) -> None:
        """Without environment= the event cannot be routed: ConfigError naming environment=."""
        webhooks, _ = make()
        webhooks.subscribe(A, environment=23)
        with pytest.raises(ConfigError, match="environment="):
            webhooks.publish(self.version_event())  # type: ignore[arg-type]

    def test_goes_to_that_environment_only(self) -> None:
        """With environment=, it goes to that environment's endpoints only, byte for byte as encoded."""
        from flaghooks import WebhookEvent

        webhooks, transport = make()
        webhooks.subscribe(A, environment=23)
        webhooks.subscribe(B, environment=24)
        webhooks.subscribe(ORG, organisation=7)
        results = webhooks.publish(self.version_event(), environment=23)  # type: ignore[arg-type]
        assert [r.ok for r in results] == [True] and urls(transport) == [A.url]
        unknown = WebhookEvent("evt_u", "SOMETHING_NEW", {"a": 1})
        assert [r.event_type for r in webhooks.publish(unknown, environment=24)] == ["SOMETHING_NEW"]
        assert transport.requests[-1].body == b'{"data": {"a": 1}, "event_type": "SOMETHING_NEW"}'


def test_two_endpoints_with_one_key_cannot_be_subscribed_at_once() -> None:
    """Durable executors find an endpoint by its key (name, else URL): a second endpoint with the same key is refused,
    the same endpoint again is fine, and after unsubscribing the old one the new one (a rotated secret) is taken."""
    webhooks = Webhooks(transport=RecordingTransport())
    old = Endpoint("https://hooks.example.com/a", secret="old-secret-0123456789")
    new = Endpoint("https://hooks.example.com/a", secret="new-secret-0123456789")
    webhooks.subscribe(old, environment=1)
    webhooks.subscribe(old, environment=2)
    with pytest.raises(ConfigError, match=re.escape("key 'https://hooks.example.com/a'")):
        webhooks.subscribe(new, environment=1)
    named = Endpoint("https://hooks.example.com/a", name="second")
    webhooks.subscribe(named, environment=1)  # a distinct name is a distinct key
    assert webhooks._endpoint_for("https://hooks.example.com/a") == old
    webhooks.unsubscribe(old)
    assert webhooks._endpoint_for("https://hooks.example.com/a") is None
    webhooks.subscribe(new, environment=1)
    assert webhooks._endpoint_for("https://hooks.example.com/a") == new
    assert webhooks._endpoint_for("second") == named

"""Events: flag_changed, audit_log_created, event ids and the agreement of type and data."""

from __future__ import annotations

import os
import re
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from cases import (
    BANNER,
    banner_state,
    documented_audit_entry,
    documented_states,
    identity_state,
    segment_state,
)
from flaghooks import (
    Action,
    Environment,
    EventType,
    FlagChange,
    VersionFeature,
    VersionPublished,
    WebhookEvent,
    audit_log_created,
    flag_changed,
)
from flaghooks._events import new_event_id

GENERATED_ID = re.compile(r"evt_[A-Za-z0-9_]+")


def test_event_types_equal_their_names() -> None:
    """EventType is a str enum whose values are the names; NEW_VERSION_PUBLISHED joined in issue 7."""
    assert [t.value for t in EventType] == [
        "FLAG_UPDATED",
        "FLAG_DELETED",
        "AUDIT_LOG_CREATED",
        "NEW_VERSION_PUBLISHED",
    ]
    assert EventType.FLAG_UPDATED == "FLAG_UPDATED"


class TestFlagChanged:
    def test_update(self) -> None:
        """A previous and a new state make FLAG_UPDATED carrying both, with its change."""
        previous, new = documented_states()
        when = datetime(2020, 3, 7, 13, 59, 7, 40000, tzinfo=UTC)
        event = flag_changed(previous, new, changed_by="Some User", timestamp=when)
        assert event.event_type is EventType.FLAG_UPDATED
        assert event.data == FlagChange("Some User", new, previous, when)
        assert isinstance(event.data, FlagChange)
        assert event.data.change.changed == {"enabled", "feature"}

    def test_creation(self) -> None:
        """A new state without a previous one is FLAG_UPDATED (Flagsmith sends creations so)."""
        event = flag_changed(None, segment_state())
        assert event.event_type is EventType.FLAG_UPDATED
        assert isinstance(event.data, FlagChange) and event.data.change.action is Action.CREATED

    def test_deletion(self) -> None:
        """No new state is FLAG_DELETED: a feature deleted, or an override removed."""
        event = flag_changed(identity_state(), None)
        assert event.event_type is EventType.FLAG_DELETED
        assert isinstance(event.data, FlagChange) and event.data.change.action is Action.DELETED

    def test_timestamp_defaults_to_now_in_utc(self) -> None:
        """Without a timestamp, the event is stamped now, in UTC."""
        before = datetime.now(UTC)
        event = flag_changed(None, banner_state())
        after = datetime.now(UTC)
        assert isinstance(event.data, FlagChange)
        assert before <= event.data.timestamp <= after
        assert event.data.timestamp.utcoffset() == timedelta(0)

    def test_timestamp_in_another_zone(self) -> None:
        """A timestamp in another zone is kept (and rendered in UTC on the wire)."""
        when = datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
        event = flag_changed(None, banner_state(), timestamp=when)
        assert isinstance(event.data, FlagChange) and event.data.timestamp == when

    def test_naive_timestamp_rejected(self) -> None:
        """A naive timestamp names the field."""
        with pytest.raises(ValueError, match=r"FlagChange\.timestamp must be timezone-aware"):
            flag_changed(None, banner_state(), timestamp=datetime(2024, 1, 1))

    def test_mismatched_states(self) -> None:
        """States of different targets raise as diff_states does."""
        with pytest.raises(ValueError, match="environment id 23 != 24"):
            flag_changed(banner_state(), banner_state(environment=Environment(24)))

    def test_nothing(self) -> None:
        """Two Nones are not a change."""
        with pytest.raises(ValueError, match="both None"):
            flag_changed(None, None)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [({"changed_by": None}, "changed_by"), ({"changed_by": 5}, "changed_by")],
    )
    def test_bad_arguments(self, kwargs: dict[str, object], field: str) -> None:
        """A bad argument names its field."""
        with pytest.raises(TypeError, match=f"FlagChange.{field}"):
            flag_changed(None, banner_state(), **kwargs)  # type: ignore[arg-type]

    def test_states_must_be_states(self) -> None:
        """Something other than a FeatureState is named."""
        with pytest.raises(TypeError, match=r"FlagChange\.new_state must be a FeatureState"):
            flag_changed(None, "on")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"FlagChange\.previous_state must be a FeatureState"):
            flag_changed({"enabled": True}, banner_state())  # type: ignore[arg-type]


class TestEventIds:
    def test_generated_ids(self) -> None:
        """Generated ids start with evt_, use only [A-Za-z0-9_] and are unique."""
        ids = [flag_changed(None, banner_state()).id for _ in range(5000)]
        assert all(GENERATED_ID.fullmatch(i) for i in ids)
        assert len(set(ids)) == len(ids)
        assert all("." not in i for i in ids)

    def test_generated_ids_sort_by_time(self) -> None:
        """Ids generated later sort after earlier ones at millisecond resolution."""
        first = flag_changed(None, banner_state()).id
        later = flag_changed(None, banner_state()).id
        assert first[:16] <= later[:16]

    def test_forked_child_draws_new_ids(self) -> None:
        """A forked child never repeats its parent's ids."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read)
            os.write(write, flag_changed(None, banner_state()).id.encode())
            os._exit(0)
        os.close(write)
        parent_id = flag_changed(None, banner_state()).id
        child_id = os.read(read, 200).decode()
        os.close(read)
        os.waitpid(pid, 0)
        assert child_id.startswith("evt_") and child_id[16:32] != parent_id[16:32]

    @pytest.mark.parametrize("event_id", ["evt_1", "A" * 128, "x", "order_42_retry"])
    def test_given_ids(self, event_id: str) -> None:
        """A given id matching ^[A-Za-z0-9_]{1,128}$ is used as is."""
        assert flag_changed(None, banner_state(), event_id=event_id).id == event_id
        assert audit_log_created(documented_audit_entry(), event_id=event_id).id == event_id

    @pytest.mark.parametrize("event_id", ["", "A" * 129, "evt.1", "evt-1", "evt 1", "évt", 5])
    def test_bad_given_ids(self, event_id: object) -> None:
        """Other ids are rejected: a dot, in particular, cannot travel as webhook-id."""
        with pytest.raises(ValueError, match=r"event_id must match"):
            flag_changed(None, banner_state(), event_id=event_id)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"event_id must match"):
            audit_log_created(documented_audit_entry(), event_id=event_id)  # type: ignore[arg-type]


class TestAuditLogCreated:
    def test_builds_event(self) -> None:
        """An audit entry becomes an AUDIT_LOG_CREATED event carrying it."""
        entry = documented_audit_entry()
        event = audit_log_created(entry)
        assert event.event_type is EventType.AUDIT_LOG_CREATED and event.data is entry
        assert GENERATED_ID.fullmatch(event.id)

    def test_rejects_other_data(self) -> None:
        """Only an AuditLogEntry is an audit entry."""
        with pytest.raises(TypeError, match="AuditLogEntry"):
            audit_log_created(banner_state())  # type: ignore[arg-type]


class TestWebhookEvent:
    def test_accepts_foreign_ids_and_string_types(self) -> None:
        """Ids from elsewhere (a UUID, a Svix id) and event types as strings are accepted."""
        event = WebhookEvent("3f2b-9c.1:x", "AUDIT_LOG_CREATED", documented_audit_entry())  # type: ignore[arg-type]
        assert event.event_type is EventType.AUDIT_LOG_CREATED

    @pytest.mark.parametrize("event_id", ["", "has space", "x" * 257, "tab\t", "é", None])
    def test_bad_ids(self, event_id: object) -> None:
        """Ids are 1 to 256 printable ASCII characters without spaces."""
        with pytest.raises(ValueError, match=r"WebhookEvent\.id"):
            WebhookEvent(event_id, EventType.AUDIT_LOG_CREATED, documented_audit_entry())  # type: ignore[arg-type]

    def test_unknown_type(self) -> None:
        """An unknown event type lists the known ones."""
        with pytest.raises(ValueError, match="FLAG_UPDATED, FLAG_DELETED, AUDIT_LOG_CREATED"):
            WebhookEvent("e", "FLAG_CREATED", documented_audit_entry())  # type: ignore[arg-type]

    def test_type_and_data_agree(self) -> None:
        """Each event type carries its own kind of data."""
        previous, new = documented_states()
        when = datetime(2024, 1, 1, tzinfo=UTC)
        updated = FlagChange("", new, previous, when)
        deleted = FlagChange("", None, previous, when)
        with pytest.raises(TypeError, match="AuditLogEntry"):
            WebhookEvent("e", EventType.AUDIT_LOG_CREATED, updated)
        with pytest.raises(TypeError, match="FlagChange"):
            WebhookEvent("e", EventType.FLAG_UPDATED, documented_audit_entry())
        with pytest.raises(ValueError, match="FLAG_DELETED"):
            WebhookEvent("e", EventType.FLAG_UPDATED, deleted)
        with pytest.raises(ValueError, match="must be None for FLAG_DELETED"):
            WebhookEvent("e", EventType.FLAG_DELETED, updated)
        assert WebhookEvent("e", EventType.FLAG_DELETED, deleted).data is deleted

    def test_flag_change_needs_a_state(self) -> None:
        """A FlagChange with neither state is rejected."""
        with pytest.raises(ValueError, match="at least one state"):
            FlagChange("", None, None, datetime(2024, 1, 1, tzinfo=UTC))

    def test_flag_change_checks_the_target(self) -> None:
        """A FlagChange built by hand checks the target too."""
        other = banner_state(feature=BANNER, environment=Environment(99))
        with pytest.raises(ValueError, match="environment id"):
            FlagChange("", other, banner_state(), datetime(2024, 1, 1, tzinfo=UTC))


class TestFreshIds:
    """Issue 8 item 5: generated ids carry fresh randomness per id, so that they cannot be predicted."""

    def test_layout(self) -> None:
        """evt_, 12 hex digits of milliseconds, an 8-digit counter, 16 hex digits of randomness."""
        event_id = flag_changed(None, banner_state()).id
        assert re.fullmatch(r"evt_[0-9a-f]{12}[0-9a-f]{8}[0-9a-f]{16}", event_id)

    def test_every_random_digit_varies(self) -> None:
        """Across ids of one process, every digit of the random part takes many values (a per-process constant
        plus a counter, as before issue 8, keeps eight of them fixed and the rest predictable)."""
        ids = [flag_changed(None, banner_state()).id for _ in range(2000)]
        for position in range(24, 40):
            assert len({event_id[position] for event_id in ids}) > 8, position
        assert len({event_id[24:] for event_id in ids}) == len(ids)

    def test_unique_across_threads(self) -> None:
        """Ids drawn by many threads at once (refilling the random pool meanwhile) are all distinct."""
        found: list[list[str]] = []

        def draw() -> None:
            found.append([new_event_id() for _ in range(3000)])

        threads = [threading.Thread(target=draw) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        every = [event_id for ids in found for event_id in ids]
        assert len(every) == 24000 and len(set(every)) == len(every)
        assert len({event_id[24:] for event_id in every}) == len(every)

    def test_forked_child_draws_a_new_pool(self) -> None:
        """A forked child does not hand out the random slices its parent will: its next id's random part differs
        from the parent's next one."""
        new_event_id()  # the pool exists and is partly used
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os.close(read)
            os.write(write, new_event_id().encode())
            os._exit(0)
        os.close(write)
        parent_id = new_event_id()
        child_id = os.read(read, 200).decode()
        os.close(read)
        os.waitpid(pid, 0)
        assert child_id[24:] != parent_id[24:]


class TestUnknownTimestamp:
    def test_flag_change_accepts_none(self) -> None:
        """FlagChange.timestamp may be None: the time is unknown (Flagsmith sent "")."""
        previous, _ = documented_states()
        assert FlagChange("", None, previous, None).timestamp is None

    def test_other_values_still_rejected(self) -> None:
        """Anything else that is not an aware datetime is still rejected, naming the field."""
        previous, _ = documented_states()
        with pytest.raises(TypeError, match=r"FlagChange\.timestamp must be a datetime"):
            FlagChange("", None, previous, "")  # type: ignore[arg-type]


class TestOtherEventTypes:
    def version(self) -> VersionPublished:
        return VersionPublished(uuid="u-1", feature=VersionFeature(1, "f"))

    def test_new_version_published(self) -> None:
        """NEW_VERSION_PUBLISHED carries a VersionPublished; events stay hashable."""
        event = WebhookEvent("e", "NEW_VERSION_PUBLISHED", self.version())
        assert event.event_type is EventType.NEW_VERSION_PUBLISHED
        assert hash(event) == hash(WebhookEvent("e", EventType.NEW_VERSION_PUBLISHED, self.version()))
        with pytest.raises(TypeError, match="must be a VersionPublished for NEW_VERSION_PUBLISHED"):
            WebhookEvent("e", EventType.NEW_VERSION_PUBLISHED, documented_audit_entry())
        with pytest.raises(TypeError, match="must be a FlagChange"):
            WebhookEvent("e", EventType.FLAG_UPDATED, self.version())

    def test_unknown_type_with_dict_data(self) -> None:
        """A type flaghooks does not know is kept as a plain str, its data a dict; the event is hashable."""
        event = WebhookEvent("e", "FEATURE_HEALTH_CHANGED", {"a": [1, {"b": None}], "c": 1.5})
        assert event.event_type == "FEATURE_HEALTH_CHANGED" and not isinstance(event.event_type, EventType)
        assert hash(event) == hash(WebhookEvent("e", "FEATURE_HEALTH_CHANGED", {"other": 1}))
        assert event != WebhookEvent("e", "FEATURE_HEALTH_CHANGED", {"other": 1})

    @pytest.mark.parametrize("kind", ["", "has space", "A" * 129, "é", "tab\t", 5, None])
    def test_bad_type_names(self, kind: object) -> None:
        """An unknown type's name is 1 to 128 printable ASCII characters without spaces."""
        with pytest.raises(ValueError, match="printable ASCII"):
            WebhookEvent("e", kind, {})  # type: ignore[arg-type]

    def test_known_type_with_dict_data(self) -> None:
        """A known type with dict data is refused: its data is a model."""
        with pytest.raises(TypeError, match="must be an AuditLogEntry"):
            WebhookEvent("e", EventType.AUDIT_LOG_CREATED, {"log": "x"})

    def test_unknown_type_with_model_data(self) -> None:
        """An unknown type with model data is refused, naming the known types."""
        with pytest.raises(ValueError, match="NEW_VERSION_PUBLISHED for VersionPublished data"):
            WebhookEvent("e", "SOMETHING_NEW", self.version())

    @pytest.mark.parametrize(
        ("data", "error", "words"),
        [
            ({"a": {1, 2}}, TypeError, r"WebhookEvent\.data\['a'\] must hold JSON values"),
            ({"a": float("nan")}, ValueError, "JSON cannot carry"),
            ({"a": [float("inf")]}, ValueError, r"\['a'\]\[0\] is inf"),
            ({"a": {3: "x"}}, TypeError, "keys must be strings"),
            (["not", "a", "dict"], TypeError, "must be a dict"),
        ],
    )
    def test_unknown_type_data_must_be_json(self, data: object, error: type[Exception], words: str) -> None:
        """An unknown type's data must be what JSON can carry, so that encoding it cannot fail or mislead."""
        with pytest.raises(error, match=words):
            WebhookEvent("e", "SOMETHING_NEW", data)  # type: ignore[arg-type]

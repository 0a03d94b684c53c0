"""FlagCache: newest wins per target, deletions hide older events, any order converges."""

from __future__ import annotations

import gc
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flaghooks import (
    Environment,
    EventType,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    Project,
    Segment,
    WebhookEvent,
    audit_log_created,
    flag_changed,
)
from flaghooks.cache._memory import RecentIds
from flaghooks.receiver import FlagCache
from stores import KINDS, caches

T0 = datetime(2024, 6, 1, tzinfo=UTC)
PROJECT = Project(1, "Shop", organisation=1)
FEATURES = {
    1: Feature(id=1, name="banner", project=PROJECT, created_date=T0),
    2: Feature(id=2, name="search", project=PROJECT, created_date=T0),
}
BETA = FeatureSegment(id=50, segment=Segment(5, "beta"), priority=1)
GAMMA = FeatureSegment(id=60, segment=Segment(6, "gamma"), priority=0)
ALICE = Identity(900, "alice")


def state(feature: int = 1, environment: int = 10, enabled: bool = True, value: Any = None, **kw: Any) -> FeatureState:
    return FeatureState(
        feature=FEATURES[feature], environment=Environment(environment), enabled=enabled, value=value, **kw
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def updated(new: FeatureState, when: float, event_id: str, previous: FeatureState | None = None) -> WebhookEvent:
    return flag_changed(previous, new, timestamp=at(when), event_id=event_id)


def deleted(old: FeatureState, when: float, event_id: str) -> WebhookEvent:
    return flag_changed(old, None, timestamp=at(when), event_id=event_id)


class TestLookups:
    def test_empty(self) -> None:
        """An empty cache knows nothing and answers defaults."""
        cache = FlagCache()
        assert cache.get(10, "banner") is None and len(cache) == 0
        assert cache.is_enabled(10, "banner") is False and cache.is_enabled(10, 1, default=True) is True
        assert cache.value(10, "banner", default="fallback") == "fallback"
        assert cache.segment_overrides(10, "banner") == [] and cache.states() == []

    def test_by_name_or_id(self) -> None:
        """A feature is found by name or by id, in its environment only."""
        cache = FlagCache()
        assert cache.apply(updated(state(value="red"), 1, "e1"))
        assert cache.get(10, "banner") == cache.get(10, 1) == state(value="red")
        assert cache.value(10, "banner") == "red" and cache.is_enabled(10, 1)
        assert cache.get(11, "banner") is None and cache.get(10, "search") is None

    def test_identity_override_wins(self) -> None:
        """An identity's override (by identifier) wins over the environment default, for that identity only."""
        cache = FlagCache()
        cache.apply(updated(state(enabled=False, value="red"), 1, "e1"))
        cache.apply(updated(state(enabled=True, value="gold", identity=ALICE), 2, "e2"))
        assert cache.value(10, "banner", identity="alice") == "gold"
        assert cache.is_enabled(10, "banner", identity="alice") is True
        assert cache.value(10, "banner", identity="bob") == "red"
        assert cache.value(10, "banner") == "red"

    def test_identity_override_alone(self) -> None:
        """Without an environment default, only the identity sees its override."""
        cache = FlagCache()
        cache.apply(updated(state(value="gold", identity=ALICE), 1, "e1"))
        assert cache.value(10, "banner", identity="alice") == "gold"
        assert cache.get(10, "banner") is None

    def test_segment_overrides_by_priority(self) -> None:
        """Segment overrides are listed by priority."""
        cache = FlagCache()
        cache.apply(updated(state(value="b", feature_segment=BETA), 1, "e1"))
        cache.apply(updated(state(value="g", feature_segment=GAMMA), 2, "e2"))
        cache.apply(updated(state(value="x", feature_segment=FeatureSegment(id=70)), 3, "e3"))
        assert [s.value for s in cache.segment_overrides(10, "banner")] == ["g", "b", "x"]
        assert cache.get(10, "banner") is None  # overrides are not the default

    def test_renamed_feature(self) -> None:
        """After a rename, the new name finds the feature and the old one does not."""
        cache = FlagCache()
        cache.apply(updated(state(value="red"), 1, "e1"))
        renamed = FeatureState(
            feature=Feature(id=1, name="hero", project=PROJECT, created_date=T0),
            environment=Environment(10),
            enabled=True,
        )
        cache.apply(updated(renamed, 2, "e2"))
        assert cache.get(10, "hero") == renamed and cache.get(10, "banner") is None

    def test_bad_feature_argument(self) -> None:
        """A feature is a name or an id."""
        with pytest.raises(TypeError, match="name or an id"):
            FlagCache().get(10, 1.5)  # type: ignore[arg-type]

    def test_apply_needs_an_event(self) -> None:
        """apply takes events."""
        with pytest.raises(TypeError, match="WebhookEvent"):
            FlagCache().apply(state())  # type: ignore[arg-type]


class TestOrdering:
    def test_newest_wins(self) -> None:
        """A late, older event for a target is ignored."""
        cache = FlagCache()
        assert cache.apply(updated(state(value="new"), 2, "e2"))
        assert not cache.apply(updated(state(value="old"), 1, "e1"))
        assert cache.value(10, "banner") == "new"

    def test_equal_timestamps_broken_by_id(self) -> None:
        """Equal timestamps: the larger event id wins, whatever the order of arrival."""
        for order in (["a", "b"], ["b", "a"]):
            cache = FlagCache()
            for event_id in order:
                cache.apply(updated(state(value=event_id), 1, event_id))
            assert cache.value(10, "banner") == "b"

    def test_duplicate_ids_ignored(self) -> None:
        """An event id already applied is ignored, even with another body."""
        cache = FlagCache()
        assert cache.apply(updated(state(value="first"), 1, "same"))
        assert not cache.apply(updated(state(value="second"), 2, "same"))
        assert cache.value(10, "banner") == "first"

    def test_unchanged_state_is_not_a_change(self) -> None:
        """apply is True only when the contents changed."""
        cache = FlagCache()
        assert cache.apply(updated(state(value="v"), 1, "e1"))
        assert not cache.apply(updated(state(value="v"), 2, "e2"))
        assert cache.apply(updated(state(value="w"), 3, "e3"))

    def test_audit_changes_nothing(
        self,
    ) -> None:
        """Audit events change nothing."""
        from cases import documented_audit_entry

        cache = FlagCache()
        assert not cache.apply(audit_log_created(documented_audit_entry()))
        assert len(cache) == 0


class TestDeletion:
    def test_environment_delete_removes_feature_and_overrides(self) -> None:
        """Deleting the environment default removes the feature and all its overrides there."""
        cache = FlagCache()
        cache.apply(updated(state(value="red"), 1, "e1"))
        cache.apply(updated(state(value="b", feature_segment=BETA), 2, "e2"))
        cache.apply(updated(state(value="g", identity=ALICE), 3, "e3"))
        cache.apply(updated(state(feature=2), 3, "e4"))
        assert cache.apply(deleted(state(), 5, "d1"))
        assert cache.get(10, "banner") is None and cache.get(10, "banner", identity="alice") is None
        assert cache.segment_overrides(10, "banner") == []
        assert cache.get(10, "search") is not None  # other features stay

    def test_older_events_stay_hidden(self) -> None:
        """Events older than the deletion stay hidden, even arriving after a re-creation."""
        cache = FlagCache()
        cache.apply(deleted(state(), 5, "d1"))
        cache.apply(updated(state(value="reborn"), 8, "e8"))
        assert not cache.apply(updated(state(value="stale"), 4, "e4"))
        assert not cache.apply(updated(state(value="stale override", identity=ALICE), 4.5, "e45"))
        assert cache.value(10, "banner") == "reborn"
        assert cache.get(10, "banner", identity="alice") == state(value="reborn")

    def test_deletion_arriving_after_the_re_creation(self) -> None:
        """A deletion that arrives after a newer re-creation still hides older overrides arriving later."""
        cache = FlagCache()
        cache.apply(updated(state(value="reborn"), 8, "e8"))
        assert not cache.apply(deleted(state(), 5, "d5"))  # the default is already newer: nothing visible changes
        assert not cache.apply(updated(state(value="stale", feature_segment=BETA), 2, "e2"))
        assert cache.segment_overrides(10, "banner") == [] and cache.value(10, "banner") == "reborn"

    def test_override_delete_removes_only_it(self) -> None:
        """Removing an override removes just that override, and older events for it stay ignored."""
        cache = FlagCache()
        cache.apply(updated(state(value="red"), 1, "e1"))
        cache.apply(updated(state(value="g", identity=ALICE), 2, "e2"))
        assert cache.apply(deleted(state(identity=ALICE), 3, "d3"))
        assert not cache.apply(updated(state(value="late", identity=ALICE), 2.5, "e25"))
        assert cache.value(10, "banner", identity="alice") == "red"
        assert cache.apply(updated(state(value="again", identity=ALICE), 4, "e4"))
        assert cache.value(10, "banner", identity="alice") == "again"


# --- convergence -------------------------------------------------------------------------------------------

TARGETS = [
    {},
    {"feature_segment": BETA},
    {"feature_segment": GAMMA},
    {"identity": ALICE},
]


@st.composite
def histories(draw: st.DrawFn) -> list[WebhookEvent]:
    count = draw(st.integers(1, 25))
    events = []
    for index in range(count):
        override = draw(st.sampled_from(TARGETS))
        feature = draw(st.sampled_from([1, 2]))
        environment = draw(st.sampled_from([10, 11]))
        when = draw(st.integers(0, 12))  # few instants, so that ties happen
        kind = draw(st.sampled_from(["created", "updated", "deleted"]))
        new, old = (
            state(feature, environment, draw(st.booleans()), draw(st.sampled_from([None, "a", "b", 1])), **override)
            for _ in range(2)
        )
        event_id = f"e{index:02d}"
        if kind == "deleted":
            events.append(deleted(old, when, event_id))
        else:
            events.append(updated(new, when, event_id, None if kind == "created" else old))
    return events


def _key(event: WebhookEvent) -> tuple[datetime, str]:
    return (event.data.timestamp, event.id)  # type: ignore[union-attr]


def in_order(events: list[WebhookEvent]) -> FlagCache:
    cache = FlagCache()
    for event in sorted(events, key=_key):
        cache.apply(event)
    return cache


@pytest.mark.parametrize("kind", KINDS)
def test_any_order_with_duplicates_converges(kind: str) -> None:
    """Every permutation of a history, with duplicates, gives the same cache as in-order application, on every
    store (memory, SQLite, Redis)."""
    with caches(kind) as make:

        @settings(max_examples={"memory": 300, "sqlite": 100}.get(kind, 40), deadline=None)
        @given(histories(), st.data())
        def check(events: list[WebhookEvent], data: st.DataObject) -> None:
            expected = in_order(events).states()
            shuffled = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=10))))
            cache = make()
            for event in shuffled:
                cache.apply(event)
            assert cache.states() == expected
            assert len(cache) == len(expected)

        check()


@pytest.mark.parametrize("kind", KINDS)
def test_deleted_flags_never_come_back(kind: str) -> None:
    """A feature whose newest event in an environment deleted its default has nothing left there, whatever the
    order; and nothing older than a deletion of the default is ever visible; on every store."""
    with caches(kind) as make:

        @settings(max_examples={"memory": 300, "sqlite": 100}.get(kind, 40), deadline=None)
        @given(histories(), st.randoms(use_true_random=False))
        def check(events: list[WebhookEvent], rnd: Any) -> None:
            _check_deleted_stay_deleted(make(), events, rnd)

        check()


def _check_deleted_stay_deleted(cache: FlagCache, events: list[WebhookEvent], rnd: Any) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    for event in shuffled:
        cache.apply(event)
    newest: dict[tuple[int, int], WebhookEvent] = {}
    deletions: dict[tuple[int, int], tuple[datetime, str]] = {}
    for event in events:
        old = event.data.new_state or event.data.previous_state  # type: ignore[union-attr]
        scope = (old.environment.id, old.feature.id)
        if scope not in newest or _key(event) > _key(newest[scope]):
            newest[scope] = event
        if event.event_type is EventType.FLAG_DELETED and old.feature_segment is None and old.identity is None:
            deletions[scope] = max(deletions.get(scope, _key(event)), _key(event))
    for (environment, feature), event in newest.items():
        is_default_deletion = (
            event.event_type is EventType.FLAG_DELETED
            and event.data.previous_state.feature_segment is None  # type: ignore[union-attr]
            and event.data.previous_state.identity is None  # type: ignore[union-attr]
        )
        if is_default_deletion:
            assert [s for s in cache.states() if (s.environment.id, s.feature.id) == (environment, feature)] == []
    for shown in cache.states():
        tomb = deletions.get((shown.environment.id, shown.feature.id))
        if tomb is not None:
            matching = [e for e in events if e.data.new_state == shown and _key(e) > tomb]  # type: ignore[union-attr]
            assert matching, f"{shown} is older than a deletion of its feature"


def test_thread_safety() -> None:
    """Many threads applying at once end in the in-order result."""
    events = [updated(state(value=i), i, f"e{i:04d}") for i in range(400)]
    cache = FlagCache()
    threads = [
        threading.Thread(target=lambda part=events[n::4]: [cache.apply(e) for e in reversed(part)]) for n in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert cache.value(10, "banner") == 399 and cache.states() == in_order(events).states()


# --- what lookups accept ---------------------------------------------------------------------------------------


class TestLookupArguments:
    @pytest.fixture
    def cache(self) -> FlagCache:
        cache = FlagCache()
        cache.apply(updated(state(enabled=False, value="red"), 1, "e1"))
        cache.apply(updated(state(enabled=True, value="gold", identity=ALICE), 2, "e2"))
        cache.apply(updated(state(value="b", feature_segment=BETA), 3, "e3"))
        return cache

    def test_model_objects_mean_their_ids(self, cache: FlagCache) -> None:
        """An Environment means its id, a Feature its id, an Identity its identifier, in every lookup."""
        environment, feature = Environment(10, "Production"), FEATURES[1]
        assert cache.get(environment, feature, identity=ALICE) == cache.get(10, 1, identity="alice")
        assert cache.value(environment, "banner", identity=Identity(3, "alice")) == "gold"
        assert cache.is_enabled(environment, feature, identity=ALICE) is True
        assert cache.is_enabled(10, feature, identity=Identity(4, "bob")) is False
        assert cache.value(Environment(11), feature, default="unknown") == "unknown"
        assert [s.value for s in cache.segment_overrides(environment, feature)] == ["b"]

    @pytest.mark.parametrize(
        ("arguments", "named"),
        [
            ({"identity": 3}, "identity"),
            ({"identity": 900}, "identity"),
            ({"identity": b"alice"}, "identity"),
            ({"environment": "5"}, "environment"),
            ({"environment": "10"}, "environment"),
            ({"environment": True}, "environment"),
            ({"environment": 10.0}, "environment"),
            ({"environment": None}, "environment"),
            ({"feature": 1.0}, "feature"),
            ({"feature": True}, "feature"),
            ({"feature": FEATURES[1].project}, "feature"),
        ],
    )
    def test_anything_else_is_a_type_error_naming_the_argument(
        self, cache: FlagCache, arguments: dict[str, Any], named: str
    ) -> None:
        """A wrong type is a TypeError that names the argument, never a silent default, in every lookup."""
        call: dict[str, Any] = {"environment": 10, "feature": "banner", **arguments}
        identity = call.pop("identity", None)
        lookups = [
            lambda: cache.get(call["environment"], call["feature"], identity=identity),
            lambda: cache.is_enabled(call["environment"], call["feature"], identity=identity, default=True),
            lambda: cache.value(call["environment"], call["feature"], identity=identity, default="x"),
        ]
        if "identity" not in arguments:
            lookups.append(lambda: cache.segment_overrides(call["environment"], call["feature"]))
        for lookup in lookups:
            with pytest.raises(TypeError, match=f"^{named} must be"):
                lookup()

    def test_an_identity_id_is_not_its_identifier(self, cache: FlagCache) -> None:
        """identity=900 (Alice's id) says what is wrong rather than answering the default."""
        with pytest.raises(TypeError, match="id is not its identifier"):
            cache.value(10, "banner", identity=900)  # type: ignore[arg-type]

    def test_str_and_int_subclasses_are_their_values(self, cache: FlagCache) -> None:
        """A str or int subclass (an enum member, say) is taken for its value."""

        class Name(str):
            pass

        class Number(int):
            pass

        assert cache.value(Number(10), Name("banner"), identity=Name("alice")) == "gold"
        assert cache.value(10, Number(1)) == "red"


# --- what the cache keeps ------------------------------------------------------------------------------------


class SmallCache(FlagCache):
    """The same cache with a window of 256 recent events, so that tests can go past it quickly."""

    _REMEMBERED_IDS = 256


def retained_bytes(make: Any, events: Any) -> int:
    """Bytes still allocated by a cache after it has been fed ``events`` (produced one at a time, so that
    only what the cache keeps is counted)."""
    gc.collect()
    tracemalloc.start()
    try:
        cache = make()
        for event in events:
            cache.apply(event)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == 1  # only the environment default is left
    return held


def created_and_deleted(count: int) -> Any:
    """The environment default, then ``count`` identity overrides, each created and deleted."""
    yield updated(state(value="default"), 0, "default")
    for n in range(count):
        who = Identity(n + 1, f"user-{n}")
        yield updated(state(value=n, identity=who), 1 + n, f"c{n}")
        yield deleted(state(value=n, identity=who), 1.5 + n, f"d{n}")


class TestBoundedMemory:
    def test_deleted_overrides_are_not_kept_forever(self) -> None:
        """10k identity overrides created and deleted leave about what 1k do: the tombstones of deleted
        overrides are bounded by the recent-event window, not by how many overrides ever existed."""
        small = retained_bytes(SmallCache, created_and_deleted(1_000))
        large = retained_bytes(SmallCache, created_and_deleted(10_000))
        assert large < 1.5 * small, (small, large)

    def test_deleted_overrides_within_the_window(self) -> None:
        """With the default window, 10k overrides created and deleted: len counts none of them, and none is
        listed."""
        cache = FlagCache()
        for event in created_and_deleted(10_000):
            cache.apply(event)
        assert len(cache) == 1 and cache.states() == [state(value="default")]
        assert cache.get(10, "banner", identity="user-5") == state(value="default")

    def test_a_late_retry_never_resurrects_a_forgotten_deletion(self) -> None:
        """Once an override's deletion has left the window, a late copy of its creation (a sender's retry) is
        still ignored: deletions older than the window fold into a floor for the feature's identity
        overrides."""
        cache = SmallCache()
        creation = updated(state(value="gold", identity=ALICE), 1, "c_alice")
        cache.apply(creation)
        cache.apply(deleted(state(value="gold", identity=ALICE), 2, "d_alice"))
        for n in range(300):  # push both ids out of the window
            cache.apply(updated(state(feature=2, value=n), 3 + n, f"other{n}"))
        assert not cache.apply(creation)
        assert not cache.apply(updated(state(value="older", identity=ALICE), 1.5, "c_alice_2"))
        assert cache.get(10, "banner", identity="alice") is None
        assert cache.apply(updated(state(value="newer", identity=ALICE), 2.5, "c_alice_3"))
        assert cache.value(10, "banner", identity="alice") == "newer"

    def test_the_price_of_the_floor(self) -> None:
        """The documented price: an override event older than a forgotten deletion of another override of the
        same feature is ignored when its identity holds nothing newer; a late deletion still removes an older
        override, and other features are not affected."""
        cache = SmallCache()
        bob = Identity(901, "bob")
        cache.apply(updated(state(value="bob", identity=bob), 1, "c_bob"))
        cache.apply(updated(state(value="gold", identity=ALICE), 2, "c_alice"))
        cache.apply(deleted(state(value="gold", identity=ALICE), 3, "d_alice"))
        for n in range(300):
            cache.apply(updated(state(feature=2, value=n), 4 + n, f"other{n}"))
        carol = Identity(902, "carol")
        assert not cache.apply(updated(state(value="late", identity=carol), 2.5, "c_carol"))
        assert cache.get(10, "banner", identity="carol") is None
        assert cache.apply(updated(state(feature=2, value="late", identity=carol), 2.5, "c_carol_2"))
        assert cache.apply(deleted(state(value="bob", identity=bob), 2.5, "d_bob"))
        assert cache.get(10, "banner", identity="bob") is None and len(cache) == 2
        assert not cache.apply(deleted(state(value="x", identity=Identity(903, "dave")), 2.5, "d_dave"))

    def test_forgetting_keeps_what_is_newer(self) -> None:
        """Leaving the window forgets a tombstone only: an override created again meanwhile stays, and a
        deletion forgotten later but older than the floor does not lower it."""
        cache = SmallCache()
        bob, carol, dave = Identity(901, "bob"), Identity(902, "carol"), Identity(903, "dave")
        cache.apply(deleted(state(identity=dave), 2, "d_dave"))
        cache.apply(deleted(state(identity=ALICE), 5, "d_alice"))
        cache.apply(deleted(state(identity=bob), 3, "d_bob"))
        cache.apply(updated(state(value="again", identity=dave), 7, "c_dave"))
        for n in range(300):
            cache.apply(updated(state(feature=2, value=n), 10 + n, f"other{n}"))
        assert cache.value(10, "banner", identity="dave") == "again"
        assert not cache.apply(updated(state(value="late", identity=carol), 4, "c_carol"))  # the floor is 5
        assert cache.apply(updated(state(value="later", identity=carol), 5.5, "c_carol_2"))

    def test_environment_deletion_drops_every_override_tombstone(self) -> None:
        """Deleting the environment default covers its overrides' tombstones: none is kept after it, and older
        override events stay hidden by the feature's own tombstone."""
        cache = FlagCache()
        for event in created_and_deleted(1_000):
            cache.apply(event)
        cache.apply(updated(state(value="late", identity=ALICE), 5_000, "alive"))
        assert cache.apply(deleted(state(value="default"), 10_000, "gone"))
        assert len(cache) == 0 and cache.states() == []
        assert not cache.apply(updated(state(value=3, identity=Identity(4, "user-3")), 3.2, "c3_again"))
        assert not cache.apply(updated(state(value="late"), 9_999, "late_default"))
        assert cache.get(10, "banner", identity="user-3") is None

    def test_deletion_arriving_after_newer_overrides(self) -> None:
        """A deletion of the default that arrives after newer overrides keeps those and removes the older ones,
        dead or alive; len follows."""
        cache = FlagCache()
        bob, carol = Identity(901, "bob"), Identity(902, "carol")
        cache.apply(updated(state(value="d"), 1, "e1"))
        cache.apply(updated(state(value="old bob", identity=bob), 2, "e2"))
        cache.apply(deleted(state(value="x", identity=carol), 3, "e3"))
        cache.apply(updated(state(value="b", feature_segment=BETA), 4, "e4"))
        cache.apply(updated(state(value="new alice", identity=ALICE), 9, "e9"))
        cache.apply(updated(state(value="g", feature_segment=GAMMA), 9, "e10"))
        assert len(cache) == 5
        assert cache.apply(deleted(state(value="d"), 5, "d5"))
        assert len(cache) == 2 and cache.get(10, "banner") is None
        assert cache.value(10, "banner", identity="alice") == "new alice"
        assert [s.value for s in cache.segment_overrides(10, 1)] == ["g"]
        assert not cache.apply(updated(state(value="stale", identity=carol), 4, "e4b"))


def test_recent_ids() -> None:
    """The receiver's bounded set of recent ids: a duplicate is refused, and the oldest id is forgotten first."""
    recent = RecentIds(2)
    assert recent.add("a") and recent.add("b") and not recent.add("a") and "a" in recent
    assert recent.add("c") and "a" not in recent and "b" in recent
    assert recent.add("a")


def test_readers_and_writers_at_once() -> None:
    """Threads reading (get, states, len, segment_overrides) while others apply creations, overrides and
    deletions: no reader fails, and the end is the in-order result."""
    events = []
    for i in range(300):
        events.append(updated(state(value=i, identity=Identity(i + 1, f"u{i % 40}")), i, f"o{i:04d}"))
        events.append(updated(state(feature=2, value=i), i, f"s{i:04d}"))
        if i % 50 == 49:
            events.append(deleted(state(value=i), i + 0.5, f"x{i:04d}"))
    cache = FlagCache()
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                cache.get(10, "banner", identity="u3")
                cache.segment_overrides(10, 1)
                assert len(cache.states()) >= 0 and len(cache) >= 0
        except BaseException as exc:  # reported below
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [
        threading.Thread(target=lambda part=events[n::3]: [cache.apply(e) for e in reversed(part)]) for n in range(3)
    ]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert failures == []
    assert cache.states() == in_order(events).states() and len(cache) == len(in_order(events))


@pytest.mark.parametrize("undated_first", [True, False])
def test_unknown_timestamp_is_oldest(undated_first: bool) -> None:
    """An event whose timestamp is unknown (Flagsmith sent "") never wins over a dated one, in either order."""
    import attrs

    dated = updated(state(value="dated"), 1, "e_dated")
    undated = updated(state(value="undated"), 2, "e_undated")
    undated = attrs.evolve(undated, data=attrs.evolve(undated.data, timestamp=None))
    cache = FlagCache()
    for event in (undated, dated) if undated_first else (dated, undated):
        cache.apply(event)
    got = cache.get(10, 1)
    assert got is not None and got.value == "dated"

"""FlagCache: names, renames and re-created flags converge in every arrival order."""

from __future__ import annotations

import itertools
import operator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flaghooks import (
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    FlagChange,
    Identity,
    Project,
    Segment,
    WebhookEvent,
    flag_changed,
)
from flaghooks.receiver import FlagCache
from stores import KINDS, caches

T0 = datetime(2024, 6, 1, tzinfo=UTC)
PROJECT = Project(1, "Shop", organisation=1)
ALICE = Identity(900, "alice")
BOB = Identity(901, "bob")
BETA = FeatureSegment(id=50, segment=Segment(5, "beta"), priority=1)


def feature(feature_id: int, name: str) -> Feature:
    return Feature(id=feature_id, name=name, project=PROJECT, created_date=T0)


def state(feature_id: int, name: str, value: Any = None, environment: int = 10, **kw: Any) -> FeatureState:
    return FeatureState(
        feature=feature(feature_id, name), environment=Environment(environment), enabled=True, value=value, **kw
    )


def updated(new: FeatureState, when: float, event_id: str) -> WebhookEvent:
    return flag_changed(None, new, timestamp=T0 + timedelta(seconds=when), event_id=event_id)


def deleted(old: FeatureState, when: float, event_id: str) -> WebhookEvent:
    return flag_changed(old, None, timestamp=T0 + timedelta(seconds=when), event_id=event_id)


def _key(event: WebhookEvent) -> tuple[datetime, str]:
    data = event.data
    assert isinstance(data, FlagChange)
    return (data.timestamp, event.id)


def fed(events: Any) -> FlagCache:
    cache = FlagCache()
    for event in events:
        cache.apply(event)
    return cache


def in_order(events: list[WebhookEvent]) -> FlagCache:
    return fed(sorted(events, key=_key))


# The histories of issue 8, item 6. Each is (events, the lookup, the answer in timestamp order).
RE_CREATED = [
    updated(state(1, "checkout", "old"), 1, "e1"),
    deleted(state(1, "checkout", "old"), 2, "e2"),
    updated(state(3, "checkout", "new"), 3, "e3"),
]
RENAMED = [
    updated(state(1, "checkout", "old"), 1, "e1"),
    updated(state(1, "pay", "old"), 2, "e2"),
    updated(state(3, "checkout", "new"), 3, "e3"),
]
OVERRIDE_RE_CREATED = [
    updated(state(1, "checkout", "old"), 1, "e1"),
    updated(state(1, "checkout", "old alice", identity=ALICE), 2, "e2"),
    deleted(state(1, "checkout", "old"), 3, "e3"),
    updated(state(3, "checkout", "new alice", identity=ALICE), 4, "e4"),
]
OVERRIDE_RENAMED = [
    updated(state(1, "checkout", "old"), 1, "e1"),
    updated(state(1, "checkout", "old alice", identity=ALICE), 2, "e2"),
    updated(state(1, "pay", "old"), 3, "e3"),
    updated(state(3, "checkout", "new"), 4, "e4"),
]


class TestEveryArrivalOrder:
    @pytest.mark.parametrize("kind", KINDS)
    @pytest.mark.parametrize("history", [RE_CREATED, RENAMED], ids=["re-created", "renamed"])
    def test_flag_by_name(self, history: list[WebhookEvent], kind: str) -> None:
        """A flag deleted and re-created under its name, or renamed and its name reused: in each of the 12
        arrival orders, on every store, the name finds the newest feature that carries it."""
        assert in_order(history).value(10, "checkout") == "new"
        with caches(kind) as make:
            for order in itertools.permutations(history):
                cache = make()
                for event in order:
                    cache.apply(event)
                assert cache.value(10, "checkout") == "new", [e.id for e in order]
                assert cache.states() == in_order(history).states()

    def test_renamed_flag_by_old_and_new_name(self) -> None:
        """After a rename, in every order the new name finds the feature and the old one finds the feature
        that took it over."""
        for order in itertools.permutations(RENAMED):
            cache = fed(order)
            assert cache.value(10, "pay") == "old" and cache.get(10, "checkout") == state(3, "checkout", "new")

    @pytest.mark.parametrize(
        ("history", "answer"),
        [(OVERRIDE_RE_CREATED, "new alice"), (OVERRIDE_RENAMED, "new")],
        ids=["re-created", "renamed"],
    )
    @pytest.mark.parametrize("kind", KINDS)
    def test_identity_override_by_name(self, history: list[WebhookEvent], answer: str, kind: str) -> None:
        """An identity's view of a name converges in each of the 48 arrival orders, on every store: the override
        of a feature that no longer carries the name is never answered, nor is a default hidden behind it."""
        assert in_order(history).value(10, "checkout", identity="alice") == answer
        with caches(kind) as make:
            for order in itertools.permutations(history):
                cache = make()
                for event in order:
                    cache.apply(event)
                assert cache.value(10, "checkout", identity="alice") == answer, [e.id for e in order]
                assert cache.value(10, "checkout", identity="bob") == in_order(history).value(10, "checkout")

    def test_renamed_feature_keeps_its_overrides(self) -> None:
        """An override made before a rename answers under the new name: the name belongs to the feature, not
        to the event that carried it."""
        for order in itertools.permutations(OVERRIDE_RENAMED):
            cache = fed(order)
            assert cache.value(10, "pay", identity="alice") == "old alice"
            assert cache.value(10, "pay", identity="bob") == "old"


# --- hypothesis: renames, re-created names, identity and segment overrides, duplicates ------------------------

NAMES = ["checkout", "pay", "search"]
IDENTITIES = [ALICE, BOB]


@st.composite
def histories(draw: st.DrawFn) -> list[WebhookEvent]:
    count = draw(st.integers(1, 20))
    events = []
    for index in range(count):
        override = draw(st.sampled_from([{}, {}, {"identity": ALICE}, {"identity": BOB}, {"feature_segment": BETA}]))
        target = state(
            draw(st.sampled_from([1, 2, 3])),
            draw(st.sampled_from(NAMES)),
            draw(st.sampled_from([None, "a", "b"])),
            environment=draw(st.sampled_from([10, 11])),
            **override,
        )
        when = draw(st.integers(0, 8))  # few instants, so that ties happen
        event_id = f"e{index:02d}"
        if draw(st.integers(0, 3)) == 0:
            events.append(deleted(target, when, event_id))
        else:
            events.append(updated(target, when, event_id))
    return events


def answers(cache: FlagCache) -> dict[tuple[Any, ...], Any]:
    """Every lookup a reader can make of these histories, by name and by id, with and without an identity."""
    found: dict[tuple[Any, ...], Any] = {}
    for environment, name, who in itertools.product([10, 11], [*NAMES, 1, 2, 3], [None, "alice", "bob"]):
        found[(environment, name, who)] = cache.get(environment, name, identity=who)
    for environment, feature_id in itertools.product([10, 11], [1, 2, 3]):
        found[(environment, feature_id, "segments")] = cache.segment_overrides(environment, feature_id)
    found["len"] = len(cache)
    assert len(cache) == len(cache.states())
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_every_lookup_converges(kind: str) -> None:
    """Any arrival order of a history with renames, re-used names and overrides, with duplicates, answers every
    lookup (by name, by id, per identity, segment overrides, len) as timestamp order does, on every store."""
    with caches(kind) as make:

        @settings(max_examples={"memory": 400, "sqlite": 100}.get(kind, 40), deadline=None)
        @given(histories(), st.data())
        def check(events: list[WebhookEvent], data: st.DataObject) -> None:
            expected = in_order(events)
            shuffled = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=8))))
            cache = make()
            for event in shuffled:
                cache.apply(event)
            assert answers(cache) == answers(expected)
            assert cache.states() == expected.states()

        check()


@settings(max_examples=200)
@given(histories())
def test_name_follows_the_newest_event_of_each_feature(events: list[WebhookEvent]) -> None:
    """A name finds, among the features whose newest event carries that name, the one whose event is newest;
    a flag found by name or by id is the same state."""
    cache = fed(reversed(events))
    for environment in (10, 11):
        newest: dict[int, WebhookEvent] = {}
        for event in events:
            data = event.data
            assert isinstance(data, FlagChange)
            carried = data.new_state or data.previous_state
            assert carried is not None
            if carried.environment.id != environment:
                continue
            feature_id = carried.feature.id
            if feature_id not in newest or _key(event) > _key(newest[feature_id]):
                newest[feature_id] = event
        for name in NAMES:
            owners = [
                (_key(event), feature_id)
                for feature_id, event in newest.items()
                if (event.data.new_state or event.data.previous_state).feature.name == name  # type: ignore[union-attr]
            ]
            expected = cache.get(environment, max(owners)[1]) if owners else None
            assert cache.get(environment, name) == expected


# --- timestamps Flagsmith did not send -----------------------------------------------------------------------


def _undated(new: FeatureState | None, old: FeatureState | None, event_id: str) -> WebhookEvent:
    """An event whose timestamp is unknown (Flagsmith sent ``"timestamp": ""``)."""
    dated = flag_changed(old, new, timestamp=T0, event_id=event_id)
    return WebhookEvent(dated.id, dated.event_type, attrs.evolve(dated.data, timestamp=None))


class TestUnknownTimestamps:
    def test_undated_is_older_than_any_dated_event(self) -> None:
        """An event without a timestamp never wins over a dated one, in either order, and undated events are
        ordered among themselves by id."""
        undated = _undated(state(1, "checkout", "undated"), None, "u1")
        dated = updated(state(1, "checkout", "dated"), -(10**9), "d1")  # far in the past, still dated
        for order in ([undated, dated], [dated, undated]):
            assert fed(order).value(10, "checkout") == "dated"
        pair = [_undated(state(1, "checkout", "a"), None, "u1"), _undated(state(1, "checkout", "b"), None, "u2")]
        for order in (pair, pair[::-1]):
            assert fed(order).value(10, "checkout") == "b"

    def test_undated_deletion_hides_nothing_dated(self) -> None:
        """A deletion without a timestamp deletes only what is undated too: dated states stay, in any order."""
        dated = updated(state(1, "checkout", "dated"), 0, "d1")
        gone = _undated(None, state(1, "checkout", "dated"), "u9")
        for order in ([dated, gone], [gone, dated]):
            cache = fed(order)
            assert cache.value(10, "checkout") == "dated" and len(cache) == 1


def test_the_undated_time_sorts_before_every_datetime() -> None:
    """The cache's time for an unknown timestamp compares below every datetime (even the smallest), equal
    only to itself, in either operand order and inside the (time, event id) keys the cache compares."""
    from flaghooks.cache._rules import _UNDATED

    earliest = datetime.min.replace(tzinfo=UTC)
    undated = _UNDATED
    for dated in (earliest, T0):
        # Both operand orders on purpose: the datetime side answers NotImplemented and Python asks the other.
        assert [op(undated, dated) for op in (operator.lt, operator.le, operator.gt, operator.ge)] == [
            True,
            True,
            False,
            False,
        ]
        assert [op(dated, undated) for op in (operator.lt, operator.le, operator.gt, operator.ge)] == [
            False,
            False,
            True,
            True,
        ]
        assert operator.ne(undated, dated) and operator.ne(dated, undated)
    same = [op(undated, _UNDATED) for op in (operator.eq, operator.lt, operator.le, operator.gt, operator.ge)]
    assert same == [True, False, True, False, True]
    keys = [(T0, "a"), (_UNDATED, "z"), (earliest, "b"), (_UNDATED, "c")]
    assert sorted(keys) == [(_UNDATED, "c"), (_UNDATED, "z"), (earliest, "b"), (T0, "a")]
    assert repr(_UNDATED) == "<undated>"

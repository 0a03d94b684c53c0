"""FlagCache.load_environment_document: the document is the environment's whole truth as of ``as_of``, on every
store, and converges with web hooks in any order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from documents import built_documents, document, identity, segment
from documents import state as doc_state
from flaghooks import ConfigError, Environment, Feature, FeatureState, FlagChange, PayloadError, Project, WebhookEvent
from flaghooks.cache import FlagCache
from stores import KINDS, caches
from test_cache_names import NAMES, answers, deleted, histories, updated
from test_cache_names import state as event_state

AS_OF = datetime(2024, 6, 1, 12, tzinfo=UTC)
T0 = datetime(2024, 6, 1, tzinfo=UTC)  # the histories' time 0 (test_cache_names)


def small_document(**changes: Any) -> dict[str, Any]:
    """Environment 10: banner (with an override for alice and one for segment 5) and search."""
    states = changes.pop("states", None) or [
        doc_state(1, "banner", True, "doc", seed=1),
        doc_state(2, "search", False, None, seed=2),
    ]
    return document(
        10,
        "env-key",
        states,
        segments=changes.pop(
            "segments", [segment(5, "beta", [doc_state(1, "banner", True, "beta", seed=3, priority=1)])]
        ),
        identity_overrides=changes.pop(
            "identity_overrides", [identity("alice", 9, [doc_state(1, "banner", True, "alice", seed=4)], "env-key")]
        ),
        updated_at=changes.pop("updated_at", "2024-06-01T12:00:00Z"),
    )


def hook(feature_id: int, name: str, value: Any, when: datetime, event_id: str, **kw: Any) -> WebhookEvent:
    return updated(event_state(feature_id, name, value, **kw), (when - T0).total_seconds(), event_id)


@pytest.mark.parametrize("kind", KINDS)
class TestLoading:
    def test_an_empty_cache_learns_the_document(self, kind: str) -> None:
        """Every state of the document is loaded (defaults, segment and identity overrides), the count says how
        many, and loading it again changes nothing."""
        with caches(kind) as make:
            cache = make()
            assert cache.load_environment_document(small_document()) == 4
            assert cache.value(10, "banner") == "doc" and cache.is_enabled(10, "search") is False
            assert cache.value(10, "banner", identity="alice") == "alice"
            assert [s.value for s in cache.segment_overrides(10, "banner")] == ["beta"]
            assert len(cache) == 4
            assert cache.load_environment_document(small_document()) == 0

    def test_web_hooks_at_or_after_as_of_win_older_ones_lose(self, kind: str) -> None:
        """In either order, a web hook after the document's time wins over it and an older one loses; a web hook at
        exactly that time wins too (any event id sorts after the document's)."""
        newer = hook(1, "banner", "newer", AS_OF + timedelta(seconds=1), "e_newer")
        same = hook(2, "search", "same", AS_OF, "e_same")
        older = hook(1, "banner", "older", AS_OF - timedelta(seconds=1), "e_older", identity=None)
        older_alice = hook(1, "banner", "older alice", AS_OF - timedelta(seconds=1), "e_alice", identity=_alice())
        with caches(kind) as make:
            for hooks_first in (True, False):
                cache = make()
                events = [newer, same, older, older_alice]
                if hooks_first:
                    for event in events:
                        cache.apply(event)
                cache.load_environment_document(small_document())
                if not hooks_first:
                    for event in events:
                        cache.apply(event)
                assert cache.value(10, "banner") == "newer"
                assert cache.value(10, "search") == "same"
                assert cache.value(10, "banner", identity="alice") == "alice"

    def test_what_the_document_lacks_is_removed_and_stays_removed(self, kind: str) -> None:
        """A held override the document lacks is removed, a feature it lacks is deleted, and late events older than
        the document for either never show; newer ones do."""
        with caches(kind) as make:
            cache = make()
            before = AS_OF - timedelta(hours=1)
            cache.apply(hook(1, "banner", "bob's", before, "e1", identity=_bob()))
            cache.apply(hook(3, "legacy", "old", before, "e2"))
            cache.load_environment_document(small_document())
            assert cache.value(10, "banner", identity="bob") == "doc"
            assert cache.get(10, "legacy") is None and cache.get(10, 3) is None
            assert not cache.apply(hook(3, "legacy", "late", before + timedelta(minutes=1), "e3"))
            assert not cache.apply(hook(1, "banner", "late bob", before, "e4", identity=_bob()))
            assert not cache.apply(hook(1, "banner", "late seg", before, "e5", feature_segment=_gamma()))
            assert cache.get(10, "legacy") is None and len(cache) == 4
            assert cache.apply(hook(3, "legacy", "back", AS_OF + timedelta(minutes=1), "e6"))
            assert cache.value(10, "legacy") == "back"

    def test_the_count_includes_the_targets_of_features_the_document_lacks(self, kind: str) -> None:
        """The count a load returns includes what it removes of a feature the document lacks: legacy's default
        and bob's override of it (2), beside the document's own 4 targets, on every store alike."""
        with caches(kind) as make:
            cache = make()
            before = AS_OF - timedelta(hours=1)
            cache.apply(hook(3, "legacy", "old", before, "e1"))
            cache.apply(hook(3, "legacy", "bob's", before, "e2", identity=_bob()))
            assert len(cache) == 2
            assert cache.load_environment_document(small_document()) == 4 + 2
            assert len(cache) == 4

    def test_a_second_document_of_the_same_time_removes_nothing_of_the_first(self, kind: str) -> None:
        """Only what is older than ``(as_of, "")`` is removed: the targets a document of the same time loaded are
        not older, so a second document with that ``updated_at`` keeps them on every store alike (SQLite and the
        Redis script compare strictly; memory once dropped them when nothing newer had arrived)."""
        first = small_document()
        second = small_document(
            states=[doc_state(1, "banner", True, "second", seed=1)], segments=[], identity_overrides=[]
        )
        with caches(kind) as make:
            cache = make()
            assert cache.load_environment_document(first) == 4
            assert cache.load_environment_document(second) == 0
            assert cache.value(10, "banner") == "doc" and cache.get(10, "search") is not None and len(cache) == 4
            assert cache.value(10, "banner", identity="alice") == "alice"

    def test_as_of_overrides_updated_at(self, kind: str) -> None:
        """``as_of`` dates the document instead of its ``updated_at``: a web hook between the two times wins or
        loses accordingly."""
        between = hook(1, "banner", "hook", AS_OF + timedelta(minutes=5), "e1")
        with caches(kind) as make:
            early, late = make(), make()
            for cache, as_of in ((early, None), (late, AS_OF + timedelta(minutes=10))):
                cache.apply(between)
                cache.load_environment_document(small_document(), as_of=as_of)
            assert early.value(10, "banner") == "hook" and late.value(10, "banner") == "doc"

    def test_claims_and_recent_ids_are_untouched(self, kind: str) -> None:
        """A load leaves the recent event ids and the claims alone: an event applied before is still a duplicate,
        a handled claim still handled."""
        with caches(kind) as make:
            cache = make()
            event = hook(1, "banner", "hook", AS_OF + timedelta(minutes=5), "e1")
            assert cache.claim("e1") is True
            assert cache.apply(event)
            cache.release("e1", handled=True)
            cache.load_environment_document(small_document())
            assert not cache.apply(event) and cache.claim("e1") is False

    def test_the_built_documents_load_alike(self, kind: str) -> None:
        """The multivariate, identity and segment documents load into this store as into memory."""
        with caches(kind) as make:
            for built in built_documents().values():
                cache, expected = make(), FlagCache()
                assert cache.load_environment_document(built) == expected.load_environment_document(built)
                assert cache.states() == expected.states() and len(cache) == len(expected)


def _alice() -> Any:
    from flaghooks import Identity

    return Identity(900, "alice")


def _bob() -> Any:
    from flaghooks import Identity

    return Identity(901, "bob")


def _gamma() -> Any:
    from flaghooks import FeatureSegment, Segment

    return FeatureSegment(id=60, segment=Segment(6, "gamma"), priority=0)


class TestRefusals:
    def test_a_document_without_a_time_needs_as_of(self) -> None:
        """Without ``updated_at`` and without ``as_of`` the document cannot be dated: ConfigError, nothing loaded;
        with ``as_of`` it loads."""
        built = small_document()
        del built["updated_at"]
        cache = FlagCache()
        with pytest.raises(ConfigError, match="as_of"):
            cache.load_environment_document(built)
        assert len(cache) == 0
        assert cache.load_environment_document(built, as_of=AS_OF) == 4

    @pytest.mark.parametrize("as_of", [datetime(2024, 6, 1), "2024-06-01T00:00:00Z", 1717200000])
    def test_as_of_must_be_an_aware_datetime(self, as_of: Any) -> None:
        """A naive datetime, a string or a number is not a time the cache can order: ConfigError."""
        with pytest.raises(ConfigError, match="as_of must be a timezone-aware datetime"):
            FlagCache().load_environment_document(small_document(), as_of=as_of)

    @pytest.mark.parametrize("kind", KINDS)
    def test_as_of_out_of_range_in_utc(self, kind: str) -> None:
        """An ``as_of`` whose offset moves it before the year 1 in UTC is refused alike by every store (a
        ConfigError, nothing loaded), not loaded by one and an OverflowError in another."""
        as_of = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
        with caches(kind) as make:
            cache = make()
            with pytest.raises(ConfigError, match="as_of"):
                cache.load_environment_document(small_document(), as_of=as_of)
            assert len(cache) == 0

    def test_a_bad_document_is_a_payload_error_with_its_path(self) -> None:
        """The parser's PayloadError reaches the caller, and the cache is left as it was."""
        built = small_document()
        built["feature_states"][0]["enabled"] = "yes"
        cache = FlagCache()
        with pytest.raises(PayloadError) as caught:
            cache.load_environment_document(built)
        assert caught.value.path.startswith("feature_states[0]") and len(cache) == 0


# --- loads and web hooks in any order ----------------------------------------------------------------------


def _loads(draw: st.DrawFn) -> list[tuple[datetime, dict[int, tuple[str, dict[Any, FeatureState]]]]]:
    """One or two loads of environment 10, each a few features with a default and maybe overrides."""
    from test_cache_names import ALICE, BETA, BOB

    loads = []
    # Distinct times: two documents of one environment with one updated_at are one document.
    for seconds in draw(st.lists(st.integers(0, 8), min_size=1, max_size=2, unique=True)):
        when = T0 + timedelta(seconds=seconds)
        features: dict[int, tuple[str, dict[Any, FeatureState]]] = {}
        for feature_id in draw(st.sets(st.sampled_from([1, 2, 3]), max_size=3)):
            name = draw(st.sampled_from(NAMES))
            value = draw(st.sampled_from(["L1", "L2", None]))
            targets: dict[Any, FeatureState] = {None: event_state(feature_id, name, value)}
            for key, kw in ((("identity", "alice"), {"identity": ALICE}), (("identity", "bob"), {"identity": BOB})):
                if draw(st.booleans()):
                    targets[key] = event_state(feature_id, name, f"{value}-{key[1]}", **kw)
            if draw(st.booleans()):
                targets[("segment", 5)] = event_state(feature_id, name, "seg", feature_segment=BETA)
            features[feature_id] = (name, targets)
        loads.append((when, features))
    return loads


def _fed(cache: FlagCache, steps: list[Any]) -> FlagCache:
    for step in steps:
        if isinstance(step, WebhookEvent):
            cache.apply(step)
        else:
            cache.store.load(10, step[1], step[0])
    return cache


def _key(step: Any) -> tuple[datetime, str]:
    if isinstance(step, WebhookEvent):
        data = step.data
        assert isinstance(data, FlagChange)
        return (data.timestamp, step.id)  # type: ignore[return-value]
    return (step[0], "")


@pytest.mark.parametrize("kind", KINDS)
def test_loads_and_web_hooks_converge_in_any_order(kind: str) -> None:
    """Loads (the store primitive behind load_environment_document) mixed with web hooks (renames, overrides,
    deletions, duplicates) in any order give what timestamp order gives in memory, on every store."""
    with caches(kind) as make:

        @settings(max_examples={"memory": 150, "sqlite": 60}.get(kind, 30), deadline=None)
        @given(histories(), st.data())
        def check(events: list[WebhookEvent], data: st.DataObject) -> None:
            steps: list[Any] = [*events, *_loads(data.draw)]
            expected = _fed(FlagCache(), sorted(steps, key=_key))
            shuffled = data.draw(st.permutations(steps + data.draw(st.lists(st.sampled_from(events), max_size=5))))
            cache = _fed(make(), shuffled)
            assert answers(cache) == answers(expected)
            assert cache.states() == expected.states()

        check()


def test_every_order_of_a_load_and_a_deletion() -> None:
    """A deletion of the default just before the document's time, the document, and a creation just after, in all
    6 orders: the same answer (the creation wins the default, the document keeps its overrides)."""
    deletion = deleted(event_state(1, "banner", "x"), (AS_OF - T0).total_seconds() - 1, "d1")
    creation = hook(1, "banner", "after", AS_OF + timedelta(seconds=1), "c1")
    answers_seen = set()
    for order in itertools.permutations(["load", deletion, creation]):
        cache = FlagCache()
        for step in order:
            if step == "load":
                cache.load_environment_document(small_document())
            else:
                cache.apply(step)  # type: ignore[arg-type]
        answers_seen.add((cache.value(10, "banner"), cache.value(10, "banner", identity="alice"), len(cache)))
    assert answers_seen == {("after", "alice", 4)}


def test_features_are_found_by_the_documents_names() -> None:
    """A load names features as the document does: a feature renamed in the document is found by its new name."""
    cache = FlagCache()
    cache.apply(hook(1, "old_banner", "hook", AS_OF - timedelta(days=1), "e1"))
    cache.load_environment_document(small_document())
    assert cache.value(10, "banner") == "doc" and cache.get(10, "old_banner") is None
    assert isinstance(cache.get(10, "banner"), FeatureState)
    assert cache.get(Environment(10), Feature(id=2, name="x", project=Project(7), created_date=T0)) is not None


@pytest.mark.parametrize("kind", KINDS)
def test_the_newest_document_decides_which_features_exist(kind: str) -> None:
    """An older document loaded after a newer one does not bring back a feature the newer one lacks, nor does a
    late event older than the newer document; a newer event does."""
    newer = small_document(states=[doc_state(1, "banner", True, "newer", seed=1)], segments=[], identity_overrides=[])
    older = small_document(updated_at="2024-06-01T11:00:00Z")  # banner and search
    with caches(kind) as make:
        cache = make()
        cache.load_environment_document(newer)
        cache.load_environment_document(older)
        assert cache.value(10, "banner") == "newer" and cache.get(10, "search") is None
        assert not cache.apply(hook(2, "search", "late", AS_OF - timedelta(minutes=1), "e1"))
        assert not cache.apply(hook(4, "brand_new", "late", AS_OF - timedelta(minutes=1), "e2"))
        assert cache.get(10, "search") is None and cache.get(10, "brand_new") is None
        assert cache.apply(hook(4, "brand_new", "fresh", AS_OF + timedelta(minutes=1), "e3"))
        assert cache.value(10, "brand_new") == "fresh" and cache.segment_overrides(10, "nothing") == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_document_renames_a_feature_that_shared_its_name(kind: str) -> None:
    """Two features carrying one name (a rename not yet seen): a document naming one of them differently leaves the
    old name to the other."""
    with caches(kind) as make:
        cache = make()
        cache.apply(hook(1, "search", "one", AS_OF - timedelta(hours=2), "e1"))
        cache.apply(hook(2, "search", "two", AS_OF - timedelta(hours=1), "e2"))
        cache.load_environment_document(
            small_document(
                states=[doc_state(1, "banner", True, "doc", seed=1), doc_state(2, "search", False, "s", seed=2)]
            )
        )
        assert cache.value(10, "banner") == "doc" and cache.value(10, "search") == "s"
        cache.load_environment_document(
            small_document(
                states=[doc_state(1, "finder", True, "f", seed=1), doc_state(2, "search", False, "s", seed=2)],
                updated_at="2024-06-01T13:00:00Z",
            )
        )
        assert cache.value(10, "finder") == "f" and cache.value(10, "search") == "s" and cache.get(10, "banner") is None


@pytest.mark.redis
def test_loads_racing_applies_on_redis_converge() -> None:
    """A document loaded into Redis while another thread applies web hooks for the same features (its optimistic
    transactions retried when they race) ends where memory ends."""
    import threading

    events = [
        hook(1 + n % 2, ["banner", "search"][n % 2], n, AS_OF + timedelta(seconds=n - 100), f"e{n}") for n in range(200)
    ]
    with caches("redis") as make:
        cache = make()
        applier = threading.Thread(target=lambda: [cache.apply(event) for event in events])
        applier.start()
        for minutes in range(0, 40, 2):
            cache.load_environment_document(small_document(), as_of=AS_OF - timedelta(minutes=minutes))
        applier.join()
        expected = FlagCache()
        for event in events:
            expected.apply(event)
        for minutes in range(0, 40, 2):
            expected.load_environment_document(small_document(), as_of=AS_OF - timedelta(minutes=minutes))
        assert cache.states() == expected.states()

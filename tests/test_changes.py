"""diff_states: what changed between two states of one target."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cases import (
    ALICE,
    BANNER,
    BETA,
    OPTIONS,
    PRODUCTION,
    banner_state,
    documented_states,
    identity_state,
    segment_state,
)
from flaghooks import (
    Action,
    Environment,
    FeatureSegment,
    Identity,
    MultivariateOption,
    MultivariateValue,
    Scope,
    Segment,
    StateChange,
    diff_states,
)
from strategies import states


def test_enums_are_lower_case_strings() -> None:
    """Scope and Action are str enums whose values are the lower-case names."""
    assert [s.value for s in Scope] == ["environment", "segment", "identity"]
    assert [a.value for a in Action] == ["created", "updated", "deleted"]
    assert Scope.SEGMENT == "segment" and isinstance(Action.CREATED, str)


class TestActions:
    def test_created(self) -> None:
        """No previous state: CREATED, with nothing listed as changed."""
        change = diff_states(None, banner_state())
        assert change == StateChange(Scope.ENVIRONMENT, Action.CREATED, frozenset())
        assert not change.is_noop

    def test_deleted(self) -> None:
        """No new state: DELETED, scoped by the state that went away."""
        change = diff_states(identity_state(), None)
        assert (change.scope, change.action, change.changed) == (Scope.IDENTITY, Action.DELETED, frozenset())

    def test_scopes(self) -> None:
        """The scope is the override kind."""
        assert diff_states(None, segment_state()).scope is Scope.SEGMENT
        assert diff_states(None, identity_state()).scope is Scope.IDENTITY
        assert diff_states(None, banner_state()).scope is Scope.ENVIRONMENT

    def test_both_none(self) -> None:
        """Nothing to compare is a ValueError."""
        with pytest.raises(ValueError, match="both None"):
            diff_states(None, None)


class TestUpdated:
    def test_documented_example(self) -> None:
        """The documented change enabled the flag and changed the feature's initial value (red to blue)."""
        previous, new = documented_states()
        change = diff_states(previous, new)
        assert change.action is Action.UPDATED
        assert change.changed == {"enabled", "feature"}

    def test_value_change(self) -> None:
        """A new value is a "value" change."""
        assert diff_states(banner_state(), banner_state(value="green")).changed == {"value"}

    @pytest.mark.parametrize(("before", "after"), [(True, 1), (False, 0), (1, "1"), (None, ""), (0, None)])
    def test_value_type_counts(self, before: object, after: object) -> None:
        """Values differ when their JSON values differ, type included: True and 1 differ."""
        assert diff_states(banner_state(value=before), banner_state(value=after)).changed == {"value"}

    def test_multivariate_change(self) -> None:
        """A different allocation is a "multivariate_values" change."""
        moved = (attrs.evolve(OPTIONS[0], percentage_allocation=60), OPTIONS[1])
        change = diff_states(banner_state(), banner_state(multivariate_values=moved))
        assert change.changed == {"multivariate_values"}

    def test_multivariate_allocations_compare_as_numbers(self) -> None:
        """50 and 50.0 are the same share."""
        as_float = (attrs.evolve(OPTIONS[0], percentage_allocation=50.0), OPTIONS[1])
        assert diff_states(banner_state(), banner_state(multivariate_values=as_float)).is_noop

    def test_multivariate_option_value_type_counts(self) -> None:
        """An option value of 1 instead of True is a change."""
        one = MultivariateValue(1, MultivariateOption(1, 1), 10)
        true = MultivariateValue(1, MultivariateOption(1, True), 10)
        change = diff_states(banner_state(multivariate_values=(one,)), banner_state(multivariate_values=(true,)))
        assert change.changed == {"multivariate_values"}

    def test_feature_change(self) -> None:
        """A change to the feature's own fields is a "feature" change."""
        renamed = attrs.evolve(BANNER, description="Banner colour")
        assert diff_states(banner_state(), banner_state(feature=renamed)).changed == {"feature"}

    def test_several_changes(self) -> None:
        """Every differing aspect is listed."""
        change = diff_states(banner_state(), banner_state(enabled=True, value=3, multivariate_values=()))
        assert change.changed == {"enabled", "value", "multivariate_values"}

    def test_noop(self) -> None:
        """An update that changed nothing is a no-op; a state id or environment name does not count."""
        change = diff_states(banner_state(), banner_state(id=99, environment=Environment(23, "Prod")))
        assert change.action is Action.UPDATED and change.changed == frozenset() and change.is_noop


class TestTargets:
    @pytest.mark.parametrize(
        ("previous", "new", "words"),
        [
            (banner_state(), banner_state(environment=Environment(24)), ["environment id 23 != 24"]),
            (banner_state(), banner_state(feature=attrs.evolve(BANNER, id=9)), ["feature id 2411 != 9"]),
            (banner_state(), segment_state(), ["scope environment != segment"]),
            (segment_state(), identity_state(), ["scope segment != identity"]),
            (
                segment_state(),
                segment_state(feature_segment=FeatureSegment(id=77, segment=Segment(6, "other"))),
                ["segment override", "5", "6"],
            ),
            (
                identity_state(),
                identity_state(identity=Identity(982, "bob")),
                ["identity override", "981", "982"],
            ),
        ],
    )
    def test_mismatched_targets(self, previous: object, new: object, words: list[str]) -> None:
        """States of different targets cannot be compared; the error says what differs."""
        with pytest.raises(ValueError, match="not states of the same target") as info:
            diff_states(previous, new)  # type: ignore[arg-type]
        for word in words:
            assert word in str(info.value)

    def test_segment_known_by_segment_id(self) -> None:
        """When the segment is known, it is the target, whatever the feature-segment id."""
        a = segment_state(feature_segment=FeatureSegment(id=1, segment=BETA))
        b = segment_state(feature_segment=FeatureSegment(id=2, segment=BETA, priority=3))
        assert diff_states(a, b).is_noop

    def test_segment_known_by_feature_segment_id(self) -> None:
        """Without a segment, the feature-segment id is the target."""
        a = segment_state(feature_segment=FeatureSegment(id=1))
        with pytest.raises(ValueError, match="feature-segment 1 != feature-segment 2"):
            diff_states(a, segment_state(feature_segment=FeatureSegment(id=2)))

    def test_identity_known_by_id(self) -> None:
        """An identity override's target is the identity id; a changed identifier is the same target."""
        renamed = identity_state(identity=Identity(ALICE.id, "alice@new.example"))
        assert diff_states(identity_state(), renamed).is_noop


class TestLaws:
    @given(states)
    def test_same_state_is_noop(self, state: object) -> None:
        """diff_states(s, s) is a no-op."""
        change = diff_states(state, state)  # type: ignore[arg-type]
        assert change.is_noop and change.action is Action.UPDATED

    @given(states)
    def test_toggling_enabled_changes_exactly_enabled(self, state: object) -> None:
        """Toggling enabled changes exactly {"enabled"}."""
        toggled = attrs.evolve(state, enabled=not state.enabled)  # type: ignore[attr-defined,misc]
        assert diff_states(state, toggled).changed == {"enabled"}  # type: ignore[arg-type]

    @given(states, st.booleans())
    def test_created_and_deleted_change_nothing_listed(self, state: object, created: bool) -> None:
        """CREATED and DELETED list no changed aspects and are never no-ops."""
        change = diff_states(None, state) if created else diff_states(state, None)  # type: ignore[arg-type]
        assert change.changed == frozenset() and not change.is_noop

    @given(states, states)
    def test_symmetric_for_same_target(self, a: object, b: object) -> None:
        """When two states are comparable, the changed set is the same in either direction."""
        try:
            forward = diff_states(a, b)  # type: ignore[arg-type]
        except ValueError:
            with pytest.raises(ValueError, match="same target"):
                diff_states(b, a)  # type: ignore[arg-type]
            return
        assert diff_states(b, a).changed == forward.changed  # type: ignore[arg-type]


def test_environment_default_of_same_feature_in_same_environment() -> None:
    """A state rebuilt from scratch for the same target compares fine."""
    assert diff_states(banner_state(), banner_state(environment=PRODUCTION)).is_noop

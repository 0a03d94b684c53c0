"""Models: valid values construct frozen objects; every bad value raises with the field named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from cases import BANNER, BETA, OPTIONS, PRODUCTION, PROJECT, banner_state
from flaghooks import (
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    MultivariateOption,
    MultivariateValue,
    Project,
    Segment,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def feature(**changes: Any) -> Feature:
    fields: dict[str, Any] = {"id": 1, "name": "banner", "project": PROJECT, "created_date": NOW}
    fields.update(changes)
    return Feature(**fields)


class TestValidModels:
    def test_defaults_match_flagsmith(self) -> None:
        """A feature defaults to a disabled FLAG without initial value; a state to no value, no override."""
        f = feature()
        assert (f.type, f.initial_value, f.default_enabled, f.description) == ("FLAG", None, False, None)
        state = FeatureState(feature=f, environment=PRODUCTION, enabled=True)
        assert state.value is None and state.id is None
        assert state.feature_segment is None and state.identity is None and state.multivariate_values == ()

    def test_models_are_frozen_and_slotted(self) -> None:
        """Models cannot be changed in place; attrs.evolve makes a changed copy."""
        state = banner_state()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            state.enabled = True  # type: ignore[misc]
        assert not hasattr(state, "__dict__")
        assert attrs.evolve(state, enabled=True).enabled is True

    def test_models_are_hashable_values(self) -> None:
        """Equal models compare and hash equal, so they can be set members and dict keys."""
        assert banner_state() == banner_state()
        assert len({banner_state(), banner_state()}) == 1

    @pytest.mark.parametrize("value", ["blue", 7, -3, True, False, None, ""])
    def test_flag_values_accepted(self, value: object) -> None:
        """Strings, ints, bools and None are flag values."""
        assert FeatureState(feature=BANNER, environment=PRODUCTION, enabled=True, value=value).value == value

    def test_identity_ids_may_be_strings(self) -> None:
        """Edge identities have string ids."""
        assert Identity("6f1b2c", "alice").id == "6f1b2c"

    @pytest.mark.parametrize("allocation", [0, 50, 30.0, 100, 99.5])
    def test_allocations_kept_as_given(self, allocation: float) -> None:
        """Allocations keep their type: Flagsmith sends both 50 and 30.0."""
        value = MultivariateValue(1, MultivariateOption(1, "a"), allocation)
        assert value.percentage_allocation == allocation
        assert type(value.percentage_allocation) is type(allocation)

    def test_feature_segment_needs_only_one_of_id_and_segment(self) -> None:
        """Either the feature-segment id or the segment is enough."""
        assert FeatureSegment(id=3).segment is None
        assert FeatureSegment(segment=BETA).id is None

    def test_datetimes_in_any_zone(self) -> None:
        """Any timezone-aware datetime is accepted."""
        plus_two = datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
        assert feature(created_date=plus_two).created_date == NOW


def assert_rejected(exc_info: pytest.ExceptionInfo[Exception], field: str, *words: str) -> None:
    message = str(exc_info.value)
    assert field in message, message
    for word in words:
        assert word in message, message


class TestBadModels:
    def test_naive_datetime(self) -> None:
        """A naive datetime is rejected, naming the field and saying how to fix it."""
        with pytest.raises(ValueError, match="timezone-aware") as info:
            feature(created_date=datetime(2024, 1, 1))
        assert_rejected(info, "Feature.created_date", "tzinfo")
        with pytest.raises(ValueError, match="timezone-aware") as info:
            AuditLogEntry(created_date=datetime(2024, 1, 1), log="x", related_object_type="FEATURE")
        assert_rejected(info, "AuditLogEntry.created_date")

    def test_datetime_without_utc_equivalent(self) -> None:
        """A datetime that cannot be expressed in UTC (the year 1 east of Greenwich) is rejected."""
        early = datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
        with pytest.raises(ValueError, match="out of range in UTC") as info:
            feature(created_date=early)
        assert_rejected(info, "Feature.created_date")

    def test_not_a_datetime(self) -> None:
        """A string where a datetime belongs is a TypeError naming the field."""
        with pytest.raises(TypeError) as info:
            feature(created_date="2024-01-01T00:00:00Z")
        assert_rejected(info, "Feature.created_date", "datetime")

    @pytest.mark.parametrize(
        ("build", "field"),
        [
            (lambda: FeatureState(feature=BANNER, environment=PRODUCTION, enabled=True, value=1.5), "value"),
            (lambda: feature(initial_value=1.5), "Feature.initial_value"),
            (lambda: MultivariateOption(1, 1.5), "MultivariateOption.value"),
        ],
    )
    def test_float_value(self, build: Any, field: str) -> None:
        """A float flag value is rejected with advice to pass a string."""
        with pytest.raises(TypeError) as info:
            build()
        assert_rejected(info, field, "float", "'1.5'")

    @pytest.mark.parametrize("value", [[1], {"a": 1}, b"bytes", object()])
    def test_other_value_types(self, value: object) -> None:
        """Lists, dicts, bytes and other objects are not flag values."""
        with pytest.raises(TypeError) as info:
            FeatureState(feature=BANNER, environment=PRODUCTION, enabled=True, value=value)
        assert_rejected(info, "FeatureState.value", type(value).__name__)

    def test_segment_and_identity_override(self) -> None:
        """A state is never both a segment and an identity override."""
        with pytest.raises(ValueError, match="never both") as info:
            banner_state(feature_segment=FeatureSegment(id=1), identity=Identity(1, "a"))
        assert_rejected(info, "FeatureState.identity", "feature_segment")

    @pytest.mark.parametrize("name", ["", None])
    def test_empty_feature_name(self, name: object) -> None:
        """A feature name must be a non-empty string."""
        with pytest.raises((TypeError, ValueError)) as info:
            feature(name=name)
        assert_rejected(info, "Feature.name")

    @pytest.mark.parametrize("kind", ["", "STANDARD", "MULTIVARIATE", "FLAG", "CONFIG", "SOMETHING_NEW"])
    def test_any_feature_type(self, kind: str) -> None:
        """Any string is a feature type, "" included: Flagsmith's column allows it (issue 7)."""
        assert feature(type=kind).type == kind

    def test_feature_type_is_a_string(self) -> None:
        """A feature type that is not a string names the field."""
        with pytest.raises(TypeError) as info:
            feature(type=None)
        assert_rejected(info, "Feature.type")

    @pytest.mark.parametrize(
        ("build", "field"),
        [
            (lambda: Project(True), "Project.id"),
            (lambda: Environment(False), "Environment.id"),
            (lambda: feature(id=True), "Feature.id"),
            (lambda: Segment(True, "s"), "Segment.id"),
            (lambda: FeatureSegment(id=True), "FeatureSegment.id"),
            (lambda: Identity(True, "a"), "Identity.id"),
            (lambda: MultivariateOption(True, "a"), "MultivariateOption.id"),
            (lambda: Author(True, "a@b.c"), "Author.id"),
            (lambda: banner_state(id=True), "FeatureState.id"),
            (lambda: Project(1, organisation=True), "Project.organisation"),
            (
                lambda: AuditLogEntry(created_date=NOW, log="x", related_object_type="FEATURE", related_object_id=True),
                "AuditLogEntry.related_object_id",
            ),
        ],
    )
    def test_true_is_not_an_id(self, build: Any, field: str) -> None:
        """``True`` is an int to Python but never an id."""
        with pytest.raises(TypeError) as info:
            build()
        assert_rejected(info, field, "bool")

    @pytest.mark.parametrize("bad", ["7", 7.0, None])
    def test_ids_are_ints(self, bad: object) -> None:
        """Strings and floats are not ids."""
        with pytest.raises(TypeError) as info:
            Environment(bad)  # type: ignore[arg-type]
        assert_rejected(info, "Environment.id", "int")

    @pytest.mark.parametrize("allocation", [100.5, 101, -1, float("nan"), float("inf")])
    def test_allocation_out_of_range(self, allocation: float) -> None:
        """An allocation outside 0..100 (or not finite) is rejected."""
        with pytest.raises(ValueError, match="between 0 and 100") as info:
            MultivariateValue(1, MultivariateOption(1, "a"), allocation)
        assert_rejected(info, "MultivariateValue.percentage_allocation")

    def test_allocation_not_a_bool(self) -> None:
        """A bool is not a percentage."""
        with pytest.raises(TypeError) as info:
            MultivariateValue(1, MultivariateOption(1, "a"), True)
        assert_rejected(info, "MultivariateValue.percentage_allocation")

    def test_feature_segment_needs_id_or_segment(self) -> None:
        """A feature segment with neither id nor segment identifies nothing."""
        with pytest.raises(ValueError, match="required") as info:
            FeatureSegment()
        assert_rejected(info, "FeatureSegment.id", "FeatureSegment.segment")

    def test_multivariate_values_must_be_a_tuple_of_values(self) -> None:
        """Frozen objects hold tuples; a list or a stray item is named."""
        with pytest.raises(TypeError, match="tuple") as info:
            banner_state(multivariate_values=list(OPTIONS))
        assert_rejected(info, "FeatureState.multivariate_values")
        with pytest.raises(TypeError, match=r"\[1\]") as info:
            banner_state(multivariate_values=(OPTIONS[0], "green"))
        assert_rejected(info, "FeatureState.multivariate_values")

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("feature", "banner"),
            ("environment", 23),
            ("enabled", 1),
            ("feature_segment", 77),
            ("identity", "alice"),
        ],
    )
    def test_state_fields_have_types(self, field: str, value: object) -> None:
        """Each state field checks its type and is named when wrong."""
        with pytest.raises(TypeError) as info:
            banner_state(**{field: value})
        assert_rejected(info, f"FeatureState.{field}")

    def test_errors_carry_the_field(self) -> None:
        """The exception's ``field`` attribute is the field's name (the decoder uses it for paths)."""
        with pytest.raises(ValueError, match="empty") as info:
            Identity(1, "")
        assert info.value.field == "identifier"  # type: ignore[attr-defined]

    def test_long_bad_values_are_clipped_in_messages(self) -> None:
        """A huge bad value does not flood the message."""
        with pytest.raises(TypeError) as info:
            Environment("x" * 10_000)  # type: ignore[arg-type]
        assert len(str(info.value)) < 200

    @pytest.mark.parametrize(
        ("build", "field"),
        [
            (lambda: Identity("", "alice"), "Identity.id"),
            (lambda: Identity(1.5, "alice"), "Identity.id"),
            (lambda: Segment(1, None), "Segment.name"),
            (lambda: Author(1, "a@b.c", first_name=None), "Author.first_name"),
            (lambda: FeatureSegment(id=1, priority="high"), "FeatureSegment.priority"),
            (lambda: feature(default_enabled="yes"), "Feature.default_enabled"),
            (lambda: feature(project=12), "Feature.project"),
            (lambda: Project(1, name=5), "Project.name"),
            (
                lambda: AuditLogEntry(created_date=NOW, log="x", related_object_type="F", author="me"),
                "AuditLogEntry.author",
            ),
        ],
    )
    def test_other_fields_are_checked(self, build: Any, field: str) -> None:
        """Every other field checks its type or emptiness and is named."""
        with pytest.raises((TypeError, ValueError)) as info:
            build()
        assert_rejected(info, field)

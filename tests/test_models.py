"""Models: valid values construct frozen objects; every bad value raises with the field named."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from cases import BANNER, BETA, OPTIONS, PRODUCTION, PROJECT, banner_state
from flaghooks import (
    AuditLogEntry,
    Author,
    Environment,
    Extra,
    Feature,
    FeatureSegment,
    FeatureState,
    FlagChange,
    Identity,
    MultivariateOption,
    MultivariateValue,
    Project,
    Segment,
    VersionFeature,
    VersionFeatureState,
    VersionPublished,
    VersionPublisher,
    WebhookEvent,
)
from flaghooks._extra import NO_EXTRA, thaw

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
            (lambda: FeatureSegment(id=1, priority=True), "FeatureSegment.priority"),
            (lambda: FeatureSegment(segment="beta"), "FeatureSegment.segment"),
            (lambda: Segment(1, "beta", 5), "Segment.description"),
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

    def test_int_subclasses_are_ints(self) -> None:
        """Int subclasses other than bool (an IntEnum, ...) pass where an int is wanted, as before the one-pass
        checks."""

        class Rank(int):
            pass

        assert FeatureSegment(id=Rank(1), segment=BETA, priority=Rank(2)).priority == 2
        assert Segment(Rank(3), "beta").id == 3


def mv(allocation: float, index: int = 1) -> MultivariateValue:
    return MultivariateValue(index, MultivariateOption(100 + index, f"v{index}"), allocation)


class TestAllocations:
    """Issue 7 section 3 item 11: allocations over 100 in total are refused when a state is built."""

    @pytest.mark.parametrize("allocations", [(60, 41), (100, 0.5), (50.0, 30.0, 20.5)])
    def test_over_100_refused(self, allocations: tuple[float, ...]) -> None:
        """A state whose multivariate allocations total more than 100 names the field."""
        values = tuple(mv(a, i) for i, a in enumerate(allocations))
        with pytest.raises(ValueError, match="more than 100") as info:
            banner_state(multivariate_values=values)
        assert_rejected(info, "FeatureState.multivariate_values")
        with pytest.raises(ValueError, match="more than 100") as info:
            VersionFeatureState(enabled=True, multivariate_values=values)
        assert_rejected(info, "VersionFeatureState.multivariate_values")

    @pytest.mark.parametrize("allocations", [(), (100,), (50, 50), (33.33, 33.33, 33.34), (0.1,) * 1000])
    def test_up_to_100_accepted(self, allocations: tuple[float, ...]) -> None:
        """Up to 100 in total is fine, float sums a hair over 100 by rounding included."""
        values = tuple(mv(a, i) for i, a in enumerate(allocations))
        assert banner_state(multivariate_values=values).multivariate_values == values


class TestExtra:
    def test_frozen_hashable_and_equal_like_a_dict(self) -> None:
        """Extra is a read-only mapping whose nested objects and arrays are frozen too, and it hashes."""
        extra = Extra({"a": [1, {"b": [2]}], "c": None})
        assert extra == {"a": (1, Extra({"b": (2,)})), "c": None} and len(extra) == 2 and "c" in extra
        assert hash(extra) == hash(Extra({"c": None, "a": [1, {"b": [2]}]}))
        assert isinstance(extra["a"], tuple) and isinstance(extra["a"][1], Extra)
        with pytest.raises(TypeError):
            extra["d"] = 1  # type: ignore[index]
        assert thaw(extra) == {"a": [1, {"b": [2]}], "c": None}
        assert repr(Extra({"a": 1})) == "Extra({'a': 1})"
        assert Extra() == {} and Extra({"a": 1}) != Extra({"a": 2})

    def test_models_with_extra_stay_hashable(self) -> None:
        """Models carrying extra keys hash and compare by them."""
        one = Environment(1, "e", extra={"x": [1]})
        assert hash(one) == hash(Environment(1, "e", extra={"x": [1]}))
        assert one != Environment(1, "e", extra={"x": [2]}) and one != Environment(1, "e")
        assert isinstance(one.extra, Extra) and Environment(1, "e", extra={}).extra is Environment(1).extra

    def test_pickles(self) -> None:
        """An Extra survives pickling (a model with one can be sent to another process)."""
        project = Project(1, extra={"a": {"b": [1]}})
        assert pickle.loads(pickle.dumps(project)) == project  # noqa: S301 - our own bytes

    @pytest.mark.parametrize(
        ("build", "error", "words"),
        [
            (lambda: Environment(1, extra={"name": "x"}), ValueError, ["Environment.extra", "'name'"]),
            (lambda: Project(1, extra={"organisation": 3}), ValueError, ["Project.extra", "'organisation'"]),
            (lambda: Author(1, "a", extra={"email": "b"}), ValueError, ["Author.extra", "'email'"]),
            (lambda: Environment(1, uuid="u", extra={"uuid": None}), ValueError, ["Environment.extra", "'uuid'"]),
            (lambda: Environment(1, extra={"api_key": "k"}), ValueError, ["set Environment.api_key"]),
            (lambda: Environment(1, extra={"x": {1, 2}}), TypeError, ["Environment.extra['x']", "JSON value"]),
            (lambda: Project(1, extra={"x": float("nan")}), ValueError, ["Project.extra['x']", "JSON cannot"]),
            (lambda: Project(1, extra={3: "x"}), TypeError, ["Project.extra keys must be strings"]),
            (lambda: Project(1, extra=[("a", 1)]), TypeError, ["Project.extra must be a mapping"]),
            (lambda: audit(extra={"log": "x"}), ValueError, ["AuditLogEntry.extra", "'log'"]),
        ],
    )
    def test_refused(self, build: Any, error: type[Exception], words: list[str]) -> None:
        """extra must hold JSON values under string keys, and never a key the model writes itself."""
        with pytest.raises(error) as info:
            build()
        assert_rejected(info, *words)
        assert getattr(info.value, "field", None) == "extra"

    def test_null_optional_key(self) -> None:
        """An optional field's key may be in extra as null while the field is unset (it was sent as null)."""
        assert Environment(1, extra={"uuid": None}).extra == {"uuid": None}

    def test_plain_subclasses_are_kept_as_plain_values(self) -> None:
        """Enum-like str, int and float subclasses are stored as the plain values JSON writes."""

        class Colour(str):
            pass

        class Count(int):
            pass

        class Share(float):
            pass

        extra = Extra({"c": Colour("red"), "n": Count(3), "s": Share(0.5)})
        assert [type(extra[key]) for key in ("c", "n", "s")] == [str, int, float]
        with pytest.raises(ValueError, match="JSON cannot carry"):
            Extra({"s": Share("inf")})


# Every model of a flag state and of NEW_VERSION_PUBLISHED that keeps extra keys, built with ``extra``, and the keys
# it writes itself (which its extra may not hold).
EXTRA_MODELS: dict[str, tuple[Any, list[str]]] = {
    "Feature": (
        lambda extra: feature(extra=extra),
        ["created_date", "default_enabled", "description", "id", "initial_value", "name", "project", "type"],
    ),
    "FeatureState": (
        lambda extra: banner_state(extra=extra),
        [
            "enabled",
            "environment",
            "feature",
            "feature_segment",
            "feature_state_value",
            "id",
            "identity",
            "identity_identifier",
            "multivariate_feature_state_values",
        ],
    ),
    "Segment": (lambda extra: Segment(1, "beta", extra=extra), ["id", "name", "description"]),
    "FeatureSegment": (lambda extra: FeatureSegment(1, extra=extra), ["id", "segment", "priority"]),
    "MultivariateOption": (lambda extra: MultivariateOption(1, "a", extra=extra), ["id", "value"]),
    "MultivariateValue": (
        lambda extra: MultivariateValue(1, MultivariateOption(2, "a"), 10, extra=extra),
        ["id", "multivariate_feature_option", "percentage_allocation"],
    ),
    "FlagChange": (
        lambda extra: FlagChange("dana", banner_state(), None, NOW, extra=extra),
        ["changed_by", "new_state", "timestamp"],
    ),
    "WebhookEvent": (
        lambda extra: WebhookEvent("evt_1", "FLAG_UPDATED", FlagChange("", banner_state(), None, NOW), extra=extra),
        ["event_type", "data"],
    ),
    "VersionFeature": (lambda extra: VersionFeature(1, "banner", extra=extra), ["id", "name"]),
    "VersionPublisher": (lambda extra: VersionPublisher(1, "a@example.com", extra=extra), ["id", "email"]),
    "VersionFeatureState": (
        lambda extra: VersionFeatureState(enabled=True, extra=extra),
        ["enabled", "value", "multivariate_feature_state_values"],
    ),
    "VersionPublished": (
        lambda extra: VersionPublished(uuid="u", feature=VersionFeature(1, "banner"), extra=extra),
        ["uuid", "feature", "published_by", "feature_states"],
    ),
}


class TestExtraOnFlagStateAndVersionModels:
    """Issue 7: the flag-state and NEW_VERSION_PUBLISHED models keep the keys flaghooks does not model, with the
    same rules as the audit models."""

    @pytest.mark.parametrize("name", list(EXTRA_MODELS))
    def test_default_empty_frozen_hashable_and_compared(self, name: str) -> None:
        """``extra`` defaults to the shared empty Extra, is frozen to an Extra, is part of equality and hash, and
        cannot be reassigned."""
        build, _ = EXTRA_MODELS[name]
        plain, rich = build({}), build({"later": [1, {"a": None}]})
        assert type(plain).__name__ == name
        assert plain.extra is NO_EXTRA
        assert isinstance(rich.extra, Extra) and rich.extra == {"later": (1, Extra({"a": None}))}
        assert rich != plain and rich == build({"later": [1, {"a": None}]})
        assert hash(rich) == hash(build({"later": [1, {"a": None}]}))
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            rich.extra = {}
        assert pickle.loads(pickle.dumps(rich)) == rich  # noqa: S301 - our own bytes

    @pytest.mark.parametrize("name", list(EXTRA_MODELS))
    def test_keyword_only(self, name: str) -> None:
        """``extra`` is keyword-only: no positional argument reaches it."""
        cls = type(EXTRA_MODELS[name][0]({}))
        assert attrs.fields_dict(cls)["extra"].kw_only

    @pytest.mark.parametrize(("name", "key"), [(name, key) for name, (_, keys) in EXTRA_MODELS.items() for key in keys])
    def test_refuses_a_key_the_model_writes(self, name: str, key: str) -> None:
        """A key the model writes itself cannot be shadowed by extra: ValueError naming model and key."""
        build, _ = EXTRA_MODELS[name]
        with pytest.raises(ValueError, match="must not contain") as info:
            build({key: None})
        assert_rejected(info, f"{name}.extra", repr(key))
        assert getattr(info.value, "field", None) == "extra"

    def test_flag_change_keeps_a_null_previous_state(self) -> None:
        """A FlagChange's extra may hold previous_state as null while it has no previous state (a body that sent
        the null, written back as sent), and never otherwise."""
        assert FlagChange("", banner_state(), None, NOW, extra={"previous_state": None}).extra == {
            "previous_state": None
        }
        for previous, value in ((banner_state(), None), (None, {"id": 1})):
            with pytest.raises(ValueError, match=r"set FlagChange\.previous_state instead"):
                FlagChange("", banner_state(), previous, NOW, extra={"previous_state": value})

    @pytest.mark.parametrize("name", list(EXTRA_MODELS))
    def test_refuses_what_json_cannot_carry(self, name: str) -> None:
        """extra holds JSON values under string keys."""
        build, _ = EXTRA_MODELS[name]
        with pytest.raises(TypeError) as info:
            build({"x": {1, 2}})
        assert_rejected(info, f"{name}.extra['x']", "JSON value")
        with pytest.raises(TypeError):
            build({1: "x"})


def audit(**changes: Any) -> AuditLogEntry:
    fields: dict[str, Any] = {"created_date": NOW, "log": "x", "related_object_type": "FEATURE"}
    fields.update(changes)
    return AuditLogEntry(**fields)


class TestIssue7Models:
    def test_related_object_type_may_be_none(self) -> None:
        """An audit entry's related_object_type may be None (Flagsmith sends null)."""
        assert audit(related_object_type=None).related_object_type is None

    def test_first_class_fields(self) -> None:
        """uuids, api_key and is_system_event are fields, type-checked with the field named."""
        assert Environment(1, uuid="u", api_key="k").api_key == "k"
        assert Project(1, uuid="u").uuid == "u" and Author(1, "a", uuid="u").uuid == "u"
        for build, field in [
            (lambda: Environment(1, uuid=5), "Environment.uuid"),
            (lambda: Environment(1, api_key=5), "Environment.api_key"),
            (lambda: Project(1, uuid=5), "Project.uuid"),
            (lambda: Project(1, "p", "7"), "Project.organisation"),
            (lambda: Author(1, "a", uuid=5), "Author.uuid"),
        ]:
            with pytest.raises(TypeError) as info:
                build()
            assert_rejected(info, field)

    @pytest.mark.parametrize(
        ("build", "field"),
        [
            (lambda: VersionPublished(uuid="", feature=VersionFeature(1, "f")), "VersionPublished.uuid"),
            (lambda: VersionPublished(uuid="u", feature=(1, "f")), "VersionPublished.feature"),
            (lambda: VersionPublished(uuid="u", feature=VersionFeature(1, "f"), published_by=3), "published_by"),
            (lambda: VersionPublished(uuid="u", feature=VersionFeature(1, "f"), feature_states=[]), "feature_states"),
            (
                lambda: VersionPublished(uuid="u", feature=VersionFeature(1, "f"), feature_states=(3,)),
                "VersionPublished.feature_states [0]",
            ),
            (lambda: VersionFeature(True, "f"), "VersionFeature.id"),
            (lambda: VersionPublisher(1, None), "VersionPublisher.email"),
            (lambda: VersionFeatureState(enabled=1), "VersionFeatureState.enabled"),
            (lambda: VersionFeatureState(enabled=True, value=1.5), "VersionFeatureState.value"),
        ],
    )
    def test_version_published_validation(self, build: Any, field: str) -> None:
        """NEW_VERSION_PUBLISHED's models refuse bad values, naming the field."""
        with pytest.raises((TypeError, ValueError)) as info:
            build()
        assert_rejected(info, field)


class TestOnePassValidation:
    """Models validated in one pass (for speed) still accept subclasses and name every bad field."""

    def test_subclass_values_accepted(self) -> None:
        """int and str subclasses (enums, say) pass where plain ints and strs do."""

        class Code(str):
            pass

        class Share(int):
            pass

        assert Identity(Code("edge-1"), "alice").id == "edge-1"
        assert Identity(Share(7), "alice").id == 7
        assert mv(Share(40)).percentage_allocation == 40
        assert MultivariateOption(Share(3), Code("x")).value == "x"

    @pytest.mark.parametrize(
        ("build", "field"),
        [
            (lambda: Environment(1, 5), "Environment.name"),
            (lambda: Project(1, 5), "Project.name"),
            (lambda: MultivariateValue(1, ("option",), 5), "MultivariateValue.option"),
            (lambda: MultivariateValue(1, MultivariateOption(1, "x"), float("nan")), "MultivariateValue.percentage"),
            (lambda: MultivariateOption(1.0, "x"), "MultivariateOption.id"),
            (lambda: MultivariateValue(True, MultivariateOption(1, "x"), 5), "MultivariateValue.id"),
            (lambda: Identity(1.5, "a"), "Identity.id"),
            (lambda: Identity("", "a"), "Identity.id"),
            (lambda: Identity(1, ""), "Identity.identifier"),
            (lambda: feature(description=5), "Feature.description"),
        ],
    )
    def test_bad_fields_named(self, build: Any, field: str) -> None:
        """Each bad value names its field."""
        with pytest.raises((TypeError, ValueError)) as info:
            build()
        assert_rejected(info, field)

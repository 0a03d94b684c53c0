"""parse_environment_document: Flagsmith's environment document read into flaghooks' models, strictly where a state
needs it and liberally elsewhere."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from documents import built_documents, document, identity, load_sample, mv_value, segment, state
from flaghooks import Environment, PayloadError, Project
from flaghooks._document import UNKNOWN_CREATED_DATE, EnvironmentDocument, parse_environment_document


def small() -> dict[str, Any]:
    return document(
        1,
        "env-key",
        [state(12, "banner", True, "blue", seed=77)],
        segments=[segment(5, "beta", [state(12, "banner", False, "red", seed=78, priority=3)])],
        identity_overrides=[identity("alice", 900, [state(12, "banner", True, "gold", seed=79)], "env-key")],
    )


class TestMapping:
    def test_every_state_of_the_sample_is_read_in_order(self) -> None:
        """The sample gives its defaults, then each segment's overrides, then each identity's, as in the file."""
        raw = load_sample()
        parsed = parse_environment_document(raw)
        expected = (
            [("default", fs["feature"]["id"]) for fs in raw["feature_states"]]
            + [
                (("segment", seg["id"]), fs["feature"]["id"])
                for seg in raw["project"]["segments"]
                for fs in seg["feature_states"]
            ]
            + [
                (("identity", ident["identifier"]), fs["feature"]["id"])
                for ident in raw["identity_overrides"]
                for fs in ident["identity_features"]
            ]
        )

        def target(fs: Any) -> Any:
            if fs.identity is not None:
                return ("identity", fs.identity.identifier)
            if fs.feature_segment is not None:
                return ("segment", fs.feature_segment.segment.id)
            return "default"

        assert [(target(fs), fs.feature.id) for fs in parsed.states] == expected

    def test_environment_project_and_updated_at(self) -> None:
        """The environment's id, name and client key; the project with its organisation's id; updated_at in UTC."""
        parsed = parse_environment_document(load_sample())
        assert parsed.environment == Environment(1284, "Production", api_key="ndnPRhBvMWXyZUBfRzC6eh")
        assert parsed.updated_at == datetime(2024, 6, 3, 8, 15, 42, 318000, tzinfo=UTC)
        assert {fs.environment for fs in parsed.states} == {parsed.environment}
        assert {fs.feature.project for fs in parsed.states} == {Project(517, "Storefront", organisation=212)}

    def test_a_default_keeps_value_type_and_the_document_keys_it_does_not_model(self) -> None:
        """Value and feature type as given; the id is unknown (django_id is the multivariate hashing seed) and stays
        in extra with featurestate_uuid; the feature's created_date is the documented 'unknown'."""
        parsed = parse_environment_document(small())
        banner = parsed.states[0]
        assert (banner.feature.id, banner.feature.name, banner.feature.type) == (12, "banner", "STANDARD")
        assert (banner.enabled, banner.value, banner.id) == (True, "blue", None)
        assert banner.feature.created_date == UNKNOWN_CREATED_DATE
        assert dict(banner.extra) == {
            "django_id": 77,
            "featurestate_uuid": small()["feature_states"][0]["featurestate_uuid"],
        }
        assert banner.identity is None and banner.feature_segment is None

    def test_a_segment_override_carries_its_segment_and_priority(self) -> None:
        """Keyed by the segment (id and name), with the override's priority; no feature-segment id in a document;
        the rules are not kept."""
        override = parse_environment_document(small()).states[1]
        fs = override.feature_segment
        assert fs is not None and fs.segment is not None
        assert (fs.id, fs.segment.id, fs.segment.name, fs.priority) == (None, 5, "beta", 3)
        assert dict(fs.segment.extra) == {}
        assert (override.enabled, override.value) == (False, "red")

    def test_an_identity_override_carries_its_identifier_and_database_id(self) -> None:
        """The identity's id is Flagsmith's django_id when the document has it."""
        override = parse_environment_document(small()).states[2]
        assert override.identity is not None
        assert (override.identity.id, override.identity.identifier, override.value) == (900, "alice", "gold")

    @pytest.mark.parametrize(
        ("keys", "expected"),
        [
            ({"django_id": None, "identity_uuid": "7e1c"}, "7e1c"),
            ({"django_id": None, "identity_uuid": None}, "alice"),
            ({"django_id": None, "identity_uuid": ""}, "alice"),
        ],
    )
    def test_an_edge_identity_falls_back_to_its_uuid_then_identifier(self, keys: dict[str, Any], expected: str) -> None:
        """Without a database id (edge identities) the identity's id is its uuid, else its identifier."""
        raw = small()
        raw["identity_overrides"][0].update(keys)
        override = parse_environment_document(raw).states[2]
        assert override.identity is not None and override.identity.id == expected

    def test_multivariate_values_keep_options_allocations_and_uuids(self) -> None:
        """Each value's id, option (id, value, key in extra) and allocation, as given; mv_fs_value_uuid in extra."""
        parsed = parse_environment_document(built_documents()["multivariate"])
        checkout = parsed.states[0]
        assert [(v.id, v.option.id, v.option.value, v.percentage_allocation) for v in checkout.multivariate_values] == [
            (11, 1, "green", 33.33),
            (12, 2, "red", 33.33),
        ]
        first = checkout.multivariate_values[0]
        assert dict(first.option.extra) == {"key": None}
        assert set(first.extra) == {"mv_fs_value_uuid"}

    def test_one_feature_object_per_feature(self) -> None:
        """States naming a feature alike share one Feature (a large document costs one object per feature)."""
        parsed = parse_environment_document(small())
        assert parsed.states[0].feature is parsed.states[1].feature is parsed.states[2].feature

    def test_unknown_keys_are_kept_where_a_model_has_extra(self) -> None:
        """Keys a later Flagsmith adds land in the extra of their object's model; keys a model reserves for its
        own fields are not copied there."""
        raw = small()
        raw["feature_states"][0]["future_state"] = 1
        raw["feature_states"][0]["identity"] = None  # a key FeatureState writes itself
        raw["feature_states"][0]["feature"]["future_feature"] = [1, 2]
        raw["feature_states"][0]["feature"]["project"] = 7  # reserved by Feature
        seg = raw["project"]["segments"][0]
        seg["future_segment"] = "x"
        seg["feature_states"][0]["feature_segment"]["future_link"] = True
        raw["future_top"] = {"ignored": True}
        parsed = parse_environment_document(raw)
        default, override = parsed.states[0], parsed.states[1]
        assert default.extra["future_state"] == 1 and "identity" not in default.extra
        assert dict(default.feature.extra) == {"future_feature": (1, 2)}
        assert override.feature_segment is not None and override.feature_segment.segment is not None
        assert dict(override.feature_segment.segment.extra) == {"future_segment": "x"}
        assert dict(override.feature_segment.extra) == {"future_link": True}

    def test_a_feature_with_its_own_dates_and_description(self) -> None:
        """A document that does carry a feature's created_date and description gives them."""
        raw = small()
        raw["feature_states"][0]["feature"].update(created_date="2023-01-02T03:04:05Z", description="Top banner")
        banner = parse_environment_document(raw).states[0].feature
        assert banner.created_date == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert banner.description == "Top banner"

    def test_optional_parts_may_be_missing_or_null(self) -> None:
        """Only id, project.id and feature_states are required at the top; a state needs its feature and enabled."""
        raw = {
            "id": 2,
            "project": {"id": 3, "segments": None, "organisation": None},
            "feature_states": [
                {"feature": {"id": 1, "name": "x"}, "enabled": False, "multivariate_feature_state_values": None}
            ],
            "identity_overrides": None,
            "updated_at": None,
        }
        parsed = parse_environment_document(raw)
        assert parsed.environment == Environment(2)
        assert parsed.updated_at is None
        (only,) = parsed.states
        assert (only.value, only.feature.type, only.multivariate_values) == (None, "STANDARD", ())
        assert only.feature.project == Project(3)

    def test_a_segment_state_without_feature_segment_has_no_priority(self) -> None:
        """The SDK treats feature_segment as optional in a segment's states; so does the parser."""
        raw = small()
        del raw["project"]["segments"][0]["feature_states"][0]["feature_segment"]
        fs = parse_environment_document(raw).states[1].feature_segment
        assert fs is not None and fs.priority is None and fs.segment is not None

    def test_an_environment_default_ignores_a_feature_segment(self) -> None:
        """The top-level feature_states are the defaults whatever their feature_segment says."""
        raw = small()
        raw["feature_states"][0]["feature_segment"] = {"priority": 1}
        assert parse_environment_document(raw).states[0].feature_segment is None

    def test_an_organisation_given_as_an_id(self) -> None:
        """project.organisation as a plain id reads the same as the object Flagsmith writes."""
        raw = small()
        raw["project"]["organisation"] = 3
        assert parse_environment_document(raw).states[0].feature.project.organisation == 3

    def test_any_mapping_is_accepted(self) -> None:
        """The document may be any Mapping (a read-only view, say), not only a dict."""
        raw = small()
        assert parse_environment_document(MappingProxyType(raw)) == parse_environment_document(raw)

    def test_the_repr_counts_states(self) -> None:
        """A 10,000-state document does not print each state."""
        assert "<3 states>" in repr(parse_environment_document(small()))

    def test_equal_documents_parse_equal(self) -> None:
        """Parsing is deterministic: the result is a frozen value, equal for equal documents."""
        first = parse_environment_document(load_sample())
        assert isinstance(first, EnvironmentDocument)
        assert first == parse_environment_document(load_sample())


class TestUpdatedAt:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-06-01T12:00:00.000Z", datetime(2024, 6, 1, 12, tzinfo=UTC)),
            ("2024-06-01T12:00:00.123456+00:00", datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)),
            ("2024-06-01T14:00:00+02:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
            ("2024-06-01T12:00:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
            ("2024-06-01 14:00:00.5+02:00", datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ],
    )
    def test_spellings(self, text: str, expected: datetime) -> None:
        """ISO-8601 with Z or an offset; without one it is UTC, as Flagsmith's SDK reads it."""
        raw = small()
        raw["updated_at"] = text
        updated = parse_environment_document(raw).updated_at
        assert updated == expected and updated is not None and updated.tzinfo is UTC

    def test_not_a_datetime(self) -> None:
        """A string that is no datetime is a PayloadError at updated_at."""
        raw = small()
        raw["updated_at"] = "yesterday"
        with pytest.raises(PayloadError, match="ISO-8601") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "updated_at"

    @pytest.mark.parametrize("text", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
    def test_a_time_out_of_range_in_utc(self, text: str) -> None:
        """A valid ISO-8601 time whose offset moves it out of the years 1 to 9999 in UTC is a PayloadError at
        updated_at, not an OverflowError."""
        raw = small()
        raw["updated_at"] = text
        with pytest.raises(PayloadError, match="out of the range") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "updated_at"


def _set(doc: dict[str, Any], path: list[Any], value: Any) -> None:
    target = doc
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value


_DELETE = object()


class TestErrors:
    @pytest.mark.parametrize(
        ("path", "value", "where", "reason"),
        [
            (["id"], _DELETE, "id", "required key is missing"),
            (["id"], "1", "id", "expected an integer"),
            (["name"], 5, "name", "expected a string"),
            (["api_key"], 5, "api_key", "expected a string"),
            (["project"], _DELETE, "project", "required key is missing"),
            (["project"], [], "project", "expected an object"),
            (["project", "id"], None, "project.id", "expected an integer"),
            (["project", "organisation"], {"name": "Acme"}, "project.organisation.id", "required key is missing"),
            (["feature_states"], _DELETE, "feature_states", "required key is missing"),
            (["feature_states"], {}, "feature_states", "expected an array"),
            (["feature_states", 0], "banner", "feature_states[0]", "expected an object"),
            (["feature_states", 0, "feature"], _DELETE, "feature_states[0].feature", "required key is missing"),
            (["feature_states", 0, "feature", "name"], "", "feature_states[0].feature.name", "non-empty"),
            (["feature_states", 0, "feature", "type"], 1, "feature_states[0].feature.type", "expected a string"),
            (["feature_states", 0, "feature", "name"], ["x"], "feature_states[0].feature.name", "expected a string"),
            (["feature_states", 0, "feature", "id"], True, "feature_states[0].feature.id", "expected an integer"),
            (
                ["identity_overrides", 0, "identity_features", 0, "feature", "id"],
                True,
                "identity_overrides[0].identity_features[0].feature.id",
                "expected an integer",
            ),
            (
                ["identity_overrides", 0, "identity_features", 0, "feature", "type"],
                {},
                "identity_overrides[0].identity_features[0].feature.type",
                "expected a string",
            ),
            (["feature_states", 0, "enabled"], 1, "feature_states[0].enabled", "expected a boolean"),
            (
                ["feature_states", 0, "feature_state_value"],
                1.5,
                "feature_states[0].feature_state_value",
                "string, integer",
            ),
            (
                ["feature_states", 0, "feature_state_value"],
                [],
                "feature_states[0].feature_state_value",
                "string, integer",
            ),
            (
                ["project", "segments", 0, "feature_states", 0, "feature_segment", "priority"],
                "1",
                "project.segments[0].feature_states[0].feature_segment.priority",
                "expected an integer",
            ),
            (
                ["project", "segments", 0, "feature_states", 0, "feature_segment"],
                [],
                "project.segments[0].feature_states[0].feature_segment",
                "expected an object",
            ),
            (["project", "segments", 0, "id"], "5", "project.segments[0].id", "expected an integer"),
            (["project", "segments", 0, "name"], None, "project.segments[0].name", "expected a string"),
            (["project", "segments"], {}, "project.segments", "expected an array"),
            (["identity_overrides", 0, "identifier"], "", "identity_overrides[0].identifier", "non-empty"),
            (["identity_overrides", 0, "identifier"], _DELETE, "identity_overrides[0].identifier", "missing"),
            (
                ["identity_overrides", 0, "identity_features", 0, "enabled"],
                None,
                "identity_overrides[0].identity_features[0].enabled",
                "expected a boolean",
            ),
            (["identity_overrides", 0, "identity_features"], "x", "identity_overrides[0].identity_features", "array"),
        ],
    )
    def test_the_path_names_the_problem(self, path: list[Any], value: Any, where: str, reason: str) -> None:
        """Every problem is a PayloadError whose path locates it in the document."""
        raw = small()
        _set(raw, path, value)
        with pytest.raises(PayloadError, match=reason) as caught:
            parse_environment_document(raw)
        assert caught.value.path == where

    @pytest.mark.parametrize(
        ("field", "value", "where", "reason"),
        [
            ("id", _DELETE, "id", "required key is missing"),
            ("percentage_allocation", "50", "percentage_allocation", "expected a number"),
            ("percentage_allocation", 101, "percentage_allocation", "between 0 and 100"),
            ("multivariate_feature_option", None, "multivariate_feature_option", "expected an object"),
        ],
    )
    def test_multivariate_values_need_ids_and_allocations(
        self, field: str, value: Any, where: str, reason: str
    ) -> None:
        """A multivariate value needs its id, an allocation from 0 to 100 and its option."""
        raw = built_documents()["multivariate"]
        _set(raw, ["feature_states", 0, "multivariate_feature_state_values", 1, field], value)
        with pytest.raises(PayloadError, match=reason) as caught:
            parse_environment_document(raw)
        assert caught.value.path == f"feature_states[0].multivariate_feature_state_values[1].{where}"

    def test_a_multivariate_option_needs_its_id(self) -> None:
        """The option's id is required (Flagsmith's API always writes it)."""
        raw = built_documents()["multivariate"]
        del raw["feature_states"][0]["multivariate_feature_state_values"][0]["multivariate_feature_option"]["id"]
        with pytest.raises(PayloadError) as caught:
            parse_environment_document(raw)
        assert (
            caught.value.path == "feature_states[0].multivariate_feature_state_values[0].multivariate_feature_option.id"
        )

    def test_allocations_over_100_percent_in_total(self) -> None:
        """The values of one state may not allocate more than 100 % together."""
        raw = built_documents()["multivariate"]
        raw["feature_states"][0]["multivariate_feature_state_values"].append(mv_value(99, 9, "x", 40))
        with pytest.raises(PayloadError, match="more than 100 %") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "feature_states[0].multivariate_feature_state_values"

    def test_not_a_mapping(self) -> None:
        """A document that is not an object is refused as a whole (empty path)."""
        with pytest.raises(PayloadError, match="expected an object, got an array") as caught:
            parse_environment_document([])  # type: ignore[arg-type]
        assert caught.value.path == ""

    @pytest.mark.parametrize(
        ("path", "where"),
        [
            (["feature_states", 0, "django_id"], "feature_states[0].django_id"),
            (["project", "segments", 0, "future"], "project.segments[0].future"),
            (["feature_states", 0, "feature", "future"], "feature_states[0].feature.future"),
        ],
    )
    def test_a_kept_key_that_json_cannot_carry(self, path: list[Any], where: str) -> None:
        """Python's JSON parser reads Infinity; a key kept in extra with it is reported at that key."""
        raw = small()
        _set(raw, path, float("inf"))
        with pytest.raises(PayloadError, match="JSON cannot carry") as caught:
            parse_environment_document(raw)
        assert caught.value.path == where


class TestOneStatePerTarget:
    def test_a_feature_twice_among_the_defaults(self) -> None:
        """Two defaults of one feature leave the document's meaning undefined: refused at the second."""
        raw = small()
        raw["feature_states"].append(state(12, "banner", False, seed=80))
        with pytest.raises(PayloadError, match=r"two states of feature 12 \(at \[0\] and \[1\]\)") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "feature_states[1]"

    def test_a_feature_twice_in_one_segment(self) -> None:
        """The same within one segment's overrides."""
        raw = small()
        raw["project"]["segments"][0]["feature_states"].append(state(12, "banner", True, seed=81, priority=1))
        with pytest.raises(PayloadError, match="segment 5 has two states") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "project.segments[0].feature_states[1]"

    def test_a_feature_twice_for_one_identity(self) -> None:
        """The same within one identity's overrides."""
        raw = small()
        raw["identity_overrides"][0]["identity_features"].append(state(12, "banner", True, seed=82))
        with pytest.raises(PayloadError, match="identity 'alice' has two states") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "identity_overrides[0].identity_features[1]"

    def test_a_segment_twice(self) -> None:
        """Two segments with one id."""
        raw = small()
        raw["project"]["segments"].append(copy.deepcopy(raw["project"]["segments"][0]))
        with pytest.raises(PayloadError, match="segment 5 appears twice") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "project.segments[1]"

    def test_an_identifier_twice(self) -> None:
        """Two identity overrides with one identifier."""
        raw = small()
        raw["identity_overrides"].append(identity("alice", 901, [], "env-key"))
        with pytest.raises(PayloadError, match="identity 'alice' appears twice") as caught:
            parse_environment_document(raw)
        assert caught.value.path == "identity_overrides[1]"

    def test_one_feature_in_different_targets_is_fine(self) -> None:
        """A feature may have a default, segment overrides and identity overrides: each is its own target."""
        assert len(parse_environment_document(small()).states) == 3


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


_SAMPLE = load_sample()
_SAMPLE_PATHS = _paths(_SAMPLE)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLE_PATHS), _JSON | st.just(_DELETE))
def test_a_damaged_sample_parses_or_raises_a_payload_error(path: tuple[Any, ...], value: Any) -> None:
    """Any value anywhere in the sample (or a key removed): the parser returns a document or raises PayloadError,
    never anything else, and a path it names exists in the damaged document."""
    raw = copy.deepcopy(_SAMPLE)
    _set(raw, list(path), value)
    error: PayloadError | None = None
    try:
        parse_environment_document(raw)
    except PayloadError as exc:
        error = exc
    if error is not None:
        assert _reaches(raw, error.path), error
    json.dumps(raw)  # the damage stays JSON (the strategy makes only JSON values)


def _reaches(doc: Any, path: str) -> bool:
    """Whether ``path`` (dotted keys, [index]) leads into ``doc``, its last step possibly a missing key."""
    steps: list[Any] = []
    for part in path.split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        steps.extend(int(index) for index in rest.replace("]", "").split("[") if index)
    target = doc
    for number, step in enumerate(steps):
        if isinstance(step, int):
            if not isinstance(target, list) or step >= len(target):
                return False
        elif not isinstance(target, dict):
            return False
        elif step not in target:
            return number == len(steps) - 1  # a required key that is missing
        target = target[step]
    return True

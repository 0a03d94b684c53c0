"""The wire format: byte-exact payloads in both formats, and a decoder that accepts both."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from cases import (
    BETA,
    DOCUMENTED_TIMESTAMP,
    VARIANTS,
    banner_state,
    documented_audit_entry,
    documented_flag_event,
    golden_path,
    identity_state,
    segment_state,
    vector_bytes,
)
from flaghooks import (
    EventType,
    FeatureSegment,
    FlagChange,
    PayloadError,
    PayloadFormat,
    audit_log_created,
    decode,
    encode,
    flag_changed,
)

FORMATS = list(PayloadFormat)


def golden_bytes(variant: str, fmt: PayloadFormat) -> bytes:
    with open(golden_path(variant, fmt.value), encoding="utf-8") as handle:
        return json.dumps(json.load(handle), sort_keys=True).encode()


class TestDocumentedExamples:
    def test_flag_updated_is_byte_exact(self) -> None:
        """The documented FLAG_UPDATED example, built from models, encodes to the documented bytes."""
        assert encode(documented_flag_event(), PayloadFormat.CLASSIC) == vector_bytes("flag_updated.classic.json")

    def test_classic_is_the_default(self) -> None:
        """encode() without a format is CLASSIC."""
        assert encode(documented_flag_event()) == vector_bytes("flag_updated.classic.json")

    def test_audit_is_byte_exact(self) -> None:
        """The documented audit example encodes to the documented bytes."""
        event = audit_log_created(documented_audit_entry())
        assert encode(event) == vector_bytes("audit_log_created.classic.json")

    @pytest.mark.parametrize("name", ["flag_updated.classic.json", "audit_log_created.classic.json"])
    def test_decode_then_encode_gives_the_same_bytes(self, name: str) -> None:
        """Decoding the documented bytes and encoding again gives the same bytes."""
        body = vector_bytes(name)
        assert encode(decode(body), PayloadFormat.CLASSIC) == body

    def test_decoded_example_equals_the_models(self) -> None:
        """The documented bytes decode to the models they were built from."""
        event = decode(vector_bytes("flag_updated.classic.json"), event_id="evt_doc")
        assert event == documented_flag_event()

    def test_bytes_are_json_dumps_with_sorted_keys(self) -> None:
        """Default separators and ASCII escapes, exactly as json.dumps(obj, sort_keys=True)."""
        state = banner_state(value='crème brûlée ☕ \U0001f600 "quoted"\n')
        body = encode(flag_changed(None, state, changed_by="Zoë", timestamp=DOCUMENTED_TIMESTAMP))
        assert body == json.dumps(json.loads(body), sort_keys=True).encode()
        assert body.isascii() and b"\\u00e8" in body and b"\\ud83d\\ude00" in body


class TestGolden:
    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("variant", list(VARIANTS))
    def test_variant(self, variant: str, fmt: PayloadFormat) -> None:
        """Every variant encodes to its reviewed golden file in both formats."""
        assert encode(VARIANTS[variant](), fmt) == golden_bytes(variant, fmt)

    @pytest.mark.parametrize("fmt", FORMATS)
    @pytest.mark.parametrize("variant", list(VARIANTS))
    def test_variant_round_trip(self, variant: str, fmt: PayloadFormat) -> None:
        """Every golden decodes and re-encodes to the same bytes."""
        body = golden_bytes(variant, fmt)
        assert encode(decode(body), fmt) == body


class TestShapes:
    def test_creation_has_no_previous_state(self) -> None:
        """previous_state is left out when there is none."""
        for fmt in FORMATS:
            data = json.loads(encode(VARIANTS["feature_created"](), fmt))["data"]
            assert "previous_state" not in data and data["new_state"] is not None

    def test_deletion_has_null_new_state(self) -> None:
        """new_state is null for FLAG_DELETED."""
        for fmt in FORMATS:
            document = json.loads(encode(VARIANTS["feature_deleted"](), fmt))
            assert document["event_type"] == "FLAG_DELETED"
            assert document["data"]["new_state"] is None and document["data"]["previous_state"]

    def test_classic_timestamp_is_truncated_to_milliseconds(self) -> None:
        """data.timestamp has milliseconds in CLASSIC, truncated (.999999 is .999), microseconds in MODERN."""
        when = datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=UTC)
        event = flag_changed(None, banner_state(), timestamp=when)
        assert json.loads(encode(event))["data"]["timestamp"] == "2024-01-01T23:59:59.999Z"
        assert json.loads(encode(event, PayloadFormat.MODERN))["data"]["timestamp"] == "2024-01-01T23:59:59.999999Z"

    def test_datetimes_render_in_utc(self) -> None:
        """A datetime in another zone is rendered in UTC with a Z, with six fraction digits even when zero."""
        when = datetime(2024, 1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=2)))
        state = banner_state(feature=attrs.evolve(banner_state().feature, created_date=when))
        document = json.loads(encode(flag_changed(None, state, timestamp=when)))
        assert document["data"]["timestamp"] == "2023-12-31T23:00:00.000Z"
        assert document["data"]["new_state"]["feature"]["created_date"] == "2023-12-31T23:00:00.000000Z"

    def test_unexpressible_segment_override_classic(self) -> None:
        """CLASSIC carries a segment override by its feature-segment id; without one, encode says so."""
        state = segment_state(feature_segment=FeatureSegment(segment=BETA))
        event = flag_changed(None, state)
        with pytest.raises(PayloadError, match=r"FeatureSegment\.id is None") as info:
            encode(event, PayloadFormat.CLASSIC)
        assert info.value.path == "data.new_state.feature_segment"
        assert json.loads(encode(event, PayloadFormat.MODERN))["data"]["new_state"]["feature_segment"]["segment"]

    def test_unexpressible_segment_override_modern(self) -> None:
        """MODERN carries a segment override by its segment; without one, encode says so."""
        state = segment_state(feature_segment=FeatureSegment(id=77))
        event = flag_changed(state, None)
        with pytest.raises(PayloadError, match=r"FeatureSegment\.segment is None") as info:
            encode(event, PayloadFormat.MODERN)
        assert info.value.path == "data.previous_state.feature_segment"
        assert json.loads(encode(event))["data"]["previous_state"]["feature_segment"] == 77

    def test_bad_arguments(self) -> None:
        """encode() checks its arguments."""
        with pytest.raises(TypeError, match="WebhookEvent"):
            encode({"data": {}})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="PayloadFormat"):
            encode(documented_flag_event(), "json")  # type: ignore[arg-type]

    def test_format_accepts_its_string_value(self) -> None:
        """PayloadFormat is a str enum: "modern" works where PayloadFormat.MODERN does."""
        event = documented_flag_event()
        assert encode(event, "modern") == encode(event, PayloadFormat.MODERN)  # type: ignore[arg-type]


def body_of(document: object) -> bytes:
    return json.dumps(document).encode()


def documented_document() -> dict:  # type: ignore[type-arg]
    return json.loads(vector_bytes("flag_updated.classic.json"))  # type: ignore[no-any-return]


class TestDecodeAccepts:
    def test_mixed_shapes_field_by_field(self) -> None:
        """Environment, project and feature segment may each be an id or an object."""
        document = json.loads(golden_bytes("segment_override_set", PayloadFormat.MODERN))
        state = document["data"]["new_state"]
        state["environment"] = 23
        state["feature"]["project"] = {"id": 12, "name": "Checkout", "organisation": 7}
        state["feature_segment"] = {"id": 77, "segment": {"id": 5, "name": "beta_users"}, "priority": 1}
        decoded = decode(body_of(document)).data
        assert isinstance(decoded, FlagChange) and decoded.new_state is not None
        assert decoded.new_state.environment.id == 23
        assert decoded.new_state.feature.project.organisation == 7
        fs = decoded.new_state.feature_segment
        assert fs is not None and (fs.id, fs.segment and fs.segment.id, fs.priority) == (77, 5, 1)

    def test_null_previous_state(self) -> None:
        """A null previous_state is the same as a missing one."""
        document = json.loads(golden_bytes("feature_created", PayloadFormat.CLASSIC))
        document["data"]["previous_state"] = None
        original = golden_bytes("feature_created", PayloadFormat.CLASSIC)
        assert decode(body_of(document)).data == decode(original).data

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2020-03-07T13:59:07Z", datetime(2020, 3, 7, 13, 59, 7, tzinfo=UTC)),
            ("2020-03-07T13:59:07.1Z", datetime(2020, 3, 7, 13, 59, 7, 100000, tzinfo=UTC)),
            ("2020-03-07T13:59:07.040Z", datetime(2020, 3, 7, 13, 59, 7, 40000, tzinfo=UTC)),
            ("2020-03-07T13:59:07.123456Z", datetime(2020, 3, 7, 13, 59, 7, 123456, tzinfo=UTC)),
            ("2020-03-07T15:59:07.5+02:00", datetime(2020, 3, 7, 13, 59, 7, 500000, tzinfo=UTC)),
            ("2020-03-07T08:29:07-05:30", datetime(2020, 3, 7, 13, 59, 7, tzinfo=UTC)),
            ("2020-03-07T13:59:07+00:00", datetime(2020, 3, 7, 13, 59, 7, tzinfo=UTC)),
        ],
    )
    def test_datetimes(self, text: str, expected: datetime) -> None:
        """ISO-8601 with Z or an offset and 0 to 6 fraction digits."""
        document = documented_document()
        document["data"]["timestamp"] = text
        change = decode(body_of(document)).data
        assert isinstance(change, FlagChange) and change.timestamp == expected
        assert change.timestamp.utcoffset() == timedelta(0)

    def test_unknown_keys_ignored(self) -> None:
        """Keys the decoder does not know are ignored, at every level."""
        document = documented_document()
        document["webhook_version"] = 2
        document["data"]["extra"] = {"nested": [1, 2]}
        document["data"]["new_state"]["feature"]["tags"] = ["a"]
        assert decode(body_of(document), event_id="evt_doc") == documented_flag_event()

    def test_str_body(self) -> None:
        """A str body decodes like its UTF-8 bytes, to the same id."""
        body = vector_bytes("flag_updated.classic.json")
        assert decode(body.decode()) == decode(body)

    def test_id_derived_from_body(self) -> None:
        """Without an event id, the id is derived from the bytes: same body, same id; other body, other id."""
        body = vector_bytes("flag_updated.classic.json")
        first, second = decode(body), decode(body)
        assert first.id == second.id and first.id.startswith("evt_")
        assert decode(body.replace(b"Some User", b"Other User")).id != first.id

    @pytest.mark.parametrize("event_id", ["msg_2ZV", "3f2b8c1e-9d4a-4c1e-8f7a-1b2c3d4e5f60", "a.b:c/d", "x" * 256])
    def test_sender_ids(self, event_id: str) -> None:
        """A sender's id (webhook-id) may be any 1 to 256 printable ASCII characters without spaces."""
        assert decode(vector_bytes("flag_updated.classic.json"), event_id=event_id).id == event_id

    @pytest.mark.parametrize("event_id", ["", "with space", "x" * 257, "é", "\x00"])
    def test_bad_sender_ids(self, event_id: str) -> None:
        """Anything else is a PayloadError at event_id."""
        with pytest.raises(PayloadError) as info:
            decode(vector_bytes("flag_updated.classic.json"), event_id=event_id)
        assert info.value.path == "event_id"

    def test_modern_multivariate_values(self) -> None:
        """MODERN multivariate values decode with their allocations as sent (50 and 30.0)."""
        event = decode(golden_bytes("environment_state_updated", PayloadFormat.MODERN))
        assert isinstance(event.data, FlagChange) and event.data.new_state is not None
        allocations = [v.percentage_allocation for v in event.data.new_state.multivariate_values]
        assert allocations == [50, 30.0] and [type(a) for a in allocations] == [int, float]

    def test_null_optional_strings(self) -> None:
        """A null changed_by or author name is read as empty."""
        document = documented_document()
        document["data"]["changed_by"] = None
        change = decode(body_of(document)).data
        assert isinstance(change, FlagChange) and change.changed_by == ""
        audit = json.loads(vector_bytes("audit_log_created.classic.json"))
        audit["data"]["author"]["first_name"] = None
        entry = decode(body_of(audit)).data
        assert entry.author is not None and entry.author.first_name == ""  # type: ignore[union-attr]


def mutate(document: dict, path: str, value: object) -> bytes:  # type: ignore[type-arg]
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return body_of(document)


class TestDecodeRejects:
    @pytest.mark.parametrize(
        ("path", "value", "expected_path", "words"),
        [
            ("data.new_state.feature.id", "2411", "data.new_state.feature.id", ["integer", "'2411'"]),
            ("data.new_state.feature.id", True, "data.new_state.feature.id", ["integer", "boolean"]),
            ("data.new_state.feature.id", KeyError, "data.new_state.feature.id", ["missing"]),
            ("data.new_state.feature.name", "", "data.new_state.feature.name", ["empty"]),
            ("data.new_state.enabled", "true", "data.new_state.enabled", ["boolean"]),
            ("data.new_state.feature_state_value", 1.5, "data.new_state.feature_state_value", ["fraction"]),
            ("data.new_state.feature_state_value", [1], "data.new_state.feature_state_value", ["array"]),
            ("data.previous_state.environment", "23", "data.previous_state.environment", ["object"]),
            ("data.previous_state.feature.project", None, "data.previous_state.feature.project", ["null"]),
            (
                "data.new_state.feature.created_date",
                "yesterday",
                "data.new_state.feature.created_date",
                ["ISO"],
            ),
            ("data.timestamp", "2020-13-07T13:59:07Z", "data.timestamp", ["month"]),
            ("data.timestamp", "2020-03-07T13:59:07", "data.timestamp", ["ISO-8601"]),
            ("data.timestamp", "0001-01-01T00:00:00+01:00", "data.timestamp", ["invalid datetime"]),
            ("data.changed_by", 7, "data.changed_by", ["string"]),
            ("data", [], "data", ["object"]),
            ("event_type", "FLAG CREATED", "event_type", ["printable ASCII", "FLAG_UPDATED, FLAG_DELETED"]),
            ("event_type", "", "event_type", ["printable ASCII"]),
            ("event_type", KeyError, "event_type", ["missing"]),
            ("data.new_state.identity", 5, "data.new_state.identity_identifier", ["null"]),
            ("data.new_state.identity_identifier", "alice", "data.new_state.identity_identifier", ["null"]),
            ("data.new_state.feature_segment", {"priority": 1}, "data.new_state.feature_segment", ["'id'"]),
            ("data.new_state.feature_segment", 1.0, "data.new_state.feature_segment", ["object"]),
        ],
    )
    def test_error_paths(self, path: str, value: object, expected_path: str, words: list[str]) -> None:
        """A problem is reported as a PayloadError whose path locates it and whose message names it."""
        with pytest.raises(PayloadError) as info:
            decode(mutate(documented_document(), path, value))
        assert info.value.path == expected_path
        for word in words:
            assert word in str(info.value)
        assert str(info.value).startswith(expected_path + ": ")

    def test_list_index_in_path(self) -> None:
        """Paths into lists carry the index."""
        document = json.loads(golden_bytes("environment_state_updated", PayloadFormat.MODERN))
        document["data"]["new_state"]["multivariate_feature_state_values"][1]["percentage_allocation"] = 101
        with pytest.raises(PayloadError, match="between 0 and 100") as info:
            decode(body_of(document))
        assert info.value.path == "data.new_state.multivariate_feature_state_values[1].percentage_allocation"

    def test_allocation_must_be_a_number(self) -> None:
        """A percentage that is not a number is reported where it is."""
        document = json.loads(golden_bytes("environment_state_updated", PayloadFormat.MODERN))
        document["data"]["new_state"]["multivariate_feature_state_values"][0]["percentage_allocation"] = "50"
        with pytest.raises(PayloadError, match="expected a number") as info:
            decode(body_of(document))
        assert info.value.path == "data.new_state.multivariate_feature_state_values[0].percentage_allocation"

    def test_model_rule_reported_at_the_wire_name(self) -> None:
        """A rule a model enforces is reported under the wire's key name."""
        document = json.loads(golden_bytes("environment_state_updated", PayloadFormat.MODERN))
        option = document["data"]["new_state"]["multivariate_feature_state_values"][0]
        option["multivariate_feature_option"]["value"] = {"x": 1}
        with pytest.raises(PayloadError) as info:
            decode(body_of(document))
        assert (
            info.value.path == "data.new_state.multivariate_feature_state_values[0].multivariate_feature_option.value"
        )

    def test_updated_without_new_state(self) -> None:
        """FLAG_UPDATED with a null new_state is a PayloadError."""
        with pytest.raises(PayloadError, match="FLAG_DELETED") as info:
            decode(mutate(documented_document(), "data.new_state", None))
        assert info.value.path == "data.new_state"

    def test_deleted_with_new_state(self) -> None:
        """FLAG_DELETED with a non-null new_state is a PayloadError."""
        with pytest.raises(PayloadError, match="null new_state") as info:
            decode(mutate(documented_document(), "event_type", "FLAG_DELETED"))
        assert info.value.path == "data.new_state"

    @pytest.mark.parametrize("previous", [KeyError, None])
    def test_deleted_without_previous_state(self, previous: object) -> None:
        """FLAG_DELETED without a previous_state (missing or null) is a PayloadError."""
        document = json.loads(golden_bytes("feature_deleted", PayloadFormat.CLASSIC))
        with pytest.raises(PayloadError, match="needs the previous_state") as info:
            decode(mutate(document, "data.previous_state", previous))
        assert info.value.path == "data.previous_state"

    def test_updated_without_any_state(self) -> None:
        """FLAG_UPDATED whose new_state is missing says the key is missing."""
        with pytest.raises(PayloadError, match="missing") as info:
            decode(mutate(documented_document(), "data.new_state", KeyError))
        assert info.value.path == "data.new_state"

    def test_mismatched_states(self) -> None:
        """A previous and new state that are not of the same target are a PayloadError."""
        with pytest.raises(PayloadError, match="environment id 23 != 24") as info:
            decode(mutate(documented_document(), "data.new_state.environment", 24))
        assert info.value.path == "data"

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            (b"\xff\xfe{}", ["not UTF-8"]),
            (b"", ["not valid JSON"]),
            (b"{", ["not valid JSON"]),
            (b"[]", ["object"]),
            (b"null", ["object"]),
            (b'{"event_type": "FLAG_UPDATED", "data": NaN}', ["NaN"]),
            (b'{"event_type": "FLAG_UPDATED", "data": Infinity}', ["Infinity"]),
            (b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
            (b'{"a": ' + b"9" * 5000 + b"}", ["not valid JSON"]),
            ("\udcff".encode("utf-8", "surrogatepass"), ["not UTF-8"]),
        ],
    )
    def test_not_a_payload(self, body: bytes, words: list[str]) -> None:
        """Bodies that are not JSON objects are PayloadErrors for the body as a whole."""
        with pytest.raises(PayloadError) as info:
            decode(body)
        for word in words:
            assert word in str(info.value)

    def test_str_with_lone_surrogate(self) -> None:
        """A str that cannot be UTF-8 is a PayloadError."""
        with pytest.raises(PayloadError, match="Unicode"):
            decode('{"a": "\udcff"}')

    def test_not_bytes(self) -> None:
        """A body that is neither bytes nor str is a PayloadError."""
        with pytest.raises(PayloadError, match="bytes or str"):
            decode({"event_type": "FLAG_UPDATED"})  # type: ignore[arg-type]

    def test_audit_errors(self) -> None:
        """Audit payloads report paths too."""
        audit = json.loads(vector_bytes("audit_log_created.classic.json"))
        audit["data"]["author"]["id"] = "3"
        with pytest.raises(PayloadError) as info:
            decode(body_of(audit))
        assert info.value.path == "data.author.id"


def test_within_builds_paths() -> None:
    """PayloadError.within prefixes keys and indexes."""
    error = PayloadError("bad", "id").within(0).within("values").within("data")
    assert error.path == "data.values[0].id" and error.reason == "bad"
    assert str(error) == "data.values[0].id: bad"
    assert PayloadError("bad").within("data").path == "data"


def test_event_type_of_decoded_audit() -> None:
    """An audit body decodes to an AUDIT_LOG_CREATED event whose data equals the entry."""
    event = decode(vector_bytes("audit_log_created.classic.json"))
    assert event.event_type is EventType.AUDIT_LOG_CREATED and event.data == documented_audit_entry()


def test_identity_overrides_decode() -> None:
    """Identity overrides keep identity id and identifier; string ids survive."""
    state = identity_state(identity=attrs.evolve(identity_state().identity, id="edge-7f3a"))
    for fmt in FORMATS:
        decoded = decode(encode(flag_changed(None, state), fmt)).data
        assert isinstance(decoded, FlagChange) and decoded.new_state is not None
        assert decoded.new_state.identity == state.identity

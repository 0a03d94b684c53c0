"""The wire format: byte-exact payloads in both formats, and a decoder that accepts both."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest

from cases import (
    BETA,
    DOCUMENTED_TIMESTAMP,
    VARIANTS,
    banner_state,
    documented_audit_entry,
    documented_flag_event,
    flagsmith_body,
    flagsmith_case,
    flagsmith_corpus,
    flagsmith_names,
    golden_path,
    identity_state,
    segment_state,
    vector_bytes,
)
from flaghooks import (
    AuditLogEntry,
    Author,
    Environment,
    EventType,
    FeatureSegment,
    FlagChange,
    PayloadError,
    PayloadFormat,
    Project,
    VersionFeature,
    VersionFeatureState,
    VersionPublished,
    VersionPublisher,
    WebhookEvent,
    _decode_fast,
    audit_log_created,
    decode,
    encode,
    flag_changed,
)
from flaghooks._decode import EVENT_FIELDS, _decode_carefully
from flaghooks._decode_fast import CHANGE_FIELDS

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
        """A null previous_state is no previous state, as a missing one is; the null is kept in the change's extra
        so that MODERN writes it back (CLASSIC leaves it out)."""
        document = json.loads(golden_bytes("feature_created", PayloadFormat.CLASSIC))
        document["data"]["previous_state"] = None
        original = golden_bytes("feature_created", PayloadFormat.CLASSIC)
        with_null, without = decode(body_of(document)).data, decode(original).data
        assert isinstance(with_null, FlagChange) and isinstance(without, FlagChange)
        assert with_null.previous_state is None and with_null.new_state == without.new_state
        assert with_null.extra == {"previous_state": None} and without.extra == {}
        assert encode(decode(body_of(document)), PayloadFormat.CLASSIC) == original
        modern = json.loads(golden_bytes("feature_created", PayloadFormat.MODERN))
        modern["data"]["previous_state"] = None
        body = json.dumps(modern, sort_keys=True).encode()
        assert encode(decode(body), PayloadFormat.MODERN) == body

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

    def test_unknown_keys_kept_at_every_level(self) -> None:
        """Unknown keys of the envelope, of ``data`` and of a feature are kept in the event's, the change's and the
        feature's ``extra``; CLASSIC writes none of them back, MODERN all."""
        document = documented_document()
        document["webhook_version"] = 2
        document["data"]["extra"] = {"nested": [1, 2]}
        document["data"]["new_state"]["feature"]["tags"] = ["a"]
        event = decode(body_of(document), event_id="evt_doc")
        change = event.data
        assert isinstance(change, FlagChange) and change.new_state is not None
        assert event.extra == {"webhook_version": 2}
        assert change.extra == {"extra": {"nested": (1, 2)}}
        assert change.new_state.feature.extra == {"tags": ("a",)}
        assert encode(event, PayloadFormat.CLASSIC) == vector_bytes("flag_updated.classic.json")
        assert json.loads(encode(event, PayloadFormat.MODERN))["webhook_version"] == 2

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
            (
                "data.new_state.multivariate_feature_state_values",
                {"id": 1},
                "data.new_state.multivariate_feature_state_values",
                ["expected an array", "object"],
            ),
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


# --- issue 7: everything Flagsmith sends -------------------------------------------------------------------------


class TestFlagsmithCorpus:
    """tests/flagsmith: payloads reflecting Flagsmith's server code and its documentation's history."""

    @pytest.mark.parametrize("name", flagsmith_names())
    def test_decodes(self, name: str) -> None:
        """Every payload decodes, to model data for the types flaghooks knows and to a dict for others."""
        event = decode(flagsmith_body(name))
        kind = json.loads(flagsmith_body(name))["event_type"]
        assert event.event_type == kind
        if isinstance(event.event_type, EventType):
            assert not isinstance(event.data, dict)
        else:
            assert event.data == json.loads(flagsmith_body(name))["data"]

    @pytest.mark.parametrize("name", flagsmith_names())
    def test_round_trip(self, name: str) -> None:
        """A payload labelled with a format is written back byte for byte in that format; every payload
        Flagsmith's server builds today is MODERN, except the organisation test sample (the documented shape)."""
        case = flagsmith_case(name)
        assert case["round_trip"] in ("modern", "classic", None)
        assert case["source"] and case["note"]
        if case["round_trip"] is not None:
            body = flagsmith_body(name)
            assert encode(decode(body), PayloadFormat(case["round_trip"])) == body

    @pytest.mark.parametrize("name", flagsmith_names())
    def test_fast_path_agrees(self, name: str) -> None:
        """decode's fast path gives the event its careful path gives."""
        body = flagsmith_body(name)
        assert decode(body, event_id="evt_1") == _decode_carefully(json.loads(body), "evt_1")

    def test_covers_every_event_type(self) -> None:
        """The corpus has every event type, an unknown one, and both round-trip formats."""
        kinds = {json.loads(body)["event_type"] for _, body in flagsmith_corpus()}
        assert set(EventType) < kinds
        labels = {flagsmith_case(name)["round_trip"] for name in flagsmith_names()}
        assert labels == {"modern", "classic", None}

    def test_deleted_without_history(self) -> None:
        """ "timestamp": "" decodes to an unknown timestamp (None), which encodes as "" again."""
        event = decode(flagsmith_body("flag_deleted.no_history"))
        assert isinstance(event.data, FlagChange)
        assert event.event_type is EventType.FLAG_DELETED and event.data.timestamp is None
        assert json.loads(encode(event, PayloadFormat.CLASSIC))["data"]["timestamp"] == ""

    def test_version_published(self) -> None:
        """NEW_VERSION_PUBLISHED decodes to VersionPublished with typed states and multivariate values."""
        event = decode(flagsmith_body("new_version_published"))
        data = event.data
        assert isinstance(data, VersionPublished)
        assert data.uuid == "0f5c3b9e-8d3a-4c1e-9b7a-5e2d1c4f6a80"
        assert (data.feature.id, data.feature.name) == (2411, "checkout_banner")
        assert data.published_by == VersionPublisher(3, "dana@example.com")
        first, second = data.feature_states
        assert (first.enabled, first.value, second.value) == (True, "red", None)
        assert [v.option.value for v in first.multivariate_values] == ["green", 7, True]
        assert [v.percentage_allocation for v in first.multivariate_values] == [50.0, 30.0, 20.0]
        unpublished = decode(flagsmith_body("new_version_published.no_publisher")).data
        assert isinstance(unpublished, VersionPublished) and unpublished.published_by is None

    def test_full_audit_payload(self) -> None:
        """Today's audit payload: uuids, api_key and is_system_event are fields, the rest is kept in extra."""
        entry = decode(flagsmith_body("audit_log_created.full")).data
        assert isinstance(entry, AuditLogEntry)
        assert entry.is_system_event is False and entry.related_object_uuid == "5f0c6e2c-7b8e-4d7e-9a41-2c1b8f6d9e10"
        assert entry.author is not None and entry.author.uuid == "c0a80101-0000-4000-8000-000000000003"
        assert entry.author.extra == {"last_login": "2024-06-01T08:15:00.120000Z"}
        assert entry.environment is not None and entry.environment.api_key == "Kx9mQ2rT7vYw3ZpL8nB4cD"
        assert entry.environment.uuid == "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
        assert entry.environment.extra["project"] == 12 and entry.environment.extra["banner_text"] is None
        assert entry.project is not None and entry.project.uuid == "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
        assert entry.project.extra["migration_status"] == "NOT_APPLICABLE"
        assert entry.project.organisation == 7 and entry.extra == {}

    def test_audit_nulls(self) -> None:
        """related_object_type, author and environment may be null; created_date may have no fraction."""
        system = decode(flagsmith_body("audit_log_created.system_event")).data
        assert isinstance(system, AuditLogEntry)
        assert system.related_object_type is None and system.author is None and system.is_system_event
        whole = decode(flagsmith_body("audit_log_created.zero_microseconds")).data
        assert isinstance(whole, AuditLogEntry)
        assert whole.environment is None and whole.created_date == datetime(2024, 6, 1, 12, tzinfo=UTC)

    def test_docs_2019_without_identity_identifier(self) -> None:
        """A state without an identity_identifier key (2019 docs) reads it as null."""
        event = decode(flagsmith_body("docs_2019_flag_updated"))
        assert isinstance(event.data, FlagChange) and event.data.new_state is not None
        assert event.data.new_state.identity is None

    def test_unknown_event_type(self) -> None:
        """An unknown event type decodes to its name and the raw data object, written back the same in both
        formats."""
        body = flagsmith_body("unknown_event_type")
        event = decode(body)
        assert event.event_type == "FEATURE_HEALTH_CHANGED" and not isinstance(event.event_type, EventType)
        assert isinstance(event.data, dict) and event.data["health"]["reasons"] == ["latency", None]
        assert encode(event, PayloadFormat.CLASSIC) == encode(event, PayloadFormat.MODERN) == body

    def test_any_feature_type(self) -> None:
        """Feature types CONFIG and "" decode (the model used to refuse "")."""
        event = decode(flagsmith_body("flag_updated.legacy_feature_types"))
        assert isinstance(event.data, FlagChange)
        assert event.data.new_state is not None and event.data.previous_state is not None
        assert (event.data.new_state.feature.type, event.data.previous_state.feature.type) == ("CONFIG", "")


class TestIssue7Encoding:
    def test_unknown_timestamp(self) -> None:
        """A FlagChange with timestamp None is written with "timestamp": "" in both formats."""
        event = flag_changed(banner_state(), None, event_id="evt_1")
        assert isinstance(event.data, FlagChange)
        unknown = attrs.evolve(event, data=attrs.evolve(event.data, timestamp=None))
        for fmt in FORMATS:
            assert json.loads(encode(unknown, fmt))["data"]["timestamp"] == ""

    def test_audit_created_date_as_drf_writes_it(self) -> None:
        """MODERN writes an audit created_date without a fraction when the microseconds are zero (as Flagsmith
        does), CLASSIC keeps the seed's six digits."""
        entry = attrs.evolve(documented_audit_entry(), created_date=datetime(2024, 6, 1, 12, tzinfo=UTC))
        event = audit_log_created(entry, event_id="evt_1")
        assert json.loads(encode(event, PayloadFormat.MODERN))["data"]["created_date"] == "2024-06-01T12:00:00Z"
        assert json.loads(encode(event))["data"]["created_date"] == "2024-06-01T12:00:00.000000Z"

    def test_extra_keys_are_written_back_in_modern_only(self) -> None:
        """Keys kept in extra, uuids and api_key travel in MODERN; CLASSIC is the seed shape without them."""
        entry = attrs.evolve(
            documented_audit_entry(),
            environment=Environment(5, "Prod", uuid="u-env", api_key="key", extra={"project": 6}),
            author=Author(3, "a@example.com", uuid="u-author", extra={"last_login": None}),
            extra={"change_type": "UPDATE"},
        )
        event = audit_log_created(entry, event_id="evt_1")
        modern = json.loads(encode(event, PayloadFormat.MODERN))["data"]
        assert modern["environment"] == {"id": 5, "name": "Prod", "uuid": "u-env", "api_key": "key", "project": 6}
        assert modern["author"]["uuid"] == "u-author" and modern["author"]["last_login"] is None
        assert modern["change_type"] == "UPDATE"
        classic = json.loads(encode(event, PayloadFormat.CLASSIC))["data"]
        assert classic["environment"] == {"id": 5, "name": "Prod"} and "change_type" not in classic
        assert set(classic["author"]) == {"id", "email", "first_name", "last_name"}

    def test_state_environment_and_project_carry_their_extra(self) -> None:
        """In a MODERN flag state, an environment's and a project's uuid and extra keys are written too."""
        project = Project(12, "Checkout", 7, "u-project", extra={"x": [1, {"y": 2}]})
        environment = Environment(23, "Production", uuid="u-env", extra={"z": True})
        feature = attrs.evolve(banner_state().feature, project=project)
        event = flag_changed(None, banner_state(feature=feature, environment=environment), event_id="evt_1")
        state = json.loads(encode(event, PayloadFormat.MODERN))["data"]["new_state"]
        assert state["environment"] == {"id": 23, "name": "Production", "uuid": "u-env", "z": True}
        assert state["feature"]["project"] == {"id": 12, "name": "Checkout", "uuid": "u-project", "x": [1, {"y": 2}]}
        assert decode(encode(event, PayloadFormat.MODERN), event_id="evt_1") == attrs.evolve(
            event,
            data=attrs.evolve(
                event.data,
                new_state=attrs.evolve(
                    event.data.new_state,
                    id=None,
                    feature=attrs.evolve(feature, project=attrs.evolve(project, organisation=None)),
                ),
            ),  # type: ignore[union-attr]
        )

    def test_null_uuid_is_written_back(self) -> None:
        """An optional field sent as null (which Flagsmith does not do) is kept in extra and written back."""
        body = json.loads(flagsmith_body("audit_log_created.full"))
        body["data"]["project"]["uuid"] = None
        raw = json.dumps(body, sort_keys=True).encode()
        entry = decode(raw).data
        assert isinstance(entry, AuditLogEntry) and entry.project is not None
        assert entry.project.uuid is None and entry.project.extra["uuid"] is None
        assert encode(decode(raw), PayloadFormat.MODERN) == raw

    def test_version_published_same_in_both_formats(self) -> None:
        """NEW_VERSION_PUBLISHED has one shape: CLASSIC and MODERN write the same bytes."""
        version = VersionPublished(
            uuid="u-1",
            feature=VersionFeature(1, "f"),
            feature_states=(VersionFeatureState(enabled=True, value=3),),
        )
        event = WebhookEvent("evt_1", EventType.NEW_VERSION_PUBLISHED, version)
        body = encode(event, PayloadFormat.CLASSIC)
        assert body == encode(event, PayloadFormat.MODERN)
        assert json.loads(body) == {
            "data": {
                "feature": {"id": 1, "name": "f"},
                "feature_states": [{"enabled": True, "multivariate_feature_state_values": [], "value": 3}],
                "published_by": None,
                "uuid": "u-1",
            },
            "event_type": "NEW_VERSION_PUBLISHED",
        }


class TestIssue7Decoding:
    def test_timestamp_empty_string(self) -> None:
        """ "timestamp": "" is an unknown time, not an error (it was a 400 before issue 7)."""
        event = decode(mutate(documented_document(), "data.timestamp", ""))
        assert isinstance(event.data, FlagChange) and event.data.timestamp is None

    @pytest.mark.parametrize("name", ["FEATURE_HEALTH_CHANGED", "x", "A" * 128, "flag.updated:v2"])
    def test_unknown_types_decode(self, name: str) -> None:
        """A type flaghooks does not know decodes (1 to 128 printable ASCII characters without spaces)."""
        event = decode(body_of({"event_type": name, "data": {"k": [1, 2.5, None]}}))
        assert event.event_type == name and type(event.event_type) is str
        assert event.data == {"k": [1, 2.5, None]}

    @pytest.mark.parametrize(
        ("document", "path", "words"),
        [
            ({"event_type": "A" * 129, "data": {}}, "event_type", ["printable ASCII"]),
            ({"event_type": "NEW\nTYPE", "data": {}}, "event_type", ["printable ASCII"]),
            ({"event_type": "NEW_TYPE", "data": []}, "data", ["object"]),
            ({"event_type": "NEW_TYPE"}, "data", ["missing"]),
            (b'{"event_type": "NEW_TYPE", "data": {"big": 1e999}}', "data", ["JSON cannot carry"]),
            ({"event_type": "NEW_VERSION_PUBLISHED", "data": {"uuid": "u"}}, "data.feature", ["missing"]),
            (
                {
                    "event_type": "NEW_VERSION_PUBLISHED",
                    "data": {
                        "uuid": "u",
                        "feature": {"id": 1, "name": "f"},
                        "feature_states": [{"enabled": True, "value": 1.5}],
                    },
                },
                "data.feature_states[0].value",
                ["string, integer, boolean or null"],
            ),
            (
                {
                    "event_type": "NEW_VERSION_PUBLISHED",
                    "data": {"uuid": "", "feature": {"id": 1, "name": "f"}, "feature_states": []},
                },
                "data.uuid",
                ["must not be empty"],
            ),
        ],
    )
    def test_bad_payloads(self, document: object, path: str, words: list[str]) -> None:
        """Bad unknown-type and NEW_VERSION_PUBLISHED payloads are PayloadErrors at the right path (1e999 is
        infinity to JSON's parser, which encoding could not write back)."""
        with pytest.raises(PayloadError) as info:
            decode(document if isinstance(document, bytes) else body_of(document))
        assert info.value.path == path
        for word in words:
            assert word in str(info.value)

    @pytest.mark.parametrize("around", [(b" ", b""), (b"", b"\n"), (b"\r\n\t", b"  ")])
    def test_whitespace_around_the_document(self, around: tuple[bytes, bytes]) -> None:
        """JSON allows whitespace around the document; the decoder's quick parse leaves it to json's."""
        body = flagsmith_body("flag_updated.segment_override")
        assert decode(around[0] + body + around[1], event_id="e") == decode(body, event_id="e")

    def test_data_after_the_document(self) -> None:
        """Anything but whitespace after the document is not JSON."""
        with pytest.raises(PayloadError, match="Extra data"):
            decode(flagsmith_body("flag_updated.segment_override") + b" {}")

    def test_null_multivariate_values(self) -> None:
        """multivariate_feature_state_values may be missing (CLASSIC) but not null."""
        document = json.loads(flagsmith_body("flag_updated.multivariate"))
        document["data"]["new_state"]["multivariate_feature_state_values"] = None
        with pytest.raises(PayloadError, match="must be a tuple") as info:
            decode(body_of(document))
        assert info.value.path == "data.new_state.multivariate_feature_state_values"

    def test_allocations_over_100(self) -> None:
        """Multivariate allocations over 100 in total are a PayloadError at the wire name."""
        document = json.loads(flagsmith_body("flag_updated.multivariate"))
        document["data"]["new_state"]["multivariate_feature_state_values"][0]["percentage_allocation"] = 60.0
        with pytest.raises(PayloadError, match="more than 100") as info:
            decode(body_of(document))
        assert info.value.path == "data.new_state.multivariate_feature_state_values"

    def test_extra_that_json_cannot_write(self) -> None:
        """An unknown key whose value JSON parses but cannot write back (1e999 is infinity) is refused."""
        body = flagsmith_body("audit_log_created.full").replace(b'"is_creating": false', b'"is_creating": 1e999')
        with pytest.raises(PayloadError) as info:
            decode(body)
        assert info.value.path == "data.environment.extra"

    def test_equal_features_with_unequal_types(self) -> None:
        """Two feature objects that compare equal but differ in type (1 and true) are each decoded: the second is
        refused where its own type is wrong."""
        document = json.loads(flagsmith_body("flag_updated.environment_default"))
        document["data"]["new_state"]["feature"]["initial_value"] = 1
        document["data"]["previous_state"]["feature"]["initial_value"] = True
        event = decode(body_of(document))
        assert isinstance(event.data, FlagChange)
        assert event.data.new_state is not None and event.data.previous_state is not None
        assert event.data.new_state.feature.initial_value == 1
        assert event.data.previous_state.feature.initial_value is True
        document["data"]["new_state"]["feature"]["default_enabled"] = True
        document["data"]["previous_state"]["feature"]["default_enabled"] = 1
        document["data"]["previous_state"]["feature"]["initial_value"] = 1
        with pytest.raises(PayloadError) as info:
            decode(body_of(document))
        assert info.value.path == "data.previous_state.feature.default_enabled"


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_bytes_like_bodies(wrap: type) -> None:
    """A bytearray or memoryview body decodes like its bytes; invalid UTF-8 in one is a PayloadError."""
    body = flagsmith_body("audit_log_created.full")
    assert decode(wrap(body)) == decode(body)
    with pytest.raises(PayloadError, match="not UTF-8"):
        decode(wrap(b"\xff" + body))


# --- issue 7: keys flaghooks does not model, on flag states and versions ---------------------------------------


def _without_future_keys(node: object) -> object:
    """A corpus payload with its invented ``future_*`` keys taken out (the canonical payload they were added to)."""
    if isinstance(node, dict):
        return {key: _without_future_keys(value) for key, value in node.items() if not key.startswith("future_")}
    if isinstance(node, list):
        return [_without_future_keys(item) for item in node]
    return node


def _at(document: dict, path: tuple[object, ...]) -> dict:  # type: ignore[type-arg]
    node: object = document
    for key in path:
        node = node[key]  # type: ignore[index]
    assert isinstance(node, dict)
    return node


STATE_OBJECTS = [
    (),
    ("feature",),
    ("feature", "project"),
    ("environment",),
    ("feature_segment",),
    ("feature_segment", "segment"),
    ("multivariate_feature_state_values", 0),
    ("multivariate_feature_state_values", 1, "multivariate_feature_option"),
]
VERSION_OBJECTS = [
    (),
    ("feature",),
    ("published_by",),
    ("feature_states", 0),
    ("feature_states", 1),
    ("feature_states", 0, "multivariate_feature_state_values", 2),
    ("feature_states", 0, "multivariate_feature_state_values", 0, "multivariate_feature_option"),
]


class TestExtraKeys:
    """Keys flaghooks does not model are kept by the flag-state and NEW_VERSION_PUBLISHED models (their ``extra``),
    written back under MODERN, never under CLASSIC."""

    def test_flag_state_future_keys_are_kept(self) -> None:
        """Every invented key of the flag-state corpus payload lands in the extra of the model of its object."""
        change = decode(flagsmith_body("flag_updated.future_keys")).data
        assert isinstance(change, FlagChange) and change.new_state is not None and change.previous_state is not None
        new, previous = change.new_state, change.previous_state
        assert decode(flagsmith_body("flag_updated.future_keys")).extra == {"future_envelope_key": "v2"}
        assert change.extra == {"future_change_key": {"change_request_id": None}}
        assert new.extra == {"future_state_key": {"reasons": ("manual", 3), "scheduled_for": None}}
        assert previous.extra == {"future_state_key": "kept"}
        assert new.feature.extra == {"future_feature_key": ("checkout", "beta")}
        assert new.feature.project.extra == {"future_project_key": {"nested": {"deeper": (1, 2.5, None, True)}}}
        assert new.environment.extra == {"future_environment_key": 0.25}
        assert new.feature_segment is not None and new.feature_segment.segment is not None
        assert new.feature_segment.extra == {"future_feature_segment_key": 7}
        assert new.feature_segment.segment.extra == {"future_segment_key": None}
        for value in new.multivariate_values + previous.multivariate_values:
            assert value.extra == {"future_value_key": "v"}
            assert value.option.extra == {"future_option_key": False}

    def test_version_future_keys_are_kept(self) -> None:
        """Every invented key of the NEW_VERSION_PUBLISHED corpus payload lands in the extra of its model."""
        event = decode(flagsmith_body("new_version_published.future_keys"))
        assert event.extra == {"future_envelope_key": {"sent_at": None}}
        version = event.data
        assert isinstance(version, VersionPublished) and version.published_by is not None
        assert version.extra == {"future_version_key": {"change_request": None, "live_from": "2024-06-01T12:00:00Z"}}
        assert version.feature.extra == {"future_feature_key": ("checkout",)}
        assert version.published_by.extra == {"future_user_key": {"first_name": "Dana"}}
        for state in version.feature_states:
            assert state.extra == {"future_state_key": {"segment_id": 5}}
            for value in state.multivariate_values:
                assert value.extra == {"future_value_key": 1}
                assert value.option.extra == {"future_option_key": (None,)}

    @pytest.mark.parametrize("state", ["new_state", "previous_state"])
    @pytest.mark.parametrize("path", STATE_OBJECTS, ids=repr)
    def test_one_key_at_each_flag_state_level(self, state: str, path: tuple[object, ...]) -> None:
        """One unknown key on any one object of a flag state: both decode paths keep it, MODERN writes the body
        back byte for byte (the fast path must notice the one extra key and fall back)."""
        document = _without_future_keys(flagsmith_case("flag_updated.future_keys")["payload"])
        assert isinstance(document, dict)
        _at(document, ("data", state, *path))["zz_later"] = [{"a": 1}]
        body = json.dumps(document, sort_keys=True).encode()
        event = decode(body, event_id="evt_1")
        assert event == _decode_carefully(json.loads(body), "evt_1")
        assert encode(event, PayloadFormat.MODERN) == body
        assert event != _no_extra(event)  # the key is in an extra

    @pytest.mark.parametrize("where", ["envelope", "data"])
    @pytest.mark.parametrize(("value", "kept"), [(None, None), (0, 0), ("x", "x"), ([{"a": 1}], ({"a": 1},))])
    def test_one_key_in_flag_envelope_or_data(self, where: str, value: object, kept: object) -> None:
        """One unknown key in a flag event's envelope or ``data``: kept in WebhookEvent.extra or FlagChange.extra
        by both paths, written back by MODERN."""
        document = _without_future_keys(flagsmith_case("flag_updated.future_keys")["payload"])
        assert isinstance(document, dict)
        (document if where == "envelope" else document["data"])["zz_later"] = value
        body = json.dumps(document, sort_keys=True).encode()
        event = decode(body, event_id="evt_1")
        assert event == _decode_carefully(json.loads(body), "evt_1")
        assert isinstance(event.data, FlagChange)
        assert (event if where == "envelope" else event.data).extra == {"zz_later": kept}
        assert encode(event, PayloadFormat.MODERN) == body

    @pytest.mark.parametrize("name", ["flag_updated.future_keys", "new_version_published", "unknown_event_type"])
    def test_bad_envelope_value_is_a_payload_error(self, name: str) -> None:
        """An envelope key whose value no model can keep (a number too large for a float) is a PayloadError at
        ``extra``, for every event type."""
        body = json.dumps({**flagsmith_case(name)["payload"], "zz_later": "HUGE"}).replace('"HUGE"', "1e400")
        with pytest.raises(PayloadError) as info:
            decode(body)
        assert info.value.path == "extra" and "JSON cannot carry" in str(info.value)

    def test_envelope_keys_of_other_types(self) -> None:
        """Audit, NEW_VERSION_PUBLISHED and unknown event types keep envelope keys too (MODERN writes them back,
        CLASSIC does not)."""
        for name in ("audit_log_created.full", "new_version_published", "unknown_event_type"):
            document = flagsmith_case(name)["payload"]
            document["zz_later"] = {"a": [1]}
            body = json.dumps(document, sort_keys=True).encode()
            event = decode(body)
            assert event.extra == {"zz_later": {"a": (1,)}}
            assert encode(event, PayloadFormat.MODERN) == body
            assert b"zz_later" not in encode(event, PayloadFormat.CLASSIC)

    @pytest.mark.parametrize("path", VERSION_OBJECTS, ids=repr)
    def test_one_key_at_each_version_level(self, path: tuple[object, ...]) -> None:
        """One unknown key on any one object of NEW_VERSION_PUBLISHED's data is kept and written back in both
        formats (the event has one shape)."""
        document = _without_future_keys(flagsmith_case("new_version_published.future_keys")["payload"])
        assert isinstance(document, dict)
        _at(document, ("data", *path))["zz_later"] = [{"a": 1}]
        body = json.dumps(document, sort_keys=True).encode()
        event = decode(body)
        assert event != _no_extra(event)  # the key is in an extra
        assert encode(event, PayloadFormat.MODERN) == encode(event, PayloadFormat.CLASSIC) == body

    def test_classic_writes_no_extra(self) -> None:
        """CLASSIC output of a state whose objects carry extra keys is exactly that of the same state without."""
        change = decode(flagsmith_body("flag_updated.future_keys")).data
        assert isinstance(change, FlagChange) and change.new_state is not None
        fs = change.new_state.feature_segment
        assert fs is not None
        state = attrs.evolve(change.new_state, feature_segment=attrs.evolve(fs, id=500))  # CLASSIC needs the id
        event = flag_changed(None, state, timestamp=DOCUMENTED_TIMESTAMP, event_id="evt_1")
        bare = _no_extra(event)
        assert bare != event
        classic = encode(event, PayloadFormat.CLASSIC)
        assert b"future_" not in classic and classic == encode(bare, PayloadFormat.CLASSIC)
        assert b"future_" in encode(event, PayloadFormat.MODERN)

    def test_extra_in_a_classic_payload(self) -> None:
        """An unknown key in a CLASSIC payload's feature is kept too (the careful path), and CLASSIC leaves it out
        when writing the event back."""
        document = documented_document()
        document["data"]["new_state"]["feature"]["future_key"] = 1
        body = body_of(document)
        event = decode(body, event_id="evt_doc")
        assert event == _decode_carefully(json.loads(body), "evt_doc")
        assert isinstance(event.data, FlagChange) and event.data.new_state is not None
        assert event.data.new_state.feature.extra == {"future_key": 1}
        assert encode(event, PayloadFormat.CLASSIC) == vector_bytes("flag_updated.classic.json")

    def test_bad_extra_value_is_a_payload_error(self) -> None:
        """An extra key whose value a model cannot keep (a number too large for a float) is a PayloadError at
        that object's extra."""
        document = _without_future_keys(flagsmith_case("flag_updated.future_keys")["payload"])
        assert isinstance(document, dict)
        document["data"]["new_state"]["feature"]["future"] = "HUGE"
        with pytest.raises(PayloadError) as info:
            decode(json.dumps(document).replace('"HUGE"', "1e400"))  # parses to inf, which JSON cannot carry
        assert info.value.path == "data.new_state.feature.extra"


def _no_extra(value: object) -> object:
    """``value`` with the extra keys of every model in it taken out."""
    if isinstance(value, tuple):
        return tuple(_no_extra(item) for item in value)
    if not attrs.has(type(value)):
        return value
    changes = {field.name: _no_extra(getattr(value, field.name)) for field in attrs.fields(type(value))}
    if "extra" in changes:
        changes["extra"] = {}
    return attrs.evolve(value, **changes)  # type: ignore[misc]


def _careful(body: str, event_id: str) -> WebhookEvent:
    return _decode_carefully(json.loads(body), event_id)


def _outcome(decoder: Callable[..., WebhookEvent], body: str) -> bytes | str:
    """What a decoder makes of a body: the event's MODERN bytes (which tell 1 from true and 1.0, where the events'
    == would not), or the PayloadError's message."""
    try:
        return encode(decoder(body, event_id="evt_1"), PayloadFormat.MODERN)
    except PayloadError as exc:
        return str(exc)


class TestFastPathSharing:
    """The fast path shares models built for equal raw values; values that JSON lets compare equal across types
    must never be confused."""

    @pytest.mark.parametrize(
        ("path", "first", "second"),
        [
            (("feature", "initial_value"), 1, True),
            (("feature", "initial_value"), 0, False),
            (("feature", "id"), 1, True),
            (("feature", "id"), 1, 1.0),
            (("feature", "default_enabled"), True, 1),
            (("feature", "project", "id"), 12, 12.0),
            (("environment", "id"), 1, True),
            (("feature_segment", "priority"), 1, True),
            (("feature_segment", "segment", "id"), 5, 5.0),
            (("identity",), 1, True),
        ],
    )
    def test_equal_values_of_other_types(self, path: tuple[str, ...], first: object, second: object) -> None:
        """After a payload with ``first`` at ``path``, one with ``second`` (equal in Python, another JSON type)
        decodes exactly as the careful path decodes it: to its own value, or to the same error."""
        base = _without_future_keys(flagsmith_case("flag_updated.future_keys")["payload"])
        assert isinstance(base, dict)
        results = []
        for value in (first, second):
            document = json.loads(json.dumps(base))
            for state in (document["data"]["new_state"], document["data"]["previous_state"]):
                if path == ("identity",):
                    state["feature_segment"] = None
                    state["identity_identifier"] = "alice"
                _at(state, path[:-1])[path[-1]] = value
            body = json.dumps(document)
            outcomes = [_outcome(decode, body), _outcome(_careful, body)]
            assert outcomes[0] == outcomes[1]
            results.append(outcomes[0])
        assert results[0] != results[1]

    def test_shared_models_are_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The remembered models are bounded: a full cache starts again, and decoding stays right."""
        monkeypatch.setattr(_decode_fast, "_LIMIT", 2)
        for name in ("_PROJECTS", "_ENVIRONMENTS", "_FEATURES", "_SEGMENTS", "_IDENTITIES"):
            monkeypatch.setattr(_decode_fast, name, {})
        base = _without_future_keys(flagsmith_case("flag_updated.future_keys")["payload"])
        for n in range(5):
            document = json.loads(json.dumps(base))
            for state in ("new_state", "previous_state"):
                document["data"][state]["feature"]["name"] = f"feature_{n}"
                document["data"][state]["environment"]["id"] = n
            body = json.dumps(document)
            assert decode(body, event_id="evt_1") == _decode_carefully(json.loads(body), "evt_1")
        assert 0 < len(_decode_fast._FEATURES) <= 2 and 0 < len(_decode_fast._ENVIRONMENTS) <= 2

    def test_fields_set_without_constructors(self) -> None:
        """The fast path sets FlagChange's and WebhookEvent's fields itself: exactly the classes' fields."""
        assert tuple(field.name for field in attrs.fields(FlagChange)) == CHANGE_FIELDS
        assert tuple(field.name for field in attrs.fields(WebhookEvent)) == EVENT_FIELDS


# --- hostile nesting in keys flaghooks keeps -------------------------------------------------------------------


def _nested(depth: int) -> Any:
    return json.loads("[" * depth + "]" * depth)


@pytest.mark.parametrize("level", ["envelope", "data", "state", "feature", "environment"])
def test_deeply_nested_unknown_keys_are_a_payload_error(level: str) -> None:
    """A valid JSON body whose unknown key nests 500 levels (the JSON parser takes about 1,000) is a PayloadError
    at that key, never a RecursionError; 64 levels are kept and written back. Decoding from deep in a caller's
    stack (a framework's) decides the same."""
    import sys

    def body_with(depth: int) -> bytes:
        document = json.loads(flagsmith_body("flag_updated.environment_default"))
        state = document["data"]["new_state"]
        holder = {
            "envelope": document,
            "data": document["data"],
            "state": state,
            "feature": state["feature"],
            "environment": state["environment"],
        }[level]
        holder["zz_future"] = _nested(depth)
        return json.dumps(document, sort_keys=True).encode()

    kept = body_with(64)
    assert encode(decode(kept), PayloadFormat.MODERN) == kept
    hostile = body_with(500)
    with pytest.raises(PayloadError, match="deeper than 64 levels") as caught:
        decode(hostile)
    assert caught.value.path.endswith("extra")

    def from_deep_in_a_stack(frames: int) -> None:
        if frames:
            return from_deep_in_a_stack(frames - 1)
        with pytest.raises(PayloadError):
            decode(hostile)
        return None

    from_deep_in_a_stack(min(300, sys.getrecursionlimit() // 3))

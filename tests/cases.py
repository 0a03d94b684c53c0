"""Model builders shared by the tests: the documented examples and one event per payload variant."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
    WebhookEvent,
    audit_log_created,
    flag_changed,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


VECTORS = ROOT / "tests" / "vectors"  # copied from the documentation; tests/vectors/README.md says from where


def vectors_dir() -> Path:
    """The documented payloads and published signature vectors, committed under ``tests/vectors``."""
    return VECTORS


def vector_bytes(name: str) -> bytes:
    """A vector file as the bytes Flagsmith sends: ``json.dumps(obj, sort_keys=True).encode()``."""
    with open(vectors_dir() / name, encoding="utf-8") as handle:
        return json.dumps(json.load(handle), sort_keys=True).encode()


def load_vector(name: str) -> Any:
    with open(vectors_dir() / name, encoding="utf-8") as handle:
        return json.load(handle)


# --- the documented examples ------------------------------------------------------------------------------


def documented_feature(initial_value: str) -> Feature:
    return Feature(
        id=2411,
        name="feature_name",
        project=Project(12),
        created_date=datetime(2020, 2, 25, 22, 11, 16, 355547, tzinfo=UTC),
        type="FLAG",
        initial_value=initial_value,
        default_enabled=False,
        description=None,
    )


def documented_states() -> tuple[FeatureState, FeatureState]:
    previous = FeatureState(id=10430, feature=documented_feature("red"), environment=Environment(23), enabled=False)
    new = FeatureState(id=10430, feature=documented_feature("blue"), environment=Environment(23), enabled=True)
    return previous, new


DOCUMENTED_TIMESTAMP = datetime(2020, 3, 7, 13, 59, 7, 40000, tzinfo=UTC)


def documented_flag_event() -> WebhookEvent:
    previous, new = documented_states()
    return flag_changed(previous, new, changed_by="Some User", timestamp=DOCUMENTED_TIMESTAMP, event_id="evt_doc")


def documented_audit_entry() -> AuditLogEntry:
    return AuditLogEntry(
        created_date=datetime(2020, 2, 23, 17, 30, 57, 6318, tzinfo=UTC),
        log="New Flag / Remote Config created: my_feature",
        author=Author(id=3, email="user@domain.com", first_name="Kyle", last_name="Johnson"),
        environment=None,
        project=Project(6, "Project name", 1),
        related_object_id=6,
        related_object_type="FEATURE",
    )


# --- one event per variant ----------------------------------------------------------------------------------

PROJECT = Project(12, "Checkout", organisation=7)
PRODUCTION = Environment(23, "Production")
CREATED = datetime(2024, 5, 2, 9, 30, 0, 123456, tzinfo=UTC)
WHEN = datetime(2024, 6, 1, 12, 0, 0, 987654, tzinfo=UTC)
BANNER = Feature(
    id=2411,
    name="checkout_banner",
    project=PROJECT,
    created_date=CREATED,
    type="MULTIVARIATE",
    initial_value="red",
    default_enabled=False,
    description="Colour of the checkout banner",
)
BETA = Segment(id=5, name="beta_users", description="Opted in to beta features")
ALICE = Identity(id=981, identifier="alice@example.com")
OPTIONS = (
    MultivariateValue(id=31, option=MultivariateOption(id=401, value="green"), percentage_allocation=50),
    MultivariateValue(id=32, option=MultivariateOption(id=402, value="blue"), percentage_allocation=30.0),
)


def banner_state(**changes: Any) -> FeatureState:
    fields: dict[str, Any] = {
        "id": 10430,
        "feature": BANNER,
        "environment": PRODUCTION,
        "enabled": False,
        "value": "red",
        "multivariate_values": OPTIONS,
    }
    fields.update(changes)
    return FeatureState(**fields)


def segment_state(**changes: Any) -> FeatureState:
    fields: dict[str, Any] = {
        "id": 10431,
        "feature_segment": FeatureSegment(id=77, segment=BETA, priority=0),
        "enabled": True,
        "value": "purple",
        "multivariate_values": (),
    }
    fields.update(changes)
    return banner_state(**fields)


def identity_state(**changes: Any) -> FeatureState:
    fields: dict[str, Any] = {
        "id": 10432,
        "identity": ALICE,
        "enabled": True,
        "value": "gold",
        "multivariate_values": (),
    }
    fields.update(changes)
    return banner_state(**fields)


def _flag(previous: FeatureState | None, new: FeatureState | None, name: str) -> WebhookEvent:
    return flag_changed(previous, new, changed_by="Dana Admin", timestamp=WHEN, event_id=f"evt_{name}")


def _audit() -> WebhookEvent:
    entry = AuditLogEntry(
        id=5521,
        created_date=WHEN,
        log="Flag state / Remote config value updated for feature: checkout_banner",
        author=Author(id=3, email="dana@example.com", first_name="Dana", last_name="Admin"),
        project=PROJECT,
        environment=PRODUCTION,
        related_object_id=10430,
        related_object_type="FEATURE_STATE",
        related_object_uuid="5f0c6e2c-7b8e-4d7e-9a41-2c1b8f6d9e10",
        is_system_event=False,
    )
    return audit_log_created(entry, event_id="evt_audit_entry")


VARIANTS: dict[str, Callable[[], WebhookEvent]] = {
    "feature_created": lambda: _flag(None, banner_state(), "feature_created"),
    "environment_state_updated": lambda: _flag(
        banner_state(), banner_state(enabled=True, value="green"), "environment_state_updated"
    ),
    "identity_override_set": lambda: _flag(None, identity_state(), "identity_override_set"),
    "segment_override_set": lambda: _flag(None, segment_state(), "segment_override_set"),
    "feature_deleted": lambda: _flag(banner_state(enabled=True), None, "feature_deleted"),
    "identity_override_removed": lambda: _flag(identity_state(), None, "identity_override_removed"),
    "segment_override_removed": lambda: _flag(segment_state(), None, "segment_override_removed"),
    "audit_entry": _audit,
}


def golden_path(variant: str, fmt: str) -> Path:
    return GOLDEN / f"{variant}.{fmt}.json"


# --- the Flagsmith payload corpus (tests/flagsmith/README.md) -------------------------------------------------

FLAGSMITH = ROOT / "tests" / "flagsmith"


def flagsmith_case(name: str) -> dict[str, Any]:
    """One corpus file: ``source`` (what in Flagsmith it reflects), ``round_trip`` ("modern", "classic" or None:
    the format that writes it back byte for byte), ``note`` and ``payload``."""
    with open(FLAGSMITH / f"{name}.json", encoding="utf-8") as handle:
        case: dict[str, Any] = json.load(handle)
    return case


def flagsmith_body(name: str) -> bytes:
    """A corpus payload as the bytes Flagsmith sends: ``json.dumps(payload, sort_keys=True).encode()``."""
    return json.dumps(flagsmith_case(name)["payload"], sort_keys=True).encode()


def flagsmith_names() -> list[str]:
    return sorted(path.stem for path in FLAGSMITH.glob("*.json"))


def flagsmith_corpus() -> list[tuple[str, bytes]]:
    """Every payload of the corpus, by name, as the bytes Flagsmith sends (for example, to POST each to a
    receiver)."""
    return [(name, flagsmith_body(name)) for name in flagsmith_names()]

"""Flagsmith environment documents as plain dicts, for the document parser, the cache and the SDK interop tests.

The builders write the keys Flagsmith's API writes (``api/util/mappers/engine.py`` and ``sdk.py`` in
``Flagsmith/flagsmith``): a feature state has ``feature`` ``{id, name, type}``, ``enabled``, ``django_id``,
``feature_segment`` (null, or ``{priority}`` in a segment), ``featurestate_uuid``, ``feature_state_value`` and
``multivariate_feature_state_values``. Each function returns a fresh dict that a test may change.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

SAMPLE = Path(__file__).parent / "environment_documents" / "sample.json"


def load_sample() -> dict[str, Any]:
    """The committed sample document (tests/environment_documents/README.md says where it comes from)."""
    with open(SAMPLE, encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def uuid_of(*parts: object) -> str:
    """A fixed uuid for the given parts (documents are reproducible)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(map(str, parts))))


def mv_value(value_id: int, option_id: int, value: Any, percentage: float) -> dict[str, Any]:
    return {
        "multivariate_feature_option": {"value": value, "id": option_id, "key": None},
        "percentage_allocation": percentage,
        "id": value_id,
        "mv_fs_value_uuid": uuid_of("mv", value_id),
    }


def state(
    feature_id: int,
    name: str,
    enabled: bool,
    value: Any = None,
    *,
    seed: int,
    kind: str = "STANDARD",
    priority: int | None = None,
    mv: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A feature state; ``priority`` makes it a segment override's (``feature_segment: {priority}``)."""
    return {
        "feature": {"id": feature_id, "name": name, "type": kind},
        "enabled": enabled,
        "django_id": seed,
        "feature_segment": None if priority is None else {"priority": priority},
        "featurestate_uuid": uuid_of("fs", seed),
        "feature_state_value": value,
        "multivariate_feature_state_values": mv or [],
    }


def trait_rule(trait: str, value: str) -> list[dict[str, Any]]:
    """Segment rules matching identities whose trait ``trait`` equals ``value`` (an identity without traits never
    matches, so that the SDK's answer for it depends on its overrides only)."""
    return [
        {
            "type": "ALL",
            "rules": [
                {
                    "type": "ANY",
                    "rules": [],
                    "conditions": [{"operator": "EQUAL", "property_": trait, "value": value}],
                }
            ],
            "conditions": [],
        }
    ]


def segment(segment_id: int, name: str, overrides: list[dict[str, Any]], trait: str = "plan") -> dict[str, Any]:
    return {"id": segment_id, "name": name, "rules": trait_rule(trait, name), "feature_states": overrides}


def identity(identifier: str, django_id: int, features: list[dict[str, Any]], api_key: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "environment_api_key": api_key,
        "created_date": "2024-05-02T09:30:00.120Z",
        "identity_features": features,
        "identity_traits": [],
        "identity_uuid": uuid_of("identity", identifier),
        "django_id": django_id,
        "dashboard_alias": None,
    }


def document(
    environment_id: int,
    api_key: str,
    feature_states: list[dict[str, Any]],
    *,
    segments: list[dict[str, Any]] | None = None,
    identity_overrides: list[dict[str, Any]] | None = None,
    updated_at: str = "2024-06-01T12:00:00.000Z",
) -> dict[str, Any]:
    return {
        "id": environment_id,
        "api_key": api_key,
        "name": "Production",
        "updated_at": updated_at,
        "project": {
            "id": 7,
            "name": "Shop",
            "organisation": {"id": 3, "name": "Acme", "feature_analytics": False, "stop_serving_flags": False},
            "hide_disabled_flags": False,
            "segments": segments or [],
            "enable_realtime_updates": False,
            "server_key_only_feature_ids": [],
        },
        "feature_states": feature_states,
        "identity_overrides": identity_overrides or [],
        "allow_client_traits": True,
        "hide_sensitive_data": False,
        "hide_disabled_flags": None,
        "use_identity_composite_key_for_hashing": True,
        "use_identity_overrides_in_local_eval": True,
    }


def multivariate_document() -> dict[str, Any]:
    """Multivariate features (string, integer and boolean options, float allocations) beside plain ones."""
    return document(
        21,
        "mv-env-key",
        [
            state(
                1,
                "checkout_button",
                True,
                "blue",
                seed=101,
                kind="MULTIVARIATE",
                mv=[mv_value(11, 1, "green", 33.33), mv_value(12, 2, "red", 33.33)],
            ),
            state(
                2,
                "page_size",
                True,
                20,
                seed=102,
                kind="MULTIVARIATE",
                mv=[mv_value(13, 3, 50, 50.0), mv_value(14, 4, 100, 25)],
            ),
            state(3, "dark_mode", False, None, seed=103),
            state(4, "welcome_text", True, "Hello", seed=104),
            state(5, "beta_search", True, True, seed=105, kind="MULTIVARIATE", mv=[mv_value(15, 5, False, 10)]),
        ],
        segments=[segment(31, "premium", [state(3, "dark_mode", True, "on", seed=201, priority=0)])],
        identity_overrides=[identity("mia", 501, [state(4, "welcome_text", True, "Hi Mia", seed=301)], "mv-env-key")],
    )


def identity_document() -> dict[str, Any]:
    """Identity overrides: several identities, several features each, values of every type, a disabled override,
    and an identity whose override list is empty."""
    key = "identity-env-key"
    return document(
        22,
        key,
        [
            state(1, "banner", True, "spring", seed=111),
            state(2, "max_items", True, 10, seed=112),
            state(3, "new_ui", False, None, seed=113),
            state(4, "rollout", True, False, seed=114),
        ],
        identity_overrides=[
            identity(
                "alice",
                601,
                [state(1, "banner", True, "alice-only", seed=311), state(3, "new_ui", True, None, seed=312)],
                key,
            ),
            identity("bob", 602, [state(2, "max_items", False, 99, seed=313)], key),
            identity("carol@example.com", 603, [state(4, "rollout", True, True, seed=314)], key),
            identity("dave", 604, [], key),
        ],
    )


def segment_document() -> dict[str, Any]:
    """Segment overrides with priorities (two segments overriding one feature), a segment without overrides, and
    one identity override."""
    key = "segment-env-key"
    return document(
        23,
        key,
        [
            state(1, "discount", True, 5, seed=121),
            state(2, "support_chat", False, None, seed=122),
            state(3, "theme", True, "light", seed=123),
        ],
        segments=[
            segment(
                41,
                "gold",
                [
                    state(1, "discount", True, 20, seed=221, priority=0),
                    state(3, "theme", True, "gold", seed=222, priority=1),
                ],
            ),
            segment(42, "silver", [state(1, "discount", True, 10, seed=223, priority=1)]),
            segment(43, "staff", [state(2, "support_chat", True, "internal", seed=224, priority=2)], trait="role"),
            segment(44, "empty", []),
        ],
        identity_overrides=[identity("erin", 701, [state(3, "theme", False, "dark", seed=321)], key)],
    )


def built_documents() -> dict[str, dict[str, Any]]:
    """The documents built here, by name (fresh dicts)."""
    return {
        "multivariate": multivariate_document(),
        "identities": identity_document(),
        "segments": segment_document(),
    }

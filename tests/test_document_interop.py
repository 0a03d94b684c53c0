"""Interop with Flagsmith's own SDK: one environment document loaded into the SDK (offline mode) and into FlagCache
gives the same flags, before and after a series of web hooks (the SDK reading the document with the same changes).

The SDK also evaluates segment rules and percentage splits, which FlagCache does not: identities are compared on
the features without multivariate options, where no segment override could apply (or that they override).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flagsmith.mappers import map_environment_document_to_context
from flagsmith.offline_handlers import LocalFileHandler

from documents import SAMPLE, built_documents, load_sample, state
from flaghooks import (
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    Project,
    Segment,
    WebhookEvent,
    flag_changed,
)
from flaghooks._document import parse_environment_document
from flaghooks.cache import FlagCache, RedisFlagStore, SqliteFlagStore
from flaghooks.cache._store import FlagStore
from flagsmith import Flagsmith
from services import redis_prefix

Document = dict[str, Any]


class _Handler:
    """An offline handler: any object with get_environment() serves the SDK."""

    def __init__(self, document: Document) -> None:
        self.document = copy.deepcopy(document)

    def get_environment(self) -> Any:
        return self.document


def sdk(document: Document) -> Flagsmith:
    return Flagsmith(offline_mode=True, offline_handler=_Handler(document))


def documents() -> dict[str, Document]:
    return {**built_documents(), "sample": load_sample()}


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def new_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], FlagCache]]:
    """Makes caches on the memory store, a SQLite file or Redis (a key prefix of the test's own): every store
    gives the SDK's answers."""
    made: list[FlagCache] = []
    with contextlib.ExitStack() as stack:
        prefix = stack.enter_context(redis_prefix("flaghooks-interop")) if request.param == "redis" else ""

        def make() -> FlagCache:
            store: FlagStore | None = None
            if request.param == "sqlite":
                store = SqliteFlagStore(tmp_path / f"cache{len(made)}.db")
            elif request.param == "redis":
                store = RedisFlagStore("redis://127.0.0.1:6379/0", prefix=f"{prefix}{len(made)}:")
            cache = FlagCache(store)
            made.append(cache)
            return cache

        yield make
        for cache in made:
            cache.close()


# --- comparing the SDK with the cache ------------------------------------------------------------------------


def flags(found: Any) -> dict[str, tuple[bool, Any]]:
    return {flag.feature_name: (flag.enabled, flag.value) for flag in found.all_flags()}


def cache_defaults(cache: FlagCache, environment: int) -> dict[str, tuple[bool, Any]]:
    return {
        fs.feature.name: (fs.enabled, fs.value)
        for fs in cache.states()
        if fs.environment.id == environment and fs.identity is None and fs.feature_segment is None
    }


def comparable(document: Document, identifier: str) -> set[str]:
    """The features on which the SDK and the cache must agree for an identity without traits: no multivariate
    options, and either overridden for the identity or without segment overrides (whose rules only the SDK
    evaluates)."""
    segmented = {
        fs["feature"]["name"] for segment in document["project"]["segments"] for fs in segment["feature_states"]
    }
    overridden = {
        fs["feature"]["name"]
        for entry in document["identity_overrides"]
        if entry["identifier"] == identifier
        for fs in entry["identity_features"]
    }
    return {
        fs["feature"]["name"]
        for fs in document["feature_states"]
        if not fs["multivariate_feature_state_values"]
        and (fs["feature"]["name"] not in segmented or fs["feature"]["name"] in overridden)
    }


def check_agreement(client: Flagsmith, cache: FlagCache, document: Document) -> int:
    """The SDK's environment flags are the cache's defaults, and its identity flags (no traits) the cache's answer
    for every identity of the document (and one without overrides) on the comparable features. Returns how many
    identity overrides were compared (so that a test can show it compared some)."""
    environment = document["id"]
    expected = flags(client.get_environment_flags())
    assert cache_defaults(cache, environment) == expected
    for name, (enabled, value) in expected.items():
        found = cache.get(environment, name)
        assert found is not None and (found.enabled, found.value) == (enabled, value), name
    overrides = 0
    identifiers = [entry["identifier"] for entry in document["identity_overrides"]] + ["nobody-in-particular"]
    for identifier in identifiers:
        answers = flags(client.get_identity_flags(identifier))
        features = comparable(document, identifier)
        assert features <= set(answers)
        for name in sorted(features):
            found = cache.get(environment, name, identity=identifier)
            assert found is not None, (identifier, name)
            assert (found.enabled, found.value) == answers[name], (identifier, name)
            overrides += found.identity is not None
    return overrides


def check_segments(cache: FlagCache, document: Document) -> None:
    """The cache holds the document's segment overrides, keyed by segment, with their priorities and values."""
    environment = document["id"]
    held = {
        (fs.feature.name, fs.feature_segment.segment.id, fs.feature_segment.priority, fs.enabled, fs.value)
        for name in {fs["feature"]["name"] for fs in document["feature_states"]}
        for fs in cache.segment_overrides(environment, name)
        if fs.feature_segment is not None and fs.feature_segment.segment is not None
    }
    assert held == {
        (
            fs["feature"]["name"],
            segment["id"],
            fs["feature_segment"]["priority"],
            fs["enabled"],
            fs["feature_state_value"],
        )
        for segment in document["project"]["segments"]
        for fs in segment["feature_states"]
    }


# --- the acceptance: every document, before and after web hooks ------------------------------------------------


@pytest.mark.parametrize("name", sorted(documents()))
def test_the_documents_are_what_the_sdk_reads(name: str) -> None:
    """Every document the tests use passes the SDK's own check (its mapping to an evaluation context)."""
    map_environment_document_to_context(documents()[name])  # type: ignore[arg-type]


def test_the_sample_file_loads_as_the_sdk_loads_it(new_cache: Callable[[], FlagCache]) -> None:
    """The committed sample through the SDK's LocalFileHandler and through FlagCache: the same flags."""
    client = Flagsmith(offline_mode=True, offline_handler=LocalFileHandler(str(SAMPLE)))
    cache = new_cache()
    document = load_sample()
    cache.load_environment_document(document)
    assert check_agreement(client, cache, document) > 0
    check_segments(cache, document)


@pytest.mark.parametrize("name", sorted(documents()))
def test_sdk_and_cache_agree_before_and_after_web_hooks(name: str, new_cache: Callable[[], FlagCache]) -> None:
    """Loaded from one document, the SDK and the cache agree; after a series of web hooks applied to the cache,
    and the same changes made to the document the SDK reloads, they agree again."""
    document = documents()[name]
    cache = new_cache()
    changed = cache.load_environment_document(document)
    assert changed == len(parse_environment_document(document).states)
    before = check_agreement(sdk(document), cache, document)
    check_segments(cache, document)
    assert before > 0 or not any(entry["identity_features"] for entry in document["identity_overrides"])

    history = History(document)
    for event in history.events():
        cache.apply(event)
    assert history.count >= 7
    map_environment_document_to_context(document)  # type: ignore[arg-type] # the changed document is still valid
    after = check_agreement(sdk(document), cache, document)
    check_segments(cache, document)
    assert after > 0


@pytest.mark.parametrize("name", sorted(documents()))
def test_the_comparison_sees_each_change(name: str, new_cache: Callable[[], FlagCache]) -> None:
    """The SDK reading the unchanged document disagrees with the cache after the web hooks: the comparison above
    would notice a change the cache missed (or one made only to the document)."""
    document = documents()[name]
    cache = new_cache()
    cache.load_environment_document(document)
    for event in History(copy.deepcopy(document)).events():
        cache.apply(event)
    with pytest.raises(AssertionError):
        check_agreement(sdk(document), cache, document)


# --- the web hooks, as Flagsmith would send them, and the same changes to the document -----------------------


class History:
    """A series of changes to a document: each yields the web hook Flagsmith sends for it (built with flaghooks'
    flag_changed, timestamps after the document's updated_at) and makes the same change to the document dict.
    One late event (older than the document) changes nothing in either."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.updated_at = parse_environment_document(document).updated_at
        assert self.updated_at is not None
        self.environment = Environment(document["id"], document.get("name"))
        project = document["project"]
        self.project = Project(project["id"], project.get("name"), organisation=project["organisation"]["id"])
        self.count = 0
        self._ids = itertools.count(1)
        self._seeds = itertools.count(900_000)

    # Models of the document's objects, as a web hook's states carry them.

    def feature(self, raw: Document) -> Feature:
        created = datetime(2023, 1, 1, tzinfo=self.updated_at.tzinfo)  # type: ignore[union-attr]
        return Feature(id=raw["id"], name=raw["name"], project=self.project, created_date=created, type=raw["type"])

    def model(
        self, raw: Document, *, segment: Document | None = None, identity: Document | None = None
    ) -> FeatureState:
        return FeatureState(
            feature=self.feature(raw["feature"]),
            environment=self.environment,
            enabled=raw["enabled"],
            value=raw["feature_state_value"],
            id=raw["django_id"],
            feature_segment=None
            if segment is None
            else FeatureSegment(
                id=segment["id"] * 10,
                segment=Segment(segment["id"], segment["name"]),
                priority=raw["feature_segment"]["priority"],
            ),
            identity=None if identity is None else Identity(identity["django_id"], identity["identifier"]),
        )

    def event(self, previous: FeatureState | None, new: FeatureState | None, *, late: bool = False) -> WebhookEvent:
        number = next(self._ids)
        offset = timedelta(seconds=-30 - number if late else number)
        self.count += 1
        return flag_changed(previous, new, timestamp=self.updated_at + offset, event_id=f"evt_interop_{number}")  # type: ignore[operator]

    # The series.

    def events(self) -> Iterator[WebhookEvent]:
        doc = self.document
        plain = [fs for fs in doc["feature_states"] if not fs["multivariate_feature_state_values"]]
        multivariate = [fs for fs in doc["feature_states"] if fs["multivariate_feature_state_values"]]

        # An environment default changes value and is switched off.
        target = plain[0]
        previous = self.model(target)
        target["feature_state_value"] = "changed by a web hook"
        target["enabled"] = not target["enabled"]
        yield self.event(previous, self.model(target))

        # A late event for it, older than the document: it loses in the cache, so the document stays.
        stale = copy.deepcopy(target)
        stale["feature_state_value"] = "stale"
        yield self.event(None, self.model(stale), late=True)

        # A multivariate default is switched (its control value is what environment flags show).
        if multivariate:
            target = multivariate[0]
            previous = self.model(target)
            target["enabled"] = not target["enabled"]
            yield self.event(previous, self.model(target))

        # A new feature is created.
        new_id = max(fs["feature"]["id"] for fs in doc["feature_states"]) + 100
        created = state(new_id, "created_by_web_hook", True, 42, seed=next(self._seeds))
        doc["feature_states"].append(created)
        yield self.event(None, self.model(created))

        # A feature is deleted: its default and every override of it go.
        doomed = plain[-1]
        gone = doomed["feature"]["id"]
        doc["feature_states"].remove(doomed)
        for segment in doc["project"]["segments"]:
            segment["feature_states"] = [fs for fs in segment["feature_states"] if fs["feature"]["id"] != gone]
        for entry in doc["identity_overrides"]:
            entry["identity_features"] = [fs for fs in entry["identity_features"] if fs["feature"]["id"] != gone]
        yield self.event(self.model(doomed), None)

        yield from self.identity_events()
        yield from self.segment_events()

    def identity_events(self) -> Iterator[WebhookEvent]:
        doc = self.document
        plain = [fs for fs in doc["feature_states"] if not fs["multivariate_feature_state_values"]]
        entries = doc["identity_overrides"]
        with_overrides = [entry for entry in entries if entry["identity_features"]]
        if with_overrides:
            # An identity override is updated, and another removed.
            entry = with_overrides[0]
            target = entry["identity_features"][0]
            previous = self.model(target, identity=entry)
            target["feature_state_value"] = f"updated for {entry['identifier']}"
            yield self.event(previous, self.model(target, identity=entry))
            if len(with_overrides) > 1:
                other = with_overrides[-1]
                removed = other["identity_features"].pop()
                yield self.event(self.model(removed, identity=other), None)
        # A new identity gets an override, and an existing identity one more (on a feature it did not override).
        newcomer = {
            "identifier": "newcomer@example.com",
            "identity_features": [],
            "identity_uuid": "0b8f5d8e-2c1a-4a4e-9d55-6f3c2f1e0a11",
            "django_id": 88_001,
        }
        entries.append(newcomer)
        for entry in (newcomer, *entries[:1]):
            have = {fs["feature"]["id"] for fs in entry["identity_features"]}
            default = next(fs for fs in plain if fs["feature"]["id"] not in have)
            override = copy.deepcopy(default)
            override.update(
                enabled=not default["enabled"],
                feature_state_value=f"for {entry['identifier']}",
                django_id=next(self._seeds),
            )
            entry["identity_features"].append(override)
            yield self.event(None, self.model(override, identity=entry))

    def segment_events(self) -> Iterator[WebhookEvent]:
        for segment in self.document["project"]["segments"]:
            if segment["feature_states"]:
                # A segment override changes value and priority (MODERN payloads carry the segment).
                target = segment["feature_states"][0]
                previous = self.model(target, segment=segment)
                target["feature_state_value"] = f"segment {segment['name']} changed"
                target["feature_segment"]["priority"] += 5
                yield self.event(previous, self.model(target, segment=segment))
                return

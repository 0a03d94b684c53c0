"""Hypothesis strategies for flaghooks' models and events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
from hypothesis import strategies as st

from flaghooks import (
    AuditLogEntry,
    Author,
    Environment,
    EventType,
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
    audit_log_created,
    flag_changed,
)

ids = st.integers(min_value=1, max_value=2**53)
texts = st.text(max_size=20)
names = st.text(min_size=1, max_size=20)
optional_texts = st.none() | texts
flag_values = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63) | texts
offsets = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
datetimes = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31), timezones=offsets)

# JSON values as decoding produces them (finite floats, string keys).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
# Keys flaghooks does not model: "x_" keeps them clear of every modelled key.
extras = st.dictionaries(st.text(max_size=6).map(lambda key: "x_" + key), json_values, max_size=3)
uuids = st.none() | st.uuids().map(str)

projects = st.builds(Project, ids, optional_texts, st.none() | ids)
environments = st.builds(Environment, ids, optional_texts)
# Objects as a decoded audit entry has them: uuids, an api_key and keys flaghooks does not model.
rich_projects = st.builds(Project, ids, optional_texts, st.none() | ids, uuids, extra=extras)
rich_environments = st.builds(Environment, ids, optional_texts, uuid=uuids, api_key=st.none() | texts, extra=extras)
# Keys flaghooks does not model on the flag-state and version objects too. Half of the events carry none at all
# (one draw, shared by every object of an example), so that decode's fast path, which falls back to the careful
# path on any extra key, is exercised as much as the careful path.
rich = st.shared(st.booleans(), key="rich")
some_extras = rich.flatmap(lambda yes: extras if yes else st.just({}))
features = st.builds(
    Feature,
    id=ids,
    name=names,
    project=rich.flatmap(lambda yes: rich_projects if yes else projects),
    created_date=datetimes,
    type=st.sampled_from(["FLAG", "CONFIG", "STANDARD", "MULTIVARIATE"]),
    initial_value=flag_values,
    default_enabled=st.booleans(),
    description=optional_texts,
    extra=some_extras,
)
segments = st.builds(Segment, ids, texts, optional_texts, extra=some_extras)
# Both ids, so that either format can carry the override.
feature_segments = st.builds(FeatureSegment, ids, segments, st.none() | st.integers(0, 1000), extra=some_extras)
identities = st.builds(Identity, ids | names, names)
# At most 3 values of at most 33.3 % each: a state's allocations total at most 100 %.
allocations = st.integers(0, 33) | st.floats(0, 33.3, allow_nan=False)
multivariate_values = st.lists(
    st.builds(
        MultivariateValue,
        ids,
        st.builds(MultivariateOption, ids, flag_values, extra=some_extras),
        allocations,
        extra=some_extras,
    ),
    max_size=3,
).map(tuple)


@st.composite
def targets(draw: st.DrawFn) -> dict[str, Any]:
    """What fixes a state's target: feature, environment and override."""
    kind = draw(st.sampled_from(["environment", "segment", "identity"]))
    target: dict[str, Any] = {
        "feature": draw(features),
        "environment": draw(rich.flatmap(lambda yes: rich_environments if yes else environments)),
    }
    if kind == "segment":
        target["feature_segment"] = draw(feature_segments)
    elif kind == "identity":
        target["identity"] = draw(identities)
    return target


def states_of(target: dict[str, Any]) -> st.SearchStrategy[FeatureState]:
    return st.builds(
        FeatureState,
        enabled=st.booleans(),
        value=flag_values,
        id=st.none() | ids,
        multivariate_values=multivariate_values,
        extra=some_extras,
        **{key: st.just(value) for key, value in target.items()},
    )


states = targets().flatmap(states_of)


@st.composite
def flag_events(draw: st.DrawFn) -> WebhookEvent:
    target = draw(targets())
    shape = draw(st.sampled_from(["created", "updated", "deleted"]))
    previous = None if shape == "created" else draw(states_of(target))
    new = None if shape == "deleted" else draw(states_of(target))
    if previous is not None and new is not None and draw(st.booleans()):
        # The feature's own fields may change too (initial value, description, ...), never its id.
        feature = attrs.evolve(
            new.feature,
            name=draw(names),
            initial_value=draw(flag_values),
            description=draw(optional_texts),
        )
        new = attrs.evolve(new, feature=feature)
    event = flag_changed(
        previous,
        new,
        changed_by=draw(texts),
        timestamp=draw(datetimes),
        event_id=draw(st.from_regex(r"[A-Za-z0-9_]{1,40}", fullmatch=True)),
    )
    assert isinstance(event.data, FlagChange)
    return attrs.evolve(event, data=attrs.evolve(event.data, extra=draw(some_extras)))


# Whole seconds half of the time: MODERN writes those without a fraction, as Flagsmith (DRF) does.
audit_datetimes = datetimes | datetimes.map(lambda value: value.replace(microsecond=0))
audit_entries = st.builds(
    AuditLogEntry,
    created_date=audit_datetimes,
    log=texts,
    related_object_type=st.none() | st.sampled_from(["FEATURE", "FEATURE_STATE", "SEGMENT", "ENVIRONMENT"]),
    author=st.none()
    | st.builds(Author, ids, texts, texts, texts)
    | st.builds(Author, ids, texts, texts, texts, uuid=uuids, extra=extras),
    project=st.none() | projects | rich_projects,
    environment=st.none() | environments | rich_environments,
    related_object_id=st.none() | ids,
    id=st.none() | ids,
    related_object_uuid=st.none() | st.uuids().map(str),
    is_system_event=st.booleans(),
    extra=extras,
)
audit_events = st.builds(lambda entry: audit_log_created(entry, event_id="evt_audit"), audit_entries)

version_states = st.builds(
    VersionFeatureState,
    enabled=st.booleans(),
    value=flag_values,
    multivariate_values=multivariate_values,
    extra=some_extras,
)
versions = st.builds(
    VersionPublished,
    uuid=st.uuids().map(str),
    feature=st.builds(VersionFeature, ids, names, extra=some_extras),
    published_by=st.none() | st.builds(VersionPublisher, ids, texts, extra=some_extras),
    feature_states=st.lists(version_states, max_size=3).map(tuple),
    extra=some_extras,
)
version_events = st.builds(
    lambda version: WebhookEvent("evt_version", EventType.NEW_VERSION_PUBLISHED, version), versions
)

# Event types flaghooks does not know, with any JSON object as their data.
type_names = st.from_regex(r"[A-Z][A-Z_]{0,30}", fullmatch=True).filter(lambda name: name not in set(EventType))
unknown_events = st.builds(
    lambda name, data: WebhookEvent("evt_unknown", name, data),
    type_names,
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
)


@st.composite
def flag_events_with_unknown_times(draw: st.DrawFn) -> WebhookEvent:
    """A flag event whose timestamp is unknown (Flagsmith sent "")."""
    event = draw(flag_events())
    assert isinstance(event.data, FlagChange)
    return attrs.evolve(event, data=attrs.evolve(event.data, timestamp=None))


# Keys beside event_type and data, on events of every type.
events = (flag_events() | flag_events_with_unknown_times() | audit_events | version_events | unknown_events).flatmap(
    lambda event: some_extras.map(lambda extra: attrs.evolve(event, extra=extra))
)

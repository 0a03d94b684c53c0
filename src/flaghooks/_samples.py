"""Realistic sample events, for Webhooks.ping and ``flaghooks ping --event``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import attrs

from ._events import EventType, WebhookEvent, audit_log_created, flag_changed, version_published
from ._models import AuditLogEntry, Author, Environment, Feature, FeatureState, Project
from ._versions import VersionFeature, VersionFeatureState, VersionPublished, VersionPublisher
from .exceptions import ConfigError

__all__ = ["sample_event", "sample_event_types"]


def _sample_feature() -> tuple[Project, Feature, FeatureState, FeatureState]:
    project = Project(1, "flaghooks", organisation=1)
    feature = Feature(
        id=1,
        name="flaghooks_ping",
        project=project,
        created_date=datetime(2024, 1, 1, tzinfo=UTC),
        description="A sample feature sent by a flaghooks ping",
    )
    before = FeatureState(id=1, feature=feature, environment=Environment(1, "Development"), enabled=False)
    return project, feature, before, attrs.evolve(before, enabled=True, value="ping")


def _sample_flag_updated(now: datetime) -> WebhookEvent:
    _, _, before, after = _sample_feature()
    return flag_changed(before, after, changed_by="flaghooks ping", timestamp=now)


def _sample_flag_deleted(now: datetime) -> WebhookEvent:
    _, _, _, after = _sample_feature()
    return flag_changed(after, None, changed_by="flaghooks ping", timestamp=now)


def _sample_audit_log_created(now: datetime) -> WebhookEvent:
    project, feature, _, _ = _sample_feature()
    entry = AuditLogEntry(
        created_date=now,
        log="Test web hook sent by flaghooks",
        related_object_type="FEATURE",
        related_object_id=feature.id,
        author=Author(1, "ping@flaghooks.invalid", "flaghooks", "ping"),
        project=project,
    )
    return audit_log_created(entry)


def _sample_new_version_published(now: datetime) -> WebhookEvent:
    _, feature, _, _ = _sample_feature()
    version = VersionPublished(
        uuid="00000000-0000-4000-8000-000000000001",
        feature=VersionFeature(feature.id, feature.name),
        published_by=VersionPublisher(1, "ping@flaghooks.invalid"),
        feature_states=(VersionFeatureState(enabled=True, value="ping"),),
    )
    return version_published(version)


# The event types ping can send, each with the builder of its sample (given the current time). ping and the
# command's --event choices offer exactly these keys: an event type becomes pingable by adding its builder here.
_SAMPLES: dict[EventType, Callable[[datetime], WebhookEvent]] = {
    EventType.FLAG_UPDATED: _sample_flag_updated,
    EventType.FLAG_DELETED: _sample_flag_deleted,
    EventType.AUDIT_LOG_CREATED: _sample_audit_log_created,
    EventType.NEW_VERSION_PUBLISHED: _sample_new_version_published,
}


def sample_event(event_type: EventType) -> WebhookEvent:
    """A realistic sample event of ``event_type``, for pings (``ConfigError`` for a type without a sample)."""
    builder = _SAMPLES.get(event_type)
    if builder is None:
        raise ConfigError(f"event_type must be one of {', '.join(_SAMPLES)}, got {event_type!r}")
    return builder(datetime.now(UTC))


def sample_event_types() -> tuple[EventType, ...]:
    """The event types :meth:`Webhooks.ping` can send, in the order offered."""
    return tuple(_SAMPLES)

"""flaghooks: feature-flag web hooks, both ends of the pipe.

Typed models of features, feature states and audit-log entries; the change between two states; byte-exact
Flagsmith-compatible payloads; Flagsmith and Standard Webhooks signatures; delivery to endpoints with retries.
The receiving end (verification, a local flag cache, WSGI and ASGI receivers) is in :mod:`flaghooks.receiver`.
"""

from __future__ import annotations

import logging

from ._background import BackgroundDelivery
from ._breaker import Breaker, HealthChange
from ._changes import Action, Scope, StateChange, diff_states
from ._decode import decode
from ._dispatch import Delivery, DeliveryResult, Webhooks
from ._endpoints import Endpoint, Signing
from ._events import EventType, FlagChange, WebhookEvent, audit_log_created, flag_changed, version_published
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
    Extra,
    Feature,
    FeatureSegment,
    FeatureState,
    FlagValue,
    Identity,
    MultivariateOption,
    MultivariateValue,
    Project,
    Segment,
)
from ._retry import Outcome, RetryPolicy, classify
from ._signing import generate_secret, sign_flagsmith, sign_standard, verify_flagsmith, verify_standard
from ._version import VERSION as _VERSION
from ._versions import VersionFeature, VersionFeatureState, VersionPublished, VersionPublisher
from ._wire import PayloadFormat, encode
from .exceptions import ConfigError, FlaghooksError, OutboxError, PayloadError, SignatureError, StoreError

__version__ = _VERSION

__all__ = [
    "Action",
    "AuditLogEntry",
    "Author",
    "BackgroundDelivery",
    "Breaker",
    "ConfigError",
    "Delivery",
    "DeliveryResult",
    "Endpoint",
    "Environment",
    "EventType",
    "Extra",
    "Feature",
    "FeatureSegment",
    "FeatureState",
    "FlagChange",
    "FlagValue",
    "FlaghooksError",
    "HealthChange",
    "Identity",
    "MultivariateOption",
    "MultivariateValue",
    "OutboxError",
    "Outcome",
    "PayloadError",
    "PayloadFormat",
    "Project",
    "RetryPolicy",
    "Scope",
    "Segment",
    "SignatureError",
    "Signing",
    "StateChange",
    "StoreError",
    "VersionFeature",
    "VersionFeatureState",
    "VersionPublished",
    "VersionPublisher",
    "WebhookEvent",
    "Webhooks",
    "__version__",
    "audit_log_created",
    "classify",
    "decode",
    "diff_states",
    "encode",
    "flag_changed",
    "generate_secret",
    "sign_flagsmith",
    "sign_standard",
    "verify_flagsmith",
    "verify_standard",
    "version_published",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

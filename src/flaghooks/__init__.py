"""flaghooks: feature-flag web hooks, both ends of the pipe.

Typed models of features, feature states and audit-log entries; the change between two states; byte-exact
Flagsmith-compatible payloads; Flagsmith signatures.
"""

from __future__ import annotations

import logging
from importlib.metadata import version as _version

from ._changes import Action, Scope, StateChange, diff_states
from ._events import EventType, FlagChange, WebhookEvent, audit_log_created, flag_changed
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
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
from ._signing import sign_flagsmith, verify_flagsmith
from ._wire import PayloadFormat, decode, encode
from .exceptions import FlaghooksError, PayloadError, SignatureError

__version__ = _version("flaghooks")

__all__ = [
    "Action",
    "AuditLogEntry",
    "Author",
    "Environment",
    "EventType",
    "Feature",
    "FeatureSegment",
    "FeatureState",
    "FlagChange",
    "FlagValue",
    "FlaghooksError",
    "Identity",
    "MultivariateOption",
    "MultivariateValue",
    "PayloadError",
    "PayloadFormat",
    "Project",
    "Scope",
    "Segment",
    "SignatureError",
    "StateChange",
    "WebhookEvent",
    "__version__",
    "audit_log_created",
    "decode",
    "diff_states",
    "encode",
    "flag_changed",
    "sign_flagsmith",
    "verify_flagsmith",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())

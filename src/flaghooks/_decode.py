"""Decoding: web hook bodies of either payload format back into events.

:func:`decode` parses the JSON once, takes the fast path (``_decode_fast``) for the flag-state shapes Flagsmith
sends, and the careful readers (``_readers``) for everything else and to say precisely what is wrong. Nothing but
a :class:`PayloadError` ever escapes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ._decode_fast import fast_flag_change
from ._events import _ANY_ID, EVENT_KEYS, EventType, FlagChange, WebhookEvent
from ._extra import NO_EXTRA
from ._models import AuditLogEntry, clip
from ._readers import (
    _FLAG_KINDS,
    _KINDS,
    _READ_AUDIT,
    _READ_FLAG_CHANGE,
    _READ_VERSION,
    _check_agreement,
    _event_type,
    _extra,
    _get,
    _object,
    parse_datetime,
)
from ._versions import VersionPublished
from .exceptions import PayloadError

__all__ = ["decode", "parse_datetime"]


# The fields of a WebhookEvent, which the fast path sets without the constructor (a test checks them).
EVENT_FIELDS = ("id", "event_type", "data", "extra")
_new = object.__new__
_set = object.__setattr__


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not valid JSON")


# One decoder, built once: json.loads(text, parse_constant=...) would build a new one per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_LOADS = _JSON_DECODER.decode
_RAW_DECODE = _JSON_DECODER.raw_decode


def _parse(text: str) -> Any:
    """``json.loads(text)`` without the whitespace handling around the document when there is none (bodies from
    ``json.dumps`` have none); anything else goes through the decoder's ``decode``, which reports errors."""
    try:
        document, end = _RAW_DECODE(text)
    except Exception:  # whitespace before the document, or an error: decode() below says which
        return _LOADS(text)
    return document if end == len(text) else _LOADS(text)


def decode(body: bytes | str, *, event_id: str | None = None) -> WebhookEvent:
    """Decode a web hook body (either payload format) into a :class:`WebhookEvent`.

    ``event_id`` is the sender's id for the event (a receiver passes the ``webhook-id`` header): 1 to 256
    printable ASCII characters without spaces. Without it, the id is derived from the body bytes, so the same
    body always decodes to the same id.

    Every event type decodes: FLAG_UPDATED and FLAG_DELETED to a :class:`FlagChange` (whose ``timestamp`` is
    ``None`` when Flagsmith sent ``""``), AUDIT_LOG_CREATED to an :class:`AuditLogEntry`, NEW_VERSION_PUBLISHED to
    a :class:`VersionPublished`, and a type flaghooks does not know to its name (a ``str``) with the raw ``data``
    object (a ``dict``). Keys flaghooks does not model are kept in the ``extra`` of the model of their object (every
    model but ``Identity`` has one; the event's holds the keys beside ``event_type`` and ``data``), so that
    ``encode(decode(body), PayloadFormat.MODERN)`` gives back any body Flagsmith sends, byte for byte, keys it adds
    later included.

    Raises :class:`PayloadError` (with ``path`` locating the problem) for anything that is not a well-formed
    event, and never any other exception.
    """
    if type(body) is bytes:
        raw = body
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"body is not UTF-8: invalid byte at offset {exc.start}") from None
    elif isinstance(body, str):
        text = body
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PayloadError(f"body is not valid Unicode: {exc.reason}") from None
    elif isinstance(body, bytes | bytearray | memoryview):
        raw = bytes(body)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PayloadError(f"body is not UTF-8: invalid byte at offset {exc.start}") from None
    else:
        raise PayloadError(f"body must be bytes or str, got {type(body).__name__}")
    if event_id is None:
        event_id = "evt_" + hashlib.sha256(raw).hexdigest()[:32]
    elif not isinstance(event_id, str) or not _ANY_ID.fullmatch(event_id):
        raise PayloadError(
            f"event id must be 1 to 256 printable ASCII characters without spaces, got {clip(event_id)}",
            "event_id",
        )
    try:
        document = _parse(text)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError("body is not acceptable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    if type(document) is dict and len(document) == 2:  # more keys: the careful path keeps them in extra
        name = document.get("event_type")
        kind = _KINDS.get(name) if type(name) is str else None
        if kind is EventType.FLAG_UPDATED or kind is EventType.FLAG_DELETED:
            data = document.get("data")
            if type(data) is dict:
                try:
                    change = fast_flag_change(data)
                except Exception:  # noqa: S110 - anything unusual: the careful path says what is wrong
                    pass
                else:
                    # The id is checked above and the type is known; the type and the states must agree (a
                    # removed state is FLAG_DELETED), else the careful path says so. Then the event needs no
                    # constructor to check it all again.
                    if (kind is EventType.FLAG_UPDATED) is (change.new_state is not None):
                        event = _new(WebhookEvent)
                        _set(event, "id", event_id)
                        _set(event, "event_type", kind)
                        _set(event, "data", change)
                        _set(event, "extra", NO_EXTRA)
                        return event
    return _decode_carefully(document, event_id)


def _decode_carefully(document: Any, event_id: str) -> WebhookEvent:
    """Every check, with a precise path for each problem; the fast path's fallback and the uncommon types."""
    top = _object(document)
    kind = _get(top, "event_type", _event_type)
    data: FlagChange | AuditLogEntry | VersionPublished | dict[str, Any]
    if kind is EventType.AUDIT_LOG_CREATED:
        data = _get(top, "data", _READ_AUDIT)
    elif kind is EventType.NEW_VERSION_PUBLISHED:
        data = _get(top, "data", _READ_VERSION)
    elif kind in _FLAG_KINDS:
        _check_agreement(kind, _get(top, "data", _object))  # type: ignore[arg-type]
        data = _get(top, "data", _READ_FLAG_CHANGE)
    else:
        data = _get(top, "data", _object)
    try:
        return WebhookEvent(event_id, kind, data, extra=_extra(top, EVENT_KEYS))
    except (TypeError, ValueError) as exc:  # a value JSON parses but cannot write back, such as 1e999
        field = getattr(exc, "field", "data")
        raise PayloadError(str(exc), field) from None

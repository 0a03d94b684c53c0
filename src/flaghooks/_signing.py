"""Signatures over the raw body bytes: Flagsmith's and Standard Webhooks'.

Flagsmith signs a web hook with ``X-Flagsmith-Signature``: the lowercase hex HMAC-SHA256 of the body, keyed
with the secret's UTF-8 bytes. Standard Webhooks signs ``{webhook-id}.{webhook-timestamp}.{body}`` with the
base64-decoded ``whsec_`` secret and sends ``v1,<base64>`` signatures in ``webhook-signature``.

Verification is constant-time and raises only :class:`SignatureError` for a bad request, whatever the input.
Messages never contain a secret or an expected signature.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, cast

from .exceptions import ConfigError, SignatureError

__all__ = ["generate_secret", "sign_flagsmith", "sign_standard", "verify_flagsmith", "verify_standard"]

_HEX = frozenset("0123456789abcdef")
_WHSEC = "whsec_"
_MIN_KEY, _MAX_KEY = 24, 64


def _flagsmith_key(secret: str) -> bytes:
    if not isinstance(secret, str):
        raise TypeError(f"secret must be a str, got {type(secret).__name__}")
    if not secret:
        raise ValueError("secret must not be empty")
    return secret.encode("utf-8")


def _body_bytes(body: bytes) -> bytes:
    if type(body) is bytes:
        return body
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(
            f"body must be the raw bytes that were sent, got {type(body).__name__} "
            "(never sign or verify a re-encoded copy)"
        )
    return bytes(body)


def sign_flagsmith(body: bytes, secret: str) -> str:
    """The ``X-Flagsmith-Signature`` of ``body``: lowercase hex HMAC-SHA256 keyed with the secret's UTF-8.

    Raises ``ValueError`` for an empty secret.

    >>> sign_flagsmith(b'{"data": {}}', "some-secret")[:16]
    'f18d32bf3b3d0b2a'
    """
    key = _flagsmith_key(secret)
    return hmac.digest(key, _body_bytes(body), "sha256").hex()


def verify_flagsmith(body: bytes, signature: str, secret: str) -> None:
    """Check an ``X-Flagsmith-Signature`` against the raw body, in constant time.

    Raises :class:`SignatureError` when the signature is malformed (not 64 lowercase hex digits) or does not
    match, and never another exception for any signature. An empty secret raises ``ValueError`` before the
    signature is looked at: that is a programming error, not a bad request.
    """
    key = _flagsmith_key(secret)
    verify_flagsmith_key(_body_bytes(body), signature, key)


def verify_flagsmith_key(data: bytes, signature: object, key: bytes) -> None:
    """:func:`verify_flagsmith` with the key already made (a receiver makes it once, not per request)."""
    if not isinstance(signature, str):
        raise SignatureError(f"malformed signature: expected a str of 64 hex digits, got {type(signature).__name__}")
    # A match is exactly 64 lowercase hex digits; which way a mismatch is wrong is only worked out after it, so a
    # genuine request pays for the HMAC and one comparison (compare_digest needs ASCII text, hence isascii).
    matches = len(signature) == 64 and signature.isascii()
    if matches and hmac.compare_digest(hmac.digest(key, data, "sha256").hex(), signature):
        return
    # Exactly 64 lowercase hex digits, as Flagsmith sends: any other spelling is not this scheme's signature.
    if len(signature) != 64 or not _HEX.issuperset(signature):
        raise SignatureError("malformed signature: expected 64 lowercase hex digits")
    raise SignatureError("signature does not match the body")


# --- Standard Webhooks ------------------------------------------------------------------------------------


def standard_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ValueError`` (never showing the secret) when it is malformed."""
    if not isinstance(secret, str):
        raise ValueError(f"a Standard Webhooks secret must be a str, got {type(secret).__name__}")
    if not secret.startswith(_WHSEC):
        raise ValueError("a Standard Webhooks secret must start with 'whsec_'")
    encoded = secret[len(_WHSEC) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret must be 'whsec_' followed by base64") from None
    if not _MIN_KEY <= len(key) <= _MAX_KEY:
        raise ValueError(f"a Standard Webhooks secret must decode to {_MIN_KEY} to {_MAX_KEY} bytes, got {len(key)}")
    return key


def generate_secret() -> str:
    """A new Standard Webhooks secret: ``whsec_`` and the base64 of 32 random bytes from :mod:`secrets`.

    It is also a valid Flagsmith secret (Flagsmith keys its HMAC with the whole string).
    """
    return _WHSEC + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def _standard_digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.digest(key, signed, "sha256")).decode("ascii")


def sign_standard(body: bytes, *, secret: str, msg_id: str, timestamp: int) -> str:
    """A Standard Webhooks signature, ``v1,<base64>``: HMAC-SHA256 of ``f"{msg_id}.{timestamp}."`` + body,
    keyed with the base64-decoded ``whsec_`` secret.

    Raises :class:`ConfigError` for a malformed secret and ``TypeError`` for arguments of the wrong type.
    """
    try:
        key = standard_key(secret)
    except ValueError as exc:
        raise ConfigError(f"secret: {exc}") from None
    if not isinstance(msg_id, str):
        raise TypeError(f"msg_id must be a str, got {type(msg_id).__name__}")
    if type(timestamp) is not int:
        raise TypeError(f"timestamp must be an int (Unix seconds), got {type(timestamp).__name__}")
    return "v1," + _standard_digest(key, msg_id, timestamp, _body_bytes(body))


# The header names signature checks read, lower case. A request's headers are reduced to these once, so each
# check afterwards is a dict lookup whatever object the framework handed over.
FLAGSMITH_HEADER = "x-flagsmith-signature"
WANTED_HEADERS = frozenset({FLAGSMITH_HEADER, "webhook-id", "webhook-timestamp", "webhook-signature"})


class HeaderItems(Protocol):
    """Anything with ``items()`` giving (name, value) pairs: a dict, werkzeug's ``Headers``/``EnvironHeaders``,
    Django's ``request.headers``, ``http.client.HTTPMessage`` and email messages, Starlette's ``Headers``."""

    def items(self) -> Iterable[tuple[Any, Any]]: ...


Headers = HeaderItems | Sequence[tuple[str, str]] | Sequence[tuple[bytes, bytes]]


def check_headers(headers: object) -> None:
    """``TypeError`` unless ``headers`` is an object with ``items()`` or a list (or tuple) of (name, value) pairs.

    A wrong argument is a programming error, not a bad request: it must not pass for a failed signature.
    """
    if type(headers) is dict:
        return
    if isinstance(headers, list | tuple):
        for pair in headers:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError(f"headers given as a sequence must hold (name, value) pairs, got {_kind(pair)}")
        return
    if isinstance(headers, str | bytes | bytearray | memoryview) or not callable(getattr(headers, "items", None)):
        raise TypeError(
            "headers must be a mapping or headers object with items() (a dict, werkzeug, Django, http.client, "
            f"Starlette headers) or a list of (name, value) pairs, got {type(headers).__name__}"
        )


def _kind(value: object) -> str:
    return type(value).__name__ if not isinstance(value, tuple | list) else f"a {type(value).__name__} of {len(value)}"


def collect_headers(headers: Headers, wanted: frozenset[str] = WANTED_HEADERS) -> dict[str, object]:
    """The ``wanted`` headers of ``headers`` by lower-case name (the first value of a repeated one).

    Names may be any case, as str or as bytes (ASGI's raw pairs); values are returned as given. Call
    :func:`check_headers` first: an object that raises while read lets its exception through.
    """
    pairs: Iterable[Any] = headers if isinstance(headers, list | tuple) else cast(HeaderItems, headers).items()
    found: dict[str, object] = {}
    for name, value in pairs:
        if isinstance(name, str):
            key = name.lower()
        elif isinstance(name, bytes):
            key = name.decode("latin-1").lower()
        else:
            continue
        if key in wanted and key not in found:
            found[key] = value
    return found


def find_header(headers: Headers, name: str) -> object:
    """The value of header ``name`` (lower case) in ``headers``, whatever its case there; None if absent."""
    check_headers(headers)
    return collect_headers(headers, frozenset((name,))).get(name)


def header_text(found: Mapping[str, object], name: str) -> str:
    """Header ``name`` from :func:`collect_headers`' result as text; :class:`SignatureError` if absent or odd."""
    value = found.get(name)
    if isinstance(value, str):
        return value
    if value is None:
        raise SignatureError(f"missing {name} header")
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise SignatureError(f"malformed {name} header: not ASCII") from None
    raise SignatureError(f"malformed {name} header")


def verify_standard(
    body: bytes,
    headers: Headers,
    secrets: str | Sequence[str],
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> None:
    """Check Standard Webhooks headers against the raw body.

    Reads ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (names are case-insensitive) from
    ``headers``: a dict or any headers object with ``items()`` (werkzeug's, Django's ``request.headers``,
    ``http.client.HTTPMessage``, Starlette's) or a list of (name, value) pairs. Accepts when any ``v1``
    signature in the space-separated list matches any of ``secrets`` (one ``whsec_`` secret or several, for
    rotation), and the timestamp is within ``tolerance`` seconds of ``now`` (default: the current time) in
    either direction, which bounds replays.

    Raises ``TypeError`` when ``headers`` is not a headers object at all (a programming error), and otherwise
    :class:`SignatureError` for missing headers, a malformed header or secret, no match or a timestamp
    outside the tolerance, and never another exception, for any input.
    """
    check_headers(headers)
    try:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise SignatureError(f"body must be the raw bytes received, got {type(body).__name__}")
        candidates = [secrets] if isinstance(secrets, str) else list(secrets)
        if not candidates:
            raise SignatureError("no secret to verify with")
        keys = []
        for index, secret in enumerate(candidates):
            try:
                keys.append(standard_key(secret))
            except ValueError as exc:
                raise SignatureError(f"malformed secret #{index}: {exc}") from None
        verify_standard_found(bytes(body), collect_headers(headers), keys, tolerance, now)
    except SignatureError:
        raise
    except Exception as exc:  # the contract: nothing but SignatureError, whatever the input
        raise SignatureError(f"cannot verify: {type(exc).__name__}") from None


def verify_standard_found(
    data: bytes, found: Mapping[str, object], keys: Sequence[bytes], tolerance: float, now: float | None
) -> str:
    """:func:`verify_standard` on headers already collected and keys already decoded; the verified id."""
    msg_id = header_text(found, "webhook-id")
    stamp = header_text(found, "webhook-timestamp")
    signature = header_text(found, "webhook-signature")
    if not msg_id:
        raise SignatureError("malformed webhook-id header: empty")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 15:
        raise SignatureError("malformed webhook-timestamp header: expected Unix seconds")
    timestamp = int(stamp)
    current = time.time() if now is None else float(now)
    if not math.isfinite(current) or not math.isfinite(float(tolerance)):
        raise SignatureError("cannot check the timestamp: now and tolerance must be finite")
    if timestamp < current - tolerance:
        raise SignatureError("webhook-timestamp is too old (outside the tolerance)")
    if timestamp > current + tolerance:
        raise SignatureError("webhook-timestamp is in the future (outside the tolerance)")
    offered = [
        value.encode("utf-8", "surrogateescape")
        for version, _, value in (item.partition(",") for item in signature.split(" "))
        if version == "v1" and value
    ]
    if not offered:
        raise SignatureError("malformed webhook-signature header: no v1 signature")
    signed = f"{msg_id}.{timestamp}.".encode() + data
    matched = False
    for key in keys:
        expected = base64.b64encode(hmac.digest(key, signed, "sha256"))
        for value in offered:
            # Compare every pair, so the time taken does not depend on which (if any) matched.
            matched |= hmac.compare_digest(expected, value)
    if not matched:
        raise SignatureError("no webhook-signature matches the body")
    return msg_id

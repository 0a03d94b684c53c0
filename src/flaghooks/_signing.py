"""Signatures over the raw body bytes.

Flagsmith signs a web hook with ``X-Flagsmith-Signature``: the lowercase hex HMAC-SHA256 of the body, keyed
with the secret's UTF-8 bytes. Verification is constant-time and only ever raises :class:`SignatureError`
for a bad signature, whatever the input.
"""

from __future__ import annotations

import hmac

from .exceptions import SignatureError

__all__ = ["sign_flagsmith", "verify_flagsmith"]

_HEX = frozenset("0123456789abcdef")


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
    data = _body_bytes(body)
    if not isinstance(signature, str):
        raise SignatureError(
            f"malformed signature: expected a str of 64 hex digits, got {type(signature).__name__}"
        )
    # Exactly 64 lowercase hex digits, as Flagsmith sends: any other spelling is not this scheme's signature.
    if len(signature) != 64 or not _HEX.issuperset(signature):
        raise SignatureError("malformed signature: expected 64 lowercase hex digits")
    expected = hmac.digest(key, data, "sha256").hex()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("signature does not match the body")

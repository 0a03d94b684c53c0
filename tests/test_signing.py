"""Flagsmith signatures: X-Flagsmith-Signature over the raw bytes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cases import load_vector
from flaghooks import SignatureError, sign_flagsmith, verify_flagsmith

CASE = load_vector("signatures.json")["flagsmith"][0]
BODY: bytes = CASE["body"].encode()
SECRET: str = CASE["secret"]
SIGNATURE: str = CASE["signature"]


def test_vector_signs() -> None:
    """The Flagsmith case in signatures.json signs to its signature."""
    assert sign_flagsmith(BODY, SECRET) == SIGNATURE


def test_vector_verifies() -> None:
    """The Flagsmith case verifies."""
    verify_flagsmith(BODY, SIGNATURE, SECRET)


def test_signature_is_lowercase_hex_hmac_of_utf8_secret() -> None:
    """The signature is the lowercase hex HMAC-SHA256 keyed with the secret's UTF-8 bytes."""
    secret = "sécret ☕"
    expected = hmac.new(secret.encode("utf-8"), BODY, hashlib.sha256).hexdigest()
    assert sign_flagsmith(BODY, secret) == expected and expected.islower()


def test_uppercase_hex_is_malformed() -> None:
    """Flagsmith sends lowercase hex; any other spelling is rejected (so every flipped bit is caught)."""
    with pytest.raises(SignatureError, match="lowercase"):
        verify_flagsmith(BODY, SIGNATURE.upper(), SECRET)


@pytest.mark.parametrize("bit", range(len(BODY) * 8))
def test_flipping_any_body_bit_fails(bit: int) -> None:
    """Flipping any one bit of the body makes verification fail."""
    body = bytearray(BODY)
    body[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureError):
        verify_flagsmith(bytes(body), SIGNATURE, SECRET)


@pytest.mark.parametrize("bit", range(len(SIGNATURE) * 8))
def test_flipping_any_signature_bit_fails(bit: int) -> None:
    """Flipping any one bit of the signature (as sent, ASCII) makes verification fail."""
    raw = bytearray(SIGNATURE.encode())
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureError):
        verify_flagsmith(BODY, raw.decode("latin-1"), SECRET)


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "abc",
        SIGNATURE[:-1],
        SIGNATURE + "0",
        "z" * 64,
        "sha256=" + SIGNATURE,
        None,
        42,
        b"bytes",
        "é" * 64,
    ],
)
def test_malformed_signatures(signature: object) -> None:
    """Malformed signatures raise SignatureError, never another exception."""
    with pytest.raises(SignatureError, match="malformed"):
        verify_flagsmith(BODY, signature, SECRET)  # type: ignore[arg-type]


def test_wrong_secret() -> None:
    """Another secret does not verify, and the message says so without the expected value."""
    with pytest.raises(SignatureError, match="does not match") as info:
        verify_flagsmith(BODY, SIGNATURE, "other-secret")
    assert SIGNATURE not in str(info.value) and sign_flagsmith(BODY, "other-secret") not in str(info.value)


def test_empty_secret_is_a_programming_error() -> None:
    """An empty secret raises ValueError in both functions, before the signature is looked at."""
    with pytest.raises(ValueError, match="secret must not be empty"):
        sign_flagsmith(BODY, "")
    with pytest.raises(ValueError, match="secret must not be empty"):
        verify_flagsmith(BODY, None, "")  # type: ignore[arg-type]


def test_body_must_be_bytes() -> None:
    """Signing or verifying a str (a re-encoded copy) is refused."""
    with pytest.raises(TypeError, match="raw bytes"):
        sign_flagsmith(CASE["body"], SECRET)
    with pytest.raises(TypeError, match="raw bytes"):
        verify_flagsmith(CASE["body"], SIGNATURE, SECRET)


def test_secret_must_be_a_str() -> None:
    """A bytes secret is refused: Flagsmith keys with the string's UTF-8 bytes."""
    with pytest.raises(TypeError, match="secret must be a str"):
        sign_flagsmith(BODY, b"some-secret")  # type: ignore[arg-type]


def test_bytes_like_bodies() -> None:
    """bytearray and memoryview bodies sign like bytes."""
    assert sign_flagsmith(bytearray(BODY), SECRET) == sign_flagsmith(memoryview(BODY), SECRET) == SIGNATURE


@given(st.binary(max_size=200), st.text(min_size=1, max_size=20), st.text(max_size=80))
def test_verify_raises_only_signature_error(body: bytes, secret: str, signature: str) -> None:
    """Whatever the signature, verify_flagsmith accepts the right one and raises only SignatureError."""
    verify_flagsmith(body, sign_flagsmith(body, secret), secret)
    with contextlib.suppress(SignatureError):
        verify_flagsmith(body, signature, secret)

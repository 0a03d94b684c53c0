"""Standard Webhooks signatures: the official vector, an independent implementation, rotation, robustness."""

from __future__ import annotations

import base64
import contextlib
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from cases import load_vector
from flaghooks import ConfigError, SignatureError, generate_secret, sign_standard, verify_standard

VECTOR = load_vector("signatures.json")["standard_webhooks"][0]
BODY: bytes = VECTOR["body"].encode()
SECRET: str = VECTOR["secret"]
MSG_ID: str = VECTOR["msg_id"]
STAMP: int = VECTOR["timestamp"]


def headers(signature: str, *, msg_id: str = MSG_ID, stamp: int = STAMP) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}


class TestVector:
    def test_signs_the_official_vector(self) -> None:
        """sign_standard reproduces the official test vector."""
        assert sign_standard(BODY, secret=SECRET, msg_id=MSG_ID, timestamp=STAMP) == VECTOR["signature"]

    def test_verifies_the_official_vector(self) -> None:
        """The official vector verifies at its own time."""
        verify_standard(BODY, headers(VECTOR["signature"]), SECRET, now=STAMP)

    @pytest.mark.parametrize("bad", VECTOR["must_fail"])
    def test_must_fail_entries_are_rejected(self, bad: str) -> None:
        """Every must_fail signature is rejected."""
        with pytest.raises(SignatureError):
            verify_standard(BODY, headers(bad), SECRET, now=STAMP)

    def test_header_names_are_case_insensitive(self) -> None:
        """Header names match whatever their case."""
        upper = {k.upper(): v for k, v in headers(VECTOR["signature"]).items()}
        verify_standard(BODY, upper, SECRET, now=STAMP)

    def test_any_signature_in_the_list(self) -> None:
        """Any v1 signature in the space-separated list may match; other versions are skipped."""
        listed = f"v2,abc v1,{base64.b64encode(b'x' * 32).decode()} {VECTOR['signature']}"
        verify_standard(BODY, headers(listed), SECRET, now=STAMP)

    def test_any_secret_in_the_list(self) -> None:
        """Any of several secrets may match (receivers rotating)."""
        verify_standard(BODY, headers(VECTOR["signature"]), [generate_secret(), SECRET], now=STAMP)


class TestTimestamps:
    @pytest.mark.parametrize("offset", [-300, 0, 300])
    def test_within_tolerance(self, offset: int) -> None:
        """A timestamp up to the tolerance away, either way, is accepted."""
        verify_standard(BODY, headers(VECTOR["signature"]), SECRET, now=STAMP + offset)

    @pytest.mark.parametrize(("offset", "word"), [(301, "too old"), (-301, "future")])
    def test_outside_tolerance(self, offset: int, word: str) -> None:
        """A timestamp more than the tolerance away is rejected, however good the signature."""
        with pytest.raises(SignatureError, match=word):
            verify_standard(BODY, headers(VECTOR["signature"]), SECRET, now=STAMP + offset)

    def test_custom_tolerance(self) -> None:
        """The tolerance is the caller's."""
        verify_standard(BODY, headers(VECTOR["signature"]), SECRET, now=STAMP + 3000, tolerance=3600)

    def test_default_now_is_the_clock(self) -> None:
        """Without now, the current time is used: the 2021 vector is far too old."""
        with pytest.raises(SignatureError, match="too old"):
            verify_standard(BODY, headers(VECTOR["signature"]), SECRET)


class TestRejects:
    @pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
    def test_missing_header(self, missing: str) -> None:
        """Each header is required."""
        given_headers = headers(VECTOR["signature"])
        del given_headers[missing]
        with pytest.raises(SignatureError, match=f"missing {missing}"):
            verify_standard(BODY, given_headers, SECRET, now=STAMP)

    @pytest.mark.parametrize("stamp", ["", "abc", "1614265330.5", "-1614265330", "1" * 30, "١٢٣"])
    def test_malformed_timestamp(self, stamp: str) -> None:
        """The timestamp is whole Unix seconds in ASCII digits."""
        given_headers = headers(VECTOR["signature"]) | {"webhook-timestamp": stamp}
        with pytest.raises(SignatureError, match="webhook-timestamp"):
            verify_standard(BODY, given_headers, SECRET, now=STAMP)

    @pytest.mark.parametrize(
        "secret", ["", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()]
    )
    def test_malformed_secret(self, secret: str) -> None:
        """A malformed secret is a SignatureError too, without the secret in the message."""
        with pytest.raises(SignatureError, match="malformed secret") as info:
            verify_standard(BODY, headers(VECTOR["signature"]), secret, now=STAMP)
        assert not secret or secret not in str(info.value)

    def test_tampered_body(self) -> None:
        """A changed body does not verify."""
        with pytest.raises(SignatureError, match="no webhook-signature matches"):
            verify_standard(BODY + b" ", headers(VECTOR["signature"]), SECRET, now=STAMP)

    def test_other_message_id(self) -> None:
        """The id is signed: another id does not verify."""
        with pytest.raises(SignatureError, match="no webhook-signature matches"):
            verify_standard(BODY, headers(VECTOR["signature"], msg_id="msg_other"), SECRET, now=STAMP)

    @pytest.mark.parametrize("weird", [{"webhook-id": None}, {1: 2}, {"webhook-id": b"\xff"}, [(b"webhook-id", 5)]])
    def test_weird_headers(self, weird: object) -> None:
        """Whatever the headers hold, only SignatureError."""
        with pytest.raises(SignatureError):
            verify_standard(BODY, weird, SECRET, now=STAMP)  # type: ignore[arg-type]

    @pytest.mark.parametrize("wrong", [None, 5, "headers", b"webhook-id: x", ["webhook-id"], [("a", "b", "c")]])
    def test_not_headers(self, wrong: object) -> None:
        """Something that is not a headers object at all is a TypeError (a programming error), not a bad request."""
        with pytest.raises(TypeError, match="headers"):
            verify_standard(BODY, wrong, SECRET, now=STAMP)  # type: ignore[arg-type]

    def test_odd_values(self) -> None:
        """A header value that is not text, an empty id and a secret that is not a str are SignatureErrors."""
        good = headers(VECTOR["signature"])
        with pytest.raises(SignatureError, match="malformed webhook-id"):
            verify_standard(BODY, good | {"webhook-id": 5}, SECRET, now=STAMP)  # type: ignore[dict-item]
        with pytest.raises(SignatureError, match="malformed webhook-id header: empty"):
            verify_standard(BODY, good | {"webhook-id": ""}, SECRET, now=STAMP)
        with pytest.raises(SignatureError, match="malformed secret #0"):
            verify_standard(BODY, good, [b"whsec_x"], now=STAMP)  # type: ignore[list-item]
        verify_standard(BODY, {k: v.encode() for k, v in good.items()}, SECRET, now=STAMP)  # type: ignore[misc]

    def test_misbehaving_headers(self) -> None:
        """Even a mapping that raises while read gives a SignatureError."""

        class Hostile(dict[str, str]):
            def items(self):  # type: ignore[no-untyped-def,override]
                raise RuntimeError("no")

        with pytest.raises(SignatureError, match="cannot verify: RuntimeError"):
            verify_standard(BODY, Hostile(), SECRET, now=STAMP)

    def test_no_secrets(self) -> None:
        """An empty list of secrets verifies nothing."""
        with pytest.raises(SignatureError, match="no secret"):
            verify_standard(BODY, headers(VECTOR["signature"]), [], now=STAMP)

    def test_str_body(self) -> None:
        """Only raw bytes are verified."""
        with pytest.raises(SignatureError, match="raw bytes"):
            verify_standard(BODY.decode(), headers(VECTOR["signature"]), SECRET, now=STAMP)  # type: ignore[arg-type]

    def test_bad_now(self) -> None:
        """A non-finite now cannot check a timestamp."""
        with pytest.raises(SignatureError, match="finite"):
            verify_standard(BODY, headers(VECTOR["signature"]), SECRET, now=float("nan"))

    @given(
        st.binary(max_size=64),
        st.dictionaries(
            st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "Webhook-Signature", "x"]),
            st.text(max_size=40),
        ),
        st.one_of(st.text(max_size=60), st.lists(st.text(max_size=60), max_size=3)),
        st.floats(allow_nan=True, allow_infinity=True) | st.none(),
    )
    def test_only_signature_errors(
        self, body: bytes, given_headers: dict[str, str], secrets: object, now: object
    ) -> None:
        """Arbitrary bodies, headers, secrets and clocks raise SignatureError and nothing else."""
        with contextlib.suppress(SignatureError):
            verify_standard(body, given_headers, secrets, now=now)  # type: ignore[arg-type]


class TestSecrets:
    def test_generated_secret(self) -> None:
        """generate_secret gives whsec_ and the base64 of 32 random bytes."""
        secret = generate_secret()
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", secret)
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
        assert generate_secret() != secret

    def test_padding_is_optional(self) -> None:
        """A secret without its base64 padding signs the same."""
        secret = generate_secret()
        assert sign_standard(BODY, secret=secret.rstrip("="), msg_id="m", timestamp=1) == sign_standard(
            BODY, secret=secret, msg_id="m", timestamp=1
        )

    def test_sign_rejects_bad_secret(self) -> None:
        """sign_standard raises ConfigError for a malformed secret, without showing it."""
        with pytest.raises(ConfigError, match="whsec_") as info:
            sign_standard(BODY, secret="not-a-secret", msg_id="m", timestamp=1)
        assert "not-a-secret" not in str(info.value)

    def test_sign_checks_types(self) -> None:
        """msg_id is a str and timestamp whole seconds."""
        with pytest.raises(TypeError, match="timestamp"):
            sign_standard(BODY, secret=SECRET, msg_id="m", timestamp=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="msg_id"):
            sign_standard(BODY, secret=SECRET, msg_id=5, timestamp=1)  # type: ignore[arg-type]


class TestInterop:
    @given(st.text(max_size=200), st.from_regex(r"evt_[A-Za-z0-9_]{1,30}", fullmatch=True))
    def test_standardwebhooks_package_verifies_ours(self, text: str, msg_id: str) -> None:
        """Signatures from flaghooks verify with the standardwebhooks package (which reads bodies as UTF-8)."""
        body = text.encode("utf-8", "surrogatepass")
        if body != text.encode("utf-8", "ignore"):
            return  # lone surrogates are not UTF-8; the package cannot read them
        secret = generate_secret()
        stamp = int(datetime.now(UTC).timestamp())
        signature = sign_standard(body, secret=secret, msg_id=msg_id, timestamp=stamp)
        Webhook(secret).verify(body, headers(signature, msg_id=msg_id, stamp=stamp), json_parse=False)

    def test_ours_verifies_standardwebhooks_package(self) -> None:
        """Signatures from the standardwebhooks package verify with flaghooks."""
        secret = generate_secret()
        when = datetime.now(UTC).replace(microsecond=0)
        signature = Webhook(secret).sign("msg_1", when, BODY.decode())
        verify_standard(BODY, headers(signature, msg_id="msg_1", stamp=int(when.timestamp())), secret)

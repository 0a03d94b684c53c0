"""verify_and_decode and verify_standard read the headers objects frameworks hand over, not only dicts.

werkzeug (Flask) and Django are test dependencies so that their real header classes are used here.
"""

from __future__ import annotations

import email.message
import http.client
import io
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from cases import vector_bytes
from flaghooks import SignatureError, generate_secret, sign_flagsmith, sign_standard, verify_standard
from flaghooks.receiver import verify_and_decode

SECRET = generate_secret()
BODY = vector_bytes("flag_updated.classic.json")


def wire_headers(body: bytes = BODY, msg_id: str = "msg_7") -> list[tuple[str, str]]:
    """The headers a flaghooks sender puts on a request signed both ways, in the case HTTP/1.1 clients send."""
    stamp = int(time.time())
    return [
        ("Content-Type", "application/json"),
        ("X-Flagsmith-Signature", sign_flagsmith(body, SECRET)),
        ("Webhook-Id", msg_id),
        ("Webhook-Timestamp", str(stamp)),
        ("Webhook-Signature", sign_standard(body, secret=SECRET, msg_id=msg_id, timestamp=stamp)),
        ("User-Agent", "flaghooks-test"),
    ]


def wsgi_environ(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(BODY))}
    for name, value in pairs:
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value
    return environ


def werkzeug_environ_headers() -> object:
    from werkzeug.datastructures import EnvironHeaders

    return EnvironHeaders(wsgi_environ(wire_headers()))


def werkzeug_headers() -> object:
    from werkzeug.datastructures import Headers

    return Headers(wire_headers())


_django_configured = False


def django_headers() -> object:
    """Django's request.headers (HttpHeaders), built by a real HttpRequest from a WSGI-style META."""
    global _django_configured
    from django.conf import settings

    if not _django_configured and not settings.configured:
        settings.configure()
    _django_configured = True
    from django.http import HttpRequest

    request = HttpRequest()
    request.META = wsgi_environ(wire_headers())
    return request.headers


def http_client_message() -> object:
    raw = "".join(f"{name}: {value}\r\n" for name, value in wire_headers()) + "\r\n"
    return http.client.parse_headers(io.BytesIO(raw.encode("latin-1")))


def email_message() -> object:
    message = email.message.Message()
    for name, value in wire_headers():
        message[name] = value
    return message


class StarletteLikeHeaders(Mapping[str, str]):
    """What Starlette's Headers is: an immutable mapping over ASGI's raw (bytes, bytes) pairs, lower-cased keys."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def __getitem__(self, key: str) -> str:
        for name, value in self.raw:
            if name == key.lower().encode("latin-1"):
                return value.decode("latin-1")
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1") for name, _ in self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def asgi_pairs() -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in wire_headers()]


HEADER_OBJECTS = {
    "werkzeug EnvironHeaders (Flask request.headers)": werkzeug_environ_headers,
    "werkzeug Headers": werkzeug_headers,
    "Django HttpHeaders (request.headers)": django_headers,
    "http.client.HTTPMessage": http_client_message,
    "email.message.Message": email_message,
    "Starlette-like Headers": lambda: StarletteLikeHeaders(asgi_pairs()),
    "a dict": lambda: dict(wire_headers()),
    "a dict, lower-case names": lambda: {name.lower(): value for name, value in wire_headers()},
    "a list of pairs": wire_headers,
    "a tuple of pairs": lambda: tuple(wire_headers()),
    "ASGI raw pairs (bytes)": asgi_pairs,
}


@pytest.mark.parametrize("make", HEADER_OBJECTS.values(), ids=list(HEADER_OBJECTS))
def test_framework_headers_verify(make: Any) -> None:
    """A genuine request verifies with the headers object as the framework has it, both signatures checked."""
    headers = make()
    event = verify_and_decode(BODY, headers, secret=SECRET, standard_secrets=SECRET)
    assert event.id == "msg_7"
    verify_standard(BODY, headers, SECRET)


@pytest.mark.parametrize("make", HEADER_OBJECTS.values(), ids=list(HEADER_OBJECTS))
def test_framework_headers_still_check(make: Any) -> None:
    """The same headers over another body fail as a SignatureError: reading them does not weaken the checks."""
    headers = make()
    with pytest.raises(SignatureError, match="does not match"):
        verify_and_decode(BODY + b" ", headers, secret=SECRET)
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify_standard(BODY + b" ", headers, SECRET)


def test_werkzeug_without_signature_is_401_material() -> None:
    """A werkzeug headers object without the signature header is a missing signature, not a type problem."""
    from werkzeug.datastructures import Headers

    with pytest.raises(SignatureError, match="missing x-flagsmith-signature"):
        verify_and_decode(BODY, Headers([("Content-Type", "application/json")]), secret=SECRET)


def test_repeated_header_first_wins() -> None:
    """A header sent twice is read once, its first value, as the old dict lookup did for a first match."""
    pairs = wire_headers()
    pairs.append(("X-Flagsmith-Signature", "0" * 64))
    assert verify_and_decode(BODY, pairs, secret=SECRET).id.startswith("evt_")


@pytest.mark.parametrize(
    "wrong",
    [None, 5, "X-Flagsmith-Signature: abc", b"raw", ["X-Flagsmith-Signature"], [("a", "b", "c")], object()],
    ids=["None", "int", "str", "bytes", "list of str", "triples", "object"],
)
def test_wrong_argument_type_is_type_error(wrong: object) -> None:
    """Something that is not a headers object at all is a TypeError naming headers, never a SignatureError."""
    with pytest.raises(TypeError, match="headers"):
        verify_and_decode(BODY, wrong, secret=SECRET)  # type: ignore[arg-type]


def test_find_header_reads_any_headers_object() -> None:
    """find_header (the one-name lookup) reads the same objects, whatever the case of the name there."""
    from werkzeug.datastructures import Headers

    from flaghooks._signing import find_header

    assert find_header(Headers(wire_headers()), "webhook-id") == "msg_7"
    assert find_header(asgi_pairs(), "webhook-id") == b"msg_7"
    assert find_header({"Other": "x"}, "webhook-id") is None
    with pytest.raises(TypeError, match="headers"):
        find_header("webhook-id: msg_7", "webhook-id")  # type: ignore[arg-type]


def test_header_names_that_are_not_text_are_skipped() -> None:
    """A name that is neither str nor bytes names no header: the request is missing its signature."""
    pairs: list[tuple[Any, str]] = [(5, sign_flagsmith(BODY, SECRET)), (None, "x")]
    with pytest.raises(SignatureError, match="missing x-flagsmith-signature"):
        verify_and_decode(BODY, pairs, secret=SECRET)


def test_unencodable_webhook_id_is_a_signature_error() -> None:
    """A webhook-id that cannot be encoded (a lone surrogate) cannot have been signed: SignatureError."""
    headers = dict(wire_headers())
    headers["Webhook-Id"] = "msg_\udc80"
    with pytest.raises(SignatureError, match="cannot verify"):
        verify_and_decode(BODY, headers, standard_secrets=SECRET)

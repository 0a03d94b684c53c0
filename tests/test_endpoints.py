"""Endpoint: validated configuration that never shows its secrets."""

from __future__ import annotations

from typing import Any

import pytest

from flaghooks import ConfigError, Endpoint, EventType, PayloadFormat, Signing, generate_secret

SECRET = generate_secret()
OLD = generate_secret()


class TestValid:
    def test_defaults(self) -> None:
        """An endpoint defaults to unsigned Flagsmith signing, enabled, every event, the dispatcher's format."""
        endpoint = Endpoint("https://hooks.example.com/flags")
        assert endpoint.signing is Signing.FLAGSMITH and endpoint.secret is None
        assert endpoint.enabled and endpoint.events is None and endpoint.format is None
        assert dict(endpoint.headers) == {} and endpoint.timeout == 10.0 and endpoint.name is None

    def test_full(self) -> None:
        """Every field can be set; events accept strings and become a frozenset of EventType."""
        endpoint = Endpoint(
            "http://hooks.example.com:8080/flags?team=web",
            secret=SECRET,
            signing=Signing.BOTH,
            previous_secrets=(OLD,),
            events={"FLAG_UPDATED", EventType.FLAG_DELETED},
            format=PayloadFormat.MODERN,
            headers={"Authorization": "Bearer t0ken"},
            timeout=2.5,
            name="web-cache",
        )
        assert endpoint.events == frozenset({EventType.FLAG_UPDATED, EventType.FLAG_DELETED})
        assert endpoint.headers["Authorization"] == "Bearer t0ken"
        assert endpoint.label == "web-cache"

    def test_headers_mapping(self) -> None:
        """Extra headers are an immutable mapping that compares with dicts."""
        headers = Endpoint("https://h.example/", headers={"X-Team": "web", "X-Env": "prod"}).headers
        assert (
            headers == {"X-Team": "web", "X-Env": "prod"} and len(headers) == 2 and list(headers) == ["X-Team", "X-Env"]
        )
        assert repr(headers) == "{'X-Team': 'web', 'X-Env': 'prod'}"
        assert headers != ["X-Team"]

    def test_flagsmith_secret_is_any_string(self) -> None:
        """A Flagsmith secret is any non-empty string."""
        assert Endpoint("https://h.example/", secret="any string at all").secret == "any string at all"

    def test_hashable_and_equal_by_value(self) -> None:
        """Endpoints are values: equal fields, equal endpoints (subscriptions rely on it)."""
        a = Endpoint("https://h.example/", headers={"X-Team": "web"})
        b = Endpoint("https://h.example/", headers={"X-Team": "web"})
        assert a == b and hash(a) == hash(b) and len({a, b}) == 1

    def test_secrets_never_in_repr(self) -> None:
        """Neither secret nor header values nor URL credentials appear in repr or str."""
        endpoint = Endpoint(
            "https://user:hunter2@h.example/x",
            secret=SECRET,
            signing=Signing.STANDARD,
            previous_secrets=(OLD,),
            headers={"Authorization": "Bearer t0ken"},
        )
        for text in (repr(endpoint), str(endpoint)):
            for secret in (SECRET, OLD, "t0ken", "hunter2", SECRET.removeprefix("whsec_")):
                assert secret not in text
        assert "https://***@h.example/x" in repr(endpoint)
        assert "Authorization" in repr(endpoint)


def rejected(**kwargs: Any) -> str:
    kwargs.setdefault("url", "https://hooks.example.com/")
    with pytest.raises(ConfigError) as info:
        Endpoint(**kwargs)
    assert isinstance(info.value, ValueError)
    return str(info.value)


class TestInvalid:
    @pytest.mark.parametrize(
        ("url", "words"),
        [
            ("", "empty"),
            ("hooks.example.com/flags", "absolute http or https"),
            ("ftp://hooks.example.com/", "scheme 'ftp'"),
            ("https:///flags", "host"),
            ("https://hooks.example.com/a b", "whitespace"),
            ("https://hooks.example.com/\x00", "control"),
            ("https://hooks.example.com/\n", "control"),
            ("https://hooks.example.com:99999/", "not a valid URL"),
            ("https://hooks.example.com/" + "a" * 2048, "2048"),
            (b"https://hooks.example.com/", "str"),
        ],
    )
    def test_urls(self, url: object, words: str) -> None:
        """Only absolute http(s) URLs with a host, at most 2048 characters, without whitespace or controls."""
        message = rejected(url=url)
        assert message.startswith("Endpoint.url") and words in message

    def test_standard_needs_a_secret(self) -> None:
        """STANDARD and BOTH without a secret are errors."""
        for signing in (Signing.STANDARD, Signing.BOTH):
            assert "Endpoint.secret is required" in rejected(signing=signing)

    @pytest.mark.parametrize("secret", ["plain-secret", "whsec_!!!!", "whsec_c2hvcnQ="])
    def test_standard_secret_format(self, secret: str) -> None:
        """A Standard Webhooks secret is whsec_ plus base64 of 24 to 64 bytes; the message never shows it."""
        message = rejected(secret=secret, signing=Signing.STANDARD)
        assert message.startswith("Endpoint.secret") and secret not in message

    def test_previous_secret_format(self) -> None:
        """Each previous secret is checked and named by position."""
        message = rejected(secret=SECRET, signing=Signing.BOTH, previous_secrets=(OLD, "nope"))
        assert message.startswith("Endpoint.previous_secrets[1]")

    def test_flagsmith_has_no_rotation(self) -> None:
        """previous_secrets under FLAGSMITH are an error."""
        assert "rotation" in rejected(secret="s", previous_secrets=("old",))

    @pytest.mark.parametrize("secret", ["", 5])
    def test_empty_or_odd_secret(self, secret: object) -> None:
        """A secret is a non-empty string."""
        assert rejected(secret=secret).startswith("Endpoint.secret")

    @pytest.mark.parametrize(
        ("headers", "words"),
        [
            ({"Content-Type": "text/plain"}, "may not set"),
            ({"user-agent": "x"}, "may not set"),
            ({"HOST": "x"}, "may not set"),
            ({"Content-Length": "1"}, "may not set"),
            ({"Transfer-Encoding": "chunked"}, "may not set"),
            ({"Connection": "close"}, "may not set"),
            ({"X-Flagsmith-Signature": "x"}, "may not set"),
            ({"webhook-signature": "x"}, "may not set"),
            ({"Webhook-Custom": "x"}, "may not set"),
            ({"X-Evil": "a\r\nInjected: yes"}, "CR or LF"),
            ({"X-Evil\n": "a"}, "CR or LF"),
            ({"Bad Name": "a"}, "not a valid header name"),
            ({"X-Null": "a\x00b"}, "control character"),
            ({"X-A": 1}, "str to str"),
            (["X-A"], "mapping"),
        ],
    )
    def test_headers(self, headers: object, words: str) -> None:
        """Extra headers may not take over the dispatcher's headers or smuggle new lines."""
        message = rejected(headers=headers)
        assert message.startswith("Endpoint.headers") and words in message

    def test_duplicate_header_names(self) -> None:
        """Two spellings of one header name are an error."""
        assert "twice" in rejected(headers={"X-Team": "a", "x-team": "b"})

    @pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "10", True])
    def test_timeout(self, timeout: object) -> None:
        """The timeout is a positive, finite number of seconds."""
        assert rejected(timeout=timeout).startswith("Endpoint.timeout")

    @pytest.mark.parametrize("events", [set(), ["FLAG_CREATED"], "FLAG_UPDATED", 5])
    def test_events(self, events: object) -> None:
        """events is None or a non-empty set of known event types."""
        assert rejected(events=events).startswith("Endpoint.events")

    @pytest.mark.parametrize(
        ("field", "value"),
        [("format", "xml"), ("signing", "hmac"), ("enabled", 1), ("name", 5), ("previous_secrets", [OLD])],
    )
    def test_other_fields(self, field: str, value: object) -> None:
        """Every field is checked and named."""
        kwargs: dict[str, Any] = {field: value}
        if field == "previous_secrets":
            kwargs.update(secret=SECRET, signing=Signing.STANDARD)
        assert rejected(**kwargs).startswith(f"Endpoint.{field}")

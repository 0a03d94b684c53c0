"""Endpoint: validated configuration that never shows its secrets."""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from flaghooks import ConfigError, Endpoint, EventType, PayloadFormat, Signing, generate_secret
from flaghooks._endpoints import FrozenHeaders

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


class TestOneParse:
    """Validation, labels, logs and the connection all come from one strict parse of the URL; anything on which
    two URL parsers could read a different host is refused."""

    @pytest.mark.parametrize(
        "url",
        [
            "http://attacker.example\\@hooks.customer.example/in",  # the spelling
            "http://hooks.customer.example\\.attacker.example/",
            "http://attacker.example\\hooks.customer.example/",
            "https://hooks.customer.example/in\\..\\admin",
            "http://user@attacker.example@hooks.customer.example/",  # two "@"
            "http://attacker.example%40hooks.customer.example/",  # an escaped "@" in the host
            "http://hooks.customer%2eexample/",
            "http://[::1%25eth0]/",  # an IPv6 zone id
            "http://[::1]x/",
            "http://[hooks.customer.example]/",
            "http://[::1/",
            "http://hooks.customer.example:80:80/",
            "http://hooks.customer.example:0/",
            "http://hooks.customer.example:+80/",
            "http://hooks\u3000customer.example/",  # an ideographic space
            "http://user:pa ss@hooks.customer.example/",
            "http://hooks.customer.example\u2100/",  # normalises to "a/c"
            "http://h\u00f6oks.customer.example\u00ad\u0000/",
            "http://us\u00e9r@hooks.customer.example/",  # non-ASCII user information
            "http://hooks.customer.example$/",
            "http:/hooks.customer.example/",
            "http:\\\\hooks.customer.example/",
            "//hooks.customer.example/",
            "http://" + "\u00e9" * 64 + ".example/",  # an internationalised label too long for IDNA
        ],
    )
    def test_ambiguous_spellings_refused(self, url: str) -> None:
        """Backslashes, a second "@", escapes, zone ids, odd ports and characters a host cannot have are refused."""
        assert rejected(url=url).startswith("Endpoint.url")

    @pytest.mark.parametrize(
        ("url", "host", "port", "target", "label"),
        [
            ("http://evil.example#@good.example/", "evil.example", 80, "/", "http://evil.example#@good.example/"),
            ("http://evil.example?@good.example/", "evil.example", 80, "/?@good.example/", None),
            ("https://u:p@Hooks.Example.COM:8443/x?y=1#frag", "hooks.example.com", 8443, "/x?y=1", None),
            ("http://[::FFFF:127.0.0.1]:81/", "::ffff:7f00:1", 81, "/", None),
            ("https://b\u00fccher.example/caf\u00e9", "xn--bcher-kva.example", 443, "/caf%C3%A9", None),
            ("http://hooks.example", "hooks.example", 80, "/", None),
            ("http://hooks.example/a%2Fb/@x", "hooks.example", 80, "/a%2Fb/@x", None),
        ],
    )
    def test_what_is_connected_to(self, url: str, host: str, port: int, target: str, label: str | None) -> None:
        """The parse the transport uses: host (lower case, IDNA, IPv6 without brackets), port and request target
        (no fragment); the label is the URL without user information."""
        from flaghooks._endpoints import parse_url

        parsed = parse_url(Endpoint(url).url)
        assert (parsed.host, parsed.port, parsed.target) == (host, port, target)
        assert Endpoint(url).label == (label or parsed.label)
        assert "u:p" not in parsed.label

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet="ab.:@/\\?#[]%1_-!$&'()*+,;=~^`{}|\"<> ", max_size=24))
    def test_parsers_agree_on_whatever_is_accepted(self, rest: str) -> None:
        """Whatever Endpoint accepts, urllib.parse and urllib3 read the same host and port from it."""
        url = "http://" + rest
        try:
            Endpoint(url)
        except ConfigError:
            return
        from flaghooks._endpoints import parse_url

        ours = parse_url(url)
        split = urlsplit(url)
        theirs = urllib3.util.parse_url(url)
        assert (split.hostname or "").strip("[]").lower() == ours.host
        assert (split.port or 80) == ours.port
        assert (theirs.host or "").strip("[]").lower() == ours.host
        assert (theirs.port or 80) == ours.port

    def test_hash_is_computed_once(self) -> None:
        """An endpoint's hash is cached: routing hashes endpoints on every publish."""
        calls = []

        class CountingHeaders(FrozenHeaders):
            def __hash__(self) -> int:
                calls.append(1)
                return super().__hash__()

        endpoint = Endpoint("https://hooks.example.com/", headers=CountingHeaders([("X-Team", "web")]))
        assert hash(endpoint) == hash(endpoint) == hash(endpoint)
        assert len(calls) == 1


class TestCheckAddress:
    """Endpoint.check_address: the transport's SSRF policy, applied when a URL is saved."""

    @pytest.mark.parametrize(
        "url",
        ["http://127.0.0.1:8080/", "http://localhost/", "https://10.1.2.3/", "http://[::1]/", "http://0x7f000001/"],
    )
    def test_private_addresses_refused(self, url: str) -> None:
        """A loopback or private address is a ConfigError naming the address and both ways to let it through."""
        with pytest.raises(ConfigError) as info:
            Endpoint(url).check_address()
        message = str(info.value)
        assert message.startswith("Endpoint.url") and "SSRF" in message
        assert "allowed_networks=" in message and "allow_private_addresses=True" in message

    def test_names_the_address(self) -> None:
        """The refused address is named, with the network to allow."""
        with pytest.raises(ConfigError, match=r"loopback address 127\.0\.0\.9 .*'127\.0\.0\.9/32'"):
            Endpoint("http://user:pw@127.0.0.9/").check_address()

    def test_letting_through(self) -> None:
        """A public address passes; allowed_networks and allow_private_addresses work as on HttpTransport."""
        Endpoint("https://93.184.216.34/").check_address()
        Endpoint("http://127.0.0.1:8080/").check_address(allowed_networks=["127.0.0.0/8"])
        Endpoint("http://10.0.0.1/").check_address(allow_private_addresses=True)
        with pytest.raises(ConfigError):
            Endpoint("http://10.0.0.1/").check_address(allowed_networks=["127.0.0.0/8"])

    def test_same_policy_as_the_transport(self) -> None:
        """The check is the transport's own: an address one refuses, the other refuses, for every special block."""
        from flaghooks.transports._address import SPECIAL_PURPOSE

        for network, _ in SPECIAL_PURPOSE:
            address = str(network[0]) if network.num_addresses == 1 else str(network[1])
            host = f"[{address}]" if network.version == 6 else address
            with pytest.raises(ConfigError, match="SSRF"):
                Endpoint(f"http://{host}/").check_address()

    def test_name_that_does_not_resolve(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A host that does not resolve cannot be vouched for: a ConfigError (no DNS query leaves this test)."""

        def fail(*args: object, **kwargs: object) -> object:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

        monkeypatch.setattr(socket, "getaddrinfo", fail)
        with pytest.raises(ConfigError, match="does not resolve"):
            Endpoint("https://nowhere.test/").check_address()

    def test_arguments_checked(self) -> None:
        """Bad networks are ConfigErrors naming check_address; a non-bool switch is a TypeError."""
        with pytest.raises(ConfigError, match=r"Endpoint\.check_address's allowed_networks"):
            Endpoint("https://93.184.216.34/").check_address(allowed_networks=["nope"])
        with pytest.raises(TypeError, match="allow_private_addresses"):
            Endpoint("https://93.184.216.34/").check_address(allow_private_addresses="yes")  # type: ignore[arg-type]

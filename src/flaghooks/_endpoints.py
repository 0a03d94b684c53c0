"""Endpoints: where events go, how they are signed, and what is sent with them."""

from __future__ import annotations

import enum
import functools
import ipaddress
import math
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import attrs

from ._events import EventType
from ._signing import standard_key
from ._wire import PayloadFormat
from .exceptions import ConfigError

__all__ = ["Endpoint", "Signing"]

MAX_URL_LENGTH = 2048
# Headers the dispatcher owns: an endpoint may not set them (any case), nor any "webhook-*" header.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "x-flagsmith-signature",
    }
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class Signing(enum.Enum):
    """How an endpoint's deliveries are signed.

    ``FLAGSMITH`` sends ``X-Flagsmith-Signature`` (when the endpoint has a secret), ``STANDARD`` sends
    Standard Webhooks' ``webhook-signature``, ``BOTH`` sends both.
    """

    FLAGSMITH = "flagsmith"
    STANDARD = "standard"
    BOTH = "both"


class FrozenHeaders(Mapping[str, str]):
    """An immutable, hashable mapping of extra headers, in the order given."""

    __slots__ = ("_items", "_lookup")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = tuple(items)
        self._lookup = dict(self._items)

    def __getitem__(self, key: str) -> str:
        return self._lookup[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup)

    def __len__(self) -> int:
        return len(self._lookup)

    def __hash__(self) -> int:
        return hash(frozenset(self._items))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self._lookup) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._lookup)


class ParsedURL(NamedTuple):
    """A web hook URL parsed once, strictly: what validation, labels, logs and the transport all use.

    ``host`` is what is resolved and checked (lower case, IDNA-encoded, an IPv6 address without brackets);
    ``target`` is the request target (path and query; the fragment is never sent); ``label`` is the URL
    without its user information.
    """

    scheme: str
    host: str
    port: int
    target: str
    host_header: str
    label: str


# Anything outside these sets in the authority is refused: it is where parsers disagree (a backslash, which
# browsers and some parsers read as "/", a second "@", percent-escapes in a host, whitespace, non-ASCII).
_USERINFO = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:%-]*")
_REG_NAME = re.compile(r"[A-Za-z0-9._-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '\\"<>^`{|}')


def _url_error(message: str) -> ValueError:
    return ValueError(message)


@functools.lru_cache(maxsize=1024)
def parse_url(url: str) -> ParsedURL:
    """Parse an absolute http(s) URL strictly; ``ValueError`` (never quoting the URL) when it is not one.

    One parse serves every use, so that what is checked, labelled and logged is what is connected to.
    """
    if not url:
        raise _url_error("must not be empty")
    bad = next((ch for ch in url if ord(ch) <= 0x20 or ord(ch) == 0x7F), None)
    if bad is not None:
        raise _url_error(f"must not contain whitespace or control characters (found {bad!r})")
    if "\\" in url:
        raise _url_error("must not contain a backslash (parsers disagree on where its host ends)")
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise _url_error("must be an absolute http or https URL")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise _url_error(f"must be an absolute http or https URL, got scheme {scheme!r}")
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if at and (not _USERINFO.fullmatch(userinfo)):
        raise _url_error("has user information with characters that must be percent-encoded (such as '@')")
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise _url_error("is not a valid URL: an IPv6 host has no closing ']'")
        literal, after = hostport[1:close], hostport[close + 1 :]
        if "%" in literal:
            raise _url_error("is not a valid URL: an IPv6 zone id names an interface of this machine")
        try:
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise _url_error("is not a valid URL: the bracketed host is not an IPv6 address") from None
        written = f"[{literal}]"
    else:
        host_text, colon, port_text = hostport.partition(":")
        after = colon + port_text
        written = host_text
        if not host_text:
            raise _url_error("must have a host")
        if not host_text.isascii():
            try:
                host_text = host_text.encode("idna").decode("ascii")
            except UnicodeError:
                raise _url_error("has a host that is not a valid internationalised domain name") from None
        if not _REG_NAME.fullmatch(host_text):
            raise _url_error("has a host with characters a host name cannot have")
        host = host_text.lower()
    default = 443 if scheme == "https" else 80
    if after:
        if not after.startswith(":") or not _PORT.fullmatch(after[1:]) or not 0 < int(after[1:]) <= 65535:
            raise _url_error("is not a valid URL: the port must be a number from 1 to 65535")
        port = int(after[1:])
    else:
        port = default
    target = tail.partition("#")[0]
    if not target.startswith("/"):
        target = "/" + target
    if not target.isascii() or any(ch not in _TARGET_SAFE for ch in target):
        target = urllib.parse.quote(target, safe=_TARGET_SAFE)
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == default else f"{shown_host}:{port}"
    label = f"{scheme}://{'***@' if at else ''}{written}{after}{tail}"
    return ParsedURL(scheme, host, port, target, host_header, label)


def redact_url(url: str) -> str:
    """The URL without its user information (``https://***@host/``), for reprs and logs.

    A URL that does not parse is shown as ``<invalid URL>``: where its credentials end cannot be known.
    """
    try:
        return parse_url(url).label
    except (ValueError, TypeError):
        return "<invalid URL>"


def _fail(field: str, message: str) -> ConfigError:
    return ConfigError(f"Endpoint.{field} {message}")


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise _fail("url", f"must be a str, got {type(url).__name__}")
    if len(url) > MAX_URL_LENGTH:
        raise _fail("url", f"must be at most {MAX_URL_LENGTH} characters, got {len(url)}")
    try:
        parse_url(url)
    except ValueError as exc:
        raise _fail("url", str(exc)) from None
    return url


def _check_headers(headers: object) -> FrozenHeaders:
    if isinstance(headers, FrozenHeaders):
        return headers
    if not isinstance(headers, Mapping):
        raise _fail("headers", f"must be a mapping of str to str, got {type(headers).__name__}")
    items = []
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise _fail("headers", f"must map str to str, got {type(name).__name__}: {type(value).__name__}")
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise _fail("headers", f"{name!r} contains CR or LF")
        if not _TOKEN.fullmatch(name):
            raise _fail("headers", f"{name!r} is not a valid header name")
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith("webhook-"):
            raise _fail("headers", f"may not set {name!r}: flaghooks sets it")
        if lower in seen:
            raise _fail("headers", f"sets {name!r} twice")
        if any((ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F for ch in value):
            raise _fail("headers", f"{name!r} has a control character in its value")
        seen.add(lower)
        items.append((name, value))
    return FrozenHeaders(items)


def _check_events(events: object) -> frozenset[EventType] | None:
    if events is None:
        return None
    if isinstance(events, str | EventType) or not isinstance(events, Iterable):
        raise _fail("events", "must be a set of EventType (or None for every event type)")
    result = set()
    for item in events:
        try:
            result.add(EventType(item))
        except ValueError:
            names = ", ".join(EventType)
            raise _fail("events", f"has unknown event type {item!r} (known: {names})") from None
    if not result:
        raise _fail("events", "is empty: such an endpoint gets nothing (use enabled=False to pause one)")
    return frozenset(result)


def _check_format(value: Any) -> PayloadFormat | None:
    if value is None:
        return None
    try:
        return PayloadFormat(value)
    except ValueError:
        raise _fail("format", f"must be a PayloadFormat or None, got {value!r}") from None


def _check_signing(value: Any) -> Signing:
    try:
        return Signing(value)
    except ValueError:
        raise _fail("signing", f"must be a Signing, got {value!r}") from None


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail("timeout", f"must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise _fail("timeout", f"must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def _secret_repr(value: object) -> str:
    return "None" if value is None else repr("***")


def _secrets_repr(value: tuple[str, ...]) -> str:
    return repr(("***",) * len(value))


@attrs.frozen(repr=False, cache_hash=True)
class Endpoint:
    """One receiver of web hooks.

    ``url`` is an absolute http or https URL (at most 2048 characters, no whitespace or control characters),
    parsed once and strictly: what two URL parsers could read differently (a backslash, a second ``@``,
    escapes or odd characters in the host, an IPv6 zone id, a port that is not a plain number) is refused,
    and the label, the logs and the connection all use that one parse. :meth:`check_address` applies the
    transport's SSRF policy when a URL is saved.
    ``secret`` signs deliveries as ``signing`` says: for ``Signing.FLAGSMITH`` any non-empty string; for
    ``STANDARD`` and ``BOTH`` a ``whsec_`` secret (see :func:`flaghooks.generate_secret`), which under
    ``BOTH`` also keys the Flagsmith signature as a whole string. ``previous_secrets`` (Standard Webhooks
    only) are still signed with while receivers rotate. ``events=None`` means every event type,
    ``format=None`` the dispatcher's default. ``headers`` are extra headers (an ``Authorization``, say).
    ``timeout`` bounds each attempt as a whole, in seconds. ``name`` labels the endpoint in results and
    logs.

    Invalid values raise :class:`ConfigError` naming the field. Secrets never appear in the repr.
    """

    url: str = attrs.field(converter=_check_url)
    secret: str | None = attrs.field(default=None, kw_only=True)
    signing: Signing = attrs.field(default=Signing.FLAGSMITH, kw_only=True, converter=_check_signing)
    previous_secrets: tuple[str, ...] = attrs.field(default=(), kw_only=True)
    enabled: bool = attrs.field(default=True, kw_only=True)
    events: frozenset[EventType] | None = attrs.field(default=None, kw_only=True, converter=_check_events)
    format: PayloadFormat | None = attrs.field(default=None, kw_only=True, converter=_check_format)
    headers: Mapping[str, str] = attrs.field(factory=FrozenHeaders, kw_only=True, converter=_check_headers)
    timeout: float = attrs.field(default=10.0, kw_only=True, converter=_check_timeout)
    name: str | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if type(self.enabled) is not bool:
            raise _fail("enabled", f"must be a bool, got {type(self.enabled).__name__}")
        if self.name is not None and not isinstance(self.name, str):
            raise _fail("name", f"must be a str or None, got {type(self.name).__name__}")
        secret, previous = self.secret, self.previous_secrets
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise _fail("secret", "must be a non-empty str or None")
        if not isinstance(previous, tuple) or not all(isinstance(s, str) for s in previous):
            raise _fail("previous_secrets", "must be a tuple of str")
        if self.signing is Signing.FLAGSMITH:
            if previous:
                raise _fail(
                    "previous_secrets",
                    "is only for Signing.STANDARD or BOTH: Flagsmith signatures have no rotation",
                )
            return
        if secret is None:
            raise _fail("secret", f"is required for Signing.{self.signing.name}")
        for field, value in [("secret", secret)] + [(f"previous_secrets[{i}]", s) for i, s in enumerate(previous)]:
            try:
                standard_key(value)
            except ValueError as exc:
                raise _fail(field, f"is not a Standard Webhooks secret: {exc}") from None

    @property
    def label(self) -> str:
        """The endpoint's name, or its URL without user information: how results and logs refer to it."""
        return self.name if self.name is not None else parse_url(self.url).label

    def check_address(self, *, allowed_networks: Sequence[str] = (), allow_private_addresses: bool = False) -> None:
        """Resolve the URL's host now and raise :class:`ConfigError` if ``HttpTransport`` would refuse it.

        The arguments are :class:`~flaghooks.transports.HttpTransport`'s, and so is the policy: call it where
        a user saves a URL, with the settings your transport has, to refuse a private or loopback address
        at once rather than at send time. A host that does not resolve is a ``ConfigError`` too. DNS answers
        change: the transport checks again at every attempt.
        """
        from .transports._address import AddressPolicy, BlockedAddress  # the transport's policy, not a copy

        if type(allow_private_addresses) is not bool:
            raise TypeError("Endpoint.check_address's allow_private_addresses must be a bool")
        policy = AddressPolicy(
            enabled=not allow_private_addresses, allowed_networks=allowed_networks, owner="Endpoint.check_address"
        )
        if not policy.enabled:
            return
        parsed = parse_url(self.url)
        try:
            policy.resolve(parsed.host, parsed.port)
        except BlockedAddress as exc:
            raise _fail("url", f"({parsed.label}) is {exc}") from None
        except (OSError, UnicodeError) as exc:
            raise _fail("url", f"({parsed.label}) has a host that does not resolve: {exc}") from None

    def __repr__(self) -> str:
        fields = [f"{redact_url(self.url)!r}"]
        defaults = attrs.fields(Endpoint)
        for field in defaults[1:]:
            value = getattr(self, field.name)
            if value == field.default or (field.name == "headers" and not value):
                continue
            if field.name == "secret":
                shown = _secret_repr(value)
            elif field.name == "previous_secrets":
                shown = _secrets_repr(value)
            elif field.name == "headers":
                shown = repr(dict.fromkeys(value, "***"))  # header values may be credentials
            else:
                shown = repr(value)
            fields.append(f"{field.name}={shown}")
        return f"Endpoint({', '.join(fields)})"

    __str__ = __repr__

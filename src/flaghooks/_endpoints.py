"""Endpoints: where events go, how they are signed, and what is sent with them."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

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


def redact_url(url: str) -> str:
    """The URL without its user information (``https://***@host/``), for reprs and logs."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def _fail(field: str, message: str) -> ConfigError:
    return ConfigError(f"Endpoint.{field} {message}")


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise _fail("url", f"must be a str, got {type(url).__name__}")
    if not url:
        raise _fail("url", "must not be empty")
    if len(url) > MAX_URL_LENGTH:
        raise _fail("url", f"must be at most {MAX_URL_LENGTH} characters, got {len(url)}")
    bad = next((ch for ch in url if ord(ch) <= 0x20 or ord(ch) == 0x7F), None)
    if bad is not None:
        raise _fail("url", f"must not contain whitespace or control characters (found {bad!r})")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise _fail("url", f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise _fail("url", f"must be an absolute http or https URL, got scheme {parts.scheme!r}")
    if not parts.hostname:
        raise _fail("url", "must have a host")
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


@attrs.frozen(repr=False)
class Endpoint:
    """One receiver of web hooks.

    ``url`` is an absolute http or https URL (at most 2048 characters, no whitespace or control characters).
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
        return self.name if self.name is not None else redact_url(self.url)

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

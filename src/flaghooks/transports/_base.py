"""The transport extension point: one attempt to deliver one request."""

from __future__ import annotations

import abc
import math
import re
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

import attrs

from .._endpoints import redact_url
from ..exceptions import ConfigError

if TYPE_CHECKING:
    from .._endpoints import Endpoint
    from .._events import WebhookEvent

__all__ = ["AttemptResult", "DeliveryRequest", "Transport", "withhold_secrets"]

# Headers whose values flaghooks computes from a secret; an endpoint's own extra headers are withheld too.
_SIGNATURE_HEADERS = frozenset({"x-flagsmith-signature", "webhook-signature"})
_SHORTEST_WITHHELD = 6  # shorter words ("Bearer", "v1,") are too common in error texts to be worth hiding


@attrs.frozen(repr=False)
class DeliveryRequest:
    """One attempt's request: POST ``body`` to ``url`` with ``headers``, within ``timeout`` seconds.

    ``body`` is the event's encoded bytes, exactly as signed; ``headers`` include the signatures; ``attempt``
    counts from 1. ``endpoint`` and ``event`` say what is being delivered, for transports that need more than
    the bytes (a chat message, say). The repr shows neither the body nor header values.
    """

    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float
    endpoint: Endpoint
    event: WebhookEvent
    attempt: int = 1

    def __repr__(self) -> str:
        return (
            f"DeliveryRequest(url={redact_url(self.url)!r}, event={self.event.id!r}, "
            f"attempt={self.attempt}, body=<{len(self.body)} bytes>, headers={sorted(self.headers)!r}, "
            f"timeout={self.timeout!r})"
        )


@attrs.frozen
class AttemptResult:
    """What one attempt came to.

    ``status`` is the HTTP status (100 to 999, as http.client reads it), or ``None`` when there was no
    response; then ``error`` must say why. ``AttemptResult(202)`` is a complete success. ``elapsed`` is
    the attempt's duration in seconds. ``retry_after`` is the response's ``Retry-After`` in seconds, when it
    had one. ``response_body`` is the start of the response body, for diagnostics (truncated).
    ``permanent`` marks an error that must not be retried (an address the SSRF policy refused, a URL that
    cannot be parsed).

    A wrong type raises ``TypeError``; a status out of range, or neither a status nor an error, raises
    :class:`~flaghooks.ConfigError`. Keep secrets out of ``error``: it is logged and shown.
    """

    status: int | None = None
    error: str | None = None
    elapsed: float = 0.0
    retry_after: float | None = None
    response_body: bytes = attrs.field(default=b"", repr=lambda body: f"<{len(body)} bytes>")
    permanent: bool = False

    def __attrs_post_init__(self) -> None:
        status, error, elapsed = self.status, self.error, self.elapsed
        if (
            type(status) is int
            and 100 <= status <= 999
            and (error is None or type(error) is str)
            and type(elapsed) is float
            and 0.0 <= elapsed < math.inf
            and self.retry_after is None
            and type(self.response_body) is bytes
            and self.permanent is False
        ):
            return  # a transport's common answer: checked in one pass
        if status is not None:
            if type(status) is not int:  # bool and IntEnum members read oddly in results and logs
                if isinstance(status, bool) or not isinstance(status, int):
                    raise TypeError(f"AttemptResult.status must be an int or None, got {type(status).__name__}")
                object.__setattr__(self, "status", int(status))
            if not 100 <= status <= 999:
                raise ConfigError(f"AttemptResult.status must be an HTTP status from 100 to 999, got {status}")
        if error is not None and not isinstance(error, str):
            raise TypeError(f"AttemptResult.error must be a str or None, got {type(error).__name__}")
        if status is None and not error:
            raise ConfigError("AttemptResult needs an error when it has no status (say why there was no response)")
        if type(elapsed) is not float:
            if isinstance(elapsed, bool) or not isinstance(elapsed, int | float):
                raise TypeError(f"AttemptResult.elapsed must be a number of seconds, got {type(elapsed).__name__}")
            object.__setattr__(self, "elapsed", float(elapsed))
        if not (0.0 <= self.elapsed < math.inf):
            raise ConfigError(f"AttemptResult.elapsed must be a finite number of seconds >= 0, got {elapsed!r}")
        if self.retry_after is not None and (
            isinstance(self.retry_after, bool) or not isinstance(self.retry_after, int | float)
        ):
            raise TypeError(
                f"AttemptResult.retry_after must be a number or None, got {type(self.retry_after).__name__}"
            )
        if not isinstance(self.response_body, bytes):
            raise TypeError(f"AttemptResult.response_body must be bytes, got {type(self.response_body).__name__}")
        if type(self.permanent) is not bool:
            raise TypeError(f"AttemptResult.permanent must be a bool, got {type(self.permanent).__name__}")


class Transport(abc.ABC):
    """Delivers a :class:`DeliveryRequest`, one attempt per :meth:`send`.

    Subclass it to deliver anywhere: implement :meth:`send`, and :meth:`close` when there is something to
    release. A transport never retries by itself (the dispatcher's retry policy does) and should report
    failures in its :class:`AttemptResult` rather than raise; if it raises anyway, the dispatcher records the
    exception as a failed attempt and retries it.
    """

    @abc.abstractmethod
    def send(self, request: DeliveryRequest) -> AttemptResult:
        """Make exactly one attempt to deliver ``request``."""

    def close(self) -> None:  # noqa: B027 - a no-op default, overridden when there is something to release
        """Release what the transport holds (connections, files). The default does nothing."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _secret_words(request: DeliveryRequest) -> list[str]:
    """What must not be shown: every secret value whole, whatever its length, and the words of a value where
    they are long enough to be worth hiding (longest first: a whole value before its words)."""
    endpoint = request.endpoint
    values = [value for name, value in request.headers.items() if name.lower() in _SIGNATURE_HEADERS]
    values += endpoint.headers.values()
    if endpoint.secret is not None:
        values.append(endpoint.secret)
    values += endpoint.previous_secrets
    for url in {request.url, endpoint.url}:
        authority = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        userinfo = authority.rpartition("@")[0]
        if userinfo:
            values += (userinfo, urllib.parse.unquote(userinfo))
            for part in userinfo.split(":"):
                values += (part, urllib.parse.unquote(part))
    words = {value for value in values if value}
    words.update(word for value in values for word in value.split() if len(word) >= _SHORTEST_WITHHELD)
    return sorted(words, key=len, reverse=True)


def withhold_secrets(text: str, request: DeliveryRequest) -> str:
    """``text`` without anything secret about ``request``: signatures, the endpoint's secrets and extra header
    values, the URL's user information (each whole, and word by word). Errors from below, or from a custom
    transport, may quote what they were given; this is applied to every error text before it is recorded.

    The URLs are first shown as their labels (user information as ``***``); a secret shorter than
    6 characters is then withheld only where it stands alone (``pw1`` in ``key pw1``, not in ``pw123abc``), so
    that a short secret cannot blank out every word containing it.
    """
    for url in {request.url, request.endpoint.url}:
        if url in text:
            text = text.replace(url, redact_url(url))
    for word in _secret_words(request):
        if word not in text:
            continue
        if len(word) >= _SHORTEST_WITHHELD:
            text = text.replace(word, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", "***", text)
    return text

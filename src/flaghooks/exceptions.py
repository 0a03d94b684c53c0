"""Exceptions raised by flaghooks.

Every error a caller can cause with bad input is a :class:`FlaghooksError`; the subclasses that describe bad
values also derive from :class:`ValueError`, so ``except ValueError`` keeps working in code written before
them.
"""

from __future__ import annotations

__all__ = ["ConfigError", "FlaghooksError", "OutboxError", "PayloadError", "SignatureError", "StoreError"]


class FlaghooksError(Exception):
    """Base class of every error flaghooks raises on purpose."""


class PayloadError(FlaghooksError, ValueError):
    """A web hook body that cannot be decoded, or an event that a payload format cannot express.

    ``path`` locates the problem inside the JSON document, as dotted keys with list indexes in brackets
    (``"data.new_state.feature.id"``, ``"data.new_state.multivariate_feature_state_values[0].id"``); it is
    ``""`` when the problem is the body as a whole. ``reason`` is the message without the path.
    """

    path: str
    reason: str

    def __init__(self, reason: str, path: str = "") -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path

    def within(self, key: str | int) -> PayloadError:
        """The same error, seen from the object that holds ``key``."""
        step = f"[{key}]" if isinstance(key, int) else key
        if not self.path:
            path = step
        elif self.path.startswith("["):
            path = step + self.path
        else:
            path = f"{step}.{self.path}"
        return PayloadError(self.reason, path)


class SignatureError(FlaghooksError):
    """A signature that is missing, malformed or does not match the body.

    Messages say which check failed, never the secret or the expected signature.
    """


class ConfigError(FlaghooksError, ValueError):
    """An invalid configuration: an endpoint, a secret, a retry policy or a subscription that cannot work.

    Raised when the object is built, so that a mistake shows where it is made and not at the first delivery.
    The message names the field; it never contains a secret.
    """


class OutboxError(FlaghooksError):
    """The SQLite outbox cannot be used: a missing directory, a file that is not a SQLite database or was
    written by a newer flaghooks, a database locked beyond the busy timeout, a full disk. The message is one
    line and names the file."""


class StoreError(FlaghooksError):
    """A flag cache's store cannot be reached or used (Redis unreachable, a SQLite file locked beyond the busy
    timeout, a store written by a newer flaghooks). Nothing of the event was applied; a receiver answers 503
    with ``Retry-After`` so that the sender retries."""

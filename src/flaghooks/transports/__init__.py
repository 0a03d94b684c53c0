"""Transports: how a delivery request reaches its endpoint.

:class:`Transport` is the extension point (one abstract method, :meth:`~Transport.send`, making exactly one
attempt). :class:`HttpTransport` is the default: a hardened urllib3 poster.
"""

from __future__ import annotations

from ._base import AttemptResult, DeliveryRequest, Transport
from ._http import HttpTransport

__all__ = ["AttemptResult", "DeliveryRequest", "HttpTransport", "Transport"]

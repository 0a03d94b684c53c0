"""What the ``flaghooks`` command's subcommands share: output lines, a quiet WSGI server (IPv4 or IPv6) and
one-line descriptions of events."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ._events import FlagChange, WebhookEvent
from ._models import AuditLogEntry, clip
from ._versions import VersionPublished

StartResponse = Callable[..., Any]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WSGIServer6(WSGIServer):
    address_family = socket.AF_INET6


def is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        return False


def serve(app: Callable[..., Iterable[bytes]], host: str, port: int) -> WSGIServer:
    # wsgiref's server is IPv4 only; an IPv6 literal needs a server class of that address family.
    if is_ipv6(host):
        return make_server(host.strip("[]"), port, app, server_class=_WSGIServer6, handler_class=_QuietHandler)
    return make_server(host, port, app, handler_class=_QuietHandler)


def url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if is_ipv6(host) else host


def out(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def describe_target(event: WebhookEvent) -> str:
    """A short human description of what an event is about."""
    data = event.data
    if isinstance(data, AuditLogEntry):
        organisation = data.project.organisation if data.project is not None else None
        return f"audit log of organisation {organisation}" if organisation is not None else "audit log"
    if isinstance(data, VersionPublished):
        return f"version {data.uuid} of {data.feature.name}"
    if not isinstance(data, FlagChange):
        return f"an event type flaghooks does not know ({clip(str(event.event_type))})"
    state = data.new_state if data.new_state is not None else data.previous_state
    assert state is not None
    where = f"{state.feature.name} in {state.environment.name or f'environment {state.environment.id}'}"
    if state.identity is not None:
        return f"{where}, identity {state.identity.identifier}"
    fs = state.feature_segment
    if fs is not None:
        segment = fs.segment.name if fs.segment is not None else f"feature segment {fs.id}"
        return f"{where}, segment {segment}"
    return where

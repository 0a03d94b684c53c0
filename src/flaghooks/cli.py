"""The ``flaghooks`` command: demo, ping, listen, sign, verify."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import __version__
from ._dispatch import Webhooks, sample_event_types
from ._endpoints import Endpoint, Signing
from ._events import EventType, FlagChange, WebhookEvent, audit_log_created, flag_changed
from ._models import (
    AuditLogEntry,
    Author,
    Environment,
    Feature,
    FeatureSegment,
    FeatureState,
    Identity,
    Project,
    Segment,
)
from ._retry import RetryPolicy
from ._signing import generate_secret, sign_flagsmith, sign_standard, standard_key, verify_flagsmith, verify_standard
from ._wire import PayloadFormat
from .exceptions import ConfigError, SignatureError
from .receiver import FlagCache, WebhookReceiver
from .transports import HttpTransport

__all__ = ["main"]

StartResponse = Callable[..., Any]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WSGIServer6(WSGIServer):
    address_family = socket.AF_INET6


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).version == 6
    except ValueError:
        return False


def _serve(app: Callable[..., Iterable[bytes]], host: str, port: int) -> WSGIServer:
    # wsgiref's server is IPv4 only; an IPv6 literal needs a server class of that address family.
    if _is_ipv6(host):
        return make_server(host.strip("[]"), port, app, server_class=_WSGIServer6, handler_class=_QuietHandler)
    return make_server(host, port, app, handler_class=_QuietHandler)


def _url_host(host: str) -> str:
    return f"[{host.strip('[]')}]" if _is_ipv6(host) else host


def _out(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, a cut marked with "..." so it is never mistaken for the whole."""
    return text if len(text) <= width else text[: width - 3] + "..."


def describe_target(event: WebhookEvent) -> str:
    """A short human description of what an event is about."""
    data = event.data
    if isinstance(data, AuditLogEntry):
        organisation = data.project.organisation if data.project is not None else None
        return f"audit log of organisation {organisation}" if organisation is not None else "audit log"
    if not isinstance(data, FlagChange):
        # A version published (its feature, when the data names one) or an event type flaghooks does not know.
        feature = getattr(data, "feature", None)
        name = getattr(feature, "name", None)
        return f"feature {name}" if isinstance(name, str) else "data flaghooks does not model"
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


def _describe_state(state: FeatureState) -> str:
    scope = "default"
    if state.identity is not None:
        scope = f"identity {state.identity.identifier}"
    elif state.feature_segment is not None:
        fs = state.feature_segment
        scope = f"segment {fs.segment.name}" if fs.segment is not None else f"feature segment {fs.id}"
    return f"{state.feature.name:<16} {scope:<26} {'on ' if state.enabled else 'off'}  {state.value!r}"


# --- demo -----------------------------------------------------------------------------------------------


class _FlakyReceiver:
    """Answers 503 to a fraction of first attempts (by webhook-id), so that retries show."""

    def __init__(self, app: Callable[..., Iterable[bytes]], rate: float, seed: int = 7) -> None:
        self.app, self.rate = app, rate
        self.random = random.Random(seed)  # noqa: S311 - a demo's coin, not cryptography
        self.seen: set[str] = set()
        self.failed = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        event_id = environ.get("HTTP_WEBHOOK_ID", "")
        first = event_id not in self.seen
        self.seen.add(event_id)
        if first and self.rate and self.random.random() < self.rate:
            self.failed += 1
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": "failing on purpose (--fail-rate)"}']
        return self.app(environ, start_response)


Step = tuple[str, Callable[[], WebhookEvent]]


def _story(start: datetime) -> tuple[list[Step], Callable[[FlagCache], list[str]]]:
    """The scripted story: (label, event builder) steps, and a check of the cache's end state (problems)."""
    project = Project(1, "Demo shop", organisation=1)
    production = Environment(10, "Production")
    created = start - timedelta(days=30)
    banner = Feature(
        id=101, name="checkout_banner", project=project, created_date=created, type="CONFIG", initial_value="red"
    )
    search = Feature(id=102, name="legacy_search", project=project, created_date=created)
    beta = FeatureSegment(id=501, segment=Segment(5, "beta_users", "Opted in to beta features"), priority=0)
    alice = Identity(9001, "alice@example.com")
    clock = iter(start + timedelta(seconds=i) for i in range(100))

    def state(feature: Feature, enabled: bool, value: Any = None, **override: Any) -> FeatureState:
        return FeatureState(feature=feature, environment=production, enabled=enabled, value=value, **override)

    banner_off = state(banner, False, "red", id=1)
    banner_on = state(banner, True, "red", id=1)
    banner_green = state(banner, True, "green", id=1)
    segment = state(banner, True, "purple", id=2, feature_segment=beta)
    identity = state(banner, True, "gold", id=3, identity=alice)
    search_on = state(search, True, id=4)
    who = "dana@example.com"

    def change(previous: FeatureState | None, new: FeatureState | None) -> Callable[[], WebhookEvent]:
        return lambda: flag_changed(previous, new, changed_by=who, timestamp=next(clock))

    def audit() -> WebhookEvent:
        entry = AuditLogEntry(
            created_date=next(clock),
            log="Flag state / Remote config value updated for feature: checkout_banner",
            related_object_type="FEATURE_STATE",
            related_object_id=1,
            author=Author(3, who, "Dana", "Admin"),
            project=project,
            environment=production,
        )
        return audit_log_created(entry)

    steps: list[Step] = [
        ("create checkout_banner", change(None, banner_off)),
        ("create legacy_search", change(None, search_on)),
        ("toggle checkout_banner on", change(banner_off, banner_on)),
        ("change its value to green", change(banner_on, banner_green)),
        ("add a beta_users segment override", change(None, segment)),
        ("add an override for alice", change(None, identity)),
        ("remove alice's override", change(identity, None)),
        ("delete legacy_search", change(search_on, None)),
        ("write an audit log entry", audit),
    ]

    def check(cache: FlagCache) -> list[str]:
        problems = []
        env = production.id
        default = cache.get(env, "checkout_banner", identity="alice@example.com")
        if default is None or (default.enabled, default.value, default.identity) != (True, "green", None):
            problems.append(f"checkout_banner should be on, 'green', with no override for alice: {default}")
        overrides = cache.segment_overrides(env, "checkout_banner")
        if [(o.enabled, o.value) for o in overrides] != [(True, "purple")]:
            problems.append(f"checkout_banner should have one segment override, on, 'purple': {overrides}")
        if cache.get(env, "legacy_search") is not None:
            problems.append("legacy_search should be gone")
        if len(cache) != 2:
            problems.append(f"the cache should hold 2 states, holds {len(cache)}")
        return problems

    return steps, check


def _demo(args: argparse.Namespace) -> int:
    fmt = PayloadFormat(args.format)
    out = sys.stdout
    secret = generate_secret()
    cache = FlagCache()
    verified: list[WebhookEvent] = []
    receiver = WebhookReceiver(secret=secret, standard_secrets=secret, cache=cache, on_event=verified.append)
    flaky = _FlakyReceiver(receiver, args.fail_rate)
    server = _serve(flaky, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/webhooks"
    steps, check = _story(datetime.now(UTC).replace(microsecond=0))
    rows = []
    policy = RetryPolicy(attempts=4, backoff=0.05, multiplier=2, max_delay=1, jitter=0.2)
    transport = HttpTransport(allowed_networks=["127.0.0.0/8"])  # the demo's receiver is on this machine
    try:
        with Webhooks(transport=transport, retry=policy, format=fmt) as hooks:
            endpoint = Endpoint(url, secret=secret, signing=Signing.BOTH, name="demo receiver")
            hooks.subscribe(endpoint, environment=10)
            hooks.subscribe(endpoint, organisation=1)
            if not args.json:
                _out(out, f"flaghooks {__version__} demo: {fmt.value} payloads to a receiver at {url}")
                _out(out, "signed with X-Flagsmith-Signature and Standard Webhooks (BOTH), verified on arrival")
                if args.fail_rate:
                    _out(out, f"the receiver answers 503 to {args.fail_rate:.0%} of first attempts")
                _out(out, "")
                _out(out, f"{'step':<36} {'event':<18} {'target':<48} {'status':>6} {'tries':>5} {'ms':>7}")
            for label, build in steps:
                event = build()
                for result in hooks.publish(event):
                    row = {
                        "step": label,
                        "event": str(result.event_type),
                        "event_id": result.event_id,
                        "target": describe_target(event),
                        "ok": result.ok,
                        "status": result.status,
                        "attempts": result.attempts,
                        "ms": round(result.elapsed * 1000, 1),
                        "error": result.error,
                    }
                    rows.append(row)
    finally:
        server.shutdown()
        server.server_close()
    problems = check(cache)
    delivered = all(row["ok"] for row in rows) and len(rows) == len(steps)
    all_verified = len(verified) == len(rows) == len(steps)
    if not delivered:
        problems.append("not every delivery succeeded")
    if not all_verified:
        problems.append(f"the receiver verified {len(verified)} of {len(rows)} deliveries")
    ok = not problems
    states = cache.states()
    if args.json:
        document = {
            "ok": ok,
            "format": fmt.value,
            "fail_rate": args.fail_rate,
            "receiver": url,
            "deliveries": rows,
            "cache": [
                {
                    "environment": s.environment.id,
                    "feature": s.feature.name,
                    "segment": s.feature_segment.segment.name
                    if s.feature_segment is not None and s.feature_segment.segment is not None
                    else None,
                    "feature_segment": s.feature_segment.id if s.feature_segment is not None else None,
                    "identity": s.identity.identifier if s.identity is not None else None,
                    "enabled": s.enabled,
                    "value": s.value,
                }
                for s in states
            ],
            "problems": problems,
        }
        _out(out, json.dumps(document, indent=2, sort_keys=True))
        return 0 if ok else 1
    for row in rows:
        status = row["status"] if row["status"] is not None else "-"
        _out(
            out,
            f"{row['step']:<36} {row['event']:<18} {_cut(str(row['target']), 48):<48} {status!s:>6} "
            f"{row['attempts']!s:>5} {row['ms']!s:>7}",
        )
    retried = sum(row["attempts"] != 1 for row in rows)
    _out(out, "")
    _out(out, f"{len(rows)} deliveries, {sum(bool(r['ok']) for r in rows)} delivered, {retried} needed a retry")
    _out(out, "")
    _out(out, f"the receiver's flag cache ({len(states)} states):")
    for state in states:
        _out(out, f"  environment {state.environment.id:<4} {_describe_state(state)}")
    _out(out, "")
    if ok:
        _out(out, "ok: every delivery was verified and the cache matches the story's end")
        return 0
    for problem in problems:
        _out(sys.stderr, f"flaghooks demo: {problem}")
    return 1


# --- secrets from the command line, the environment or a file ------------------------------------------


class _UsageError(Exception):
    """Bad usage found after parsing (a secret that cannot be read or used): one line on stderr, exit 2."""


def _add_secret(parser: argparse.ArgumentParser, flag: str, noun: str, use: str) -> None:
    """``--X``, ``--X-env NAME`` and ``--X-file PATH``: at most one of them gives the secret.

    The environment and file forms keep a secret out of ``ps`` and the shell's history.
    """
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{flag}", metavar="SECRET", help=f"{use} (seen by ps: prefer --{flag}-env or -file)")
    group.add_argument(f"--{flag}-env", metavar="NAME", help=f"read the {noun} from this environment variable")
    group.add_argument(
        f"--{flag}-file", metavar="PATH", help=f"read the {noun} from this file (a trailing newline is dropped)"
    )


def _secret(args: argparse.Namespace, flag: str) -> tuple[str | None, str]:
    """The secret given by ``--flag``, ``--flag-env`` or ``--flag-file`` (None if none), and the option's name
    as the user wrote it, for messages. Never puts the secret in a message."""
    attr = flag.replace("-", "_")
    value = getattr(args, attr)
    name = f"--{flag}"
    env = getattr(args, f"{attr}_env")
    path = getattr(args, f"{attr}_file")
    if env is not None:
        name = f"--{flag}-env {env}"
        value = os.environ.get(env)
        if value is None:
            raise _UsageError(f"{name}: the environment variable is not set")
    elif path is not None:
        name = f"--{flag}-file {path}"
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read()
        except OSError as exc:
            raise _UsageError(f"{name}: cannot read it: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise _UsageError(f"{name}: not UTF-8 text") from None
        value = value.removesuffix("\n").removesuffix("\r")
    if value is not None and not value:
        raise _UsageError(f"{name}: the secret must not be empty")
    return value, name


def _standard(secret: str, name: str) -> str:
    """``secret`` if it is a usable whsec_ secret; otherwise a usage error in the command's terms."""
    try:
        standard_key(secret)
    except ValueError as exc:
        raise _UsageError(f"{name} is not a Standard Webhooks secret: {exc}") from None
    return secret


class _Scrubber:
    """Removes what must never be printed (a secret, the credentials of a URL) from text shown to the user."""

    def __init__(self, *values: str | None) -> None:
        found = sorted({v for v in values if v}, key=len, reverse=True)  # longest first: "user:pass" before "pass"
        # A short value ("s") would be cut out of ordinary words ("must"): it is removed where it stands alone.
        self.patterns = [
            re.compile(re.escape(v) if len(v) >= 8 else rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])")
            for v in found
        ]

    def __call__(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.sub("***", text)
        return text


def _url_credentials(url: str) -> list[str]:
    """Every piece of a URL's user information that could show up in an error text.

    Parsers disagree about where user information ends (a ``#``, ``?`` or backslash in a password), and their
    errors quote what they made of it ("Port could not be cast to integer value as 'PA'"), so every piece
    between the scheme and the last ``@`` before the path counts, as written and percent-decoded.
    """
    authority = url.partition("://")[2].split("/", 1)[0]
    if "@" not in authority:
        return []
    userinfo = authority.rpartition("@")[0]
    pieces = [userinfo, *userinfo.split(":", 1), *re.split(r"[:#?\\]", userinfo)]
    pieces += [urllib.parse.unquote(piece) for piece in pieces]
    return [piece for piece in pieces if piece]


# --- ping, listen, sign, verify -------------------------------------------------------------------------

# Configuration errors of the models and the receiver, in the command's terms.
_PING_TERMS = (
    ("Endpoint.url", "the URL"),
    ("Endpoint.secret", "--secret"),
    ("Endpoint.timeout", "--timeout"),
    ("Signing.STANDARD", "--signing standard"),
    ("Signing.BOTH", "--signing both"),
)


def _ping(args: argparse.Namespace) -> int:
    secret, secret_name = _secret(args, "secret")
    scrub = _Scrubber(secret, *_url_credentials(args.url))
    signing = Signing(args.signing)
    if secret is not None and signing is not Signing.FLAGSMITH:
        _standard(secret, secret_name)
    try:
        endpoint = Endpoint(
            args.url, secret=secret, signing=signing, format=PayloadFormat(args.format), timeout=args.timeout
        )
        transport = HttpTransport(allow_private_addresses=args.allow_private)
    except ConfigError as exc:
        message = str(exc)
        for field, term in _PING_TERMS:
            message = message.replace(field, term)
        raise _UsageError(scrub(message)) from None
    with Webhooks(transport=transport) as hooks:
        result = hooks.ping(endpoint, event_type=EventType(args.event))
    ms = result.elapsed * 1000
    answer = result.history[-1].response_body[:200].decode("utf-8", "replace") if result.history else ""
    if result.ok:
        _out(sys.stdout, f"{result.status} in {ms:.0f} ms ({args.event} {result.event_id})")
        return 0
    reason = f"HTTP {result.status}" if result.status is not None else result.error
    detail = f": {answer}" if answer else ""
    _out(sys.stderr, scrub(f"failed in {ms:.0f} ms: {reason}{detail}"))
    if result.status is None and not args.allow_private and "SSRF" in (result.error or ""):
        _out(sys.stderr, "(pass --allow-private to send to this machine or a private network)")
    return 1


class _PrintRejections(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _out(sys.stdout, record.getMessage())


_SECRET_OPTIONS = [f"{flag}{form}" for flag in ("secret", "standard-secret") for form in ("", "-env", "-file")]


def _listen(args: argparse.Namespace) -> int:
    given = [f"--{name}" for name in _SECRET_OPTIONS if getattr(args, name.replace("-", "_")) is not None]
    if args.allow_unsigned and given:
        raise _UsageError(f"argument --allow-unsigned: not allowed with {given[0]}")
    secret, _ = _secret(args, "secret")
    standard, standard_name = _secret(args, "standard-secret")
    if secret is None and standard is None and not args.allow_unsigned:
        raise _UsageError(
            "give --secret (X-Flagsmith-Signature), --standard-secret (Standard Webhooks) or both "
            "(or their -env/-file forms); --allow-unsigned accepts unsigned requests, for local testing only"
        )
    if standard is not None:
        _standard(standard, standard_name)

    def show(event: WebhookEvent) -> None:
        data = event.data
        line = f"{event.event_type} {describe_target(event)}"
        if isinstance(data, FlagChange):
            if data.new_state is not None:
                line += f": enabled={data.new_state.enabled} value={data.new_state.value!r}"
            else:
                line += ": removed"
        elif isinstance(data, AuditLogEntry):
            line += f": {data.log}"
        _out(sys.stdout, f"{line} [{event.id}]")

    receiver = WebhookReceiver(
        secret=secret, standard_secrets=standard, allow_unsigned=args.allow_unsigned, on_event=show
    )
    rejections = logging.getLogger("flaghooks.receiver")
    rejections.addHandler(_PrintRejections(logging.WARNING))
    rejections.propagate = False
    try:
        server = _serve(receiver, args.host, args.port)
    except OSError as exc:
        _out(sys.stderr, f"flaghooks listen: error: cannot listen on {args.host} port {args.port}: {exc.strerror}")
        return 2

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        # Raising here (KeyboardInterrupt) would land inside the request being handled, where wsgiref's bare
        # except turns it into a 500 and serves on. Instead: let the request in flight finish, then stop.
        # shutdown() waits for the serving loop, which runs in this very thread: call it from another one.
        if stopping.is_set():  # a second signal: the user means it now, even mid-request
            sys.stdout.flush()
            os._exit(128 + signum)
        stopping.set()
        threading.Thread(target=shut_down, daemon=True).start()

    def shut_down() -> None:
        # Printed here, not in the handler: the handler may interrupt a write to stdout in this same thread.
        _out(sys.stdout, "stopping after the request in flight (signal again to stop at once)")
        server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    checks = " and ".join(
        name for name, given in (("X-Flagsmith-Signature", secret), ("Standard Webhooks", standard)) if given
    )
    _out(
        sys.stdout,
        f"listening on http://{_url_host(args.host)}:{server.server_port}/ (verifying {checks or 'nothing'}); "
        "Ctrl-C stops",
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _signing_inputs(command: str, args: argparse.Namespace) -> tuple[bytes, str, str]:
    """The body, the secret and the secret option's name for sign and verify; usage errors for the rest."""
    secret, name = _secret(args, "secret")
    if secret is None:
        raise _UsageError("one of --secret, --secret-env and --secret-file is required")
    if args.signing == "standard":
        _standard(secret, name)
        if args.id is None:
            raise _UsageError("--signing standard needs --id (the webhook-id header)")
    else:
        for option, value in (("--id", args.id), ("--timestamp", args.timestamp)):
            if value is not None:
                raise _UsageError(f"{option} applies to --signing standard only")
        if command == "verify" and args.tolerance is not None:
            raise _UsageError("--tolerance applies to --signing standard only")
    try:
        body = _read_input(args.file)
    except OSError as exc:
        raise _UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    return body, secret, name


def _sign(args: argparse.Namespace) -> int:
    body, secret, _ = _signing_inputs("sign", args)
    if args.signing == "flagsmith":
        _out(sys.stdout, sign_flagsmith(body, secret))
        return 0
    timestamp = args.timestamp if args.timestamp is not None else int(time.time())
    _out(sys.stdout, f"webhook-id: {args.id}")
    _out(sys.stdout, f"webhook-timestamp: {timestamp}")
    _out(sys.stdout, f"webhook-signature: {sign_standard(body, secret=secret, msg_id=args.id, timestamp=timestamp)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    body, secret, _ = _signing_inputs("verify", args)
    try:
        if args.signing == "flagsmith":
            verify_flagsmith(body, args.signature, secret)
        else:
            if args.timestamp is None:
                raise _UsageError("--signing standard needs --timestamp (the webhook-timestamp header)")
            headers = {
                "webhook-id": args.id,
                "webhook-timestamp": str(args.timestamp),
                "webhook-signature": args.signature,
            }
            tolerance = args.tolerance if args.tolerance is not None else 300.0
            verify_standard(body, headers, secret, tolerance=tolerance)
    except SignatureError as exc:
        _out(sys.stderr, f"invalid: {exc}")
        return 1
    _out(sys.stdout, "valid")
    return 0


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def _seconds(positive: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(f"must be a finite number of seconds above 0, got {text}")
        return value

    return parse


def _unix_time(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise argparse.ArgumentTypeError(f"not Unix seconds: {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flaghooks", description="Feature-flag web hooks: send, receive, sign, verify.")
    parser.add_argument("--version", action="version", version=f"flaghooks {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="the command to run")
    formats = [f.value for f in PayloadFormat]

    demo = commands.add_parser(
        "demo",
        help="play a scripted story through Webhooks to a local receiver",
        description="Start a verifying receiver with a flag cache on 127.0.0.1, play a scripted story of flag "
        "changes through Webhooks and the real HTTP transport, and show the deliveries and the cache. Exits 0 "
        "only when every delivery was verified and the cache matches the story's end state.",
    )
    demo.add_argument("--format", choices=formats, default="classic", help="payload format (default: classic)")
    demo.add_argument(
        "--fail-rate", type=_fraction, default=0.0, metavar="F", help="answer 503 to this fraction of first attempts"
    )
    demo.add_argument("--json", action="store_true", help="print one JSON document and nothing else")
    demo.set_defaults(run=_demo)

    ping = commands.add_parser(
        "ping",
        help="send one sample event to a URL (Flagsmith's 'test web hook')",
        description="Send one realistic sample event, one attempt; exit 0 on a 2xx, 1 otherwise (the reason "
        "on stderr). Nothing printed shows the secret or the URL's credentials.",
    )
    ping.add_argument("url", help="the endpoint's URL")
    _add_secret(ping, "secret", "secret", "sign with this secret (a whsec_ secret for --signing standard or both)")
    ping.add_argument(
        "--signing",
        choices=[s.value for s in Signing],
        default="flagsmith",
        help="X-Flagsmith-Signature, Standard Webhooks or both (default: flagsmith)",
    )
    ping.add_argument("--format", choices=formats, default="classic", help="payload format (default: classic)")
    ping.add_argument(
        "--event",
        choices=[e.value for e in sample_event_types()],
        default="FLAG_UPDATED",
        help="the sample event's type (default: FLAG_UPDATED)",
    )
    ping.add_argument(
        "--timeout",
        type=_seconds(positive=True),
        default=10.0,
        metavar="SECONDS",
        help="give up on the attempt after this long, connecting and reading included (default: 10)",
    )
    ping.add_argument(
        "--allow-private",
        action="store_true",
        help="allow loopback and private addresses (off by default: the SSRF policy)",
    )
    ping.set_defaults(run=_ping)

    listen = commands.add_parser(
        "listen",
        help="serve a verifying receiver and print each event",
        description="Serve a WebhookReceiver and print one line per verified event, and why for each rejected "
        "request. Give --secret, --standard-secret or both (each also as -env or -file), or --allow-unsigned. "
        "SIGTERM or Ctrl-C finishes the request in flight and exits 0; a second one exits at once.",
    )
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on, IPv4 or IPv6 (default: 127.0.0.1)")
    listen.add_argument("--port", type=_port, default=8000, help="default: 8000 (0: any free port)")
    _add_secret(listen, "secret", "secret", "require X-Flagsmith-Signature with this secret")
    _add_secret(
        listen,
        "standard-secret",
        "whsec_ secret",
        "require Standard Webhooks signatures with this whsec_ secret",
    )
    listen.add_argument("--allow-unsigned", action="store_true", help="accept unsigned requests (testing only)")
    listen.set_defaults(run=_listen)

    sign = commands.add_parser(
        "sign",
        help="print the signature of a body",
        description="Print the X-Flagsmith-Signature of a body, or with --signing standard the three Standard "
        "Webhooks headers (webhook-id, webhook-timestamp, webhook-signature) to send with it.",
    )
    verify = commands.add_parser(
        "verify",
        help="check the signature of a body",
        description="Exit 0 when the signature is valid for the body, 1 otherwise (the reason on stderr).",
    )
    for sub in (sign, verify):
        _add_secret(sub, "secret", "secret", "the secret (a whsec_ secret for --signing standard)")
        sub.add_argument(
            "--signing",
            choices=["flagsmith", "standard"],
            default="flagsmith",
            help="X-Flagsmith-Signature or Standard Webhooks' webhook-signature (default: flagsmith)",
        )
        sub.add_argument("--id", metavar="ID", help="the webhook-id (required with --signing standard)")
        sub.add_argument(
            "--timestamp",
            type=_unix_time,
            metavar="UNIX",
            help="the webhook-timestamp in Unix seconds (--signing standard; sign defaults to now)"
            if sub is sign
            else "the webhook-timestamp in Unix seconds (required with --signing standard)",
        )
        sub.add_argument("file", nargs="?", default="-", help="the body (default: standard input)")
    verify.add_argument(
        "--signature",
        required=True,
        help="the X-Flagsmith-Signature, or the webhook-signature header (v1,... possibly several)",
    )
    verify.add_argument(
        "--tolerance",
        type=_seconds(positive=False),
        metavar="SECONDS",
        help="--signing standard: how far webhook-timestamp may be from now (default: 300); "
        "raise it to check a request captured earlier",
    )
    sign.set_defaults(run=_sign)
    verify.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except _UsageError as exc:
        _out(sys.stderr, f"flaghooks {args.command}: error: {exc}")
        return 2


def _entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())

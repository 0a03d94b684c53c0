"""The ``flaghooks`` command: demo, ping, listen, sign, verify."""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TextIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import __version__
from ._dispatch import Webhooks
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
from ._signing import generate_secret, sign_flagsmith, verify_flagsmith
from ._versions import VersionPublished
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


def _serve(app: Callable[..., Iterable[bytes]], host: str, port: int) -> WSGIServer:
    return make_server(host, port, app, handler_class=_QuietHandler)


def _out(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def describe_target(event: WebhookEvent) -> str:
    """A short human description of what an event is about."""
    data = event.data
    if isinstance(data, VersionPublished):
        return f"version {data.uuid} of {data.feature.name}"
    if not isinstance(data, FlagChange | AuditLogEntry):
        return "an event type flaghooks does not know"
    if not isinstance(data, FlagChange):
        organisation = data.project.organisation if data.project is not None else None
        return f"audit log of organisation {organisation}" if organisation is not None else "audit log"
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
            f"{row['step']:<36} {row['event']:<18} {str(row['target'])[:48]:<48} {status!s:>6} "
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


# --- ping, listen, sign, verify -------------------------------------------------------------------------


def _ping(args: argparse.Namespace) -> int:
    signing = Signing(args.signing)
    try:
        endpoint = Endpoint(args.url, secret=args.secret, signing=signing, format=PayloadFormat(args.format))
        transport = HttpTransport(allow_private_addresses=args.allow_private)
    except ConfigError as exc:
        _out(sys.stderr, f"flaghooks ping: error: {exc}")
        return 2
    with Webhooks(transport=transport) as hooks:
        result = hooks.ping(endpoint, event_type=EventType(args.event))
    ms = result.elapsed * 1000
    answer = result.history[-1].response_body[:200].decode("utf-8", "replace") if result.history else ""
    if result.ok:
        _out(sys.stdout, f"{result.status} in {ms:.0f} ms ({args.event} {result.event_id})")
        return 0
    reason = f"HTTP {result.status}" if result.status is not None else result.error
    detail = f": {answer}" if answer else ""
    _out(sys.stdout, f"failed in {ms:.0f} ms: {reason}{detail}")
    if result.status is None and not args.allow_private and "SSRF" in (result.error or ""):
        _out(sys.stdout, "(pass --allow-private to send to this machine or a private network)")
    return 1


class _PrintRejections(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _out(sys.stdout, record.getMessage())


def _listen(args: argparse.Namespace) -> int:
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

    try:
        receiver = WebhookReceiver(
            secret=args.secret,
            standard_secrets=args.standard_secret,
            allow_unsigned=args.allow_unsigned,
            on_event=show,
        )
    except ConfigError as exc:
        _out(sys.stderr, f"flaghooks listen: error: {exc}")
        return 2
    rejections = logging.getLogger("flaghooks.receiver")
    rejections.addHandler(_PrintRejections(logging.WARNING))
    rejections.propagate = False
    try:
        server = _serve(receiver, args.host, args.port)
    except OSError as exc:
        _out(sys.stderr, f"flaghooks listen: error: cannot listen on {args.host}:{args.port}: {exc.strerror}")
        return 2

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the server as Ctrl-C does: cleanly

    signal.signal(signal.SIGTERM, stop)
    checks = "X-Flagsmith-Signature" if args.secret else "Standard Webhooks" if args.standard_secret else "nothing"
    _out(sys.stdout, f"listening on http://{args.host}:{server.server_port}/ (verifying {checks}); Ctrl-C stops")
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _body_for(command: str, args: argparse.Namespace) -> bytes | None:
    """The bytes to sign or verify; None (after a one-line error) when the secret or the input is unusable."""
    if not args.secret:
        _out(sys.stderr, f"flaghooks {command}: error: the secret must not be empty")
        return None
    try:
        return _read_input(args.file)
    except OSError as exc:
        _out(sys.stderr, f"flaghooks {command}: error: cannot read {args.file}: {exc.strerror}")
        return None


def _sign(args: argparse.Namespace) -> int:
    body = _body_for("sign", args)
    if body is None:
        return 2
    _out(sys.stdout, sign_flagsmith(body, args.secret))
    return 0


def _verify(args: argparse.Namespace) -> int:
    body = _body_for("verify", args)
    if body is None:
        return 2
    try:
        verify_flagsmith(body, args.signature, args.secret)
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


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flaghooks", description="Feature-flag web hooks: send, receive, sign, verify.")
    parser.add_argument("--version", action="version", version=f"flaghooks {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
        description="Send one realistic sample event, one attempt; exit 0 on a 2xx, 1 otherwise.",
    )
    ping.add_argument("url", help="the endpoint's URL")
    ping.add_argument("--secret", help="sign with this secret")
    ping.add_argument("--signing", choices=[s.value for s in Signing], default="flagsmith", help="default: flagsmith")
    ping.add_argument("--format", choices=formats, default="classic", help="payload format (default: classic)")
    ping.add_argument("--event", choices=[e.value for e in EventType], default="FLAG_UPDATED")
    ping.add_argument(
        "--allow-private",
        action="store_true",
        help="allow loopback and private addresses (off by default: the SSRF policy)",
    )
    ping.set_defaults(run=_ping)

    listen = commands.add_parser(
        "listen",
        help="serve a verifying receiver and print each event",
        description="Serve a WebhookReceiver and print one line per verified event, and why for each rejected request.",
    )
    listen.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    listen.add_argument("--port", type=_port, default=8000, help="default: 8000 (0: any free port)")
    auth = listen.add_mutually_exclusive_group(required=True)
    auth.add_argument("--secret", help="require X-Flagsmith-Signature with this secret")
    auth.add_argument("--standard-secret", help="require Standard Webhooks signatures with this whsec_ secret")
    auth.add_argument("--allow-unsigned", action="store_true", help="accept unsigned requests (testing only)")
    listen.set_defaults(run=_listen)

    sign = commands.add_parser(
        "sign", help="print the X-Flagsmith-Signature of a body", description="Print the Flagsmith signature."
    )
    sign.add_argument("--secret", required=True)
    sign.add_argument("file", nargs="?", default="-", help="the body (default: standard input)")
    sign.set_defaults(run=_sign)

    verify = commands.add_parser(
        "verify",
        help="check an X-Flagsmith-Signature",
        description="Exit 0 when the signature is valid for the body, 1 otherwise.",
    )
    verify.add_argument("--secret", required=True)
    verify.add_argument("--signature", required=True)
    verify.add_argument("file", nargs="?", default="-", help="the body (default: standard input)")
    verify.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


def _entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())

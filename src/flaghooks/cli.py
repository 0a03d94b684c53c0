"""The ``flaghooks`` command: demo, ping, listen, sign, verify, outbox."""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import __version__
from ._cli_cache import CacheUsageError, add_cache_options, describe_cache, open_cache, scrub, seed_cache
from ._cli_common import describe_target, out, serve, url_host
from ._cli_demo import run_demo
from ._cli_demo_background import run_background_demo
from ._cli_outbox import add_outbox_command
from ._dispatch import Webhooks, sample_event_types
from ._endpoints import Endpoint, Signing
from ._events import EventType, FlagChange, WebhookEvent
from ._models import AuditLogEntry
from ._signing import sign_flagsmith, sign_standard, standard_key, verify_flagsmith, verify_standard
from ._wire import PayloadFormat
from .exceptions import ConfigError, FlaghooksError, SignatureError
from .receiver import WebhookReceiver
from .transports import HttpTransport

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    return run_background_demo(args) if args.background else run_demo(args)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


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
        out(sys.stdout, f"{result.status} in {ms:.0f} ms ({args.event} {result.event_id})")
        return 0
    reason = f"HTTP {result.status}" if result.status is not None else result.error
    detail = f": {answer}" if answer else ""
    out(sys.stderr, scrub(f"failed in {ms:.0f} ms: {reason}{detail}"))
    if result.status is None and not args.allow_private and "SSRF" in (result.error or ""):
        out(sys.stderr, "(pass --allow-private to send to this machine or a private network)")
    return 1


class _PrintRejections(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        out(sys.stdout, record.getMessage())


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
        out(sys.stdout, f"{line} [{event.id}]")

    try:
        cache, key = open_cache(args)
    except CacheUsageError as exc:
        raise _UsageError(str(exc)) from None
    except FlaghooksError as exc:  # a store that cannot be opened
        out(sys.stderr, f"flaghooks listen: error: {scrub(args, exc)}")
        return 1
    # Every ConfigError the receiver could raise was checked above, in the command's terms.
    receiver = WebhookReceiver(
        secret=secret, standard_secrets=standard, allow_unsigned=args.allow_unsigned, on_event=show, cache=cache
    )
    rejections = logging.getLogger("flaghooks.receiver")
    rejections.addHandler(_PrintRejections(logging.WARNING))
    rejections.propagate = False
    try:
        server = serve(receiver, args.host, args.port)
    except OSError as exc:
        out(sys.stderr, f"flaghooks listen: error: cannot listen on {args.host} port {args.port}: {exc.strerror}")
        receiver.cache.close()
        return 2
    # Bound first, seeded second: deliveries arriving meanwhile wait, and the ordering rules make the order irrelevant.
    if key is not None and not seed_cache(args, key, receiver.cache, server):
        return 1

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
        out(sys.stdout, "stopping after the request in flight (signal again to stop at once)")
        server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    checks = " and ".join(
        name for name, given in (("X-Flagsmith-Signature", secret), ("Standard Webhooks", standard)) if given
    )
    out(
        sys.stdout,
        f"listening on http://{url_host(args.host)}:{server.server_port}/ (verifying {checks or 'nothing'}"
        f"{describe_cache(args)}); "
        "Ctrl-C stops",
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        receiver.cache.close()
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
        out(sys.stdout, sign_flagsmith(body, secret))
        return 0
    timestamp = args.timestamp if args.timestamp is not None else int(time.time())
    out(sys.stdout, f"webhook-id: {args.id}")
    out(sys.stdout, f"webhook-timestamp: {timestamp}")
    out(sys.stdout, f"webhook-signature: {sign_standard(body, secret=secret, msg_id=args.id, timestamp=timestamp)}")
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
        out(sys.stderr, f"invalid: {exc}")
        return 1
    out(sys.stdout, "valid")
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
    demo.add_argument(
        "--background",
        action="store_true",
        help="publish through BackgroundDelivery to two healthy endpoints, a slow one and a dead one",
    )
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
    add_cache_options(listen)
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
    add_outbox_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except _UsageError as exc:
        out(sys.stderr, f"flaghooks {args.command}: error: {exc}")
        return 2


def _entry() -> None:  # pragma: no cover - the console script
    sys.exit(main())

"""``flaghooks outbox``: inspect and repair a SQLite outbox (stats, list, show, replay, prune, enable) and run
its workers (work)."""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import logging
import math
import os
import re
import sqlite3
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from ._cli_common import out
from ._dispatch import Webhooks
from ._outbox import OutboxDelivery
from ._outbox_schema import SCHEMA, STATES, fault
from ._outbox_store import SqliteOutbox
from .exceptions import OutboxError

__all__ = ["add_outbox_command"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class _UsageError(Exception):
    """Bad usage found after parsing (a file that is not there): one line on stderr, exit 2."""


def _duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``: a non-negative length of time."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration (like 90, 15m, 12h or 7d): {text!r}")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds > 1e10:
        raise argparse.ArgumentTypeError(f"too long a duration: {text!r}")
    return timedelta(seconds=seconds)


def _since(text: str) -> datetime:
    """A moment: a duration back from now (``12h``) or an ISO 8601 time (UTC unless it names its offset)."""
    try:
        return datetime.now(UTC) - _duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration back from now (like 12h) or an ISO 8601 time (like 2026-05-02T10:00): {text!r}"
        ) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first moment a datetime holds
        raise argparse.ArgumentTypeError(f"not a time a datetime can hold in UTC: {text!r}") from None


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def _positive_seconds(text: str) -> float:
    seconds = _duration(text).total_seconds()
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return seconds


# --- output ---------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A record's field as JSON has it: times in ISO 8601, bytes as text, enums by value."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _record(record: Any) -> dict[str, Any]:
    return attrs.asdict(record, recurse=False, value_serializer=lambda _i, _a, value: _plain(value))


def _json(document: object) -> None:
    out(sys.stdout, json.dumps(document, indent=2, ensure_ascii=False))


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return _when(value)
    text = " ".join(str(_plain(value)).split())  # one line per row, whatever an error or a body holds
    if not text.isprintable():  # a receiver's answer may hold terminal escape sequences: show them, escaped
        text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return text


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, clip_last: int = 80) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    for row in cells:
        if len(row[-1]) > clip_last:
            row[-1] = row[-1][: clip_last - 3] + "..."
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    for row in [list(headers), *cells]:
        out(sys.stdout, "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- the subcommands ------------------------------------------------------------------------------------


def _stats(outbox: SqliteOutbox, args: argparse.Namespace) -> int:
    counts = outbox.counts()
    disabled = outbox.disabled()
    if args.json:
        _json({"path": args.db, "counts": counts, "total": sum(counts.values()), "disabled": disabled})
        return 0
    width = max(len(state) for state in counts)
    for state, count in counts.items():
        out(sys.stdout, f"{state.ljust(width)}  {count:>9}")
    out(sys.stdout, f"{'total'.ljust(width)}  {sum(counts.values()):>9}")
    for key, reason in disabled.items():
        out(sys.stdout, f"disabled: {key} ({_cell(reason)}); `flaghooks outbox enable` lifts it")
    return 0


def _list(outbox: SqliteOutbox, args: argparse.Namespace) -> int:
    # One more than asked for: whether there are more to show.
    records = outbox.deliveries(state=args.state, endpoint=args.endpoint, since=args.since, limit=args.limit + 1)
    more = len(records) > args.limit
    records = records[: args.limit]
    if args.json:
        _json([_record(record) for record in records])
        return 0
    if not records:
        out(sys.stdout, "no deliveries match")
        return 0
    _table(
        ("id", "event", "endpoint", "state", "tries", "status", "created", "next attempt", "last error"),
        [
            (
                r.id,
                r.event_type,
                r.endpoint_key,
                r.state,
                r.attempts,
                r.last_status,
                r.created_at,
                r.next_attempt_at if r.state == "pending" else None,
                r.last_error,
            )
            for r in records
        ],
    )
    if more:
        out(sys.stdout, f"(the newest {args.limit}; raise --limit to see more)")
    return 0


def _show(outbox: SqliteOutbox, args: argparse.Namespace) -> int:
    record = outbox.get(args.id)
    if record is None:
        raise OutboxError(f"no delivery {args.id!r} in {args.db}")
    attempts = outbox.attempts(args.id)
    if args.json:
        _json({"delivery": _record(record), "attempts": [_record(attempt) for attempt in attempts]})
        return 0
    fields = _record(record)
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        out(sys.stdout, f"{name.ljust(width)}  {_cell(value)}")
    if not attempts:
        out(sys.stdout, "no attempts yet")
        return 0
    out(sys.stdout, "")
    _table(
        ("attempt", "at", "status", "ms", "error", "answer"),
        [
            (a.number, a.at, a.status, f"{a.elapsed * 1000:.1f}", a.error, a.response_body.decode("utf-8", "replace"))
            for a in attempts
        ],
    )
    return 0


def _replay(outbox: SqliteOutbox, args: argparse.Namespace) -> int:
    if not (args.ids or args.endpoint or args.since or args.all):
        raise _UsageError("say which deliveries: give IDs, --endpoint, --since or --all (every dead delivery)")
    if args.all and (args.ids or args.endpoint or args.since):
        raise _UsageError("--all replays every dead delivery: give it alone")
    count = outbox.replay(args.ids or None, endpoint=args.endpoint, since=args.since)
    if args.json:
        _json({"replayed": count})
    else:
        out(sys.stdout, f"replayed {count} {'delivery' if count == 1 else 'deliveries'}: pending again")
    return 0


def _prune(outbox: SqliteOutbox, args: argparse.Namespace) -> int:
    states = tuple(dict.fromkeys(args.states or ["delivered"]))
    count = outbox.prune(args.older_than, states=states)
    if args.json:
        _json({"pruned": count, "states": list(states), "older_than": args.older_than.total_seconds()})
    else:
        noun = "delivery" if count == 1 else "deliveries"
        out(sys.stdout, f"pruned {count} {noun} ({', '.join(states)}) older than {_age(args.older_than)}")
    return 0


def _enable(outbox: SqliteOutbox, args: argparse.Namespace) -> int:
    lifted = outbox.enable(args.key)
    if args.json:
        _json({"endpoint": args.key, "enabled": True, "was_disabled": bool(lifted)})
    elif lifted:
        out(sys.stdout, f"{args.key}: enabled (its workers send to it again)")
    else:
        out(sys.stdout, f"{args.key}: was not disabled")
    return 0


def _age(length: timedelta) -> str:
    seconds = length.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:.0f}{unit}"
    return f"{seconds:g}s"


def _open(path: str) -> SqliteOutbox:
    # SqliteOutbox creates a missing file, and the outbox's tables in a database without them; an inspection
    # must do neither: a mistyped path, or the wrong database, is an error.
    if not os.path.exists(path):
        raise _UsageError(f"--db {path}: no such file")
    if os.path.isdir(path):
        raise _UsageError(f"--db {path}: a directory, not an outbox file")
    try:
        connection = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True)
        try:
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SCHEMA,))
            is_outbox = found.fetchone() is not None
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise fault(path, exc) from None
    if not is_outbox:
        raise OutboxError(f"{path} is a SQLite database without an outbox in it (no {SCHEMA} table)")
    return SqliteOutbox(path)


def _factory(spec: str) -> Callable[[], object]:
    """``module:function`` (``package.module:function``) imported: the function that builds the Webhooks."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise _UsageError(f"--app {spec}: give module:function, e.g. myapp.hooks:make_webhooks")
    # As gunicorn and uvicorn do: the app's modules are found from the current directory, which a console
    # script (unlike ``python -m``) does not put on the path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"--app {spec}: cannot import {module_name}: {exc}") from None
    except Exception as exc:  # the app's own module failed as it was imported: say so in one line, as for make()
        raise _UsageError(f"--app {spec}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise _UsageError(f"--app {spec}: {module_name} has no {attribute}")
        target = getattr(target, part)
    if not callable(target):
        raise _UsageError(f"--app {spec}: {attribute} is not callable")
    return target


def _work(args: argparse.Namespace) -> int:
    """Run workers on the file in this process until SIGTERM or SIGINT."""
    where = "flaghooks outbox work"
    try:
        make = _factory(args.app)
        try:
            webhooks = make()
        except Exception as exc:  # the app's own code: say where it failed, in one line
            raise _UsageError(f"--app {args.app} raised {type(exc).__name__}: {exc}") from None
        if not isinstance(webhooks, Webhooks):
            raise _UsageError(f"--app {args.app}: returned {type(webhooks).__name__}, not a flaghooks.Webhooks")
    except _UsageError as exc:
        out(sys.stderr, f"{where}: error: {exc}")
        return 2
    if not logging.getLogger().handlers:  # the app's own logging configuration wins
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        with webhooks, SqliteOutbox(args.db) as outbox:
            delivery = OutboxDelivery(
                webhooks,
                outbox,
                workers=args.workers,
                per_endpoint=args.per_endpoint,
                poll_interval=args.poll_interval,
            )
            out(
                sys.stderr,
                f"{where}: delivering from {args.db} with {args.workers} workers; SIGTERM or Ctrl-C stops "
                "(attempts in flight are finished first)",
            )
            delivery.run()
            counts = outbox.counts()
    except OutboxError as exc:
        out(sys.stderr, f"{where}: error: {exc}")
        return 1
    summary = ", ".join(f"{count} {state}" for state, count in counts.items())
    out(sys.stderr, f"{where}: stopped; the outbox holds {summary}")
    return 0


def _run(args: argparse.Namespace) -> int:
    action: Callable[[SqliteOutbox, argparse.Namespace], int] = args.action
    where = f"flaghooks outbox {args.outbox_command}"
    try:
        outbox = _open(args.db)
        try:
            return action(outbox, args)
        finally:
            outbox.close()
    except _UsageError as exc:
        out(sys.stderr, f"{where}: error: {exc}")
        return 2
    except OutboxError as exc:
        out(sys.stderr, f"{where}: error: {exc}")
        return 1


def add_outbox_command(commands: Any) -> None:
    """Add ``outbox`` and its subcommands to the command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", required=True, metavar="PATH", help="the outbox's SQLite file")
    common.add_argument("--json", action="store_true", help="print one JSON document and nothing else")

    outbox = commands.add_parser(
        "outbox",
        help="inspect and repair a SQLite outbox",
        description="Inspect and repair the SQLite outbox that OutboxDelivery keeps its deliveries in (see "
        "docs/outbox.md). Every subcommand takes --db PATH and --json. A file that does not exist is bad usage "
        "(exit 2); a file that is not an outbox, or one that stays locked, exits 1.",
    )
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION", help="what to do")

    stats = actions.add_parser(
        "stats",
        parents=[common],
        help="how many deliveries are in each state",
        description="Count deliveries by state.",
    )
    stats.set_defaults(run=_run, action=_stats)

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list deliveries, newest first",
        description="List deliveries (newest first) with their state, attempts and last outcome.",
    )
    listing.add_argument("--state", choices=STATES, help="only deliveries in this state")
    listing.add_argument("--endpoint", metavar="KEY", help="only deliveries to this endpoint (its name, else its URL)")
    listing.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only deliveries created since then: a duration back from now (12h, 7d) or an ISO 8601 time",
    )
    listing.add_argument("--limit", type=_limit, default=100, metavar="N", help="at most this many (default: 100)")
    listing.set_defaults(run=_run, action=_list)

    show = actions.add_parser(
        "show",
        parents=[common],
        help="one delivery and its attempts",
        description="Show one delivery and every attempt made for it (status, error, time, the answer's start).",
    )
    show.add_argument("id", metavar="ID", help="the delivery's id")
    show.set_defaults(run=_run, action=_show)

    replay = actions.add_parser(
        "replay",
        parents=[common],
        help="send dead deliveries again",
        description="Put dead deliveries back to pending, with their delivery id and webhook-id unchanged so "
        "that receivers can de-duplicate; the workers send them again. A delivered one is sent again only when "
        "named by its id. Prints how many.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="these deliveries (dead or delivered)")
    replay.add_argument("--endpoint", metavar="KEY", help="the dead deliveries to this endpoint")
    replay.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="the dead deliveries created since then: a duration back from now (12h, 7d) or an ISO 8601 time",
    )
    replay.add_argument("--all", action="store_true", help="every dead delivery")
    replay.set_defaults(run=_run, action=_replay)

    prune = actions.add_parser(
        "prune",
        parents=[common],
        help="delete old finished deliveries",
        description="Delete deliveries (and their attempts) in the given states last changed longer ago than "
        "--older-than. Prints how many.",
    )
    prune.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="AGE",
        help="last changed at least this long ago: seconds, or with a unit (90s, 15m, 12h, 7d, 2w)",
    )
    prune.add_argument(
        "--state",
        dest="states",
        action="append",
        choices=("delivered", "dead"),
        help="prune deliveries in this state (repeat for both; default: delivered)",
    )
    prune.set_defaults(run=_run, action=_prune)

    enable = actions.add_parser(
        "enable",
        parents=[common],
        help="lift an endpoint's durable disable",
        description="Let the workers send to an endpoint again after a 410 or the breaker disabled it.",
    )
    enable.add_argument("key", metavar="KEY", help="the endpoint's key (its name, else its URL)")
    enable.set_defaults(run=_run, action=_enable)

    work = actions.add_parser(
        "work",
        help="run outbox workers in this process",
        description="Deliver from the outbox in this process until SIGTERM or SIGINT (attempts in flight are "
        "finished first): OutboxDelivery(...).run() for a systemd service or a container. --app names a "
        "function that returns the flaghooks.Webhooks to send with (its subscriptions, transport, retry policy "
        "and on_result), made as the app makes it. The file is created if it does not exist yet. Log lines go "
        "to stderr unless the app configures logging.",
    )
    work.add_argument("--db", required=True, metavar="PATH", help="the outbox's SQLite file")
    work.add_argument(
        "--app",
        required=True,
        metavar="MODULE:FUNCTION",
        help="a function taking no arguments that returns the Webhooks, e.g. myapp.hooks:make_webhooks",
    )
    work.add_argument("--workers", type=_limit, default=4, metavar="N", help="attempts at once (default: 4)")
    work.add_argument(
        "--per-endpoint",
        type=_limit,
        default=1,
        metavar="N",
        help="attempts at once to one endpoint, across every process on the file (default: 1)",
    )
    work.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="how often to look for deliveries published by other processes (default: 1)",
    )
    work.set_defaults(run=_work)

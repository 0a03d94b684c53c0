"""``flaghooks listen --cache URL --seed-from URL --server-key-env NAME``: a receiver that keeps a shared flag cache
current, seeded from Flagsmith's environment document when it starts."""

from __future__ import annotations

import argparse
import os
import socketserver
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._cli_common import out
from ._models import clip
from .exceptions import FlaghooksError

if TYPE_CHECKING:  # the cache package is imported only when --cache or --seed-from is given
    from .cache import FlagCache

__all__ = ["CacheUsageError", "add_cache_options", "describe_cache", "open_cache", "scrub", "seed_cache"]


class CacheUsageError(Exception):
    """A cache or seeding option that cannot be used (the command reports it as a usage error, exit 2)."""


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache",
        metavar="URL",
        help="keep the flags in a shared cache: sqlite:///PATH (one file for the processes of a host; "
        "sqlite:////abs/path for an absolute path) or redis://HOST:PORT/DB (rediss:// for TLS) for many hosts; "
        "default: this process's memory",
    )
    parser.add_argument(
        "--redis-prefix",
        metavar="PREFIX",
        default="flaghooks:",
        help="with a redis:// cache: the prefix of every key (default: flaghooks:)",
    )
    parser.add_argument(
        "--seed-from",
        metavar="API_URL",
        help="before serving, load the environment document from this Flagsmith API "
        "(https://flagsmith.example.com/api/v1/); needs --server-key-env or --server-key-file",
    )
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--server-key-env", metavar="NAME", help="read the server-side key (ser....) from this variable")
    key.add_argument(
        "--server-key-file",
        metavar="PATH",
        help="read the server-side key from this file (a trailing newline is dropped)",
    )


def open_cache(args: argparse.Namespace) -> tuple[FlagCache | None, str | None]:
    """The cache ``--cache`` names (a memory cache when only ``--seed-from`` is given; None without either) and the
    server key to seed it with (None without ``--seed-from``).

    Raises :class:`CacheUsageError` for options that cannot work, and the store's errors (which never show the
    URL's password: :func:`scrub` them anyway before printing)."""
    key = server_key(args)
    return _open(args), key


def _open(args: argparse.Namespace) -> FlagCache | None:
    if args.seed_from is None and (args.server_key_env is not None or args.server_key_file is not None):
        raise CacheUsageError("--server-key-env/--server-key-file: give --seed-from too (the API to fetch from)")
    if args.redis_prefix != "flaghooks:" and not (args.cache or "").startswith(("redis://", "rediss://", "unix://")):
        raise CacheUsageError("--redis-prefix: only with a redis:// cache")
    if args.cache is None and args.seed_from is None:
        return None
    from .cache import FlagCache, RedisFlagStore, SqliteFlagStore

    url = args.cache
    if url is None:
        return FlagCache()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise CacheUsageError("--cache sqlite:///PATH: the path is missing")
        return FlagCache(SqliteFlagStore(path))
    if url.startswith(("redis://", "rediss://", "unix://")):
        return FlagCache(RedisFlagStore(url, prefix=args.redis_prefix))
    scheme = url.partition("://")[0] if "://" in url else clip(url)
    raise CacheUsageError(f"--cache: expected sqlite:///PATH or redis://HOST:PORT/DB, got {scheme}")


def server_key(args: argparse.Namespace) -> str | None:
    """The key ``--server-key-env`` or ``--server-key-file`` gives (never the command line, where ps shows it);
    None without ``--seed-from``."""
    if args.seed_from is None:
        return None
    if args.server_key_env is not None:
        name = f"--server-key-env {args.server_key_env}"
        value = os.environ.get(args.server_key_env)
        if value is None:
            raise CacheUsageError(f"{name}: the environment variable is not set")
    elif args.server_key_file is not None:
        name = f"--server-key-file {args.server_key_file}"
        try:
            with open(args.server_key_file, encoding="utf-8") as handle:
                value = handle.read().removesuffix("\n").removesuffix("\r")
        except OSError as exc:
            raise CacheUsageError(f"{name}: cannot read it: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise CacheUsageError(f"{name}: not UTF-8 text") from None
    else:
        raise CacheUsageError("--seed-from needs the server-side key: give --server-key-env NAME or --server-key-file")
    if not value.startswith("ser.") or value == "ser.":
        raise CacheUsageError(f"{name}: not a server-side key (it starts with 'ser.')")
    return value


def seed_cache(args: argparse.Namespace, key: str, cache: FlagCache, server: socketserver.BaseServer) -> bool:
    """Fetch the environment document and load it, printing what was loaded; False (the server and the cache
    closed, the reason printed) when it cannot be fetched or loaded."""
    try:
        out(sys.stdout, _seed(args.seed_from, key, cache))
    except FlaghooksError as exc:  # FetchError, PayloadError, StoreError, ConfigError: none quotes the key
        out(sys.stderr, f"flaghooks listen: error: cannot seed the cache: {scrub(args, exc)}")
        server.server_close()
        cache.close()
        return False
    return True


def scrub(args: argparse.Namespace, exc: BaseException) -> str:
    """An error's message without the password of the ``--cache`` URL."""
    text = str(exc)
    authority = (args.cache or "").partition("://")[2].split("/", 1)[0]
    if "@" in authority:
        userinfo = authority.rpartition("@")[0]
        for piece in sorted({userinfo, *userinfo.split(":")} - {""}, key=len, reverse=True):
            text = text.replace(piece, "***")
    return text


def _seed(api_url: str, key: str, cache: FlagCache) -> str:
    from .sync import fetch_environment_document

    started = datetime.now(UTC)
    document = fetch_environment_document(api_url, key)
    # Without updated_at the document counts as of the moment it was asked for: web hooks sent since then win.
    as_of = None if document.get("updated_at") is not None else started
    changed = cache.load_environment_document(document, as_of=as_of)
    name = document.get("name")
    label = f"environment {document.get('id')}" + (f" ({_cut(name)})" if isinstance(name, str) else "")
    when = as_of.isoformat() if as_of is not None else _cut(str(document.get("updated_at")))
    return f"seeded the cache with {label} as of {when}: {changed} targets changed"


def _cut(text: str) -> str:
    """``text`` for one output line: printable, at most 60 characters."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_cache(args: argparse.Namespace) -> str:
    """The cache for the ``listening`` line (empty without one), without a URL's credentials."""
    if args.cache is None and args.seed_from is None:
        return ""
    return f"; cache: {_describe(args.cache)}"


def _describe(url: str | None) -> str:
    if url is None:
        return "in memory"
    if url.startswith("sqlite:///"):
        return f"SQLite file {url.removeprefix('sqlite:///')}"
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2]
    return f"Redis {scheme}://{host}" if scheme != "unix" else "Redis over a Unix socket"

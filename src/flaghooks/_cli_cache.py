"""``flaghooks listen --cache URL --seed-from URL --server-key-env NAME``: a receiver that keeps a shared flag cache
current, seeded from Flagsmith's environment document when it starts."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._models import clip

if TYPE_CHECKING:  # the cache package is imported only when --cache or --seed-from is given
    from .cache import FlagCache

__all__ = ["CacheUsageError", "add_cache_options", "describe_cache", "open_cache", "seed_cache", "server_key"]


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


def open_cache(args: argparse.Namespace) -> FlagCache | None:
    """The cache ``--cache`` names (a memory cache when only ``--seed-from`` is given), None without either."""
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


def seed_cache(api_url: str, key: str, cache: FlagCache) -> str:
    """Fetch the environment document and load it; returns a line saying what was loaded.

    Raises the library's errors (FetchError, PayloadError, StoreError, ConfigError) when the document cannot be
    fetched or loaded; none of them quotes the key.
    """
    from .sync import fetch_environment_document

    started = datetime.now(UTC)
    document = fetch_environment_document(api_url, key)
    # Without updated_at the document counts as of the moment it was asked for: web hooks sent since then win.
    as_of = None if document.get("updated_at") is not None else started
    changed = cache.load_environment_document(document, as_of=as_of)
    name = document.get("name")
    label = f"environment {document.get('id')}" + (f" ({clip(name)})" if isinstance(name, str) else "")
    when = as_of.isoformat() if as_of is not None else clip(document.get("updated_at"))
    return f"seeded the cache with {label} as of {when}: {changed} targets changed"


def describe_cache(url: str | None) -> str:
    """The cache for the ``listening`` line, without a URL's credentials."""
    if url is None:
        return "in memory"
    if url.startswith("sqlite:///"):
        return f"SQLite file {url.removeprefix('sqlite:///')}"
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2]
    return f"Redis {scheme}://{host}" if scheme != "unix" else "Redis over a Unix socket"

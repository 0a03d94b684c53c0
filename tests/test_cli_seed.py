"""``flaghooks listen --cache URL --seed-from API --server-key-env NAME``: a receiver that seeds a shared cache from a
(fake, loopback) Flagsmith API when it starts, then keeps it current; run as a user runs it, in a subprocess."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3

from documents import load_sample
from flaghooks import Environment, Feature, FeatureState, PayloadFormat, Project, encode, flag_changed
from flaghooks._cli_cache import describe_cache, scrub
from flaghooks.cache import FlagCache, RedisFlagStore, SqliteFlagStore
from flaghooks.cli import main
from flaghooks.sync import parse_environment_document
from httpserver import HttpServer, Received, Reply
from services import redis_prefix

SRC = str(Path(__file__).resolve().parents[1] / "src")
KEY = "ser.FakeServerKey4Tests9xQ"
DOCUMENT = load_sample()


@pytest.fixture
def api() -> Iterator[HttpServer]:
    """A fake Flagsmith API: the sample document for the right key at the right path, 401 for another key."""
    import json

    body = json.dumps(DOCUMENT).encode()

    def script(request: Received, count: int) -> Reply:
        if request.path != "/api/v1/environment-document/":
            return Reply(404, body=b'{"detail":"Not found."}')
        if request.headers.get("x-environment-key") != KEY:
            return Reply(401, body=b'{"detail":"Invalid or missing Environment Key"}')
        return Reply(200, {"Content-Type": "application/json"}, body)

    with HttpServer(script) as server:
        yield server


def start(*args: str, key: str | None = KEY) -> tuple[subprocess.Popen[str], list[str]]:
    """``flaghooks listen --port 0 --allow-unsigned ARGS`` with the key in FH_SERVER_KEY; the process and its
    lines up to the one saying it listens (or the process ended)."""
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop("FH_SERVER_KEY", None)
    if key is not None:
        env["FH_SERVER_KEY"] = key
    process = subprocess.Popen(
        [sys.executable, "-m", "flaghooks", "listen", "--port", "0", "--allow-unsigned", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("listening on"):
            break
    return process, lines


def stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    if process.poll() is None:
        process.terminate()
    out, err = process.communicate(timeout=10)
    return process.returncode, out, err


def targets(states: list[FeatureState]) -> set[tuple[Any, ...]]:
    """What the cache shows, target by target."""
    found = set()
    for fs in states:
        if fs.identity is not None:
            where: Any = ("identity", fs.identity.identifier)
        elif fs.feature_segment is not None and fs.feature_segment.segment is not None:
            where = ("segment", fs.feature_segment.segment.id)
        else:
            where = "default"
        found.add((fs.environment.id, fs.feature.id, where, fs.enabled, fs.value))
    return found


def web_hook(value: str) -> bytes:
    """A MODERN FLAG_UPDATED of the sample's max_cart_items default, after the document's updated_at."""
    parsed = parse_environment_document(DOCUMENT)
    assert parsed.updated_at is not None
    feature = Feature(
        id=9003, name="max_cart_items", project=Project(517, "Storefront"), created_date=parsed.updated_at
    )
    new = FeatureState(feature=feature, environment=Environment(1284, "Production"), enabled=True, value=value)
    event = flag_changed(None, new, timestamp=parsed.updated_at + timedelta(minutes=5))
    return encode(event, PayloadFormat.MODERN)


def post(url: str, body: bytes) -> int:
    with urllib3.PoolManager() as pool:
        response = pool.request("POST", url, body=body, headers={"Content-Type": "application/json"}, retries=False)
    return response.status


def check_seeded_and_kept_current(process: subprocess.Popen[str], lines: list[str], cache: FlagCache) -> None:
    """The listener seeded the shared cache with the whole document, then applies a web hook to it."""
    assert lines and lines[-1].startswith("listening on"), (lines, stop(process))
    assert any(
        re.match(r"seeded the cache with environment 1284 \(Production\) as of 2024-06-03", line) for line in lines
    )
    assert targets(cache.states()) == targets(list(parse_environment_document(DOCUMENT).states))
    url = re.search(r"(http://\S+/)", lines[-1]).group(1)  # type: ignore[union-attr]
    assert post(url, web_hook("777")) == 200
    found = cache.get(1284, "max_cart_items")
    assert found is not None and found.value == "777"
    status, out, err = stop(process)
    assert status == 0, err
    assert KEY not in out + err + " ".join(lines)


def test_listen_seeds_a_sqlite_cache_and_keeps_it_current(api: HttpServer, tmp_path: Path) -> None:
    """--cache sqlite:///PATH --seed-from API --server-key-env NAME: the file holds the document's states before
    the first web hook, and the web hook's change after; another process reading the file sees both. The key
    went to the API in X-Environment-Key and nowhere on the command line or in the output."""
    path = tmp_path / "flags.db"
    process, lines = start(
        "--cache", f"sqlite:///{path}", "--seed-from", api.url("/api/v1"), "--server-key-env", "FH_SERVER_KEY"
    )
    try:
        assert "cache: SQLite file" in lines[-1]
        cache = FlagCache(SqliteFlagStore(path))
        try:
            check_seeded_and_kept_current(process, lines, cache)
        finally:
            cache.close()
    finally:
        stop(process)
    (request,) = api.received
    assert request.headers["x-environment-key"] == KEY
    assert KEY not in " ".join(process.args)  # type: ignore[arg-type]


@pytest.mark.redis
def test_listen_seeds_a_redis_cache(api: HttpServer, tmp_path: Path) -> None:
    """The same with --cache redis://... and a key prefix of the test's own (removed after)."""
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    with redis_prefix("flaghooks-cli-seed") as prefix:
        process, lines = start(
            "--cache",
            "redis://127.0.0.1:6379/0",
            "--redis-prefix",
            prefix,
            "--seed-from",
            api.url("/"),
            "--server-key-file",
            str(key_file),
            key=None,
        )
        try:
            assert "cache: Redis redis://127.0.0.1:6379" in lines[-1]
            cache = FlagCache(RedisFlagStore("redis://127.0.0.1:6379/0", prefix=prefix))
            try:
                check_seeded_and_kept_current(process, lines, cache)
            finally:
                cache.close()
        finally:
            stop(process)


def test_listen_seeds_its_memory_cache(api: HttpServer) -> None:
    """--seed-from without --cache seeds the listener's own memory cache."""
    process, lines = start("--seed-from", api.url("/"), "--server-key-env", "FH_SERVER_KEY")
    status, _, err = stop(process)
    assert status == 0, err
    assert "seeded the cache with environment 1284" in lines[0]
    assert "cache: in memory" in lines[-1]


def test_a_refused_key_stops_the_listener(api: HttpServer, tmp_path: Path) -> None:
    """A key the API refuses (401): the listener does not serve; exit 1 with the API's reason, the key unquoted."""
    other = "ser.SomeOtherKeyNotKnown"
    process, lines = start(
        "--cache",
        f"sqlite:///{tmp_path / 'c.db'}",
        "--seed-from",
        api.url("/"),
        "--server-key-env",
        "FH_SERVER_KEY",
        key=other,
    )
    status, out, err = stop(process)
    assert status == 1 and lines == []
    assert "flaghooks listen: error: cannot seed the cache:" in err and "(401)" in err
    assert other not in out + err


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (["--seed-from", "http://127.0.0.1:9/"], {}, "--seed-from needs the server-side key"),
        (["--server-key-env", "FH_SERVER_KEY"], {"FH_SERVER_KEY": KEY}, "give --seed-from too"),
        (
            ["--seed-from", "http://127.0.0.1:9/", "--server-key-env", "FH_UNSET"],
            {},
            "FH_UNSET: the environment variable is not set",
        ),
        (
            ["--seed-from", "http://127.0.0.1:9/", "--server-key-env", "FH_SERVER_KEY"],
            {"FH_SERVER_KEY": "client-side-key-123"},
            "not a server-side key",
        ),
        (["--seed-from", "http://127.0.0.1:9/", "--server-key-file", "/nonexistent/key"], {}, "cannot read it"),
        (["--cache", "postgres://db/flags"], {}, "expected sqlite:///PATH or redis://HOST:PORT/DB, got postgres"),
        (["--cache", "flags.db"], {}, "expected sqlite:///PATH or redis://HOST:PORT/DB, got 'flags.db'"),
        (["--cache", "sqlite:///"], {}, "the path is missing"),
        (["--cache", "sqlite:///x.db", "--redis-prefix", "p:"], {}, "--redis-prefix: only with a redis:// cache"),
    ],
)
def test_usage_errors(
    args: list[str],
    environ: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Options that cannot work are one-line usage errors (exit 2) before anything is bound or fetched; a key
    is never quoted."""
    monkeypatch.delenv("FH_UNSET", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    status = main(["listen", "--port", "0", "--allow-unsigned", *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "client-side-key-123" not in err and KEY not in err


def test_a_key_file_that_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key file that is not UTF-8 is a usage error."""
    path = tmp_path / "key"
    path.write_bytes(b"ser.\xff\xfe")
    status = main(["listen", "--allow-unsigned", "--seed-from", "http://127.0.0.1:9/", "--server-key-file", str(path)])
    assert status == 2 and "not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2secret@cache.internal:6379/0", "; cache: Redis redis://cache.internal:6379"),
        ("rediss://user:hunter2secret@cache.internal:6380/1", "; cache: Redis rediss://cache.internal:6380"),
        ("unix://:hunter2secret@/run/redis.sock", "; cache: Redis over a Unix socket"),
        ("sqlite:////var/cache/flags.db", "; cache: SQLite file /var/cache/flags.db"),
    ],
)
def test_the_cache_as_the_listening_line_names_it(url: str, shown: str) -> None:
    """The listening line names the cache without a URL's password."""
    assert describe_cache(argparse.Namespace(cache=url, seed_from=None)) == shown


def test_a_store_error_does_not_show_the_redis_password() -> None:
    """An error printed about the cache has the URL's user information cut out."""
    args = argparse.Namespace(cache="redis://admin:hunter2secret@cache.internal:6379/0")
    error = Exception("cannot reach redis://admin:hunter2secret@cache.internal:6379/0")
    assert scrub(args, error) == "cannot reach redis://***@cache.internal:6379/0"


def test_a_cache_file_that_cannot_be_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SQLite cache in a directory that does not exist: exit 1 with the store's reason, before anything is bound."""
    path = tmp_path / "missing" / "flags.db"
    status = main(["listen", "--allow-unsigned", "--port", "0", "--cache", f"sqlite:///{path}"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("flaghooks listen: error: ") and str(path) in err, err

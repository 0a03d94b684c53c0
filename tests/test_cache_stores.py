"""The stores behind FlagCache: claims, faults reported as StoreError, fork and threads (SQLite), scripts and
connections (Redis)."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies
from flaghooks import ConfigError, Identity, StoreError
from flaghooks.cache import FlagCache, MemoryFlagStore, RedisFlagStore, SqliteFlagStore
from flaghooks.receiver import FlagCache as ReceiverFlagCache
from services import redis_prefix
from stores import KINDS, caches
from test_cache import ALICE, BETA, in_order, state, updated

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_the_receiver_module_still_offers_flag_cache() -> None:
    """``flaghooks.receiver.FlagCache`` is the cache of ``flaghooks.cache``, on the memory store by default."""
    assert ReceiverFlagCache is FlagCache
    cache = FlagCache()
    assert isinstance(cache.store, MemoryFlagStore) and repr(cache) == "FlagCache(store=MemoryFlagStore())"
    cache.close()


def test_a_store_must_be_a_store() -> None:
    """Anything but a store is refused when the cache is built, naming what was given."""
    with pytest.raises(ConfigError, match="store must be a MemoryFlagStore, SqliteFlagStore or RedisFlagStore, got"):
        FlagCache(store="sqlite:///tmp/x.db")  # type: ignore[arg-type]


# --- claims, on every store --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
class TestClaims:
    def test_claim_release_and_claim_again(self, kind: str) -> None:
        """A claim is True once, None while held, False once handled; a failed handling frees it again."""
        with caches(kind) as make:
            cache = make()
            assert cache.claim("evt_1") is True
            assert cache.claim("evt_1") is None
            cache.release("evt_1", handled=False)
            assert cache.claim("evt_1") is True
            cache.release("evt_1", handled=True)
            assert cache.claim("evt_1") is False
            cache.release("evt_unknown", handled=True)  # a release without a claim changes nothing
            assert cache.claim("evt_unknown") is True

    def test_one_of_many_threads_wins_a_claim(self, kind: str) -> None:
        """Eight threads claiming one id at once: exactly one is told to handle it."""
        with caches(kind) as make:
            cache = make()
            results: list[bool | None] = []
            barrier = threading.Barrier(8)

            def claim() -> None:
                barrier.wait()
                results.append(cache.claim("evt_race"))

            threads = [threading.Thread(target=claim) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(results, key=repr) == [None] * 7 + [True]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_claim_whose_holder_died_expires(kind: str, tmp_path: Path) -> None:
    """A shared store's claim is a lease: once it expires (its holder died without releasing), the event can be
    claimed again; a handled id stays handled."""
    with redis_prefix() if kind == "redis" else _nothing() as prefix:
        store: Any = (
            SqliteFlagStore(tmp_path / "lease.db", lease=0.2)
            if kind == "sqlite"
            else RedisFlagStore(REDIS_URL, prefix=prefix, lease=0.2)
        )
        cache = FlagCache(store)
        try:
            assert cache.claim("evt_dead") is True and cache.claim("evt_dead") is None
            deadline = time.monotonic() + 10
            while cache.claim("evt_dead") is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert cache.claim("evt_dead") is None  # claimed again by the loop's last call, held now
            cache.release("evt_dead", handled=True)
            assert cache.claim("evt_dead") is False
        finally:
            cache.close()


def _nothing() -> Any:
    return contextlib.nullcontext("")


# --- SQLite --------------------------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flags.db"


class TestSqliteFile:
    def test_options_are_checked(self, db: Path) -> None:
        """A bad synchronous level, timeout, lease or path type is refused when the store is built."""
        with pytest.raises(ConfigError, match="synchronous must be one of OFF, NORMAL, FULL, EXTRA"):
            SqliteFlagStore(db, synchronous="SOMETIMES")
        for option in ("timeout", "lease", "remembered"):
            with pytest.raises(ConfigError, match=f"{option} must be a positive number"):
                SqliteFlagStore(db, **{option: 0})
        with pytest.raises(TypeError, match="path must be a str or a path"):
            SqliteFlagStore(3)  # type: ignore[arg-type]

    def test_wal_and_the_schema_version(self, db: Path) -> None:
        """A new file is in WAL mode with the schema version set; a second store opens it as it is."""
        first = SqliteFlagStore(db, synchronous="FULL")
        second = SqliteFlagStore(str(db))
        try:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
            assert repr(first) == f"SqliteFlagStore({str(db)!r}, synchronous='FULL')"
        finally:
            first.close()
            second.close()

    def test_a_newer_file_is_refused(self, db: Path) -> None:
        """A file written by a newer flaghooks (a higher schema version) is refused with one line naming it."""
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA user_version = 99")
        with pytest.raises(StoreError, match=r"flag cache .*flags\.db was written by a newer flaghooks \(schema 99"):
            SqliteFlagStore(db)

    def test_a_file_that_is_not_a_database(self, db: Path) -> None:
        """A file that is not SQLite is a StoreError naming it."""
        db.write_bytes(b"not a database, just text" * 100)
        with pytest.raises(StoreError, match=r"flag cache .*flags\.db: file is not a database"):
            SqliteFlagStore(db)

    def test_a_missing_directory(self, tmp_path: Path) -> None:
        """A file in a directory that does not exist is a StoreError naming it."""
        with pytest.raises(StoreError, match=r"flag cache .*nowhere"):
            SqliteFlagStore(tmp_path / "nowhere" / "flags.db")

    def test_a_closed_store(self, db: Path) -> None:
        """After close, reads and writes are a StoreError that says the store is closed."""
        cache = FlagCache(SqliteFlagStore(db))
        cache.close()
        with pytest.raises(StoreError, match="the store is closed"):
            cache.apply(updated(state(value="x"), 1, "e1"))
        with pytest.raises(StoreError, match="the store is closed"):
            cache.get(10, "banner")

    def test_locked_beyond_the_busy_timeout_applies_nothing(self, db: Path) -> None:
        """While another process holds the write lock past the busy timeout, apply, claim and release raise a
        StoreError that names the file and nothing is applied; once the lock is gone the same event applies."""
        cache = FlagCache(SqliteFlagStore(db, timeout=0.1))
        try:
            cache.apply(updated(state(value="before"), 1, "e1"))
            assert cache.claim("e3") is True  # released while locked below
            with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
                other.execute("BEGIN IMMEDIATE")
                event = updated(state(value="after", identity=ALICE), 2, "e2")
                for call in (
                    lambda: cache.apply(event),
                    lambda: cache.claim("e2"),
                    lambda: cache.release("e3", handled=True),
                ):
                    with pytest.raises(StoreError) as caught:
                        call()
                    assert str(caught.value) == (
                        f"flag cache {db}: locked by another process beyond the busy timeout (0.1 s)"
                    )
                assert cache.value(10, "banner", identity="alice") == "before"  # reads need no write lock
                other.execute("ROLLBACK")
            assert cache.apply(event) and cache.value(10, "banner", identity="alice") == "after"
        finally:
            cache.close()

    def test_an_error_inside_the_transaction_rolls_it_back(self, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failure halfway through an apply (after the event id was recorded) leaves nothing: the same event
        applies afterwards."""
        import flaghooks.cache._sqlite as module

        cache = FlagCache(SqliteFlagStore(db))
        try:

            def broken(*args: Any) -> None:
                raise RuntimeError("disk on fire")

            monkeypatch.setattr(module, "_save_meta", broken)
            event = updated(state(value="x"), 1, "e1")
            with pytest.raises(RuntimeError, match="disk on fire"):
                cache.apply(event)
            monkeypatch.undo()
            assert cache.apply(event) and cache.value(10, "banner") == "x"
        finally:
            cache.close()

    def test_a_database_of_another_application(self, db: Path) -> None:
        """A SQLite file whose tables clash with the cache's is refused (nothing of the schema is left behind)."""
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE features (id INTEGER)")
            conn.commit()
        with pytest.raises(StoreError, match=r"flag cache .*flags\.db: table features already exists"):
            SqliteFlagStore(db)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
            assert [name for (name,) in conn.execute("SELECT name FROM sqlite_master")] == ["features"]

    def test_many_processes_creating_one_file_at_once(self, db: Path) -> None:
        """Stores opened at once on a new file (workers starting together): one creates the tables, the others
        use them."""
        barrier = threading.Barrier(6)
        opened: list[Any] = []

        def open_store() -> None:
            barrier.wait()
            try:
                opened.append(SqliteFlagStore(db, timeout=30))
            except StoreError as exc:  # reported below
                opened.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert all(isinstance(store, SqliteFlagStore) for store in opened), opened
            cache = FlagCache(opened[0])
            assert cache.apply(updated(state(value="x"), 1, "e1"))
            assert FlagCache(opened[-1]).value(10, "banner") == "x"
        finally:
            for store in opened:
                if isinstance(store, SqliteFlagStore):
                    store.close()

    def test_a_sqlite_error_halfway_is_a_store_error_and_applies_nothing(
        self, db: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SQLite failing in the middle of an apply (a disk error, say) is a StoreError naming the file, and the
        transaction is rolled back: the event id is not remembered, the same event applies afterwards."""
        import flaghooks.cache._sqlite as module

        cache = FlagCache(SqliteFlagStore(db))
        try:

            def failing(*args: Any) -> None:
                raise sqlite3.OperationalError("disk I/O error")

            monkeypatch.setattr(module, "_save_target", failing)
            event = updated(state(value="x"), 1, "e1")
            with pytest.raises(StoreError, match=r"^flag cache .*flags\.db: disk I/O error$"):
                cache.apply(event)
            monkeypatch.undo()
            assert len(cache) == 0
            assert cache.apply(event) and cache.value(10, "banner") == "x"
        finally:
            cache.close()

    def test_a_read_that_fails_is_a_store_error(self, db: Path) -> None:
        """A file whose tables are gone (dropped by hand) answers reads with a StoreError naming it."""
        cache = FlagCache(SqliteFlagStore(db))
        try:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                conn.execute("DROP TABLE targets")
                conn.commit()
            with pytest.raises(StoreError, match=r"flag cache .*flags\.db: no such table: targets"):
                cache.get(10, 1)
        finally:
            cache.close()

    def test_recent_ids_and_handled_claims_are_bounded(self, db: Path) -> None:
        """Past the window the oldest ids are forgotten (in batches), and a deleted identity override's tombstone
        folds into the floor: a late copy of its creation stays ignored, a newer one applies. The oldest handled
        claims are forgotten too."""
        from test_cache import deleted

        cache = FlagCache(SqliteFlagStore(db, remembered=64))
        try:
            creation = updated(state(value="gold", identity=ALICE), 1, "c_alice")
            cache.apply(creation)
            cache.apply(deleted(state(value="gold", identity=ALICE), 2, "d_alice"))
            cache.apply(deleted(state(value="x", identity=Identity(901, "bob")), 2, "d_bob"))
            cache.apply(updated(state(value="again", identity=Identity(901, "bob")), 2.5, "c_bob"))
            for n in range(200):
                cache.apply(updated(state(feature=2, value=n), 3 + n, f"other{n}"))
            with contextlib.closing(sqlite3.connect(db)) as conn:
                assert conn.execute("SELECT count(*) FROM recent").fetchone()[0] < 128
            assert not cache.apply(creation)
            assert cache.get(10, "banner", identity="alice") is None
            assert cache.value(10, "banner", identity="bob") == "again"
            assert cache.apply(updated(state(value="newer", identity=ALICE), 2.5, "c_alice_2"))
            for n in range(70):
                assert cache.claim(f"h{n}") is True
                cache.release(f"h{n}", handled=True)
            assert cache.claim("h0") is True and cache.claim("h69") is False
        finally:
            cache.close()


class TestSqliteSharing:
    def test_a_write_by_another_connection_is_read_at_once(self, db: Path) -> None:
        """Two stores on one file (two processes, say): a read after the other's write sees it, though the first
        store answered the same read from its copy before."""
        first, second = FlagCache(SqliteFlagStore(db)), FlagCache(SqliteFlagStore(db))
        try:
            first.apply(updated(state(value="one"), 1, "e1"))
            assert second.value(10, "banner") == "one" and second.value(10, "banner") == "one"
            assert len(second) == 1 and second.segment_overrides(10, "banner") == []
            first.apply(updated(state(value="two"), 2, "e2"))
            first.apply(updated(state(value="b", feature_segment=BETA), 2, "e3"))
            assert second.value(10, "banner") == "two" and len(second) == 2
            assert [s.value for s in second.segment_overrides(10, 1)] == ["b"]
        finally:
            first.close()
            second.close()

    @pytest.mark.parametrize("size", [4, 0])
    def test_the_copy_is_bounded(self, db: Path, size: int) -> None:
        """Past its size the per-process copy starts again (size 0: no copy), and still answers right."""

        class Small(SqliteFlagStore):
            _MEMO_SIZE = size

        cache = FlagCache(Small(db))
        try:
            for n in range(3):
                cache.apply(updated(state(value=n, identity=ALICE), n, f"e{n}"))
            for who in ["alice", "bob", "carol", "dave", "erin", "alice"]:
                assert cache.value(10, "banner", identity=who) == (2 if who == "alice" else None)
        finally:
            cache.close()

    def test_threads_share_one_store(self, db: Path) -> None:
        """Threads applying and reading at once (gthread workers) end in the in-order result."""
        events = [updated(state(value=i, identity=ALICE if i % 2 else None), i, f"e{i:04d}") for i in range(200)]
        cache = FlagCache(SqliteFlagStore(db))
        try:
            threads = [
                threading.Thread(target=lambda part=events[n::4]: [cache.apply(e) for e in reversed(part)])
                for n in range(4)
            ]
            threads.append(threading.Thread(target=lambda: [cache.get(10, "banner") for _ in range(200)]))
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert cache.states() == in_order(events).states()
        finally:
            cache.close()

    def test_a_forked_child_opens_its_own_connections(self, db: Path) -> None:
        """A store opened before fork() (gunicorn --preload) works in the child on connections of its own, and
        the parent's keep working after the child wrote and exited."""
        cache = FlagCache(SqliteFlagStore(db))
        try:
            cache.apply(updated(state(value="parent"), 1, "e1"))
            assert cache.value(10, "banner") == "parent"
            pid = os.fork()
            if pid == 0:  # the child: report through the exit status only
                status = 1
                try:
                    ok = cache.value(10, "banner") == "parent" and cache.apply(updated(state(value="child"), 2, "e2"))
                    status = 0 if ok else 2
                finally:
                    os._exit(status)
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert cache.value(10, "banner") == "child"
            assert cache.apply(updated(state(value="parent again"), 3, "e3"))
        finally:
            cache.close()


# --- Redis ---------------------------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as name:
        yield name


@pytest.mark.redis
class TestRedis:
    def test_options_are_checked(self) -> None:
        """A bad prefix, lease or client is refused when the store is built; a URL that is not Redis's too."""
        with pytest.raises(ConfigError, match="prefix must be a non-empty str"):
            RedisFlagStore(REDIS_URL, prefix="")
        with pytest.raises(ConfigError, match="lease must be a positive number"):
            RedisFlagStore(REDIS_URL, lease=-1)
        with pytest.raises(TypeError, match=r"client_or_url must be a redis\.Redis or a URL, got int"):
            RedisFlagStore(6379)
        with pytest.raises(ConfigError, match="not a Redis URL"):
            RedisFlagStore("http://127.0.0.1:6379")

    def test_a_unix_socket_client_is_named_by_its_path(self) -> None:
        """A client on a Unix socket is named by its path (in repr and errors)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
        store = RedisFlagStore(client, prefix="x:")
        try:
            assert repr(store) == "RedisFlagStore(redis unix:/nonexistent/redis.sock, prefix='x:')"
            with pytest.raises(StoreError, match=r"^flag cache redis unix:/nonexistent/redis\.sock: "):
                store.count()
        finally:
            client.close()

    def test_a_script_cache_flushed_is_loaded_again(self, prefix: str) -> None:
        """After SCRIPT FLUSH (what a Redis restart does to scripts), the next apply and release load their
        scripts again and work."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        cache = FlagCache(RedisFlagStore(client, prefix=prefix))
        try:
            assert cache.apply(updated(state(value="one"), 1, "e1"))
            assert cache.claim("c1") is True
            client.script_flush()
            assert cache.apply(updated(state(value="two"), 2, "e2"))
            cache.release("c1", handled=True)
            assert cache.value(10, "banner") == "two" and cache.claim("c1") is False
        finally:
            cache.close()  # a client the caller gave stays open: the caller closes it
            assert client.ping()
            client.close()

    def test_a_refused_connection_is_a_store_error_at_once(self) -> None:
        """Nothing listening: every call raises StoreError naming host and port, never the password."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        cache = FlagCache(RedisFlagStore(f"redis://:hunter2@127.0.0.1:{port}/0"))
        try:
            calls = [
                lambda: cache.apply(updated(state(value="x"), 1, "e1")),
                lambda: cache.get(10, "banner"),
                lambda: cache.claim("e1"),
                lambda: len(cache),
            ]
            for call in calls:
                with pytest.raises(StoreError, match=f"^flag cache redis 127.0.0.1:{port}: ") as caught:
                    call()
                assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)
            assert "hunter2" not in repr(cache)
        finally:
            cache.close()

    def test_a_newer_store_is_refused(self, prefix: str) -> None:
        """A prefix written by a newer flaghooks (a higher schema version) is refused."""
        import redis

        with contextlib.closing(redis.Redis(host="127.0.0.1", port=6379)) as client:
            client.set(f"{prefix}schema", 7)
        cache = FlagCache(RedisFlagStore(REDIS_URL, prefix=prefix))
        try:
            with pytest.raises(StoreError, match=r"was written by a newer flaghooks \(schema 7, this one knows 1\)"):
                cache.get(10, "banner")
        finally:
            cache.close()

    def test_keys_of_one_environment_share_a_hash_tag(self, prefix: str) -> None:
        """Every key an event touches carries its environment's hash tag (one cluster slot), and the keys stay
        under the prefix."""
        import redis

        cache = FlagCache(RedisFlagStore(REDIS_URL, prefix=prefix))
        try:
            cache.apply(updated(state(value="x", identity=ALICE), 1, "e1"))
            cache.apply(updated(state(feature=2, environment=11, value="y"), 1, "e2"))
            with contextlib.closing(redis.Redis(host="127.0.0.1", port=6379)) as client:
                keys = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}*"))
            tagged = [key for key in keys if key != f"{prefix}schema"]
            assert tagged and all(key.startswith(prefix) for key in keys)
            assert {key[len(prefix) :].split("}")[0] for key in tagged} == {"{e10", "{e11"}
        finally:
            cache.close()

    def test_recent_ids_are_bounded_per_feature(self, prefix: str) -> None:
        """Past the window of recent ids a feature's oldest ids are forgotten: the ids list stays at the bound,
        and a deleted identity override's tombstone folds into the floor (a late creation stays hidden)."""
        import redis

        from test_cache import deleted

        cache = FlagCache(RedisFlagStore(REDIS_URL, prefix=prefix, remembered=8))
        try:
            creation = updated(state(value="gold", identity=ALICE), 1, "c_alice")
            cache.apply(creation)
            cache.apply(deleted(state(value="gold", identity=ALICE), 2, "d_alice"))
            for n in range(20):
                cache.apply(updated(state(value=n), 3 + n, f"other{n}"))
            with contextlib.closing(redis.Redis(host="127.0.0.1", port=6379)) as client:
                assert client.llen(f"{prefix}{{e10}}:q:1") == 8
                assert not client.hexists(f"{prefix}{{e10}}:f:1", "t:i:alice")
            assert not cache.apply(creation)
            assert cache.get(10, "banner", identity="alice") == state(value=19)
        finally:
            cache.close()


def test_timestamps_compare_as_fixed_width_text() -> None:
    """The text keys of the shared stores sort as the times do, microseconds and zones included, and an unknown
    time sorts first."""
    from flaghooks.cache._rules import time_text

    base = datetime(2024, 6, 1, 12, tzinfo=UTC)
    times = [base + timedelta(microseconds=n) for n in (0, 1, 999_999, 10**6)] + [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        base.astimezone(__import__("datetime").timezone(timedelta(hours=5))) + timedelta(seconds=1),
    ]
    texts = [time_text(when) for when in times]
    assert len({len(text) for text in texts}) == 1
    assert sorted(texts) == [time_text(when) for when in sorted(times)]
    assert time_text(None) < min(texts)


@settings(max_examples=300)
@given(strategies.states, st.booleans())
def test_the_shared_stores_keep_states_whole(state_: Any, classic_segment: bool) -> None:
    """What the SQLite and Redis stores keep of a state (every field, ids, uuids, extra keys, multivariate values,
    a feature segment known by its id only) reads back equal, and equal states are equal bytes."""
    import attrs

    from flaghooks.cache._codec import decode_state, encode_state

    if classic_segment and state_.feature_segment is not None:
        state_ = attrs.evolve(state_, feature_segment=attrs.evolve(state_.feature_segment, segment=None))
    data = encode_state(state_)
    assert decode_state(data) == state_ and encode_state(decode_state(data)) == data


# --- what a receiver answers when the store fails ----------------------------------------------------------------


def _signed(event: Any) -> tuple[bytes, dict[str, str]]:
    from flaghooks import PayloadFormat, encode, sign_flagsmith

    body = encode(event, PayloadFormat.CLASSIC)
    return body, {"X-Flagsmith-Signature": sign_flagsmith(body, "receiver-secret")}


def test_a_locked_sqlite_file_makes_the_receiver_answer_503(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A receiver on a SQLite file another process keeps locked answers 503 with Retry-After (the sender retries),
    runs no on_event, and handles the retry once the lock is gone."""
    from flaghooks.receiver import WebhookReceiver

    seen: list[str] = []
    cache = FlagCache(SqliteFlagStore(db, timeout=0.1))
    receiver = WebhookReceiver(secret="receiver-secret", cache=cache, on_event=lambda event: seen.append(event.id))
    body, headers = _signed(updated(state(value="x"), 1, "e1"))
    try:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other, caplog.at_level("ERROR"):
            other.execute("BEGIN IMMEDIATE")
            answer = receiver.handle("POST", headers, body)
            other.execute("ROLLBACK")
        assert answer.status == 503 and dict(answer.headers).get("Retry-After") and seen == []
        answer = receiver.handle("POST", headers, body)
        assert answer.status == 200 and len(seen) == 1 and cache.value(10, "banner") == "x"
    finally:
        cache.close()


@pytest.mark.redis
def test_an_unreachable_redis_makes_the_receiver_answer_503(caplog: pytest.LogCaptureFixture) -> None:
    """A receiver on a Redis nobody listens to answers 503 with Retry-After, at once, and runs no on_event."""
    from flaghooks.receiver import WebhookReceiver

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    seen: list[str] = []
    cache = FlagCache(RedisFlagStore(f"redis://127.0.0.1:{port}/0"))
    receiver = WebhookReceiver(secret="receiver-secret", cache=cache, on_event=lambda event: seen.append(event.id))
    body, headers = _signed(updated(state(value="x"), 1, "e1"))
    try:
        with caplog.at_level("ERROR"):
            answer = receiver.handle("POST", headers, body)
        assert answer.status == 503 and dict(answer.headers).get("Retry-After") and seen == []
    finally:
        cache.close()

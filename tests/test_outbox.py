"""SqliteOutbox and publishing into it: every delivery of an event is stored or none is, in the outbox's own
transaction or in the application's (its commit sends, its rollback never existed); faults of the file are one-line
OutboxErrors naming it; inspection, replay, prune and the schema's version."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from background_helpers import ENV, Results, event, local
from cases import documented_audit_entry
from flaghooks import (
    ConfigError,
    DeliveryRecord,
    Endpoint,
    OutboxDelivery,
    OutboxError,
    SqliteOutbox,
    Webhooks,
    audit_log_created,
)
from flaghooks._outbox_schema import SCHEMA_VERSION
from httpserver import HttpServer
from outbox_helpers import FAST


def hooks(urls: list[str], results: Results | None = None) -> Webhooks:
    webhooks = Webhooks(transport=local(), retry=FAST, on_result=results)
    for number, url in enumerate(urls):
        webhooks.subscribe(Endpoint(url, name=f"e{number}"), environment=ENV)
    return webhooks


@pytest.fixture
def outbox(tmp_path: Path) -> Any:
    with SqliteOutbox(tmp_path / "outbox.db") as box:
        yield box


class TestPublishing:
    def test_publish_stores_every_delivery_as_pending(self, outbox: SqliteOutbox) -> None:
        """publish returns one Delivery per endpoint, each stored as pending with no attempt yet."""
        with hooks([f"http://127.0.0.1:9/{n}" for n in range(3)]) as webhooks:
            deliveries = OutboxDelivery(webhooks, outbox).publish(event(1))
        assert len(deliveries) == 3
        records = [outbox.get(delivery.id) for delivery in deliveries]
        assert [(r.state, r.attempts, r.event_id, r.endpoint_key) for r in records if r is not None] == [
            ("pending", 0, "evt_1", f"e{n}") for n in range(3)
        ]
        assert outbox.counts() == {"pending": 3, "in_flight": 0, "delivered": 0, "dead": 0}

    def test_a_failure_mid_publish_stores_nothing(self, outbox: SqliteOutbox) -> None:
        """When the fourth of five inserts fails, publish raises OutboxError and none of the five is stored."""
        outbox._db.execute(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON flaghooks_outbox_deliveries WHEN NEW.endpoint = 'e3' "
            "BEGIN SELECT RAISE(ABORT, 'boom'); END"
        )
        with hooks([f"http://127.0.0.1:9/{n}" for n in range(5)]) as webhooks, pytest.raises(OutboxError, match="boom"):
            OutboxDelivery(webhooks, outbox).publish(event(1))
        assert sum(outbox.counts().values()) == 0

    def test_a_full_disk_raises_and_leaves_nothing_half_written(self, outbox: SqliteOutbox) -> None:
        """With the file at its size limit (as on a full disk), publish raises OutboxError naming the file and
        the event's deliveries are not stored, not even some of them."""
        with hooks([f"http://127.0.0.1:9/{n}" for n in range(5)]) as webhooks:
            delivery = OutboxDelivery(webhooks, outbox)
            delivery.publish(event(0))
            pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
            outbox._db.execute(f"PRAGMA max_page_count = {pages}")
            caught: OutboxError | None = None
            for n in range(1, 1000):
                before = outbox.counts()
                try:
                    delivery.publish(event(n))
                except OutboxError as exc:
                    caught = exc
                    break
        assert caught is not None and "outbox.db is full" in str(caught) and "\n" not in str(caught)
        assert outbox.counts() == before
        assert sum(before.values()) % 5 == 0

    def test_no_route_stores_nothing(self, outbox: SqliteOutbox) -> None:
        """An event no endpoint takes stores nothing and returns []."""
        with Webhooks(transport=local()) as webhooks:
            assert OutboxDelivery(webhooks, outbox).publish(event(1)) == []
        assert sum(outbox.counts().values()) == 0


class TestTheApplicationsTransaction:
    def test_rollback_sends_nothing_and_commit_sends_everything(self, tmp_path: Path) -> None:
        """Acceptance 3: deliveries published in the application's transaction are sent when it commits and never
        exist when it rolls back, against a real loopback server; the application's own rows follow its
        transaction too."""
        path = tmp_path / "app.db"
        results = Results()
        with HttpServer() as server, SqliteOutbox(path) as outbox:
            app = sqlite3.connect(path)
            app.execute("CREATE TABLE flags (name TEXT)")
            app.commit()
            with hooks([server.url(f"/e{n}") for n in range(3)], results) as webhooks:
                delivery = OutboxDelivery(webhooks, outbox, poll_interval=0.05)
                app.execute("INSERT INTO flags VALUES ('rolled back')")
                rolled = delivery.publish(event(1), connection=app)
                assert app.in_transaction
                app.rollback()
                app.execute("INSERT INTO flags VALUES ('committed')")
                committed = delivery.feature_state_changed(None, event(2).data.new_state, connection=app)  # type: ignore[union-attr]
                app.commit()
                delivery.start()
                results.wait_for(lambda: len(results.results) == 3)
                delivery.close()
            received = sorted((request.path, request.headers["webhook-id"]) for request in server.received)
            assert [row[0] for row in app.execute("SELECT name FROM flags")] == ["committed"]
            app.close()
            assert all(outbox.get(d.id) is None for d in rolled)
            assert [outbox.get(d.id).state for d in committed] == ["delivered"] * 3  # type: ignore[union-attr]
        assert [path for path, _ in received] == ["/e0", "/e1", "/e2"]
        assert {event_id for _, event_id in received} == {committed[0].event_id}
        assert all(result.ok for result in results.results)

    def test_a_failure_mid_publish_undoes_only_the_outboxs_rows(self, tmp_path: Path) -> None:
        """A publish that fails in the application's transaction takes none of its deliveries and leaves the
        application's own writes in its transaction, to commit."""
        path = tmp_path / "app.db"
        with SqliteOutbox(path) as outbox, hooks([f"http://127.0.0.1:9/{n}" for n in range(5)]) as webhooks:
            app = sqlite3.connect(path)
            app.execute("CREATE TABLE flags (name TEXT)")
            app.execute(
                "CREATE TEMP TRIGGER boom BEFORE INSERT ON flaghooks_outbox_deliveries WHEN NEW.endpoint = 'e3' "
                "BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
            app.execute("INSERT INTO flags VALUES ('mine')")
            with pytest.raises(OutboxError, match=r"app\.db"):
                OutboxDelivery(webhooks, outbox).publish(event(1), connection=app)
            app.commit()
            assert [row[0] for row in app.execute("SELECT name FROM flags")] == ["mine"]
            app.close()
            assert sum(outbox.counts().values()) == 0

    def test_a_connection_to_another_file_or_in_autocommit_is_refused(self, tmp_path: Path) -> None:
        """connection= must be on the outbox's file and able to hold a transaction: ConfigError otherwise."""
        with SqliteOutbox(tmp_path / "a.db") as outbox, hooks(["http://127.0.0.1:9/"]) as webhooks:
            delivery = OutboxDelivery(webhooks, outbox)
            other = sqlite3.connect(tmp_path / "b.db")
            with pytest.raises(ConfigError, match="outbox's file"):
                delivery.publish(event(1), connection=other)
            other.close()
            autocommit = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
            with pytest.raises(ConfigError, match="open transaction"):
                delivery.publish(event(1), connection=autocommit)
            autocommit.execute("BEGIN")
            delivery.publish(event(1), connection=autocommit)
            autocommit.execute("COMMIT")
            autocommit.close()
            with pytest.raises(ConfigError, match=r"sqlite3\.Connection"):
                delivery.publish(event(2), connection="app.db")  # type: ignore[arg-type]
            assert outbox.counts()["pending"] == 1


class TestTheFile:
    def test_a_missing_directory_is_an_outbox_error(self, tmp_path: Path) -> None:
        """A path in a directory that does not exist: OutboxError naming the file, on one line."""
        path = tmp_path / "nowhere" / "outbox.db"
        with pytest.raises(OutboxError, match="does not exist") as caught:
            SqliteOutbox(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)

    def test_a_file_that_is_not_a_database_is_an_outbox_error(self, tmp_path: Path) -> None:
        """A file that is not SQLite: OutboxError naming it."""
        path = tmp_path / "notes.txt"
        path.write_bytes(b"these are not the pages you are looking for\n" * 100)
        with pytest.raises(OutboxError, match="not a SQLite database") as caught:
            SqliteOutbox(path)
        assert str(path) in str(caught.value)

    def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A file whose outbox schema is newer than this flaghooks knows: OutboxError saying so."""
        path = tmp_path / "outbox.db"
        SqliteOutbox(path).close()
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE flaghooks_outbox_schema SET version = ?", (SCHEMA_VERSION + 1,))
        conn.close()
        with pytest.raises(OutboxError, match="newer flaghooks") as caught:
            SqliteOutbox(path)
        assert str(path) in str(caught.value)

    def test_opening_again_keeps_everything_and_the_applications_tables(self, tmp_path: Path) -> None:
        """The outbox's tables are added beside the application's own, and opening the file again keeps what is
        stored (the schema is at its version already: nothing is migrated twice)."""
        path = tmp_path / "app.db"
        with sqlite3.connect(path) as app:
            app.execute("CREATE TABLE flags (name TEXT)")
        app.close()
        with SqliteOutbox(path) as outbox, hooks(["http://127.0.0.1:9/"]) as webhooks:
            OutboxDelivery(webhooks, outbox).publish(event(1))
        with SqliteOutbox(path, synchronous="NORMAL") as again:
            assert again.counts()["pending"] == 1
        conn = sqlite3.connect(path)
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = conn.execute("SELECT version FROM flaghooks_outbox_schema").fetchall()
        conn.close()
        assert "flags" in tables and versions == [(SCHEMA_VERSION,)]

    def test_a_lock_held_beyond_the_busy_timeout_is_an_outbox_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another connection holding the write lock longer than the busy timeout: publish raises OutboxError
        naming the file, and stores nothing."""
        monkeypatch.setattr(SqliteOutbox, "_busy_timeout", 0.05)
        path = tmp_path / "outbox.db"
        with SqliteOutbox(path) as outbox, hooks(["http://127.0.0.1:9/"]) as webhooks:
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(OutboxError, match="locked") as caught:
                OutboxDelivery(webhooks, outbox).publish(event(1))
            with pytest.raises(OutboxError, match="locked"):
                SqliteOutbox(path)  # opening it checks the schema in a write transaction
            holder.execute("ROLLBACK")
            holder.close()
            assert str(path) in str(caught.value)
            assert sum(outbox.counts().values()) == 0

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"synchronous": "OFF"}, "synchronous"),
            ({"keep_delivered": -1}, "keep_delivered"),
            ({"keep_delivered": "7d"}, "keep_delivered"),
        ],
    )
    def test_bad_arguments_are_config_errors(self, tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
        """Bad arguments raise ConfigError naming them, before the file is touched."""
        with pytest.raises(ConfigError, match=match):
            SqliteOutbox(tmp_path / "outbox.db", **kwargs)

    def test_a_path_of_the_wrong_type_and_use_after_close(self, tmp_path: Path) -> None:
        """A path that is not a str or path is a ConfigError; a closed outbox raises OutboxError."""
        with pytest.raises(ConfigError, match="path"):
            SqliteOutbox(3)  # type: ignore[arg-type]
        outbox = SqliteOutbox(tmp_path / "outbox.db")
        outbox.close()
        outbox.close()
        assert "closed" in repr(outbox)
        with pytest.raises(OutboxError, match="closed"):
            outbox.counts()


class TestInspectionAndRepair:
    def publish(self, outbox: SqliteOutbox, events: int = 3, endpoints: int = 2) -> list[Any]:
        with hooks([f"http://127.0.0.1:9/{n}" for n in range(endpoints)]) as webhooks:
            delivery = OutboxDelivery(webhooks, outbox)
            return [d for n in range(events) for d in delivery.publish(event(n))]

    def test_deliveries_filters_by_state_endpoint_and_time_newest_first(self, outbox: SqliteOutbox) -> None:
        """deliveries() lists newest first, filtered by state, endpoint key and creation time, up to limit."""
        published = self.publish(outbox)
        listed = outbox.deliveries()
        assert [r.id for r in listed] == [d.id for d in reversed(published)]
        assert all(isinstance(r, DeliveryRecord) and r.next_attempt_at is not None for r in listed)
        assert [r.id for r in outbox.deliveries(endpoint="e1")] == [
            d.id for d in reversed(published) if d.endpoint.name == "e1"
        ]
        assert len(outbox.deliveries(limit=2)) == 2 and len(outbox.deliveries(limit=None)) == 6
        assert outbox.deliveries(state="dead") == []
        assert len(outbox.deliveries(since=timedelta(hours=1))) == 6
        assert outbox.deliveries(since=datetime.now(UTC) + timedelta(hours=1)) == []
        assert (
            len(outbox.deliveries(since=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1))) == 6
        )  # naive: UTC
        assert outbox.get("dlv_unknown") is None and outbox.attempts("dlv_unknown") == []

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"state": "lost"}, "state"),
            ({"limit": 0}, "limit"),
            ({"endpoint": 3}, "endpoint"),
            ({"since": "yesterday"}, "since"),
        ],
    )
    def test_bad_filters_are_config_errors(self, outbox: SqliteOutbox, kwargs: dict[str, Any], match: str) -> None:
        """A state that does not exist, a limit below 1, an endpoint or a time of the wrong type: ConfigError."""
        with pytest.raises(ConfigError, match=match):
            outbox.deliveries(**kwargs)

    def test_replay_and_delete_of_dead_letters_added_elsewhere(self, outbox: SqliteOutbox) -> None:
        """_add_dead stores a dead letter once (idempotent on its id) with its attempts; replay by id puts it back
        to pending with a fresh count; _take_dead and _delete serve executors that keep dead letters here."""
        from flaghooks.transports import AttemptResult

        published = self.publish(outbox, events=1, endpoints=1)
        delivery = published[0]
        outbox._delete([delivery.id])
        history = [AttemptResult(500, response_body=b"broken"), AttemptResult(None, "timed out", 1.0)]
        outbox._add_dead(delivery, history, "timed out")
        outbox._add_dead(delivery, history, "timed out")
        record = outbox.get(delivery.id)
        assert record is not None and (record.state, record.attempts, record.last_error) == ("dead", 2, "timed out")
        assert [(a.number, a.status, a.error, a.response_body) for a in outbox.attempts(delivery.id)] == [
            (1, 500, None, b"broken"),
            (2, None, "timed out", b""),
        ]
        taken = outbox._take_dead(endpoint=delivery.endpoint)
        assert [(r.id, body) for r, body in taken] == [(delivery.id, delivery.body)]
        assert outbox._take_dead([delivery.id]) == taken and outbox._take_dead([]) == []
        assert outbox.replay([delivery.id, delivery.id]) == 1
        assert outbox.replay([delivery.id]) == 0  # pending now: left alone
        replayed = outbox.get(delivery.id)
        assert replayed is not None and (replayed.state, replayed.attempts) == ("pending", 0)
        assert outbox._delete([delivery.id]) == 1 and outbox.get(delivery.id) is None
        with pytest.raises(ConfigError, match="iterable"):
            outbox.replay(delivery.id)

    def test_replay_by_id_takes_delivered_ones_and_without_ids_only_dead_ones(self, outbox: SqliteOutbox) -> None:
        """Named by id, a delivered delivery is replayed too; without ids, only dead ones are (filtered by
        endpoint and time); pending ones are never touched."""
        first, second, third = self.publish(outbox, events=3, endpoints=1)
        conn = outbox._db
        conn.execute(
            "UPDATE flaghooks_outbox_deliveries SET state = 'delivered', attempts = 1 WHERE id = ?", (first.id,)
        )
        conn.execute("UPDATE flaghooks_outbox_deliveries SET state = 'dead', attempts = 3 WHERE id = ?", (second.id,))
        assert outbox.replay(endpoint="e0", since=timedelta(hours=1)) == 1  # the dead one, not the delivered one
        assert outbox.replay(endpoint="other") == 0
        assert outbox.replay([first.id, third.id, "dlv_unknown"]) == 1  # the delivered one; the pending one stays
        records = [outbox.get(d.id) for d in (first, second, third)]
        assert [(r.state, r.attempts) for r in records if r is not None] == [("pending", 0)] * 3

    def test_prune_deletes_old_ended_deliveries_in_batches(self, outbox: SqliteOutbox) -> None:
        """prune deletes ended deliveries older than the cutoff in the named states (more than one batch), with
        their attempts, and leaves the rest."""
        published = self.publish(outbox, events=400, endpoints=3)
        conn = outbox._db
        conn.execute("UPDATE flaghooks_outbox_deliveries SET state = 'delivered', updated_at = 0 WHERE seq % 3 != 0")
        conn.execute("UPDATE flaghooks_outbox_deliveries SET state = 'dead', updated_at = 0 WHERE seq % 3 = 0")
        assert outbox.prune(timedelta(days=1)) == 800
        assert outbox.counts() == {"pending": 0, "in_flight": 0, "delivered": 0, "dead": 400}
        assert outbox.prune(datetime.now(UTC), states=("delivered", "dead")) == 400
        assert outbox.get(published[0].id) is None
        for bad in ((), ("pending",), "dead"):
            with pytest.raises(ConfigError, match="states"):
                outbox.prune(timedelta(0), states=bad)

    def test_prune_lets_go_of_the_shared_connection_between_batches(
        self, outbox: SqliteOutbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A long prune takes the connection that this process's publishers share once per batch, not for the
        whole prune, so that a publish waits for one batch at most."""

        class CountingLock:
            def __init__(self) -> None:
                self.inner = threading.Lock()
                self.taken = 0

            def __enter__(self) -> None:
                self.inner.acquire()
                self.taken += 1

            def __exit__(self, *exc: object) -> None:
                self.inner.release()

        with hooks(["http://127.0.0.1:9/"]) as webhooks:
            for n in range(5):
                [delivery] = webhooks.plan(event(n), environment=ENV)
                outbox._add_dead(delivery, [], "gone")
        monkeypatch.setattr("flaghooks._outbox_store._BATCH", 2)
        lock = CountingLock()
        monkeypatch.setattr(outbox, "_lock", lock)
        assert outbox.prune(timedelta(0), states=("dead",)) == 5
        assert lock.taken == 3  # batches of 2, 2 and 1

    def test_enable_lifts_a_durable_disable(self, outbox: SqliteOutbox) -> None:
        """disabled() lists endpoints disabled in the file; enable() lifts it (true once, false after)."""
        self.publish(outbox, events=1, endpoints=1)
        outbox._db.execute("UPDATE flaghooks_outbox_endpoints SET disabled = 'it answered 410 Gone'")
        assert outbox.disabled() == {"e0": "it answered 410 Gone"}
        assert outbox.enable(Endpoint("http://127.0.0.1:9/", name="e0")) is True
        assert outbox.enable("e0") is False and outbox.disabled() == {}


def test_publishing_an_audit_entry_routes_by_organisation(outbox: SqliteOutbox) -> None:
    """audit_log_created stores the entry's deliveries for its organisation's endpoints."""
    entry = documented_audit_entry()
    with Webhooks(transport=local()) as webhooks:
        webhooks.subscribe(Endpoint("http://127.0.0.1:9/", name="org"), organisation=entry.project.organisation)
        deliveries = OutboxDelivery(webhooks, outbox).audit_log_created(entry)
    assert [d.event_type for d in deliveries] == [audit_log_created(entry).event_type]
    assert outbox.counts()["pending"] == 1


def test_version_published_noop_updates_and_unknown_event_types(outbox: SqliteOutbox) -> None:
    """version_published stores its event for the environment's endpoints; a no-op state change stores nothing;
    a stored event type flaghooks does not know reads back as its plain name."""
    from flaghooks import VersionFeature, VersionPublished
    from flaghooks._outbox_records import event_type_of

    with hooks(["http://127.0.0.1:9/"]) as webhooks:
        delivery = OutboxDelivery(webhooks, outbox)
        (stored,) = delivery.version_published(
            VersionPublished(uuid="u", feature=VersionFeature(1, "f")), environment=ENV
        )
        state = event(1).data.new_state  # type: ignore[union-attr]
        assert delivery.feature_state_changed(state, state) == []
    record = outbox.get(stored.id)
    assert record is not None and record.event_type == "NEW_VERSION_PUBLISHED"
    assert event_type_of("SOMETHING_NEWER") == "SOMETHING_NEWER"

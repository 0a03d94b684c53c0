"""``flaghooks outbox``: stats, list, show, replay, prune and enable against a real outbox file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from cases import ROOT
from flaghooks import (
    Breaker,
    Delivery,
    Endpoint,
    Environment,
    Feature,
    FeatureState,
    OutboxDelivery,
    Project,
    RetryPolicy,
    SqliteOutbox,
    WebhookEvent,
    Webhooks,
    flag_changed,
)
from flaghooks.cli import main
from flaghooks.testing import RecordingTransport
from flaghooks.transports import AttemptResult, DeliveryRequest

SRC = ROOT / "src"

_FEATURE = Feature(
    id=2411,
    name="checkout_banner",
    project=Project(12, "Checkout", organisation=7),
    created_date=datetime(2024, 5, 2, tzinfo=UTC),
)
_PRODUCTION = Environment(23, "Production")


def _event(n: int) -> WebhookEvent:
    old = FeatureState(feature=_FEATURE, environment=_PRODUCTION, enabled=False, value=n)
    new = FeatureState(feature=_FEATURE, environment=_PRODUCTION, enabled=True, value=n + 1)
    return flag_changed(old, new)


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the outbox"
        time.sleep(0.01)


def _answer(request: DeliveryRequest) -> AttemptResult:
    """The cache endpoint takes everything; the ledger answers 500 with a body; "gone" answers 410."""
    if request.endpoint.name == "ledger":
        return AttemptResult(500, response_body=b"ledger is down\nfor maintenance" + b" until later" * 20)
    if request.endpoint.name == "gone":
        return AttemptResult(410)
    return AttemptResult(200)


@attrs.define
class Filled:
    path: Path
    delivered: list[Delivery]
    dead: list[Delivery]
    pending: list[Delivery]


def _hooks(*names: str) -> Webhooks:
    hooks = Webhooks(transport=RecordingTransport(_answer), retry=RetryPolicy(attempts=2, backoff=0.01))
    for name in names:
        hooks.subscribe(Endpoint(f"https://{name}.example/flags", name=name), environment=23)
    return hooks


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """An outbox with 3 deliveries to "cache" delivered, 3 to "ledger" dead after 2 attempts each, and 2
    pending (published after the workers stopped); made once, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "outbox.db"
    outbox = SqliteOutbox(path)
    hooks = _hooks("cache", "ledger")
    delivery = OutboxDelivery(hooks, outbox, poll_interval=0.02, breaker=Breaker(failures=100))
    published = [d for n in range(3) for d in delivery.publish(_event(n))]
    delivery.start()
    _wait(lambda: outbox.counts().get("delivered") == 3 and outbox.counts().get("dead") == 3)
    delivery.close()
    pending = delivery.publish(_event(10))
    hooks.close()
    outbox.close()
    return Filled(
        path,
        [d for d in published if d.endpoint.name == "cache"],
        [d for d in published if d.endpoint.name == "ledger"],
        pending,
    )


@pytest.fixture
def filled(template: Filled, tmp_path: Path) -> Filled:
    """A copy of the template outbox, for one test to change."""
    path = tmp_path / "outbox.db"
    for suffix in ("", "-wal"):  # closed, the file is whole; a WAL left behind goes with it
        if template.path.with_name(template.path.name + suffix).exists():
            shutil.copy(template.path.with_name(template.path.name + suffix), path.with_name(path.name + suffix))
    return attrs.evolve(template, path=path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The command in this process: its exit status, stdout and stderr."""
    status = main(["outbox", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _one_line_error(status: int, out: str, err: str, expected_status: int) -> None:
    assert status == expected_status and out == "", (status, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


class TestStats:
    def test_counts_each_state(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """stats prints one line per state and the total; --json gives the same numbers."""
        status, out, _ = run(capsys, "stats", "--db", str(filled.path))
        assert status == 0
        lines = dict(line.split() for line in out.splitlines())
        assert lines == {"pending": "2", "in_flight": "0", "delivered": "3", "dead": "3", "total": "8"}
        status, out, _ = run(capsys, "stats", "--db", str(filled.path), "--json")
        document = json.loads(out)
        assert status == 0 and document["total"] == 8 and document["path"] == str(filled.path)
        assert document["disabled"] == {}
        assert document["counts"] == {"pending": 2, "in_flight": 0, "delivered": 3, "dead": 3}


class TestList:
    def test_filters(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """--state and --endpoint select; each row names the delivery, its endpoint, state and attempts."""
        db = ["--db", str(filled.path)]
        status, out, _ = run(capsys, "list", *db, "--state", "dead")
        assert status == 0
        header, *rows = out.splitlines()
        assert header.split()[:5] == ["id", "event", "endpoint", "state", "tries"]
        assert sorted(row.split()[0] for row in rows) == sorted(d.id for d in filled.dead)
        assert all(row.split()[2:6] == ["ledger", "dead", "2", "500"] for row in rows)
        assert all(row.endswith("HTTP 500") or "500" in row for row in rows)
        status, out, _ = run(capsys, "list", *db, "--endpoint", "cache", "--state", "delivered", "--json")
        records = json.loads(out)
        assert status == 0 and sorted(r["id"] for r in records) == sorted(d.id for d in filled.delivered)
        assert {(r["endpoint_key"], r["state"], r["attempts"], r["last_status"]) for r in records} == {
            ("cache", "delivered", 1, 200)
        }
        status, out, _ = run(capsys, "list", *db, "--endpoint", "cache", "--json")
        assert status == 0 and [r["state"] for r in json.loads(out)] == [
            "pending",
            "delivered",
            "delivered",
            "delivered",
        ]

    def test_since_and_limit(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """--since takes a duration back from now or an ISO time; --limit caps the rows and says so."""
        db = ["--db", str(filled.path)]
        assert len(json.loads(run(capsys, "list", *db, "--since", "1h", "--json")[1])) == 8
        assert len(json.loads(run(capsys, "list", *db, "--since", "2000-01-01", "--json")[1])) == 8
        status, out, _ = run(capsys, "list", *db, "--since", "2999-01-01T00:00+02:00")
        assert status == 0 and out == "no deliveries match\n"
        status, out, _ = run(capsys, "list", *db, "--limit", "2")
        assert status == 0 and len(out.splitlines()) == 1 + 2 + 1
        assert out.splitlines()[-1] == "(the newest 2; raise --limit to see more)"
        status, out, _ = run(capsys, "list", *db, "--limit", "8")
        assert status == 0 and len(out.splitlines()) == 1 + 8  # all of them: no hint
        status, out, _ = run(capsys, "list", *db, "--limit", "99999999999999999999")
        assert status == 0 and len(out.splitlines()) == 1 + 8  # a limit beyond SQLite's integers: all of them

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["--state", "lost"], "--state"),
            (["--limit", "0"], "--limit"),
            (["--since", "yesterday"], "--since"),
            (["--since", "0001-01-01T00:00+01:00"], "--since"),
        ],
    )
    def test_bad_filters(self, filled: Filled, args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A filter the command cannot read is bad usage: one line naming the option, exit 2."""
        with pytest.raises(SystemExit) as exited:
            main(["outbox", "list", "--db", str(filled.path), *args])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and words in err and len(err.strip().splitlines()) == 1


class TestShow:
    def test_record_and_attempts(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """show prints the record's fields and one row per attempt, the answer's start on one line."""
        dead = filled.dead[0]
        status, out, _ = run(capsys, "show", "--db", str(filled.path), dead.id)
        assert status == 0
        fields = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines())
        assert fields["id"] == dead.id and fields["event_id"] == dead.event_id
        assert fields["endpoint_key"] == "ledger" and fields["state"] == "dead" and fields["attempts"] == "2"
        attempts = out.split("\n\n")[1].splitlines()
        assert len(attempts) == 1 + 2 and all("500" in row for row in attempts[1:])
        assert all("ledger is down for maintenance until later" in row for row in attempts[1:])
        assert all(len(row.split("  ")[-1]) == 80 and row.endswith("...") for row in attempts[1:])  # clipped

    def test_json(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """show --json: the record as get() has it and every attempt, times in ISO 8601."""
        delivered = filled.delivered[0]
        status, out, _ = run(capsys, "show", "--db", str(filled.path), delivered.id, "--json")
        document = json.loads(out)
        with SqliteOutbox(filled.path) as outbox:
            record = outbox.get(delivered.id)
        assert status == 0 and record is not None
        assert document["delivery"]["id"] == record.id and document["delivery"]["state"] == "delivered"
        assert datetime.fromisoformat(document["delivery"]["created_at"]) == record.created_at
        assert len(document["attempts"]) == 1 and 200 in document["attempts"][0].values()

    def test_control_characters_from_a_receiver_are_shown_escaped(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A receiver's answer (and so an attempt's error) may hold terminal escape sequences: show and list print
        them escaped (\\x1b), never raw to the operator's terminal."""
        path = tmp_path / "outbox.db"
        hooks = _hooks("ledger")
        [delivery] = hooks.plan(_event(1), environment=23)
        hostile = "\x1b]0;owned\x07\x1b[2J"
        with SqliteOutbox(path) as outbox:
            outbox._add_dead(delivery, [AttemptResult(500, response_body=hostile.encode())], f"said {hostile}")
        hooks.close()
        status, out, _ = run(capsys, "show", "--db", str(path), delivery.id)
        assert status == 0 and "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned" in out
        status, out, _ = run(capsys, "list", "--db", str(path))
        assert status == 0 and "\x1b" not in out and "said \\x1b]0;owned" in out

    def test_pending_has_no_attempts(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """A delivery never attempted says so."""
        status, out, _ = run(capsys, "show", "--db", str(filled.path), filled.pending[0].id)
        assert status == 0 and out.rstrip().endswith("no attempts yet")

    def test_unknown_id(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """An id the file does not have: one line naming it, exit 1."""
        status, out, err = run(capsys, "show", "--db", str(filled.path), "dlv_nope")
        _one_line_error(status, out, err, 1)
        assert "dlv_nope" in err and str(filled.path) in err


class TestReplay:
    def test_by_endpoint_then_by_id(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """replay --endpoint puts that endpoint's dead deliveries back to pending; a delivered one goes back only
        when named by id; the delivery ids stay the same."""
        db = ["--db", str(filled.path)]
        status, out, _ = run(capsys, "replay", *db, "--endpoint", "cache")
        assert status == 0 and out == "replayed 0 deliveries: pending again\n"  # delivered, not dead
        status, out, _ = run(capsys, "replay", *db, "--endpoint", "ledger")
        assert status == 0 and out == "replayed 3 deliveries: pending again\n"
        status, out, _ = run(capsys, "replay", *db, filled.delivered[0].id, "--json")
        assert status == 0 and json.loads(out) == {"replayed": 1}
        with SqliteOutbox(filled.path) as outbox:
            assert outbox.counts()["pending"] == 2 + 3 + 1 and outbox.counts()["dead"] == 0
            assert {outbox.get(d.id).state for d in filled.dead} == {"pending"}  # type: ignore[union-attr]

    def test_all_and_since(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """--all replays every dead delivery; --since only those created since then."""
        db = ["--db", str(filled.path)]
        assert run(capsys, "replay", *db, "--since", "2999-01-01")[1] == "replayed 0 deliveries: pending again\n"
        assert run(capsys, "replay", *db, "--all")[1] == "replayed 3 deliveries: pending again\n"

    @pytest.mark.parametrize(
        ("args", "words"), [([], "give IDs, --endpoint, --since or --all"), (["x", "--all"], "alone")]
    )
    def test_must_say_which(
        self, filled: Filled, capsys: pytest.CaptureFixture[str], args: list[str], words: str
    ) -> None:
        """replay with nothing to choose by, or --all with a choice, is bad usage: nothing is replayed."""
        status, out, err = run(capsys, "replay", "--db", str(filled.path), *args)
        _one_line_error(status, out, err, 2)
        assert words in err and err.startswith("flaghooks outbox replay: error: ")
        with SqliteOutbox(filled.path) as outbox:
            assert outbox.counts()["dead"] == 3


class TestPrune:
    def test_delivered_by_default_then_dead(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """prune deletes delivered deliveries older than the age; dead ones only with --state dead; never
        pending ones."""
        db = ["--db", str(filled.path)]
        status, out, _ = run(capsys, "prune", *db, "--older-than", "1h")
        assert status == 0 and out == "pruned 0 deliveries (delivered) older than 1h\n"
        status, out, _ = run(capsys, "prune", *db, "--older-than", "0")
        assert status == 0 and out == "pruned 3 deliveries (delivered) older than 0s\n"
        status, out, _ = run(capsys, "prune", *db, "--older-than", "0s", "--state", "dead", "--state", "delivered")
        assert status == 0 and out == "pruned 3 deliveries (dead, delivered) older than 0s\n"
        with SqliteOutbox(filled.path) as outbox:
            assert outbox.counts() == {"pending": 2, "in_flight": 0, "delivered": 0, "dead": 0}
            assert outbox.get(filled.dead[0].id) is None and outbox.attempts(filled.dead[0].id) == []

    def test_json_and_units(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """prune --json says how many, which states and the age in seconds; 7d is a week."""
        status, out, _ = run(capsys, "prune", "--db", str(filled.path), "--older-than", "7d", "--json")
        assert status == 0 and json.loads(out) == {"pruned": 0, "states": ["delivered"], "older_than": 604800.0}
        status, out, _ = run(capsys, "prune", "--db", str(filled.path), "--older-than", "1.5h")
        assert status == 0 and out.endswith("older than 90m\n")

    @pytest.mark.parametrize(
        "args",
        [[], ["--older-than", "soon"], ["--older-than", "-1d"], ["--older-than", "1y"], ["--older-than", "9" * 400]],
    )
    def test_bad_age(self, filled: Filled, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
        """--older-than is required and must be a duration: otherwise bad usage, one line, exit 2."""
        with pytest.raises(SystemExit) as exited:
            main(["outbox", "prune", "--db", str(filled.path), *args])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and "--older-than" in err and len(err.strip().splitlines()) == 1


def test_enable_lifts_a_durable_disable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An endpoint that answered 410 stays disabled in the file; `outbox enable KEY` lifts it, once."""
    path = tmp_path / "outbox.db"
    with SqliteOutbox(path) as outbox:
        hooks = _hooks("gone")
        delivery = OutboxDelivery(hooks, outbox, poll_interval=0.02)
        delivery.publish(_event(1))
        delivery.start()
        _wait(lambda: outbox.counts().get("dead") == 1)
        delivery.close()
        hooks.close()
    status, out, _ = run(capsys, "stats", "--db", str(path))
    assert status == 0 and "disabled: gone (it answered 410 Gone); `flaghooks outbox enable` lifts it" in out
    status, out, _ = run(capsys, "enable", "--db", str(path), "gone")
    assert status == 0 and out == "gone: enabled (its workers send to it again)\n"
    assert json.loads(run(capsys, "stats", "--db", str(path), "--json")[1])["disabled"] == {}
    assert run(capsys, "enable", "--db", str(path), "gone")[1] == "gone: was not disabled\n"
    status, out, _ = run(capsys, "enable", "--db", str(path), "gone", "--json")
    assert status == 0 and json.loads(out) == {"endpoint": "gone", "enabled": True, "was_disabled": False}


class TestBadFiles:
    @pytest.mark.parametrize("action", [["stats"], ["list"], ["show", "x"], ["replay", "--all"], ["enable", "k"]])
    def test_missing_file_is_not_created(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], action: list[str]
    ) -> None:
        """A --db that does not exist is bad usage naming it; the command never creates an outbox."""
        path = tmp_path / "typo.db"
        status, out, err = run(capsys, *action, "--db", str(path))
        _one_line_error(status, out, err, 2)
        assert f"--db {path}: no such file" in err and not path.exists()

    def test_directory(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A directory is bad usage too."""
        status, out, err = run(capsys, "stats", "--db", str(tmp_path))
        _one_line_error(status, out, err, 2)
        assert "a directory" in err

    def test_not_a_database(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A file that is not SQLite: the outbox's error, one line naming the file, exit 1."""
        path = tmp_path / "notes.txt"
        path.write_bytes(b"these are not the deliveries you are looking for\n" * 100)
        status, out, err = run(capsys, "list", "--db", str(path))
        _one_line_error(status, out, err, 1)
        assert err.startswith("flaghooks outbox list: error: ") and str(path) in err

    def test_locked_beyond_the_busy_timeout(
        self, filled: Filled, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another connection holding the write lock past the busy timeout: one line saying so, exit 1."""
        monkeypatch.setattr(SqliteOutbox, "_busy_timeout", 0.2)  # not the 5 s a user waits
        holder = sqlite3.connect(filled.path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            status, out, err = run(capsys, "stats", "--db", str(filled.path))
        finally:
            holder.close()
        _one_line_error(status, out, err, 1)
        assert "locked" in err and str(filled.path) in err

    def test_a_database_without_an_outbox(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Another SQLite database (the app's, say) is not turned into an outbox by looking at it: exit 1."""
        path = tmp_path / "app.db"
        connection = sqlite3.connect(path)
        try:
            with connection:
                connection.execute("CREATE TABLE flags (name TEXT)")
        finally:
            connection.close()
        before = path.read_bytes()
        status, out, err = run(capsys, "stats", "--db", str(path))
        _one_line_error(status, out, err, 1)
        assert "without an outbox" in err and path.read_bytes() == before

    def test_written_by_a_newer_flaghooks(self, filled: Filled, capsys: pytest.CaptureFixture[str]) -> None:
        """A file whose schema is newer than this flaghooks: one line naming the file, exit 1, file untouched."""
        connection = sqlite3.connect(filled.path)
        try:
            with connection:
                connection.execute("UPDATE flaghooks_outbox_schema SET version = version + 100")
        finally:
            connection.close()
        before = filled.path.read_bytes()
        status, out, err = run(capsys, "stats", "--db", str(filled.path))
        _one_line_error(status, out, err, 1)
        assert str(filled.path) in err and filled.path.read_bytes() == before


def test_as_a_subprocess(filled: Filled) -> None:
    """`python -m flaghooks outbox stats --json` in a process of its own: one JSON document on stdout."""
    result = subprocess.run(
        [sys.executable, "-m", "flaghooks", "outbox", "stats", "--db", str(filled.path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"pending": 2, "in_flight": 0, "delivered": 3, "dead": 3}


APP = """
from flaghooks import Endpoint, RetryPolicy, Webhooks
from flaghooks.testing import RecordingTransport

def make_webhooks():
    hooks = Webhooks(transport=RecordingTransport(), retry=RetryPolicy.never())
    hooks.subscribe(Endpoint("https://cache.example/flags", name="cache"), environment=23)
    hooks.subscribe(Endpoint("https://ledger.example/flags", name="ledger"), environment=23)
    return hooks

def broken():
    raise KeyError("FLAG_CACHE_URL")

not_a_function = 3

def nothing():
    return None
"""


class TestWork:
    def test_delivers_until_sigterm(self, filled: Filled, tmp_path: Path) -> None:
        """`outbox work --app module:function` delivers what is pending from the file (the worker's own
        Webhooks, here the ledger answers 200) and stops on SIGTERM with exit 0 and a summary."""
        (tmp_path / "hooks_app.py").write_text(APP)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)])}
        command = ["outbox", "work", "--db", str(filled.path), "--app", "hooks_app:make_webhooks"]
        process = subprocess.Popen(
            [sys.executable, "-m", "flaghooks", *command, "--poll-interval", "0.05"],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert process.stderr is not None
            assert "delivering from" in process.stderr.readline()
            with SqliteOutbox(filled.path) as outbox:
                _wait(lambda: outbox.counts()["pending"] == 0)
                assert outbox.replay(endpoint="ledger") == 3
                _wait(lambda: outbox.counts()["delivered"] == 3 + 2 + 3)
        finally:
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert err.rstrip().endswith("stopped; the outbox holds 0 pending, 0 in_flight, 8 delivered, 0 dead")

    @pytest.mark.parametrize(
        ("app", "words"),
        [
            ("hooks_app", "give module:function"),
            ("no_such_module_here:make", "cannot import no_such_module_here"),
            ("hooks_app:missing", "hooks_app has no missing"),
            ("hooks_app:not_a_function", "not_a_function is not callable"),
            ("hooks_app:broken", "raised KeyError: 'FLAG_CACHE_URL'"),
            ("hooks_app:nothing", "returned NoneType, not a flaghooks.Webhooks"),
            ("crashing_app:make", "cannot import crashing_app: RuntimeError: no FLAG_CACHE_URL"),
        ],
    )
    def test_bad_app(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
        app: str,
        words: str,
    ) -> None:
        """An --app that cannot give a Webhooks is bad usage: one line saying why, exit 2, no file made."""
        (tmp_path / "hooks_app.py").write_text(APP)
        (tmp_path / "crashing_app.py").write_text("raise RuntimeError('no FLAG_CACHE_URL')\n")  # at import
        monkeypatch.chdir(tmp_path)  # the app's module is found from the current directory
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.delitem(sys.modules, "hooks_app", raising=False)
        monkeypatch.delitem(sys.modules, "crashing_app", raising=False)
        path = tmp_path / "outbox.db"
        status, out, err = run(capsys, "work", "--db", str(path), "--app", app)
        _one_line_error(status, out, err, 2)
        assert words in err and not path.exists()

    def test_unusable_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A --db in a missing directory: the outbox's one-line error, exit 1."""
        (tmp_path / "hooks_app.py").write_text(APP)
        (tmp_path / "crashing_app.py").write_text("raise RuntimeError('no FLAG_CACHE_URL')\n")  # at import
        monkeypatch.chdir(tmp_path)  # the app's module is found from the current directory
        monkeypatch.setattr(sys, "path", list(sys.path))
        monkeypatch.delitem(sys.modules, "hooks_app", raising=False)
        monkeypatch.delitem(sys.modules, "crashing_app", raising=False)
        status, out, err = run(
            capsys, "work", "--db", str(tmp_path / "nope" / "outbox.db"), "--app", "hooks_app:make_webhooks"
        )
        _one_line_error(status, out, err, 1)
        assert "does not exist" in err

    @pytest.mark.parametrize(
        ("option", "value"), [("--poll-interval", "0"), ("--workers", "0"), ("--per-endpoint", "x")]
    )
    def test_bad_numbers(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str) -> None:
        """--workers and --per-endpoint are whole numbers above 0, --poll-interval a duration above 0."""
        with pytest.raises(SystemExit) as exited:
            main(["outbox", "work", "--db", str(tmp_path / "o.db"), "--app", "m:f", option, value])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and option in err and len(err.strip().splitlines()) == 1

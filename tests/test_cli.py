"""The flaghooks command, run as a user runs it: in subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cases import vector_bytes
from flaghooks import generate_secret, sign_flagsmith


def flaghooks(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flaghooks", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestDemo:
    def test_demo(self) -> None:
        """flaghooks demo prints the table and the cache and exits 0."""
        result = flaghooks("demo")
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for step in (
            "create checkout_banner",
            "toggle checkout_banner on",
            "add a beta_users segment override",
            "remove alice's override",
            "delete legacy_search",
            "write an audit log entry",
        ):
            assert step in out
        assert re.search(r"9 deliveries, 9 delivered, 0 needed a retry", out)
        assert "checkout_banner  default" in out and "'green'" in out and "'purple'" in out
        assert "legacy_search  default" not in out
        assert out.rstrip().endswith("ok: every delivery was verified and the cache matches the story's end")

    def test_demo_with_failures_retries(self) -> None:
        """With --fail-rate 0.5 the receiver fails first attempts; retries show and the demo still exits 0."""
        result = flaghooks("demo", "--fail-rate", "0.5", "--format", "modern")
        assert result.returncode == 0, result.stderr
        retried = int(re.search(r"(\d+) needed a retry", result.stdout).group(1))  # type: ignore[union-attr]
        assert retried > 0
        assert "503 to 50% of first attempts" in result.stdout

    def test_demo_json(self) -> None:
        """With --json, stdout is one JSON document and nothing else."""
        result = flaghooks("demo", "--json", "--fail-rate", "0.3")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["ok"] is True and document["problems"] == []
        assert len(document["deliveries"]) == 9 and all(d["ok"] for d in document["deliveries"])
        assert sorted((c["feature"], c["value"]) for c in document["cache"]) == [
            ("checkout_banner", "green"),
            ("checkout_banner", "purple"),
        ]

    @pytest.mark.parametrize("arg", ["2", "-0.1", "half"])
    def test_bad_fail_rate(self, arg: str) -> None:
        """A fail rate outside [0, 1) is bad usage: one line on stderr, exit 2."""
        result = flaghooks("demo", "--fail-rate", arg)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert "--fail-rate" in result.stderr


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`flaghooks listen --port 0 --secret ...` in a subprocess, and its URL."""
    secret = "listen-secret"
    process = subprocess.Popen(
        [sys.executable, "-m", "flaghooks", "listen", "--port", "0", "--secret", secret],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+/)", first)
    assert match, first + (process.stderr.read() if process.stderr else "")
    yield process, match.group(1)
    if process.poll() is None:
        process.terminate()
    process.communicate(timeout=10)  # also closes the pipes


def test_listen_and_ping(listener: tuple[subprocess.Popen[str], str]) -> None:
    """ping and listen against each other: signed right, accepted (exit 0); wrong secret, rejected (exit 1)."""
    process, url = listener
    good = flaghooks("ping", url, "--secret", "listen-secret", "--allow-private")
    assert good.returncode == 0, good.stdout + good.stderr
    assert re.match(r"200 in \d+ ms \(FLAG_UPDATED evt_\w+\)", good.stdout)
    bad = flaghooks("ping", url, "--secret", "wrong-secret", "--allow-private", "--event", "FLAG_DELETED")
    assert bad.returncode == 1
    assert "HTTP 401" in bad.stdout and "does not match" in bad.stdout
    audit = flaghooks(
        "ping",
        url,
        "--secret",
        "listen-secret",
        "--allow-private",
        "--event",
        "AUDIT_LOG_CREATED",
        "--format",
        "modern",
    )
    assert audit.returncode == 0, audit.stdout
    process.terminate()
    out, _ = process.communicate(timeout=10)
    lines = out.splitlines()
    assert any(
        line.startswith("FLAG_UPDATED flaghooks_ping in environment 1: enabled=True value='ping'") for line in lines
    )
    assert any("401 Unauthorized signature does not match the body" in line for line in lines)
    assert any(line.startswith("AUDIT_LOG_CREATED audit log of organisation 1") for line in lines)
    assert "listen-secret" not in out


def test_ping_refuses_loopback_by_default(listener: tuple[subprocess.Popen[str], str]) -> None:
    """Without --allow-private, the SSRF policy refuses this machine, and says how to allow it."""
    _, url = listener
    result = flaghooks("ping", url, "--secret", "listen-secret")
    assert result.returncode == 1 and "SSRF" in result.stdout and "--allow-private" in result.stdout


def test_ping_standard_signing() -> None:
    """ping --signing standard needs a whsec_ secret: a bad one is a usage error."""
    result = flaghooks("ping", "http://127.0.0.1:9/", "--signing", "standard", "--secret", "plain")
    assert result.returncode == 2 and "whsec_" in result.stderr and "plain" not in result.stderr


def test_listen_standard_secret() -> None:
    """listen --standard-secret verifies Standard Webhooks; ping --signing both passes it."""
    secret = generate_secret()
    process = subprocess.Popen(
        [sys.executable, "-m", "flaghooks", "listen", "--port", "0", "--standard-secret", secret],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = re.search(r"(http://\S+/)", process.stdout.readline()).group(1)  # type: ignore[union-attr]
        assert flaghooks("ping", url, "--secret", secret, "--signing", "both", "--allow-private").returncode == 0
        assert (
            flaghooks("ping", url, "--secret", generate_secret(), "--signing", "standard", "--allow-private").returncode
            == 1
        )
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_listen_needs_a_choice() -> None:
    """listen needs one of --secret, --standard-secret and --allow-unsigned."""
    result = flaghooks("listen", "--port", "0")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    both = flaghooks("listen", "--secret", "a", "--allow-unsigned")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad = flaghooks("listen", "--port", "0", "--standard-secret", "nope")
    assert bad.returncode == 2 and "standard_secrets" in bad.stderr


class TestSignVerify:
    def test_sign_stdin_and_file(self, tmp_path: Path) -> None:
        """sign prints the X-Flagsmith-Signature of a file or of standard input."""
        body = vector_bytes("flag_updated.classic.json")
        path = tmp_path / "body.json"
        path.write_bytes(body)
        expected = sign_flagsmith(body, "k3y")
        assert flaghooks("sign", "--secret", "k3y", str(path)).stdout.strip() == expected
        assert flaghooks("sign", "--secret", "k3y", stdin=body).stdout.strip() == expected
        assert flaghooks("sign", "--secret", "k3y", "-", stdin=body).stdout.strip() == expected

    def test_verify(self, tmp_path: Path) -> None:
        """verify exits 0 for a valid signature and 1 otherwise."""
        body = vector_bytes("audit_log_created.classic.json")
        path = tmp_path / "body.json"
        path.write_bytes(body)
        good = flaghooks("verify", "--secret", "k3y", "--signature", sign_flagsmith(body, "k3y"), str(path))
        assert good.returncode == 0 and good.stdout.strip() == "valid"
        bad = flaghooks("verify", "--secret", "other", "--signature", sign_flagsmith(body, "k3y"), str(path))
        assert bad.returncode == 1 and "does not match" in bad.stderr
        junk = flaghooks("verify", "--secret", "k3y", "--signature", "xyz", stdin=body)
        assert junk.returncode == 1 and "malformed" in junk.stderr

    @pytest.mark.parametrize("command", ["sign", "verify"])
    def test_usage_errors(self, command: str, tmp_path: Path) -> None:
        """A missing file or an empty secret is one line on stderr and exit 2."""
        extra = ["--signature", "x"] if command == "verify" else []
        missing = flaghooks(command, "--secret", "k", *extra, str(tmp_path / "nope"))
        assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
        empty = flaghooks(command, "--secret", "", *extra, stdin=b"{}")
        assert empty.returncode == 2 and "empty" in empty.stderr


def test_help_everywhere() -> None:
    """--help works on the command and every subcommand."""
    for command in ([], ["demo"], ["ping"], ["listen"], ["sign"], ["verify"]):
        result = flaghooks(*command, "--help")
        assert result.returncode == 0 and "usage: flaghooks" in result.stdout


def test_bad_usage_is_one_line() -> None:
    """Usage errors are one line on stderr and exit 2."""
    for args in (
        [],
        ["nope"],
        ["ping"],
        ["demo", "--format", "xml"],
        ["listen", "--port", "99999", "--allow-unsigned"],
    ):
        result = flaghooks(*args)
        assert result.returncode == 2, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_console_script_entry() -> None:
    """The console script points at the same main."""
    from importlib.metadata import entry_points

    [script] = [e for e in entry_points(group="console_scripts") if e.name == "flaghooks"]
    assert script.value == "flaghooks.cli:_entry"


def test_describe_other_event_types() -> None:
    """`listen` describes NEW_VERSION_PUBLISHED and event types flaghooks does not know too."""
    from flaghooks import EventType, VersionFeature, VersionPublished, WebhookEvent
    from flaghooks.cli import describe_target

    version = VersionPublished(uuid="u-1", feature=VersionFeature(1, "checkout"))
    assert describe_target(WebhookEvent("e", EventType.NEW_VERSION_PUBLISHED, version)) == "version u-1 of checkout"
    assert "does not know" in describe_target(WebhookEvent("e", "SOMETHING_NEW", {}))

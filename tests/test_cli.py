"""The flaghooks command, run as a user runs it: in subprocesses."""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cases import vector_bytes
from flaghooks import generate_secret, sign_flagsmith, sign_standard


def flaghooks(
    *args: str, stdin: bytes | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flaghooks", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
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

    def test_demo_background(self) -> None:
        """flaghooks demo --background: the healthy endpoints finish first, the slow one is delivered, the dead
        one trips its breaker and what it still holds is abandoned at the end; exit 0."""
        result = flaghooks("demo", "--background")
        assert result.returncode == 0, result.stderr
        out = result.stdout
        assert "published 36 deliveries in" in out and "publish never waits on an endpoint" in out
        assert "health: dead failing (2 consecutive failed attempts; paused for 30 s)" in out
        assert "healthy endpoints: 18 delivered" in out and "slow endpoint:     9 delivered" in out
        assert re.search(r"dead endpoint: +\d failed, \d abandoned at shutdown", out)
        rows = [line.split() for line in out.splitlines() if re.match(r" *\d+\.\d  (healthy|slow|dead)", line)]
        order = [row[1].rstrip("-12") for row in rows]
        assert order == ["healthy"] * 18 + ["slow"] * 9 + ["dead"] * 9
        assert out.rstrip().endswith(
            "ok: the healthy endpoints finished first; the slow and dead ones cost them nothing"
        )

    def test_demo_background_json(self) -> None:
        """demo --background --json: one JSON document; every delivery to the live endpoints ok, in order."""
        result = flaghooks("demo", "--background", "--json", "--fail-rate", "0.3", "--format", "modern")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["ok"] is True and document["problems"] == [] and document["format"] == "modern"
        live = [d for d in document["deliveries"] if d["endpoint"] != "dead"]
        assert len(live) == 27 and all(d["ok"] for d in live)
        dead = [d for d in document["deliveries"] if d["endpoint"] == "dead"]
        assert len(dead) == 9 and not any(d["ok"] for d in dead)
        assert document["abandoned"] == sum(d["error"] == "abandoned at shutdown" for d in dead) >= 8
        assert [h["state"] for h in document["health"]] in (["failing"], [])

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
    assert bad.returncode == 1 and bad.stdout == ""
    assert "HTTP 401" in bad.stderr and "does not match" in bad.stderr
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
    version = flaghooks("ping", url, "--secret", "listen-secret", "--allow-private", "--event", "NEW_VERSION_PUBLISHED")
    assert version.returncode == 0, version.stdout + version.stderr
    process.terminate()
    out, _ = process.communicate(timeout=10)
    lines = out.splitlines()
    assert any(
        line.startswith("FLAG_UPDATED flaghooks_ping in environment 1: enabled=True value='ping'") for line in lines
    )
    assert any("401 Unauthorized signature does not match the body" in line for line in lines)
    assert any(line.startswith("AUDIT_LOG_CREATED audit log of organisation 1") for line in lines)
    assert any(line.startswith("NEW_VERSION_PUBLISHED version 00000000-") for line in lines)
    assert "listen-secret" not in out


def test_ping_refuses_loopback_by_default(listener: tuple[subprocess.Popen[str], str]) -> None:
    """Without --allow-private, the SSRF policy refuses this machine, and says how to allow it (on stderr)."""
    _, url = listener
    result = flaghooks("ping", url, "--secret", "listen-secret")
    assert result.returncode == 1 and "SSRF" in result.stderr and "--allow-private" in result.stderr


def test_ping_standard_signing() -> None:
    """ping --signing standard needs a whsec_ secret: a bad one is a usage error, in the command's terms."""
    result = flaghooks("ping", "http://127.0.0.1:9/", "--signing", "standard", "--secret", "plain")
    assert result.returncode == 2 and "whsec_" in result.stderr and "plain" not in result.stderr
    assert "--secret is not a Standard Webhooks secret" in result.stderr and "Endpoint" not in result.stderr


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
    assert bad.returncode == 2 and "--standard-secret is not a Standard Webhooks secret" in bad.stderr
    assert "standard_secrets" not in bad.stderr and "nope" not in bad.stderr


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


def test_every_option_has_help() -> None:
    """Every option and argument of every command says what it is for in --help."""
    from flaghooks.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
        for action in parser._actions:
            yield path, action
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")

    actions = list(walk(build_parser(), "flaghooks"))
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}" for path, a in actions if not a.help]
    assert missing == []
    assert len(actions) > 40  # every subcommand was visited


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestPing:
    @pytest.mark.parametrize(
        "userinfo",
        ["ping-user:PASSw0rd-s3cret", "ping-user:PASS%5Cw0rd", "ping-user:PASS\\w0rd", "ping-user:PASS#w0rd"],
    )
    def test_never_prints_url_credentials_or_the_secret(self, userinfo: str) -> None:
        """Whatever fails (a refused connection, a URL one parser reads differently, one the endpoint refuses),
        ping's output has neither the URL's user or password nor the signing secret."""
        url = f"http://{userinfo}@127.0.0.1:{_closed_port()}/hook"
        result = flaghooks("ping", url, "--secret", "the-Signing-secret", "--allow-private")
        assert result.returncode in (1, 2) and result.stdout == "" and result.stderr
        for planted in ("PASS", "w0rd", "s3cret", "ping-user", "the-Signing-secret"):
            assert planted not in result.stderr, result.stderr

    def test_bad_url_errors_do_not_echo_credentials(self) -> None:
        """A URL the endpoint refuses is a usage error naming the URL, never echoing its password."""
        result = flaghooks("ping", "ftp://ping-user:PASSw0rd-s3cret@example.com/", "--secret", "s")
        assert result.returncode == 2 and "the URL must be an absolute http or https URL" in result.stderr
        assert "PASSw0rd-s3cret" not in result.stderr

    def test_timeout(self) -> None:
        """--timeout bounds the attempt: a server that accepts and never answers fails it, with the reason."""
        with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel completes handshakes; nobody reads
            url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
            result = flaghooks("ping", url, "--allow-private", "--timeout", "0.3")
        assert result.returncode == 1 and "time" in result.stderr.lower(), result.stderr

    @pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
    def test_bad_timeout(self, value: str) -> None:
        """A timeout that is not a positive, finite number of seconds is bad usage."""
        result = flaghooks("ping", "http://127.0.0.1:9/", "--timeout", value)
        assert result.returncode == 2 and "--timeout" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


class TestSecretSources:
    def test_from_environment_and_file(self, tmp_path: Path) -> None:
        """--secret-env NAME and --secret-file PATH give the same secret as --secret (a file's newline dropped)."""
        body = vector_bytes("flag_updated.classic.json")
        path = tmp_path / "secret"
        path.write_text("k3y\n")
        expected = sign_flagsmith(body, "k3y")
        from_file = flaghooks("sign", "--secret-file", str(path), stdin=body)
        from_env = flaghooks(
            "sign", "--secret-env", "FLAGHOOKS_TEST_SECRET", stdin=body, env={"FLAGHOOKS_TEST_SECRET": "k3y"}
        )
        assert from_file.stdout.strip() == from_env.stdout.strip() == expected

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (
                ["--secret-env", "FLAGHOOKS_NOT_SET"],
                "--secret-env FLAGHOOKS_NOT_SET: the environment variable is not set",
            ),
            (["--secret-env", "FLAGHOOKS_EMPTY"], "--secret-env FLAGHOOKS_EMPTY: the secret must not be empty"),
            (
                ["--secret-file", "/nonexistent/flaghooks-secret"],
                "--secret-file /nonexistent/flaghooks-secret: cannot read",
            ),
            ([], "one of --secret, --secret-env and --secret-file is required"),
            (["--secret", "a", "--secret-env", "X"], "not allowed with"),
        ],
    )
    def test_unusable_sources(self, args: list[str], words: str) -> None:
        """A secret that cannot be had is one line on stderr naming the option, and exit 2."""
        result = flaghooks("sign", *args, stdin=b"{}", env={"FLAGHOOKS_EMPTY": ""})
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


class TestStandardSigning:
    def test_sign_matches_an_independent_implementation(self, tmp_path: Path) -> None:
        """sign --signing standard prints the three headers; the standardwebhooks package accepts them."""
        import standardwebhooks

        secret = generate_secret()
        body = vector_bytes("flag_updated.classic.json")
        path = tmp_path / "secret"
        path.write_text(secret)
        result = flaghooks("sign", "--signing", "standard", "--secret-file", str(path), "--id", "msg_1", stdin=body)
        assert result.returncode == 0, result.stderr
        headers = dict(line.split(": ", 1) for line in result.stdout.splitlines())
        assert list(headers) == ["webhook-id", "webhook-timestamp", "webhook-signature"]
        assert headers["webhook-id"] == "msg_1" and abs(int(headers["webhook-timestamp"]) - time.time()) < 60
        standardwebhooks.Webhook(secret).verify(body, headers)
        assert secret not in result.stdout

    def test_verify(self, tmp_path: Path) -> None:
        """verify --signing standard checks id, timestamp and signature; --tolerance admits an old capture."""
        secret = generate_secret()
        body = vector_bytes("audit_log_created.classic.json")
        path = tmp_path / "body.json"
        path.write_bytes(body)
        now = int(time.time())
        signature = sign_standard(body, secret=secret, msg_id="msg_9", timestamp=now)
        common = ["verify", "--signing", "standard", "--secret", secret, "--signature", f"v1,bogus {signature}"]
        good = flaghooks(*common, "--id", "msg_9", "--timestamp", str(now), str(path))
        assert good.returncode == 0 and good.stdout == "valid\n", good.stderr
        other = flaghooks(*common, "--id", "msg_10", "--timestamp", str(now), str(path))
        assert other.returncode == 1 and "no webhook-signature matches" in other.stderr
        old = now - 7200
        captured = sign_standard(body, secret=secret, msg_id="msg_9", timestamp=old)
        args = ["verify", "--signing", "standard", "--secret", secret, "--signature", captured, "--id", "msg_9"]
        stale = flaghooks(*args, "--timestamp", str(old), str(path))
        assert stale.returncode == 1 and "too old" in stale.stderr
        tolerated = flaghooks(*args, "--timestamp", str(old), "--tolerance", "86400", str(path))
        assert tolerated.returncode == 0, tolerated.stderr

    @pytest.mark.parametrize(
        ("args", "words"),
        [
            (["sign", "--secret", "k", "--id", "m"], "--id applies to --signing standard only"),
            (["sign", "--secret", "k", "--timestamp", "1"], "--timestamp applies to --signing standard only"),
            (["verify", "--secret", "k", "--signature", "x", "--tolerance", "5"], "--tolerance applies to"),
            (["sign", "--signing", "standard", "--secret", "plain", "--id", "m"], "--secret is not a Standard"),
            (["sign", "--signing", "standard", "--secret", generate_secret()], "needs --id"),
            (
                ["verify", "--signing", "standard", "--secret", generate_secret(), "--id", "m", "--signature", "v1,x"],
                "needs --timestamp",
            ),
            (["sign", "--signing", "standard", "--secret", "s", "--id", "m", "--timestamp", "soon"], "--timestamp"),
        ],
    )
    def test_usage_errors(self, args: list[str], words: str) -> None:
        """Options that do not fit the chosen signing are one-line usage errors in the command's terms."""
        result = flaghooks(*args, stdin=b"{}")
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "plain" not in result.stderr


def _start_listen(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str, str]:
    """`flaghooks listen --port 0 ARGS` in a subprocess: the process, its URL and its first line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flaghooks", "listen", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    match = re.search(r"listening on (http://\S+/)", first)
    if match is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(first + err)
    return process, match.group(1), first


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    if process.poll() is None:
        process.terminate()
    return process.communicate(timeout=10)


class TestListen:
    def test_both_secrets_together(self, tmp_path: Path) -> None:
        """listen takes --secret and --standard-secret together (here from a variable and a file) and then
        requires both signatures, as WebhookReceiver does."""
        standard = generate_secret()
        path = tmp_path / "standard"
        path.write_text(standard + "\n")
        process, url, first = _start_listen(
            "--secret-env", "LISTEN_SECRET", "--standard-secret-file", str(path), env={"LISTEN_SECRET": "fs-secret"}
        )
        try:
            both = flaghooks("ping", url, "--secret", standard, "--signing", "both", "--allow-private")
            assert both.returncode == 1  # the Flagsmith signature is made with the whsec_ secret: wrong one
            standard_only = flaghooks("ping", url, "--secret", standard, "--signing", "standard", "--allow-private")
            assert standard_only.returncode == 1 and "HTTP 401" in standard_only.stderr
            flagsmith_only = flaghooks("ping", url, "--secret", "fs-secret", "--allow-private")
            assert flagsmith_only.returncode == 1 and "HTTP 401" in flagsmith_only.stderr
        finally:
            out, err = _stop(process)
        assert "verifying X-Flagsmith-Signature and Standard Webhooks" in first
        assert "fs-secret" not in first + out + err and standard not in out + err

    def test_both_signatures_accepted(self, tmp_path: Path) -> None:
        """With one whsec_ secret for both schemes, ping --signing both passes listen's two checks."""
        secret = generate_secret()
        process, url, _ = _start_listen("--secret", secret, "--standard-secret", secret)
        try:
            result = flaghooks("ping", url, "--secret", secret, "--signing", "both", "--allow-private")
            assert result.returncode == 0, result.stderr
        finally:
            out, _ = _stop(process)
        assert "FLAG_UPDATED flaghooks_ping in environment 1" in out

    def test_allow_unsigned_excludes_secrets(self) -> None:
        """--allow-unsigned with any secret option is bad usage."""
        result = flaghooks("listen", "--standard-secret-env", "X", "--allow-unsigned")
        assert result.returncode == 2 and "--allow-unsigned: not allowed with" in result.stderr

    def test_ipv6(self) -> None:
        """--host ::1 listens on IPv6 loopback and prints a bracketed URL that ping reaches."""
        try:
            with socket.socket(socket.AF_INET6) as probe:
                probe.bind(("::1", 0))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        process, url, _ = _start_listen("--host", "::1", "--allow-unsigned")
        try:
            assert url.startswith("http://[::1]:")
            result = flaghooks("ping", url, "--allow-private")
            assert result.returncode == 0, result.stderr
        finally:
            out, _ = _stop(process)
        assert "FLAG_UPDATED flaghooks_ping" in out

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
    def test_a_signal_finishes_the_request_in_flight(self, sig: signal.Signals) -> None:
        """SIGTERM (or Ctrl-C) while a request is being read: the request is answered (not 500), then the
        process exits 0."""
        answer, status, out, err = self._signal_mid_request([sig])
        assert answer.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), answer[:200]
        assert status == 0 and "FLAG_UPDATED" in out and "Traceback" not in err

    def test_a_second_signal_stops_at_once(self) -> None:
        """A second SIGTERM does not wait for the request in flight: the process exits 128 + 15 unanswered."""
        answer, status, _, err = self._signal_mid_request([signal.SIGTERM, signal.SIGTERM])
        assert answer == b"" and status == 128 + signal.SIGTERM and "Traceback" not in err

    def _signal_mid_request(self, signals: list[signal.Signals]) -> tuple[bytes, int, str, str]:
        """Start a request, send ``signals`` while its body is still arriving, then send the rest of the body.
        Returns the answer, the exit status, stdout and stderr."""
        if not Path("/proc/self/fd").is_dir():
            pytest.skip("needs /proc to see when the server has taken the connection")
        process, url, _ = _start_listen("--allow-unsigned")
        port = int(url.rsplit(":", 1)[1].strip("/"))
        fds = f"/proc/{process.pid}/fd"
        body = vector_bytes("flag_updated.classic.json")
        answer = b""
        try:
            before = len(os.listdir(fds))
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                head = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                client.sendall(head.encode() + body[:10])
                deadline = time.monotonic() + 10
                while len(os.listdir(fds)) == before:  # until the server has accepted this connection
                    assert time.monotonic() < deadline, "the server never took the connection"
                    time.sleep(0.005)
                assert process.stdout is not None
                process.send_signal(signals[0])
                # The first signal has been handled once this line is out (two at once could merge into one).
                assert select.select([process.stdout], [], [], 10)[0], "the signal was not handled"
                assert process.stdout.readline().startswith("stopping after the request in flight")
                for sig in signals[1:]:
                    process.send_signal(sig)
                if len(signals) > 1:
                    process.wait(timeout=10)
                try:
                    client.sendall(body[10:])  # the rest of the body, after the signal
                    while chunk := client.recv(65536):
                        answer += chunk
                except OSError:  # the process is gone: nothing was answered
                    pass
            status = process.wait(timeout=10)
        finally:
            out, err = _stop(process)
        return answer, status, out, err

    def test_cannot_listen(self) -> None:
        """A port already taken is one line on stderr and exit 2."""
        with socket.create_server(("127.0.0.1", 0)) as taken:
            result = flaghooks("listen", "--port", str(taken.getsockname()[1]), "--allow-unsigned")
        assert result.returncode == 2 and "cannot listen on 127.0.0.1 port" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_demo_marks_cut_text() -> None:
    """The demo's table marks a target cut to fit its column with "...", so it is never read as the whole."""
    result = flaghooks("demo")
    [row] = [line for line in result.stdout.splitlines() if line.startswith("add a beta_users segment override")]
    assert "checkout_banner in Production, segment beta_u..." in row


def test_secret_file_must_be_text(tmp_path: Path) -> None:
    """A secret file that is not UTF-8 text is a usage error naming the option."""
    path = tmp_path / "secret.bin"
    path.write_bytes(b"\xff\xfe\x00")
    result = flaghooks("sign", "--secret-file", str(path), stdin=b"{}")
    assert result.returncode == 2 and f"--secret-file {path}: not UTF-8 text" in result.stderr


def test_hosts_and_targets() -> None:
    """IPv6 literals (bare or bracketed) are served as IPv6 and bracketed in URLs; names and IPv4 are not."""
    from flaghooks._cli_common import is_ipv6, url_host

    assert [is_ipv6(h) for h in ("::1", "[::1]", "127.0.0.1", "localhost")] == [True, True, False, False]
    assert (url_host("::1"), url_host("[::1]"), url_host("localhost")) == ("[::1]", "[::1]", "localhost")


def test_describe_other_event_types() -> None:
    """`listen` describes NEW_VERSION_PUBLISHED and event types flaghooks does not know too."""
    from flaghooks import EventType, VersionFeature, VersionPublished, WebhookEvent
    from flaghooks.cli import describe_target

    version = VersionPublished(uuid="u-1", feature=VersionFeature(1, "checkout"))
    assert describe_target(WebhookEvent("e", EventType.NEW_VERSION_PUBLISHED, version)) == "version u-1 of checkout"
    assert "does not know" in describe_target(WebhookEvent("e", "SOMETHING_NEW", {}))

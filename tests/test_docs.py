"""The docs and examples run: every Python snippet in docs/ and the README, every file in examples/."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flaghooks
from cases import ROOT, golden_path

DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# Files whose name starts with "_" are helpers the examples import, not examples of their own.
EXAMPLES = sorted(path for path in (ROOT / "examples").glob("*.py") if not path.name.startswith("_"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
GOLDEN_BLOCK = re.compile(r"<!-- golden: (\w+)\.(classic|modern) -->\n```json\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks(path: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(path.read_text(encoding="utf-8")) if lang == "python"]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_snippets_run(path: Path) -> None:
    """A page's Python snippets run in order in one namespace, as a reader would paste them."""
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for index, block in enumerate(python_blocks(path)):
        code = compile(block, f"{path.name}[block {index}]", "exec")
        exec(code, namespace)  # noqa: S102 - the docs are this repository's own


def test_payload_page_shows_the_goldens() -> None:
    """docs/payloads.md shows every variant in both formats, exactly as the golden files have them."""
    page = (ROOT / "docs" / "payloads.md").read_text(encoding="utf-8")
    shown = {(variant, fmt): json.loads(body) for variant, fmt, body in GOLDEN_BLOCK.findall(page)}
    goldens = sorted(golden_path("x", "y").parent.glob("*.json"))
    assert len(shown) == len(goldens) == 16
    for path in goldens:
        variant, fmt = path.name.removesuffix(".json").rsplit(".", 1)
        assert shown[(variant, fmt)] == json.loads(path.read_text(encoding="utf-8")), path.name


EXPECTED = {
    "quickstart.py": ["delivered: True (HTTP 200", "the receiver's cache says feature_name is on"],
    # The channel is the endpoint's name, as the example's comment says; the URL is never opened.
    "custom_transport.py": ["on *dark_mode* in Staging (value 'auto')", "removed *dark_mode*", '"channel": "#flags"'],
    "local_cache_receiver.py": [
        "before any web hook:   404",
        'after the rollout:     {"enabled": true, "value": "v2"}',
        'for ada@example.com:   {"enabled": true, "value": "v2-beta"}',
    ],
    "audit_stream.py": ["3 of 3 audit entries delivered and verified", "system             SEGMENT"],
    **{
        f"receive_in_{framework}.py": [
            "genuine delivery: HTTP 200",
            "the same event again: HTTP 200 (on_event ran 1 time)",
            "tampered copy: HTTP 401",
            "checkout_banner in the cache: (True, 'green')",
        ]
        for framework in ("django", "flask", "fastapi", "wsgi_app")
    },
}


def test_every_example_is_checked() -> None:
    """Each example file has its expectations here."""
    assert sorted(p.name for p in EXAMPLES) == sorted(EXPECTED)


def test_example_helpers_are_used() -> None:
    """Each helper module under examples/ is imported by an example (and so runs with it)."""
    helpers = [path.stem for path in (ROOT / "examples").glob("_*.py")]
    sources = "\n".join(path.read_text(encoding="utf-8") for path in EXAMPLES)
    for helper in helpers:
        assert f"from {helper} import" in sources, helper


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_run(path: Path) -> None:
    """Every example runs to completion and prints what it is about."""
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    for text in EXPECTED[path.name]:
        assert text in result.stdout, result.stdout


def test_quickstart_prints_the_documented_body() -> None:
    """The quickstart prints the documented bytes and their signature."""
    from cases import vector_bytes

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "some-secret"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = vector_bytes("flag_updated.classic.json")
    assert f"body: {body.decode()}\n" in result.stdout
    assert f"X-Flagsmith-Signature: {flaghooks.sign_flagsmith(body, 'some-secret')}\n" in result.stdout


DOCTESTED = ["flaghooks._changes", "flaghooks._signing", "flaghooks.testing"]


@pytest.mark.parametrize("module", DOCTESTED)
def test_doctests(module: str) -> None:
    """Examples in docstrings hold."""
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_worst_case_publish_time_is_stated_from_the_defaults() -> None:
    """delivery.md, the quickstart and Webhooks' docstring say that publish blocks the caller, and state the
    worst case for one endpoint computed from the defaults (attempts x timeout + the waits between them)."""
    policy, endpoint = flaghooks.RetryPolicy(), flaghooks.Endpoint("https://example.com/")
    waits = [policy.backoff * policy.multiplier ** (n - 1) for n in range(1, policy.attempts)]
    worst = policy.attempts * endpoint.timeout + sum(waits)
    stated = f"{worst:g} s"
    assert stated == "36 s"
    delivery = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    assert "runs in the caller's thread" in delivery and f"3 x 10 + 2 + 4 = {stated}" in delivery
    assert f"about {stated}" in (ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")
    docstring = " ".join((flaghooks.Webhooks.__doc__ or "").split())
    assert "runs in the calling thread" in docstring and f"about {stated}" in docstring


def test_webhooks_arguments_are_documented() -> None:
    """Every argument of Webhooks(...) is in its docstring and in delivery.md's table, with why CLASSIC is the
    default and what becomes of an event a format cannot express."""
    import inspect

    delivery = (ROOT / "docs" / "delivery.md").read_text(encoding="utf-8")
    docstring = " ".join((flaghooks.Webhooks.__doc__ or "").split())
    for name in inspect.signature(flaghooks.Webhooks).parameters:
        assert f"``{name}``" in docstring and f"| `{name}` |" in delivery, name
    for text in (docstring, " ".join(delivery.split())):
        assert "what Flagsmith's server sends today" in text and "0 attempts" in text


def test_quickstart_shows_how_to_see_failures() -> None:
    """Delivery failures are not silent for someone following the quickstart: the page's code passes on_result,
    and the example configures logging and passes on_result."""
    page = "\n".join(python_blocks(ROOT / "docs" / "quickstart.md"))
    assert "on_result=" in page
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert "logging.basicConfig(" in example and "on_result=" in example


def _receiver_example(*args: str, secret: str | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "WEBHOOK_SECRET"}
    if secret is not None:
        env["WEBHOOK_SECRET"] = secret
    return subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "local_cache_receiver.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("args", "secret", "words"),
    [
        (["--serve", "0"], None, "set WEBHOOK_SECRET to the Standard Webhooks secret"),
        (["--serve", "0"], "plain-Secret", "WEBHOOK_SECRET is not a Standard Webhooks secret (a Standard"),
        (["--serve", "0"], "whsec_AAAA", "must decode to"),
        (["--serve", "http"], flaghooks.generate_secret(), "not a port number"),
        (["--serve"], flaghooks.generate_secret(), "usage:"),
    ],
    ids=["no-secret", "not-whsec", "short-key", "bad-port", "no-port"],
)
def test_local_cache_receiver_refuses_to_start(args: list[str], secret: str | None, words: str) -> None:
    """The receiver example says what secret it needs and stops with one line, never a traceback, when the
    secret (or the port) is missing or unusable; the line never shows the secret."""
    process = _receiver_example(*args, secret=secret)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and words in err and "Traceback" not in err, err
    assert secret is None or secret not in err


def test_local_cache_receiver_serves() -> None:
    """With a valid secret in WEBHOOK_SECRET, --serve answers flag lookups from its (empty) cache."""
    import urllib.error
    import urllib.request

    process = _receiver_example("--serve", "0", secret=flaghooks.generate_secret())
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        match = re.search(r"serving on (http://127\.0\.0\.1:\d+/)", first)
        assert match, first
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(match.group(1) + "flags/5/new_checkout", timeout=10)  # noqa: S310 - loopback
        assert caught.value.code == 404 and b"unknown flag" in caught.value.read()
        caught.value.close()
    finally:
        process.terminate()
        process.communicate(timeout=10)

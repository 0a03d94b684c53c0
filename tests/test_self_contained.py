"""The test suite needs nothing outside the repository: a user's fresh clone tests itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cases import ROOT, VECTORS

TESTS = ROOT / "tests"
# Ways a test could reach outside the checkout: the CI-only shared folder, a parent directory, an env override.
_OUTSIDE = re.compile(r"\.\./|shared/vectors|FLAGHOOKS_VECTORS|parents\[[2-9]\]|\.parent\.parent|ROOT\.parent\b")


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_module_reaches_outside_the_repository(path: Path) -> None:
    """No test module names a path outside the checkout (this file's own pattern aside)."""
    if path == Path(__file__).resolve():
        return
    hits = [line for line in path.read_text(encoding="utf-8").splitlines() if _OUTSIDE.search(line)]
    assert not hits, f"{path.name} reaches outside the repository: {hits}"


def test_vectors_are_committed_with_their_sources() -> None:
    """The documented vectors are in tests/vectors, and its README says where each file came from."""
    files = sorted(p.name for p in VECTORS.glob("*.json"))
    assert files == ["audit_log_created.classic.json", "flag_updated.classic.json", "signatures.json"]
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for name in files:
        assert f"`{name}`" in readme, f"tests/vectors/README.md does not say where {name} came from"

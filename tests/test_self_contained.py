"""The test suite needs nothing outside the repository: a user's fresh clone tests itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cases import ROOT, VECTORS

TESTS = ROOT / "tests"
# Ways a test could reach outside the checkout: the CI-only shared folder, a parent directory, an env override.
# Spelled in pieces, so that this file does not itself contain what it looks for.
_OUTSIDE = re.compile(
    "|".join(
        [
            r"\.\./",
            "shared" + "/vectors",
            "FLAGHOOKS" + "_VECTORS",
            r"parents\[[2-9]\]",
            r"\.parent\.parent",
            r"ROOT\.parent\b",
        ]
    )
)


@pytest.mark.parametrize("path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS)))
def test_no_test_module_reaches_outside_the_repository(path: Path) -> None:
    """No test module names a path outside the checkout."""
    hits = [line for line in path.read_text(encoding="utf-8").splitlines() if _OUTSIDE.search(line)]
    assert not hits, f"{path.name} reaches outside the repository: {hits}"


def test_vectors_are_committed_with_their_sources() -> None:
    """The documented vectors are in tests/vectors, and its README says where each file came from."""
    files = sorted(p.name for p in VECTORS.glob("*.json"))
    assert files == ["audit_log_created.classic.json", "flag_updated.classic.json", "signatures.json"]
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    for name in files:
        assert f"`{name}`" in readme, f"tests/vectors/README.md does not say where {name} came from"

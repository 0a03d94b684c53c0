"""The package's public face."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs
import pytest

import flaghooks
import flaghooks.exceptions
from cases import ROOT


def test_version_comes_from_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert flaghooks.__version__ == version("flaghooks")


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted and every name in it exists."""
    assert list(flaghooks.__all__) == sorted(flaghooks.__all__)
    for name in flaghooks.__all__:
        assert hasattr(flaghooks, name), name


def test_exceptions_are_reexported() -> None:
    """The exceptions module's classes are the ones exported from flaghooks."""
    for name in flaghooks.exceptions.__all__:
        assert getattr(flaghooks, name) is getattr(flaghooks.exceptions, name)


def test_library_logger_has_a_null_handler() -> None:
    """Importing flaghooks never configures logging, but its logger has a NullHandler."""
    handlers = logging.getLogger("flaghooks").handlers
    assert any(isinstance(handler, logging.NullHandler) for handler in handlers)


def test_typed_marker_ships() -> None:
    """py.typed is in the package, so type checkers use the annotations."""
    assert (Path(flaghooks.__file__).parent / "py.typed").is_file()


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return tomllib.load(handle)["project"]  # type: ignore[no-any-return]


def test_classifiers_name_every_supported_python() -> None:
    """A classifier for each minor version from requires-python's floor to the newest supported, 3.14."""
    project = _pyproject()
    floor = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert floor is not None
    named = {c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.fullmatch(r"[^:]+ :: Python :: 3\.\d+", c)}
    assert named == {f"3.{minor}" for minor in range(int(floor.group(1)), 15)}


def test_project_urls() -> None:
    """PyPI's sidebar links: home, documentation, changelog and issues, all absolute https URLs."""
    urls = _pyproject()["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert all(url.startswith("https://github.com/flaghooks/flaghooks") for url in urls.values())
    for name, path in (("Documentation", "docs/index.md"), ("Changelog", "CHANGELOG.md")):
        assert urls[name].endswith("/blob/main/" + path) and (ROOT / path).is_file()


def test_import_from_a_source_tree_without_metadata(tmp_path: Path) -> None:
    """A copy of src/ on the path, with no installed distribution's metadata in sight, imports: __version__ and
    the User-Agent fall back to a version that says it is unknown instead of raising PackageNotFoundError."""
    shutil.copytree(ROOT / "src" / "flaghooks", tmp_path / "src" / "flaghooks")
    # The dependencies, without any distribution metadata (flaghooks' own editable install included).
    site = Path(attrs.__file__).parents[1]
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in site.iterdir():
        if entry.suffix in {".dist-info", ".egg-info", ".pth"} or "flaghooks" in entry.name:
            continue
        (deps / entry.name).symlink_to(entry)
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "import flaghooks, flaghooks._dispatch as d\n"
        "print(flaghooks.__file__); print(flaghooks.__version__); print(d._USER_AGENT)\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(tmp_path / "src"), str(deps)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    where, found, agent = result.stdout.splitlines()
    assert Path(where).is_relative_to(tmp_path / "src")
    assert (found, agent) == ("0+unknown", "flaghooks/0+unknown")


def test_version_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the distribution's metadata the version reads as unknown; with it, as installed."""
    from importlib.metadata import PackageNotFoundError

    from flaghooks import _version

    def missing(name: str) -> str:
        raise PackageNotFoundError(name)

    assert _version._read() == version("flaghooks")
    monkeypatch.setattr(_version, "version", missing)
    assert _version._read() == _version.UNKNOWN == "0+unknown"


def test_imports_where_the_platform_has_no_fork() -> None:
    """flaghooks imports, and makes ids and deliveries, on a platform without os.register_at_fork (Windows)."""
    import subprocess
    import sys

    script = (
        "import os; del os.register_at_fork\n"
        "import flaghooks\n"
        "from flaghooks.transports import HttpTransport\n"
        "HttpTransport().close()\n"
        "print(flaghooks.flag_changed.__name__, 'ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "flag_changed ok", done.stderr

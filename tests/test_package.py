"""The package's public face."""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import flaghooks
import flaghooks.exceptions


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

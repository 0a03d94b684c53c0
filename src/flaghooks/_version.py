"""The package's version, read once from the installed metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

# A source tree on sys.path without an installed distribution (a vendored copy, a zipapp, a checkout run with
# PYTHONPATH) has no metadata to read; importing must still work, with a version that says it is unknown
# (a valid PEP 440 local version, so tools that parse it do not choke).
UNKNOWN = "0+unknown"


def _read() -> str:
    try:
        return version("flaghooks")
    except PackageNotFoundError:
        return UNKNOWN


VERSION = _read()

"""The installed Inspector version, where every layer can import it.

``inspector.__version__`` re-exports it; the core reads it from here, so the core never imports
the package root (which sits above every layer)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("inspector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

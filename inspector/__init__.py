"""Inspector: offline visual-inspection labelling with an in-process active learner."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("inspector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

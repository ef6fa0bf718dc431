"""Entry point of the packaged (PyInstaller) executable.

``multiprocessing.freeze_support()`` must run before anything else: the feature extraction runs
in worker processes started with the *spawn* method, and in a frozen build a worker is this same
executable started again with multiprocessing's own arguments. freeze_support() recognises those,
runs the worker and exits, so a worker never parses the command line or opens a window.
"""

import multiprocessing
import os
import sys


def _main() -> int:
    multiprocessing.freeze_support()
    # A windowed build (Windows/macOS "inspector-gui") has no console: sys.stdout/stderr are None,
    # and a print() from the command-line layer would raise. Send them to the null device.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
    if os.environ.get("INSPECTOR_EXIT_WHEN_SHOWN"):
        from inspector.selftest import install_exit_when_shown

        install_exit_when_shown()
    from inspector.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())

"""``inspector --self-test``: the whole run from source, and how it reports a failure."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from inspector import selftest

SUMMARY = re.compile(
    r"^self-test passed: scan 60 images, features \((\d+) worker processes\), labels, train, query, export, "
    r"report, predict, window \(project opened\) — (\d+\.\d) s$"
)


@pytest.mark.slow
def test_self_test_from_source_passes_and_prints_the_summary(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TMPDIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "inspector", "--self-test"],
        capture_output=True, text=True, encoding="utf-8", env=env, timeout=600,
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    match = SUMMARY.match(lines[-1])
    assert match, f"unexpected summary line: {lines[-1]!r}"
    assert int(match.group(1)) >= 1
    # one timed line per step, each ok
    for step in selftest.STEPS:
        assert any(re.match(rf"^\s*{step}\s+\d+\.\d\d s\s+ok$", line) for line in lines), f"no line for {step}"
    # the temporary folder (data set, project, model file) is gone
    assert list(tmp_path.iterdir()) == []


def _run_steps(monkeypatch, tmp_path, steps, **step_functions):
    """Run the self-test with only ``steps``; ``step_functions`` replace some steps."""
    if "window" in steps:
        from PySide6.QtCore import QSettings
        from PySide6.QtWidgets import QApplication

        QApplication.instance() or QApplication([])  # as in other UI tests: Qt is already running
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path.parent / "settings"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(selftest, "STEPS", steps)
    for name, function in step_functions.items():
        monkeypatch.setattr(selftest._SelfTest, f"step_{name}", function)
    out = io.StringIO()
    code = selftest.run_self_test(out=out)
    return code, out.getvalue().strip().splitlines()


def test_a_failed_check_names_the_step_and_the_reason_and_exits_1(monkeypatch, tmp_path):
    def bad_scan(self):
        selftest._expect(False, "scan found 59 new images, expected 60")

    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "scan", "train"), scan=bad_scan)
    assert code == 1
    assert re.match(r"^self-test FAILED at step 'scan': scan found 59 new images, expected 60 \(\d+\.\d s\)$",
                    lines[-1]), lines
    assert not any(line.strip().startswith("train") for line in lines), "steps after a failure must not run"
    assert list(tmp_path.iterdir()) == [], "the temporary folder must be removed after a failure too"


def test_an_exception_in_a_step_is_reported_with_its_type(monkeypatch, tmp_path):
    def broken(self):
        raise ImportError("No module named 'sklearn.tree._utils'")

    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "train"), train=broken)
    assert code == 1
    assert "FAILED at step 'train': ImportError: No module named 'sklearn.tree._utils'" in lines[-1]


def test_network_use_fails_the_self_test(monkeypatch, tmp_path):
    def phone_home(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routed
        return "phoned"

    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "query"), query=phone_home)
    assert code == 1
    assert "FAILED at step 'query'" in lines[-1]
    assert "network use is not allowed" in lines[-1]


def test_the_network_guard_is_removed_afterwards_and_leaves_local_sockets_alone(monkeypatch, tmp_path):
    def local_socket(self):
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"x")
            assert b.recv(1) == b"x"
        return "local"

    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "query"), query=local_socket)
    assert code == 0, lines
    assert lines[-1].startswith("self-test passed: local — ")
    assert socket.socket.connect.__name__ == "connect"


def test_environment_is_restored_and_qt_runs_offscreen_during_the_test(monkeypatch, tmp_path):
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    seen = {}

    def look(self):
        seen["platform"] = os.environ.get("QT_QPA_PLATFORM")
        seen["config"] = os.environ.get("XDG_CONFIG_HOME")
        return ""

    before = dict(os.environ)
    code, _ = _run_steps(monkeypatch, tmp_path, ("startup", "scan"), scan=look)
    assert code == 0
    assert seen["platform"] == "offscreen"
    assert Path(seen["config"]).is_relative_to(tmp_path)
    assert dict(os.environ) == before


@pytest.mark.slow
def test_a_view_that_cannot_be_built_fails_the_window_step(monkeypatch, tmp_path):
    """A view that cannot be built (as in a frozen build missing a library) fails the window
    step, named with its error; the self-test must not pass over it."""
    import inspector.ui.main_window as main_window

    class BrokenDashboard:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("pyqtgraph missing from this build")

    monkeypatch.setattr(main_window, "DashboardView", BrokenDashboard)  # the window imports it plainly
    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "dataset", "scan", "features", "window"))
    assert code == 1, lines
    assert "FAILED at step 'window': views not available: Dashboard" in lines[-1]


def test_a_view_module_that_cannot_be_imported_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "inspector.ui.gallery", None)  # import raises ImportError
    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "window"))
    assert code == 1
    assert "FAILED at step 'window': cannot load inspector.ui.gallery: ModuleNotFoundError" in lines[-1]


def test_a_traceback_printed_during_a_step_fails_it(monkeypatch, tmp_path):
    """An exception in a Qt slot only prints a traceback and the app carries on; the self-test
    must not pass over it."""
    def step_dataset(self):
        from PySide6.QtCore import QObject, Signal

        class Emitter(QObject):
            fired = Signal()

        def slot():
            raise RuntimeError("Internal C++ object (PySide6.QtWidgets.QLabel) already deleted.")

        emitter = Emitter()
        emitter.fired.connect(slot)
        emitter.fired.emit()  # PySide6 prints the traceback (via sys.excepthook) and returns
        return ""

    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "dataset"), dataset=step_dataset)
    assert code == 1
    assert re.match(r"self-test FAILED at step 'dataset': .*RuntimeError.*already deleted", lines[-1]), lines[-1]


def test_a_traceback_on_stderr_fails_the_step_too(monkeypatch, tmp_path):
    def step_dataset(self):
        sys.stderr.write("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: boom\n")
        return ""

    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "dataset"), dataset=step_dataset)
    assert code == 1 and "ValueError: boom" in lines[-1]


def test_a_result_for_a_deleted_view_is_dropped(qapp):
    import shiboken6
    from PySide6.QtWidgets import QLabel

    from inspector.ui.workers import deliver_to

    label = QLabel()
    got = []
    deliver = deliver_to(label, lambda value: (got.append(value), label.setText(str(value))))
    deliver(1)
    shiboken6.delete(label)
    deliver(2)  # the view is gone: nothing happens, no "already deleted" error
    assert got == [1]


def test_the_cnn_step_extracts_with_the_shipped_weights(monkeypatch, tmp_path):
    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "cnn"))
    assert code == 0, lines
    assert any(re.match(r"^\s*cnn\s+\d+\.\d\d s\s+ok$", line) for line in lines), lines


def test_the_cnn_step_fails_with_a_reason_when_the_weights_are_missing(monkeypatch, tmp_path):
    import inspector.core.features as features
    from inspector.core.features import CnnExtractor

    monkeypatch.setitem(features._INSTANCES, "cnn", CnnExtractor(weights_path=tmp_path / "absent.pkl"))
    code, lines = _run_steps(monkeypatch, tmp_path, ("startup", "cnn"))
    assert code == 1
    assert "FAILED at step 'cnn': WeightsError: cannot read the CNN weights" in lines[-1] and "absent.pkl" in lines[-1]

"""``inspector --self-test``: exercise the whole product offscreen and report, step by step.

Made for the packaged executable (does the frozen build have everything it needs: worker
processes, scikit-learn, Qt plugins, the model file format?) and useful from source too::

    inspector --self-test
    ...
    self-test passed: scan 60 images, features (2 worker processes), labels, train, query, export,
    report, predict, window (project opened) — 12.3 s

Everything happens inside one temporary folder that is removed at the end: a small synthetic data
set, a project, a model file. Qt runs offscreen unless ``QT_QPA_PLATFORM`` is already set, and the
app's settings (QSettings, XDG folders) are pointed into the temporary folder for the run, so the
self-test leaves no trace in the user's settings (recent projects) or anywhere else. No network:
any attempt to open an internet socket from this process fails the self-test.

Exit code 0 when every step passed; 1 with the failing step and the reason otherwise.

Also here: :func:`install_exit_when_shown`, used by the packaged entry point when
``INSPECTOR_EXIT_WHEN_SHOWN=1`` to measure start-to-window time (tests/benchmarks/bench_frozen.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

#: images in the synthetic data set; more than ingest.IN_PROCESS_BELOW so worker processes run
N_IMAGES = 60
#: worker processes for feature extraction
WORKERS = 2
#: (height, width) of the synthetic images: small, the self-test should take seconds
IMAGE_SIZE = (240, 320)
#: labels cleared again after the folder import, so the learner has images to choose from
N_UNLABELLED = 20
#: labels given as random-audit picks, so the honest (audit) estimate is exercised too
N_AUDIT = 8

#: the window's optional views (the window shows a placeholder if one cannot be imported)
VIEW_MODULES = ("inspector.ui.label_view", "inspector.ui.gallery", "inspector.ui.dashboard",
                "inspector.ui.features_dialog", "inspector.ui.team", "inspector.ui.goals", "inspector.ui.main_window")
EXIT_WHEN_SHOWN_ENV = "INSPECTOR_EXIT_WHEN_SHOWN"
#: a folder: the window step saves a picture of each of the window's views there (for a look at
#: a frozen build on a machine without a display); unset, the self-test writes nothing outside
#: its temporary folder
SCREENSHOTS_ENV = "INSPECTOR_SELFTEST_SCREENSHOTS"


class StepFailed(Exception):
    """A check inside a step did not hold; the message says what was expected."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


# --------------------------------------------------------------------------- isolation


@contextmanager
def _no_network() -> Iterator[list]:
    """Make every internet socket operation of this process fail (and record it)."""
    attempts: list[str] = []
    original = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "bind", "sendto")}

    def guard(name: str) -> Callable:
        real = original[name]

        def guarded(self, *args, **kwargs):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(f"socket.{name}{args[-1:]!r}")
                raise OSError(f"inspector self-test: network use is not allowed ({name} {args[-1:]!r})")
            return real(self, *args, **kwargs)

        return guarded

    for name in original:
        setattr(socket.socket, name, guard(name))
    try:
        yield attempts
    finally:
        for name, real in original.items():
            setattr(socket.socket, name, real)


@contextmanager
def _isolated_environment(tmp: Path) -> Iterator[None]:
    """Offscreen Qt (unless a platform is forced) and settings folders inside ``tmp``."""
    saved = dict(os.environ)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for variable, folder in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
                             ("XDG_CACHE_HOME", "cache"), ("XDG_STATE_HOME", "state")):
        (tmp / folder).mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(tmp / folder)
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _redirect_qsettings(tmp: Path) -> None:
    """QSettings written by the app during the self-test go to ``tmp`` (not the user's)."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(tmp / "qsettings"))


class _ErrorWatch:
    """Everything that looks like an error during the run, even where the app carries on: a
    traceback printed on stderr (an exception in a Qt slot prints one and the app goes on), an
    exception reaching sys.excepthook or threading.excepthook, a critical Qt message. A clean
    run has none; :func:`run_self_test` fails the step during which the first one appeared."""

    TRACEBACK = "Traceback (most recent call last)"

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._text: list[str] = []
        self._saved: dict = {}

    # stderr: written through, and read for tracebacks
    def write(self, text: str) -> int:
        self._text.append(text)
        return self._saved["stderr"].write(text)

    def flush(self) -> None:
        self._saved["stderr"].flush()

    def __getattr__(self, name: str):
        return getattr(self._saved["stderr"], name)

    def _excepthook(self, kind, value, tb) -> None:
        self.problems.append(f"uncaught {kind.__name__}: {value}")
        traceback.print_exception(kind, value, tb, file=self._saved["stderr"])

    def _thread_excepthook(self, args) -> None:
        self.problems.append(f"uncaught {args.exc_type.__name__} in thread {getattr(args.thread, 'name', '?')}: "
                             f"{args.exc_value}")
        traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=self._saved["stderr"])

    def _qt_message(self, mode, context, message: str) -> None:
        from PySide6.QtCore import QtMsgType

        from inspector.ui.app import HARMLESS_QT_MESSAGES

        if message in HARMLESS_QT_MESSAGES:
            return
        if mode in (QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg):
            self.problems.append(f"Qt: {message}")
        self.write(f"Qt: {message}\n")

    def take(self) -> Optional[str]:
        """The first problem seen since the last call (tracebacks on stderr included), or None."""
        text = "".join(self._text)
        self._text.clear()
        if self.TRACEBACK in text and not self.problems:
            tail = text[text.index(self.TRACEBACK):].strip().splitlines()
            self.problems.append(f"a traceback was printed: {tail[-1] if tail else '?'}")
        problems, self.problems = self.problems, []
        return problems[0] if problems else None

    def __enter__(self) -> "_ErrorWatch":
        import threading

        self._saved = {"stderr": sys.stderr, "excepthook": sys.excepthook,
                       "thread_excepthook": threading.excepthook}
        sys.stderr = self
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook
        if "PySide6.QtCore" in sys.modules or importlib.util.find_spec("PySide6") is not None:
            from PySide6.QtCore import qInstallMessageHandler

            self._saved["qt"] = qInstallMessageHandler(self._qt_message)
        return self

    def __exit__(self, *exc) -> None:
        import threading

        if "qt" in self._saved:
            from PySide6.QtCore import qInstallMessageHandler

            qInstallMessageHandler(self._saved["qt"])
        threading.excepthook = self._saved["thread_excepthook"]
        sys.excepthook = self._saved["excepthook"]
        sys.stderr = self._saved["stderr"]


# --------------------------------------------------------------------------- the steps


class _SelfTest:
    def __init__(self, tmp: Path, out) -> None:
        self.tmp = tmp
        self.out = out
        self.timings: list[tuple[str, float]] = []
        self.labels: list[str] = []  # parts of the summary line
        self.project = None
        self.images = tmp / "images"
        self.project_path = tmp / "selftest.inspector"
        self.model_path = tmp / "selftest-model.inspector-model"
        self.unlabelled: list[int] = []
        self.truth: dict[int, str] = {}
        self.fitted = None
        self.snapshot = None

    # each step returns the words it adds to the summary line
    def step_startup(self) -> str:
        import inspector

        _expect(bool(inspector.__version__), "no version")
        if getattr(sys, "frozen", False):
            _expect(not inspector.__version__.startswith("0.0.0"),
                    f"package metadata missing from the build (version {inspector.__version__})")
        return ""

    def step_dataset(self) -> str:
        from inspector.core.demo import write_demo_dataset

        summary = write_demo_dataset(self.images, n_images=N_IMAGES, size=IMAGE_SIZE, ok_fraction=0.5,
                                     random_state=7)
        _expect(len(summary["files"]) == N_IMAGES, f"wrote {len(summary['files'])} images, expected {N_IMAGES}")
        return ""

    def step_scan(self) -> str:
        from inspector.core.ingest import scan_folder
        from inspector.core.store import Project

        from inspector.core.extractor_choice import start_project_with

        self.project = Project.create(self.project_path, self.images)
        start_project_with(self.project)
        summary = scan_folder(self.project)
        _expect(summary.new == N_IMAGES, f"scan found {summary.new} new images, expected {N_IMAGES}")
        _expect(summary.errors == 0, f"scan reported {summary.errors} unreadable files")
        return f"scan {summary.new} images"

    def step_features(self) -> str:
        import multiprocessing

        from inspector.core import ingest
        from inspector.core.extractor_choice import project_extractor

        _expect(N_IMAGES >= ingest.IN_PROCESS_BELOW,
                f"{N_IMAGES} images would be read in-process (threshold {ingest.IN_PROCESS_BELOW})")
        worker_pids: set[int] = set()
        calls = []

        def progress(done: int, total: int, message: str) -> None:
            calls.append(done)
            worker_pids.update(p.pid for p in multiprocessing.active_children() if p.pid is not None)

        analysed, errors = ingest.analyse_pending(self.project, workers=WORKERS, progress=progress)
        _expect(analysed == N_IMAGES, f"analysed {analysed} images, expected {N_IMAGES}")
        _expect(errors == 0, f"{errors} images could not be analysed: "
                + "; ".join(f"{r.path}: {r.error}" for r in self.project.problem_files()[:3]))
        _expect(len(worker_pids) >= 1, "no worker process ran (features were computed in-process)")
        _expect(calls and calls[-1] == N_IMAGES, f"progress ended at {calls[-1] if calls else None}")
        extractor = project_extractor(self.project)
        ids, X = self.project.feature_matrix(extractor.name, extractor.version)
        _expect(X.shape == (N_IMAGES, extractor.dim), f"feature matrix {X.shape}, expected ({N_IMAGES}, {extractor.dim})")
        import numpy as np

        _expect(bool(np.all(np.isfinite(X))), "non-finite feature values")
        _expect(float(np.std(X, axis=0).max()) > 0, "every image has the same features")
        return f"features ({len(worker_pids)} worker processes)"

    def step_cnn(self) -> str:
        """The pretrained CNNs' weights are in the build; they and the default extractor give finite
        vectors of the right length."""
        import numpy as np

        from inspector.core import images
        from inspector.core.demo import render_part
        from inspector.core.features import DEFAULT_EXTRACTOR, get_extractor

        pixels, _ = render_part(IMAGE_SIZE, "crack", 0.02, np.random.default_rng(3))
        for name in dict.fromkeys(["cnn", "effnet", DEFAULT_EXTRACTOR]):
            extractor = get_extractor(name)
            vector = extractor.features_of(images._describe(pixels))
            _expect(vector.shape == (extractor.dim,), f"{name} features of length {vector.shape}, expected {extractor.dim}")
            _expect(bool(np.all(np.isfinite(vector))), f"non-finite {name} feature values")
            _expect(float(np.abs(vector).max()) > 0, f"the {name} features are only zeros")
        return ""

    def step_labels(self) -> str:
        import csv

        from inspector.core.demo import TRUTH_FILE
        from inspector.core.labels_io import import_labels

        summary = import_labels(self.project, self.images / TRUTH_FILE, annotator="self-test", create_classes=True)
        _expect(summary.imported == N_IMAGES, f"imported {summary.imported} labels from {TRUTH_FILE}, "
                                              f"expected {N_IMAGES}")
        with open(self.images / TRUTH_FILE, newline="", encoding="utf-8") as handle:
            expected = {row["path"]: row["label"] for row in csv.DictReader(handle)}
        names = {c.id: c.name for c in self.project.classes()}
        labels = self.project.latest_labels()
        self.truth = {i: names[c] for i, c in labels.items()}
        for image_id, path in self.project.image_paths().items():
            _expect(expected.get(path) == self.truth.get(image_id),
                    f"image {path} labelled {self.truth.get(image_id)!r}, {TRUTH_FILE} says {expected.get(path)!r}")
        # Clear every third label (the learner will choose among these) and re-give a few labels
        # as random-audit picks (for the honest accuracy estimate).
        ids = sorted(labels)
        self.unlabelled = ids[::3][:N_UNLABELLED]
        for image_id in self.unlabelled:
            self.project.add_label(image_id, kind="cleared", annotator="self-test")
        rest = [i for i in ids if i not in set(self.unlabelled)]
        for image_id in rest[1::4][:N_AUDIT]:
            self.project.add_label(image_id, labels[image_id], annotator="self-test", audit=True)
        now = self.project.latest_labels()
        _expect(len(now) == N_IMAGES - len(self.unlabelled),
                f"{len(now)} labelled after clearing, expected {N_IMAGES - len(self.unlabelled)}")
        _expect(len(self.project.audit_labels()) >= 1, "no audit labels recorded")
        return "labels"

    def step_train(self) -> str:
        from inspector.core.learning import learner

        self.snapshot = learner.take_snapshot(self.project)
        self.fitted = learner.fit(self.snapshot)
        _expect(self.fitted.model is not None, "no model was trained")
        _expect(self.fitted.n_labels == N_IMAGES - len(self.unlabelled),
                f"trained on {self.fitted.n_labels} labels, expected {N_IMAGES - len(self.unlabelled)}")
        _expect("audit" in self.fitted.metrics, "no audit estimate in the model's metrics")
        return "train"

    def step_query(self) -> str:
        from inspector.core.learning import learner

        selection = learner.select(self.snapshot, self.fitted, n=10)
        version = learner.commit(self.project, self.snapshot, self.fitted, selection)
        _expect(version is not None, "no model version recorded")
        queue = self.project.queue()
        _expect(len(queue) == 10, f"queue has {len(queue)} images, expected 10")
        chosen = {e.image_id for e in queue}
        _expect(chosen <= set(self.unlabelled), f"queued labelled images: {sorted(chosen - set(self.unlabelled))}")
        _expect(all(e.reason for e in queue), "a queued image has no reason")
        return "query"

    def step_export(self) -> str:
        from inspector.core import modelfile

        modelfile.export_model(self.project, self.model_path)
        _expect(self.model_path.is_file() and self.model_path.stat().st_size > 0, "no model file written")
        return "export"

    def step_report(self) -> str:
        from inspector.core.report import write_report

        path = self.tmp / "selftest-report.html"
        write_report(self.project, path)
        _expect(path.is_file(), "no report written")
        text = path.read_text(encoding="utf-8")
        plots = text.count("data:image/png;base64,")
        _expect(plots >= 1, "the report has no plots (matplotlib's Agg backend did not draw)")
        return "report"

    def step_predict(self) -> str:
        from inspector.core import modelfile

        model = modelfile.load_model(self.model_path)
        paths = [self.project.image_path(i) for i in self.unlabelled]
        result = model.predict(paths, workers=WORKERS)
        _expect(len(result) == len(paths), f"{len(result)} predictions for {len(paths)} images")
        failed = [p for p in result if p.error is not None]
        _expect(not failed, f"{len(failed)} images could not be predicted, e.g. {failed[0].source}: {failed[0].error}"
                if failed else "")
        predicted = [p.predicted for p in result]
        names = {c.name for c in self.project.classes()}
        _expect(set(predicted) <= names, f"unknown classes predicted: {set(predicted) - names}")
        _expect(all(0.0 <= p.confidence <= 1.0 for p in result), "a confidence outside [0, 1]")
        # the exported model must agree with the model trained in the project from the same labels
        row = self.snapshot.row_of()
        inner = self.fitted.model.predict(self.snapshot.X[[row[i] for i in self.unlabelled]])
        class_names = self.snapshot.class_names
        same = sum(class_names[int(c)] == p for c, p in zip(inner, predicted))
        _expect(same >= 0.9 * len(paths), f"exported model agrees with the trained one on {same}/{len(paths)} images")
        return "predict"

    def step_window(self) -> str:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        if QApplication.instance() is None:
            # our own process (``inspector --self-test``): the app's settings go to the temporary
            # folder. A caller that already runs Qt (tests) keeps its own QSettings set-up: the
            # redirection is process-wide and cannot be undone.
            _redirect_qsettings(self.tmp)
        from inspector.ui.app import application

        app = application()
        # the window imports every view plainly: name the module that cannot load, as the step's failure
        for name in VIEW_MODULES:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported as the step's failure
                raise StepFailed(f"cannot load {name}: {type(exc).__name__}: {exc}") from exc
        from inspector.ui import main_window

        # A modal dialog would wait for a click that never comes: close it and report its text.
        dialogs: list[str] = []

        def close_dialogs() -> None:
            modal = QApplication.activeModalWidget()
            if modal is not None:
                text = getattr(modal, "text", lambda: "")()
                dialogs.append(f"{modal.windowTitle()}: {text}".strip(": "))
                modal.close()

        watchdog = QTimer()
        watchdog.timeout.connect(close_dialogs)
        watchdog.start(100)

        def pump(seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                app.processEvents()
                if until():
                    return True
                time.sleep(0.01)
            return until()

        from inspector.core.store import Project

        window = main_window.MainWindow()
        try:
            window.show()
            _expect(pump(5.0, window.isVisible), "the main window did not become visible")
            _expect(window.width() > 0 and window.height() > 0, "the main window has no size")
            # open the self-test project in the window: labelling view, image canvas, queue
            self.close()
            Project.open(self.project_path).close()  # a refusal is reported here, not in a dialog
            # the window opens the file in a worker and shows it when it arrives
            outcome: list[bool] = []
            window.project_open_done.connect(outcome.append)
            window.open_project(str(self.project_path))
            pump(60.0, lambda: bool(outcome))
            _expect(outcome == [True],
                    f"the window could not open the project: {'; '.join(dialogs) or 'no reason given'}")
            pump(1.0)
            _expect(window.session is not None, "no project session after opening the project")
            _expect(window.stack.currentWidget() is window.tabs, "the window still shows the start page")
            # build every view first, naming the one that cannot be built (e.g. a library missing
            # from a frozen build); in the app that error reaches the error dialog when its tab shows
            tabs = window.tabs
            not_built = []
            for i in range(tabs.count()):
                widget = tabs.widget(i)
                try:
                    if hasattr(widget, "ensure_built"):  # tabs built on first show
                        widget.ensure_built()
                except Exception as exc:  # noqa: BLE001 - reported as the step's failure
                    not_built.append(f"{tabs.tabText(i)} ({type(exc).__name__}: {exc})")
            _expect(not not_built, f"views not available: {', '.join(not_built)}")
            shots = os.environ.get(SCREENSHOTS_ENV)
            for i in range(tabs.count()):
                tabs.setCurrentIndex(i)
                pump(0.7)
                if shots:
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    window.grab().save(str(Path(shots) / f"selftest-{i}-{tabs.tabText(i).lower()}.png"))
            tabs.setCurrentIndex(0)
            _expect(not dialogs, f"the window showed a dialog: {'; '.join(dialogs)}")
        finally:
            window.close()
            pump(0.3)
            watchdog.stop()
            window.deleteLater()
            app.processEvents()
            # results of work still running when the window closed arrive now, inside this step:
            # they must be dropped quietly (their views are gone)
            from inspector.ui.workers import wait_for_pools

            wait_for_pools(20000)
            pump(0.3)
        return "window (project opened)"

    def close(self) -> None:
        if self.project is not None:
            self.project.close()
            self.project = None


STEPS = ("startup", "dataset", "scan", "features", "cnn", "labels", "train", "query", "export", "report", "predict",
         "window")


def run_self_test(out=None) -> int:
    """Run every step; print a line per step and a one-line summary. Returns the exit code."""
    out = out or sys.stdout
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="inspector-selftest-"))
    failed: Optional[str] = None
    test = _SelfTest(tmp, out)
    try:
        with _isolated_environment(tmp), _no_network() as network_attempts, _ErrorWatch() as errors:
            for name in STEPS:
                t0 = time.perf_counter()
                try:
                    words = getattr(test, f"step_{name}")()
                except StepFailed as exc:
                    failed = f"self-test FAILED at step '{name}': {exc}"
                except Exception as exc:  # noqa: BLE001 - report which step broke and why, then exit 1
                    traceback.print_exc(file=sys.stderr)
                    failed = f"self-test FAILED at step '{name}': {type(exc).__name__}: {exc}"
                problem = errors.take()
                if problem and not failed:  # the step carried on, but something went wrong inside it
                    failed = f"self-test FAILED at step '{name}': {problem}"
                seconds = time.perf_counter() - t0
                test.timings.append((name, seconds))
                print(f"  {name:<10} {seconds:6.2f} s  {'FAILED' if failed else 'ok'}", file=out, flush=True)
                if failed:
                    break
                if words:
                    test.labels.append(words)
                if network_attempts:
                    failed = f"self-test FAILED at step '{name}': tried to use the network: {network_attempts[0]}"
                    break
    finally:
        test.close()
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started
    if tmp.exists():
        print(f"note: could not remove the temporary folder {tmp}", file=sys.stderr)
    if failed:
        print(f"{failed} ({total:.1f} s)", file=out, flush=True)
        return 1
    print(f"self-test passed: {', '.join(test.labels)} — {total:.1f} s", file=out, flush=True)
    return 0


# --------------------------------------------------------------------------- start-up timing


def install_exit_when_shown() -> None:
    """Make the app print ``window shown after X s`` and quit as soon as its first top-level
    window is exposed (for start-up benchmarks). Works by wrapping ``QApplication.exec``:
    the app's own start-up code runs unchanged."""
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    started = time.perf_counter()
    original_exec = QApplication.exec

    class _Watcher(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt naming
            if event.type() == QEvent.Type.Expose and getattr(obj, "isExposed", lambda: False)():
                _report_and_quit()
            return False

    state = {"done": False}

    def _report_and_quit() -> None:
        if state["done"]:
            return
        state["done"] = True
        print(f"window shown after {time.perf_counter() - started:.3f} s (in-process)", flush=True)
        # close the windows as a user would (the app's own close handling runs); if something
        # keeps the event loop alive, leave it anyway after two seconds
        QTimer.singleShot(0, QApplication.closeAllWindows)
        QTimer.singleShot(2000, lambda: QApplication.exit(0))

    def exec_and_watch(self, *args, **kwargs):
        watcher = _Watcher(self)
        self.installEventFilter(watcher)
        # a window already exposed before the loop started
        QTimer.singleShot(0, lambda: w_exposed() and _report_and_quit())
        return original_exec(*args, **kwargs)  # a static method in PySide6

    def w_exposed() -> bool:
        for widget in QApplication.topLevelWidgets():
            handle = widget.windowHandle()
            if widget.isVisible() and handle is not None and handle.isExposed():
                return True
        return False

    QApplication.exec = exec_and_watch

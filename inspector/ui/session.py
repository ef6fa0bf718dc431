"""The open project as the views see it: shared state, signals, and the background jobs.

One :class:`ProjectSession` per open project. Views (labelling, gallery, dashboard) read its
state and listen to its signals; none of them talks to another directly. Everything slow
(feature loading, scanning and extraction, training) runs in workers from
:mod:`inspector.ui.workers`; the session only starts them and publishes their results.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from inspector.core.errors import UserError
from inspector.core.store import ClassRecord, Project, QueueEntry
from inspector.ui.label_writer import LabelWriter
from inspector.ui.workers import Task, pool, run_task

log = logging.getLogger("inspector.ui")

SETTING_RETRAIN_EVERY = "app.retrain_every"
DEFAULT_RETRAIN_EVERY = 10
#: features of this many images are enough to choose a cold-start queue while extraction goes on
COLD_START_MIN_IMAGES = 24
#: a queue shorter than this is refilled when features are (re)loaded
QUEUE_LOW = 10
#: during extraction the in-memory features are refreshed at most this often
FEATURE_REFRESH_S = 15.0
#: description of the background switch of feature extractor (followed by the new name)
SWITCHING = "Switching features to"


def _extractor_key(project: Project) -> tuple[str, int]:
    """(name, version) of the project's feature extractor; the legacy texture extractor when
    this Inspector does not offer the project's (labelling goes on; the dialog says why)."""
    from inspector.core.extractor_choice import LEGACY_EXTRACTOR, project_extractor_key
    from inspector.core.features import get_extractor

    try:
        return project_extractor_key(project)
    except UserError as exc:
        log.warning("%s; using %s", exc, LEGACY_EXTRACTOR)
        legacy = get_extractor(LEGACY_EXTRACTOR)
        return legacy.name, legacy.version


# ----------------------------------------------------------------------------- worker bodies
# These run in pool threads. Each opens its own connection to the project
# (Project.worker_connection): in WAL mode its reads never block and never make the UI thread
# wait for the store's lock, and its writes wait only on another writer's short transaction.

def load_features(project_path, extractor: tuple[str, int], progress=None, cancel=None):
    """Read the feature matrix through a separate read-only connection, so a long read never
    holds the lock the UI thread needs to write a label."""
    reader = Project.open(project_path, read_only=True)
    try:
        return reader.feature_matrix(*extractor)
    finally:
        reader.close()


def scan_and_extract(project: Project, progress=None, cancel=None):
    """Walk the folder, then analyse every pending file in worker processes (batches saved as
    they finish, through this worker's own connection).

    The first images are not read in a thread of this process while the pool starts: measured
    on a 2-core machine that made the first image later (the thread competes with the starting
    processes for the cores) and stalled the UI thread longer (it competes for the GIL); the
    pool returns its first 24 images in about a second."""
    from inspector.core.ingest import analyse_pending, no_usable_image_message, scan_folder

    worker = project.worker_connection()
    try:
        if progress:
            progress(0, 0, "scanning folder")
        summary = scan_folder(worker)
        analysed, errors = analyse_pending(worker, progress=progress, cancel=cancel)
        summary.analysed = analysed
        summary.errors += errors
        summary.no_usable_image = no_usable_image_message(worker, summary)
        return summary
    finally:
        worker.close()


def switch_features(project: Project, name: str, progress=None, cancel=None):
    """Extract every image's features with extractor ``name`` (worker processes, saved in
    batches), then make it the project's extractor; a cancel leaves the project as it was."""
    from inspector.core.extractor_choice import switch_extractor

    worker = project.worker_connection()
    try:
        return switch_extractor(worker, name, progress=progress, cancel=cancel)
    finally:
        worker.close()


def compare_features(project: Project, progress=None, cancel=None):
    """The honest comparison of every extractor on the project's labels (its own connection)."""
    from inspector.core.extractor_choice import compare_extractors

    worker = project.worker_connection()
    try:
        return compare_extractors(worker, progress=progress, cancel=cancel)
    finally:
        worker.close()


def features_overview(project: Project, progress=None, cancel=None):
    """``extractor_status`` through the worker's own connection (loading an extractor's weights
    and counting vectors are not for the UI thread)."""
    from inspector.core.extractor_choice import extractor_status

    reader = project.worker_connection()
    try:
        return extractor_status(reader)
    finally:
        reader.close()


def read_counts_and_problems(project: Project, progress=None, cancel=None):
    """``(counts, problem files)`` through the worker's own connection: both scan every image
    row, a tenth of a second at 100,000 images, which the UI thread does not wait for."""
    reader = project.worker_connection()
    try:
        return reader.counts(), reader.problem_files()
    finally:
        reader.close()


class _CachedFeatures:
    """The project, but answering ``feature_matrix`` from the session's in-memory copy."""

    def __init__(self, project: Project, image_ids: np.ndarray, features: np.ndarray) -> None:
        self._project = project
        self._image_ids = image_ids
        self._features = features

    def feature_matrix(self, *_: Any):
        return self._image_ids, self._features

    def __getattr__(self, name: str) -> Any:
        return getattr(self._project, name)


@dataclass
class RetrainOutcome:
    version: Optional[int]  # None when nothing was recorded (no labels yet, or predictions only)
    n_labels: int
    metrics: dict
    probabilities: Optional[np.ndarray]
    class_ids: np.ndarray
    image_ids: np.ndarray
    queued: bool
    seconds: float
    model: Any = None  # the fitted TrainedModel (kept by the session for queue refills)
    refill: bool = False  # a queue refill with the current model, not a retrain


def retrain(project: Project, image_ids: np.ndarray, features: np.ndarray, extractor: tuple[str, int],
            write_queue: bool = True, progress=None, cancel=None) -> RetrainOutcome:
    """Fit on the current labels and (when ``write_queue``) record a version and refill the queue."""
    from inspector.core.learning import learner
    from inspector.core.progress import check

    start = time.perf_counter()
    worker = project.worker_connection()
    try:
        snapshot = learner.take_snapshot(_CachedFeatures(worker, image_ids, features), extractor=extractor)
        fitted = learner.fit(snapshot, cancel=cancel)
        check(cancel)
        version = None
        if write_queue:
            selection = learner.select(snapshot, fitted)
            check(cancel)
            version = learner.commit(worker, snapshot, fitted, selection)
    finally:
        worker.close()
    proba = None if fitted.proba is None else np.asarray(fitted.proba, np.float32)
    return RetrainOutcome(version, fitted.n_labels, fitted.metrics, proba, snapshot.classes,
                          snapshot.image_ids, write_queue, time.perf_counter() - start, model=fitted.model)


def refill(project: Project, image_ids: np.ndarray, features: np.ndarray, extractor: tuple[str, int],
           model=None, progress=None, cancel=None) -> RetrainOutcome:
    """Choose a new queue with the model the session already has: no new version, not a retrain.

    Without a usable model in memory (a reopened project, classes changed since) but with labels,
    the model is fitted again from the current labels for the ranking; nothing is recorded."""
    from inspector.core.learning import learner
    from inspector.core.progress import check

    start = time.perf_counter()
    worker = project.worker_connection()
    try:
        snapshot = learner.take_snapshot(_CachedFeatures(worker, image_ids, features), extractor=extractor)
        usable = model is not None and np.array_equal(np.asarray(model.classes), snapshot.classes)
        if usable:
            fitted = learner.FitResult(model, len(snapshot.labels), {}, model.predict_proba(snapshot.X))
        elif snapshot.labels and snapshot.previous_version is not None:
            fitted = learner.fit(snapshot, cancel=cancel)  # the project's model, from an earlier session
        else:
            fitted = learner.FitResult(None, 0, {}, None)  # cold start: representative and unusual images
        check(cancel)
        selection = learner.select(snapshot, fitted)
        check(cancel)
        learner.commit(worker, snapshot, fitted, selection, record_version=False)
    finally:
        worker.close()
    proba = None if fitted.proba is None else np.asarray(fitted.proba, np.float32)
    return RetrainOutcome(None, fitted.n_labels, fitted.metrics, proba, snapshot.classes, snapshot.image_ids,
                          True, time.perf_counter() - start, model=fitted.model, refill=True)


# ----------------------------------------------------------------------------- the session
class ProjectSession(QObject):
    """The open project, its in-memory features and predictions, and the signals views observe."""

    labels_changed = Signal(list)  # image ids whose latest label changed
    classes_changed = Signal()
    model_updated = Signal(int)  # model version (0: predictions refreshed without a new version)
    queue_changed = Signal()
    features_changed = Signal()
    open_image_requested = Signal(int)
    # background work, for the progress display
    job_started = Signal(str, object)  # description, Task (has .cancel())
    job_progress = Signal(str, int, int, str)  # description, done, total, message
    job_finished = Signal(str, str)  # description, summary for the status bar
    job_failed = Signal(str, str)  # description, message for a person
    problems_changed = Signal()  # the list of unusable files may have changed; see problems()
    extractor_changed = Signal(str)  # the project now computes its features with this extractor
    labels_saved = Signal()  # a label write was committed; see pending_labels()
    label_failed = Signal(str)  # a label could not be saved (message for a person)
    no_usable_image = Signal(str)  # a scan left the project without any image to label: why, in one line
    goals_changed = Signal()  # the project's target or labelling budget was changed (see goal_status)

    def __init__(self, project: Project, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.project = project
        self.extractor = _extractor_key(project)
        self.image_ids: np.ndarray = np.zeros(0, np.int64)
        self.features: np.ndarray = np.zeros((0, 0), np.float32)
        self.probabilities: Optional[np.ndarray] = None
        self.novelty_model = None  # learning.novelty.NoveltyModel of the model behind probabilities
        self.class_ids: np.ndarray = np.zeros(0, np.int64)
        self.model_version: Optional[int] = None
        self.model_metrics: dict = {}
        self.n_labels_trained = 0
        self._classes: Optional[list[ClassRecord]] = None
        self._latest: Optional[dict[int, int]] = None
        self._labels_since_retrain = 0
        self._retrain_task: Optional[Task] = None  # the running retrain (refills have their own)
        self._retrain_description = ""
        self._retrain_reason = ""
        self._retrain_again = False
        self._retrain_again_reason = ""
        self._retrain_due = False  # a retrain was asked for and has not started yet
        self._refill_again = False
        self._refill_task: Optional[Task] = None
        self._refill_inputs: tuple[int, int] = (-1, -1)
        self._model_generation = 0  # retrains finished: a refill's model is stale if it changed
        self._refill_generation = 0
        self.model = None  # the last fitted TrainedModel, for queue refills between retrains
        self.retrain_log: list[tuple[int, str]] = []  # (labels given in this session, reason) per retrain
        self._labels_given = 0  # labels given in this session (counter)
        self._retrain_inputs: tuple[int, int] = (-1, -1)
        self._feature_task: Optional[Task] = None
        self._extract_task: Optional[Task] = None
        self._check_task: Optional[Task] = None
        self._switch_task: Optional[Task] = None
        self.switching_to: Optional[str] = None
        self._retrain_on_load = False
        self._problems: list = []
        self._last_feature_refresh = 0.0
        self._reload_features = False  # a load was asked for while another was running
        self.closed = False
        self._retrain_when_saved = False
        self._retrain_when_saved_reason = ""
        # image id -> (kind, class_id, audit) of the labels given in this session, so the views
        # know an image's state before the writer committed it
        self._given: dict[int, tuple[str, Optional[int], bool]] = {}
        self.writer = LabelWriter(project, self)
        self.writer.saved.connect(self._label_saved)
        self.writer.failed.connect(self._label_not_saved)
        from inspector.core.learning import stopping

        self._goals = stopping.read_goals(project)  # (target, budget), read once; set_goals keeps it current
        last = project.latest_model_version()
        if last is not None:
            self.model_version = last.version
            self.model_metrics = last.metrics or {}
            self.n_labels_trained = last.n_labels

    # ------------------------------------------------------------------ read side
    @property
    def name(self) -> str:
        return self.project.name

    def classes(self) -> list[ClassRecord]:
        """Live classes in key order (cached until classes_changed)."""
        if self._classes is None:
            self._classes = self.project.classes()
        return list(self._classes)

    def latest_labels(self) -> dict[int, int]:
        """``image_id -> class_id`` of every labelled image (cached; kept current by the session)."""
        if self._latest is None:
            self._latest = self.project.latest_labels()
        return self._latest

    def queue(self) -> list[QueueEntry]:
        return self.project.queue()

    def row_of(self, image_id: int) -> Optional[int]:
        """Row of ``image_id`` in ``image_ids``/``features``/``probabilities``, or None."""
        ids = self.image_ids
        if len(ids) == 0:
            return None
        row = int(np.searchsorted(ids, image_id))  # feature rows come back in id order
        return row if row < len(ids) and int(ids[row]) == int(image_id) else None

    def novelty(self, image_id: int) -> Optional[float]:
        """How unlike every labelled image this image is (above 1: unlike anything labelled so far),
        or None without a model or with too few labels; one row against the labelled references."""
        if self.novelty_model is None or self.probabilities is None:
            return None
        row = self.row_of(image_id)
        if row is None or row >= len(self.features):
            return None
        return float(self.novelty_model.scores(self.features[row:row + 1], self.probabilities[row:row + 1])[0])

    def suggestion(self, image_id: int) -> Optional[tuple[int, float]]:
        """The model's ``(class_id, probability)`` for an image, or None without a model."""
        if self.probabilities is None:
            return None
        row = self.row_of(image_id)
        if row is None or row >= len(self.probabilities):
            return None
        p = self.probabilities[row]
        top = int(np.argmax(p))
        class_id = int(self.class_ids[top])
        if class_id not in {c.id for c in self.classes()}:
            return None  # the class was deleted since this model was trained
        return class_id, float(p[top])

    def goals(self):
        """``(target, budget)`` of the project (either may be None)."""
        return self._goals

    def set_goals(self, target, budget) -> None:
        """Store new stopping rules in the project; emits goals_changed. Raises UserError."""
        from inspector.core.learning import stopping

        stopping.write_goals(self.project, target, budget)
        self._goals = stopping.read_goals(self.project)
        self.goals_changed.emit()

    def goal_status(self):
        """Where the project stands against its target and budget (current model, labels given)."""
        from inspector.core.learning import stopping

        target, budget = self._goals
        return stopping.goal_status(target, budget, len(self.latest_labels()), self.model_metrics)

    def audit_summary(self) -> str:
        """One line about the honest accuracy estimate of the current model."""
        shown = (self.model_metrics or {}).get("estimate")
        if shown and shown.get("estimate") is not None:
            low, high = shown["interval"]
            how = {"audit": f"{shown.get('n_audit', 0)} audit labels",
                   "ppi": f"predictions + {shown.get('n_audit', 0)} audit labels",
                   "weighted": f"{shown.get('n', 0)} sampled labels, weighted"}.get(shown["method"], shown["method"])
            return f"accuracy ≈ {shown['estimate']:.0%} ({low:.0%}–{high:.0%}, {how})"
        audit = (self.model_metrics or {}).get("audit")
        if not audit or audit.get("accuracy") is None:
            n = (self.model_metrics or {}).get("n_audit", 0)
            return f"not enough audit labels yet ({n})"
        low, high = audit.get("accuracy_ci") or (None, None)
        text = f"accuracy ≈ {audit['accuracy']:.0%}"
        if low is not None:
            text += f" ({low:.0%}–{high:.0%}, {audit['n_audit']} audit labels)"
        return text

    # ------------------------------------------------------------------ write side
    def annotator(self) -> str:
        return str(QSettings().value("annotator", "") or "")

    def label(self, image_id: int, class_id: Optional[int] = None, kind: str = "class", source: str = "human",
              audit: bool = False) -> None:
        """Record one label: the views see it at once, the writer thread commits it durably
        within milliseconds (``pending_labels()`` until then); emits labels_changed."""
        image_id = int(image_id)
        class_id = None if class_id is None else int(class_id)
        self.writer.add_label(image_id, class_id, kind, self.annotator(), source, audit)
        self._labels_given += 1
        self._given[image_id] = (kind, class_id, bool(audit))
        latest = self.latest_labels()
        if kind == "class":
            latest[image_id] = class_id
        else:
            latest.pop(image_id, None)
        if kind == "class":
            self._labels_since_retrain += 1  # before labels_changed: the status bar shows it
        self.labels_changed.emit([image_id])
        if kind == "class" and self._labels_since_retrain >= self.retrain_every():
            self._retrain_on_labels()

    def label_images(self, image_ids, class_id: int, source: str = "bulk") -> int:
        """Label many images with one class (one durable transaction, committed by the writer
        thread after the labels given before it); emits labels_changed."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return 0
        self.writer.add_labels_bulk([(i, int(class_id)) for i in ids], self.annotator(), source)
        self._labels_given += 1
        latest = self.latest_labels()
        for i in ids:
            latest[i] = int(class_id)
            self._given[i] = ("class", int(class_id), False)
        self._labels_since_retrain += len(ids)
        self.labels_changed.emit(ids)
        if self._labels_since_retrain >= self.retrain_every():
            self._retrain_on_labels()
        return len(ids)

    def _retrain_on_labels(self) -> None:
        """Every N labels a retrain is due; the count restarts now, even when the retrain has to
        wait for a running one (it then runs right after it, with every label given so far)."""
        reason = f"after {self._labels_since_retrain} new labels"
        self._labels_since_retrain = 0
        self._retrain_due = False  # a new due point (one waiting retrain serves both)
        self.start_retrain(reason=reason)

    def label_state(self, image_id: int) -> Optional[tuple[str, Optional[int], bool]]:
        """``(kind, class_id, audit)`` of the image's latest label event, or None (unlabelled);
        includes labels given in this session that are not committed yet."""
        given = self._given.get(int(image_id))
        if given is not None:
            return given
        history = self.project.label_history(int(image_id))
        if not history:
            return None
        last = history[-1]
        return last.kind, last.class_id, last.audit

    def pending_labels(self) -> int:
        """Labels given but not committed to the project file yet."""
        return self.writer.pending

    def wait_for_labels(self) -> None:
        """Block until every label given so far is committed (tests, closing)."""
        self.writer.wait()

    def _label_saved(self) -> None:
        self.labels_saved.emit()
        if self._retrain_when_saved and self.writer.pending == 0:
            self._retrain_when_saved = False
            self.start_retrain(reason=self._retrain_when_saved_reason)

    def _label_not_saved(self, message: str, image_ids: list) -> None:
        for i in image_ids:
            self._given.pop(int(i), None)
        self._latest = None  # reload what the project really holds
        if self.closed:
            return
        self.label_failed.emit(f"{len(image_ids)} label(s) were not saved: {message}")
        self.labels_changed.emit([])
        self._label_saved()  # the title, and a retrain that was waiting for the writer

    def request_open(self, image_id: int) -> None:
        """Ask the labelling view to show this image (from the gallery or the dashboard map)."""
        self.open_image_requested.emit(int(image_id))

    def notify_classes_changed(self) -> None:
        """Call after changing classes in the project; labels may have changed too (merge, delete)."""
        self._classes = None
        self._latest = None
        self.classes_changed.emit()
        self.labels_changed.emit([])

    def retrain_every(self) -> int:
        return max(1, int(self.project.get_setting(SETTING_RETRAIN_EVERY, DEFAULT_RETRAIN_EVERY)))

    # ------------------------------------------------------------------ background jobs
    def busy(self) -> bool:
        return any(t is not None for t in (self._retrain_task, self._refill_task, self._feature_task,
                                           self._extract_task, self._check_task, self._switch_task))

    def retraining(self) -> bool:
        """The learner is at work (a retrain or a queue refill), or a retrain starts as soon as
        the labels just given are committed."""
        return self._retrain_task is not None or self._refill_task is not None or self._retrain_when_saved

    def labels_until_retrain(self) -> int:
        """Class labels still to give before the next retrain (the "Retrain every N labels" setting)."""
        return max(0, self.retrain_every() - self._labels_since_retrain)

    def extracting(self) -> bool:
        return self._extract_task is not None

    def _start(self, task: Task, description: str, on_done, pool_name: str = "background") -> Task:
        task.signals.progress.connect(lambda d, t, m: self.job_progress.emit(description, d, t, m))
        task.signals.failed.connect(lambda message: self._failed(description, message))
        task.signals.finished.connect(on_done)
        self.job_started.emit(description, task)
        return run_task(task, pool(pool_name))

    def _failed(self, description: str, message: str) -> None:
        if description == "Loading features":
            self._feature_task = None
            self._reload_features = False
        elif description == "Reading images":
            self._extract_task = None
        elif description == "Checking the project":
            self._check_task = None
        elif description.startswith(SWITCHING):
            self._switch_task = None
            self.switching_to = None
        else:
            self._retrain_task = None
            self._retrain_again = self._refill_again = self._retrain_due = False
        if not self.closed:
            self.job_failed.emit(description, message)

    def start(self) -> None:
        """After opening: load features, and (in a worker) find whatever images still need
        analysing and the files that cannot be used."""
        self.load_features()
        self._check(scan_pending=True)

    def _check(self, scan_pending: bool) -> None:
        task = Task(read_counts_and_problems, self.project, name="Checking the project")
        task.signals.finished.connect(lambda result: self._checked(result, scan_pending))
        task.signals.failed.connect(lambda m: self._failed("Checking the project", m))
        self._check_task = run_task(task, pool("images"))

    def _checked(self, result, scan_pending: bool) -> None:
        self._check_task = None
        if self.closed:
            return
        counts, self._problems = result
        self.problems_changed.emit()
        if scan_pending and (counts.get("pending", 0) or counts.get("images", 0) == 0):
            self.scan()

    def problems(self) -> list:
        """Files that cannot be used (ImageRecord with an error), as last read."""
        return list(self._problems)

    def loading_features(self) -> bool:
        """Feature vectors are being (re)loaded into memory."""
        return self._feature_task is not None or self._reload_features

    def load_features(self) -> None:
        if self._feature_task is not None:
            # the running load may have read the file before the newest features were saved
            self._reload_features = True
            return
        key = self.extractor
        task = Task(load_features, self.project.path, key, name="Loading features")
        task.signals.cancelled.connect(self._feature_load_cancelled)
        self._feature_task = self._start(task, "Loading features", lambda result: self._features_loaded(result, key),
                                         "images")
        self._last_feature_refresh = time.monotonic()

    def _feature_load_cancelled(self) -> None:
        self._feature_task = None
        self._reload_features = False

    def _features_loaded(self, result, key: Optional[tuple] = None) -> None:
        self._feature_task = None
        if self.closed:
            return
        if key is not None and key != self.extractor:  # read before a switch of extractor
            self._reload_features = False
            self.load_features()
            return
        if self._reload_features:
            self._reload_features = False
            self.load_features()
        image_ids, features = result
        self.image_ids = np.asarray(image_ids, np.int64)
        self.features = np.asarray(features, np.float32)
        if self.probabilities is not None and len(self.probabilities) != len(self.image_ids):
            self.probabilities = None  # rows no longer match; the next fit fills them again
        self.job_finished.emit("Loading features", f"{len(self.image_ids):,} images ready")
        self.features_changed.emit()
        if len(self.image_ids) == 0:
            return
        if self._retrain_on_load:
            self._retrain_on_load = False
            self.start_retrain(reason="features changed")
            return
        # A queue chosen from the first few images read (or nearly used up) is refilled from
        # what is known now; otherwise the inspector would soon wait for the learner. Neither is
        # a retrain: the model changes only with labels (or when asked).
        if len(self.project.queue()) < QUEUE_LOW:
            self.refill_queue()
        elif self.probabilities is None and self.latest_labels():
            self.start_retrain(write_queue=False, reason="predictions for the images read")

    def scan(self) -> None:
        """Rescan the folder and analyse new or changed files in the background."""
        if self._extract_task is not None:
            return
        task = Task(scan_and_extract, self.project, name="Reading images")
        task.signals.progress.connect(self._extraction_progress)
        task.signals.cancelled.connect(self._extraction_cancelled)
        self._extract_task = self._start(task, "Reading images", self._extraction_done)

    def _extraction_progress(self, done: int, total: int, message: str) -> None:
        # cold start: as soon as some features exist, load them so labelling can begin
        if self._feature_task is not None or self.closed:
            return
        # (the project file lags the progress by up to one save batch: load again until the
        # cold start has the images it needs)
        if len(self.image_ids) < min(total, COLD_START_MIN_IMAGES) and done >= min(total, COLD_START_MIN_IMAGES) \
                and done > 0:
            self.load_features()
        elif time.monotonic() - self._last_feature_refresh > FEATURE_REFRESH_S and len(self.image_ids) < done:
            self.load_features()

    def _extraction_cancelled(self) -> None:
        self._extract_task = None
        self._check(scan_pending=False)
        self.job_finished.emit("Reading images", "reading images cancelled; what was read is kept")
        self.load_features()

    def _extraction_done(self, summary) -> None:
        self._extract_task = None
        if self.closed:
            return
        self._check(scan_pending=False)
        self.job_finished.emit(
            "Reading images",
            f"{summary.new} new, {summary.changed} changed, {summary.missing} missing, {summary.errors} unreadable",
        )
        self.load_features()
        if summary.no_usable_image:  # last: a listener may close this session
            self.no_usable_image.emit(summary.no_usable_image)

    # ------------------------------------------------------------------ the feature extractor
    def switch_extractor(self, name: str) -> Optional[Task]:
        """Extract every image's features with ``name`` in the background, then switch to it.
        Labelling goes on with the current features meanwhile; a cancel keeps the current
        extractor (and what was extracted). Emits extractor_changed when done."""
        if self._switch_task is not None or self.closed:
            return None
        description = f"{SWITCHING} {name}"
        task = Task(switch_features, self.project, name, name=description)
        task.signals.cancelled.connect(lambda: self._switch_cancelled(description))
        self.switching_to = name
        self._switch_task = self._start(task, description, lambda result: self._switched(description, result))
        return self._switch_task

    def cancel_switch(self) -> None:
        if self._switch_task is not None:
            self._switch_task.cancel()

    def _switch_cancelled(self, description: str) -> None:
        self._switch_task = None
        name, self.switching_to = self.switching_to, None
        if not self.closed:
            self.job_finished.emit(description, f"switching to {name} cancelled; the project stays on "
                                                f"{self.extractor[0]} (what was extracted is kept)")

    def _switched(self, description: str, result) -> None:
        self._switch_task = None
        self.switching_to = None
        if self.closed:
            return
        self.extractor = _extractor_key(self.project)
        self.probabilities = None  # the current model was trained on the other features
        self.job_finished.emit(description, f"features are now {result.current}: {result.features:,} of "
                                            f"{result.images:,} images; every label kept")
        self.extractor_changed.emit(result.current)
        self._retrain_on_load = True  # a new model and queue from the new features (retrained once loaded)
        self.load_features()

    def start_retrain(self, write_queue: bool = True, reason: str = "you asked") -> None:
        """Train in the background and record a new version (``reason`` is shown in the status
        bar: "after 10 new labels", "you asked"…); when the learner is busy, run once more after it.
        ``write_queue=False``: predictions only (no version, no queue, not counted as a retrain)."""
        if len(self.image_ids) == 0 or self.closed:
            return
        if write_queue and not self._retrain_due:
            # the count restarts when a retrain is due, not when it can start (after a running
            # one): retrains stay every N labels however long each takes
            self._retrain_due = True
            self._labels_since_retrain = 0
            self.retrain_log.append((self._labels_given, reason))
        if write_queue and self.writer.pending:
            # the snapshot must include the labels just given: start once they are committed
            self._retrain_when_saved = True
            self._retrain_when_saved_reason = reason
            return
        if self._retrain_task is not None:
            # once more after it, but only if it cannot know everything: a label given or
            # features loaded since it started (else it would choose the same queue again)
            if self._inputs() != self._retrain_inputs:
                if write_queue:
                    self._retrain_again, self._retrain_again_reason = True, reason
            elif write_queue:
                self._retrain_due = False  # the running retrain knows everything already
            return
        self._retrain_inputs = self._inputs()
        if write_queue:
            self._retrain_due = False
        self._retrain_reason = reason
        self._retrain_description = f"Training ({reason})"
        task = Task(retrain, self.project, self.image_ids, self.features, self.extractor, write_queue,
                    name="Training")
        task.signals.cancelled.connect(self._retrain_cancelled)
        self._retrain_task = self._start(task, self._retrain_description, self._retrained)

    def _retrain_cancelled(self) -> None:
        self._retrain_task = None
        self._retrain_again = self._retrain_due = False

    def refill_queue(self) -> None:
        """Choose the next images with the current model (no retrain, no new version): the
        labelling view asks for this when its queue runs low between retrains."""
        if len(self.image_ids) == 0 or self.closed:
            return
        if self._refill_task is not None:
            # a refill runs; once more after it if labels were given since it started
            if self._inputs() != self._refill_inputs:
                self._refill_again = True
            return
        # A running retrain does not hold a refill back: under load a retrain can take a minute,
        # longer than the queue lasts, and the inspector must not wait for it. Its queue (newer
        # model) replaces this one when it is done; both leave out every image labelled since.
        self._refill_inputs = self._inputs()
        self._refill_generation = self._model_generation
        # a model only from an earlier session (reopened project) is fitted again for the ranking;
        # before the first model, the cold-start choice (representative and unusual images)
        task = Task(refill, self.project, self.image_ids, self.features, self.extractor, self.model,
                    name="Choosing the next images")
        task.signals.cancelled.connect(self._refill_cancelled)
        task.signals.failed.connect(self._refill_failed)
        task.signals.finished.connect(self._refilled)
        # quiet: a refill is quick and frequent; the status bar is for what the inspector must know
        self._refill_task = run_task(task, pool("background"))

    def _refill_cancelled(self) -> None:
        self._refill_task = None

    def _refill_failed(self, message: str) -> None:
        self._refill_task = None
        self._refill_again = False
        if not self.closed:
            self.job_failed.emit("Choosing the next images", message)

    def _refilled(self, outcome: RetrainOutcome) -> None:
        self._refill_task = None
        if self.closed:
            return
        if self._model_generation == self._refill_generation:  # else a newer model arrived meanwhile
            if outcome.probabilities is not None and len(outcome.image_ids) == len(self.image_ids):
                self.probabilities = outcome.probabilities
                self.class_ids = outcome.class_ids
                self.model_updated.emit(int(self.model_version or 0))
            if outcome.model is not None:
                self.model = outcome.model
        self.queue_changed.emit()
        if self._refill_again:
            self._refill_again = False
            QTimer.singleShot(0, self.refill_queue)

    def _inputs(self) -> tuple[int, int]:
        """What a retrain learns from: labels given and features loaded (counters)."""
        return self._labels_given, id(self.features)

    def _retrained(self, outcome: RetrainOutcome) -> None:
        self._retrain_task = None
        if self.closed:
            return
        self._model_generation += 1
        if outcome.probabilities is not None and len(outcome.image_ids) == len(self.image_ids):
            self.probabilities = outcome.probabilities
            self.class_ids = outcome.class_ids
            self.novelty_model = None if outcome.model is None else getattr(outcome.model, "novelty", None)
        if outcome.model is not None:
            self.model = outcome.model
        if outcome.version is not None:
            self.model_version = outcome.version
            self.model_metrics = outcome.metrics
            self.n_labels_trained = outcome.n_labels
        if outcome.queued:
            self.queue_changed.emit()
        if outcome.probabilities is not None:
            self.model_updated.emit(int(self.model_version or 0))
        if outcome.version is not None:
            # short: the status bar shares its width with the job indicator and the model status
            summary = f"Model v{outcome.version} trained on {outcome.n_labels} labels ({self._retrain_reason})"
        elif outcome.n_labels == 0:
            summary = "No model yet: the first images were chosen to show the range of parts"
        else:
            summary = f"Predictions ready ({outcome.n_labels} labels)"
        self.job_finished.emit(self._retrain_description, summary)
        if self._retrain_again:
            self._retrain_again = False
            reason = self._retrain_again_reason
            QTimer.singleShot(0, lambda: self.start_retrain(reason=reason))

    def close(self) -> None:
        """Stop background work and close the project file."""
        self.closed = True
        for task in (self._retrain_task, self._refill_task, self._extract_task, self._feature_task, self._switch_task):
            if task is not None:
                task.cancel()
        for name in ("background", "images"):
            pool(name).waitForDone(30000)
        self.writer.close()  # commits every label still pending
        self.project.close()

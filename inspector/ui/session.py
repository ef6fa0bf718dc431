"""The open project as the views see it: shared state, signals, and the background jobs.

One :class:`ProjectSession` per open project. Views (labelling, gallery, dashboard) read its
state and listen to its signals; none of them talks to another directly, and none reads the
store: the session holds what they show in memory (features, probabilities, the queue, image
paths, every image's label in a :class:`~inspector.workflow.labelling.LabelBook`), read by
workers. Everything slow (reading, scanning and extraction, training) is a job of
:mod:`inspector.workflow.jobs` run in workers from :mod:`inspector.ui.workers`; the session only
starts them and publishes their results. Labels go as typed commands to the
:class:`~inspector.ui.label_writer.LabelWriter`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
from PySide6.QtCore import QObject, QSettings, QTimer, Signal

from inspector.core.errors import UserError
from inspector.core.store import ClassRecord, Project, QueueEntry
from inspector.ui.label_writer import LabelWriter
from inspector.ui.workers import Task, pool, run_task
from inspector.workflow import jobs, labelling
from inspector.workflow.jobs import RetrainOutcome, SessionStart
from inspector.workflow.labelling import BulkLabelCommand, LabelBook, LabelCommand, LabelState

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
        # every image's latest label (read by a worker at start, kept current by the labels given
        # here before the writer commits them): the one label state of the session
        self.labels = LabelBook()
        # the queue and image paths as last read by a worker (a label takes its image out of the
        # queue here as the store does), so the views never read the store
        self._queue: list[QueueEntry] = []
        self._queue_by_id: dict[int, QueueEntry] = {}
        self._paths: dict[int, str] = {}
        self._start_task: Optional[Task] = None
        self._retrain_every: Optional[int] = None  # read from the project when first needed
        self._labels_since_retrain = 0
        self._retrain_task: Optional[Task] = None  # the running retrain (refills have their own)
        self._retrain_description = ""
        self._retrain_reason = ""
        self._retrain_again = False
        self._retrain_again_reason = ""
        self._retrain_due = False  # a retrain was asked for and has not started yet
        self._retrains_started = 0  # counter: a deferred retrain is moot once another has started
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
        """``image_id -> class_id`` of every labelled image (kept current by the session)."""
        self._ensure_labels()
        return self.labels.class_labels()

    def _ensure_labels(self) -> None:
        # Read when the session begins, by a worker (read_session_start; the views are refreshed
        # when it arrives); here only for a session never begun (scripts, tests) and after the
        # project changed behind the book (classes merged or deleted, a write refused): rare
        if not self.labels.loaded and self._start_task is None:
            self.labels.load(*labelling.read_label_book(self.project))

    def label_state(self, image_id: int) -> Optional[LabelState]:
        """The image's latest label (None: unlabelled), including labels given in this session
        that are not committed yet."""
        self._ensure_labels()
        return self.labels.state(image_id)

    def queue(self) -> list[QueueEntry]:
        """The learner's queue as last read (without the images labelled since)."""
        return list(self._queue)

    def queue_entry(self, image_id: int) -> Optional[QueueEntry]:
        """The image's entry while it is queued, else None."""
        return self._queue_by_id.get(int(image_id))

    def _set_queue(self, entries: Optional[list[QueueEntry]]) -> None:
        if entries is None:
            return
        # read before labels given since were committed: those images are not queued any more
        settled = self.labels.given_in_session()
        self._queue = [e for e in entries if not (e.image_id in settled and self.labels.settled(e.image_id))]
        self._queue_by_id = {e.image_id: e for e in self._queue}

    def reload_queue(self) -> None:
        """Read the queue again in a worker (it was written by something other than this
        session's learner jobs); emits queue_changed when it arrives."""
        task = Task.from_job(jobs.queue_job(self.project))
        task.signals.finished.connect(lambda entries: self.closed or (self._set_queue(entries),
                                                                      self.queue_changed.emit()))
        task.signals.failed.connect(lambda m: self.closed or self.job_failed.emit("Reading the queue", m))
        run_task(task, pool("images"))

    def image_relpath(self, image_id: int) -> Optional[str]:
        """The image's path relative to the image folder, or None when the session has not read it."""
        return self._paths.get(int(image_id))

    def image_path(self, image_id: int) -> Optional[Path]:
        """The image's file, or None when the session has not read its path (a decode worker
        then looks it up: ``workflow.jobs.image_path``)."""
        rel = self._paths.get(int(image_id))
        return None if rel is None else self.project.image_root / rel

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
        # with the audit method shown, the status bar says what the dashboard's headline says
        # (the audit figures recorded with the model), so the two never disagree
        if shown and shown.get("estimate") is not None and shown.get("method") != "audit":
            low, high = shown["interval"]
            how = {"ppi": f"predictions + {shown.get('n_audit', 0)} audit labels",
                   "weighted": f"{shown.get('n', 0)} sampled labels, weighted",
                   "difference": f"predictions corrected by {shown.get('n', 0)} sampled labels",
                   }.get(shown["method"], shown["method"])
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
        """Record one label (see :meth:`give`)."""
        state = LabelState(kind, None if class_id is None else int(class_id), bool(audit))
        self.give(LabelCommand(int(image_id), state, self.annotator(), source))

    def give(self, command: LabelCommand) -> None:
        """Record one label: the views see it at once, the writer thread commits it durably
        within milliseconds (``pending_labels()`` until then); emits labels_changed."""
        if not command.annotator:
            command = LabelCommand(command.image_id, command.state, self.annotator(), command.source)
        self._ensure_labels()
        self.writer.submit(command)
        self._labels_given += 1
        self.labels.give(command)
        self._leave_queue([command.image_id])
        if command.state.is_class:
            self._labels_since_retrain += 1  # before labels_changed: the status bar shows it
        self.labels_changed.emit([command.image_id])
        if command.state.is_class and self._labels_since_retrain >= self.retrain_every():
            self._retrain_on_labels()

    def _leave_queue(self, image_ids) -> None:
        # the store takes a labelled image out of the queue; so does the session's copy
        for i in image_ids:
            entry = self._queue_by_id.pop(int(i), None)
            if entry is not None:
                self._queue.remove(entry)

    def label_images(self, image_ids, class_id: int, source: str = "bulk") -> int:
        """Label many images with one class (one durable transaction, committed by the writer
        thread after the labels given before it); emits labels_changed."""
        ids = [int(i) for i in image_ids]
        if not ids:
            return 0
        command = BulkLabelCommand(tuple(ids), int(class_id), self.annotator(), source)
        self._ensure_labels()
        self.writer.submit(command)
        self._labels_given += 1
        self.labels.give(command)
        self._leave_queue(ids)
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
        self.labels.refused(image_ids)  # read what the project really holds again
        if self.closed:
            return
        self.label_failed.emit(f"{len(image_ids)} label(s) were not saved: {message}")
        self.labels_changed.emit([])
        self._label_saved()  # the title, and a retrain that was waiting for the writer

    def request_open(self, image_id: int) -> None:
        """Ask the labelling view to show this image (from the gallery or the dashboard map)."""
        self.open_image_requested.emit(int(image_id))

    def add_class(self, name: str) -> None:
        """Add a class to the project (raises UserError) and tell the views."""
        self.project.add_class(name)
        self.notify_classes_changed()

    def notify_classes_changed(self) -> None:
        """Call after changing classes in the project; labels may have changed too (merge, delete)."""
        self._classes = None
        self.labels.invalidate()
        self.classes_changed.emit()
        self.labels_changed.emit([])

    def retrain_every(self) -> int:
        """Labels between retrains: the project's setting, read once (it is asked on every label,
        on the UI thread) and kept current by :meth:`set_retrain_every`."""
        if self._retrain_every is None:
            self._retrain_every = max(1, int(self.project.get_setting(SETTING_RETRAIN_EVERY, DEFAULT_RETRAIN_EVERY)))
        return self._retrain_every

    def set_retrain_every(self, labels: int) -> None:
        """Store how many labels come between retrains in the project. Raises UserError."""
        self.project.set_setting(SETTING_RETRAIN_EVERY, int(labels))
        self._retrain_every = max(1, int(labels))

    # ------------------------------------------------------------------ background jobs
    def busy(self) -> bool:
        return any(t is not None for t in (self._retrain_task, self._refill_task, self._feature_task,
                                           self._extract_task, self._check_task, self._switch_task,
                                           self._start_task))

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
        elif description == "Opening the project":
            self._start_task = None
        elif description.startswith(SWITCHING):
            self._switch_task = None
            self.switching_to = None
        else:
            self._retrain_task = None
            self._retrain_again = self._refill_again = self._retrain_due = False
        if not self.closed:
            self.job_failed.emit(description, message)

    def begin(self) -> None:
        """Read the queue, the queued images' paths and every image's label in a worker (quick:
        the first image waits for it, not for the features); emits queue_changed and
        labels_changed when they arrive."""
        if self._start_task is not None or self.closed:
            return
        task = Task.from_job(jobs.session_start_job(self.project))
        task.signals.finished.connect(self._started)
        task.signals.failed.connect(lambda m: self._failed("Opening the project", m))
        task.signals.cancelled.connect(lambda: setattr(self, "_start_task", None))
        self._start_task = run_task(task, pool("images"))

    def _started(self, start: SessionStart) -> None:
        self._start_task = None
        if self.closed:
            return
        self.labels.load(start.label_states, start.class_labels)
        self._paths.update(start.paths)
        self._set_queue(start.queue)
        self.queue_changed.emit()
        self.labels_changed.emit([])

    def start(self) -> None:
        """After opening: read the queue and labels, load features, and (in a worker) find
        whatever images still need analysing and the files that cannot be used."""
        if not self.labels.loaded:
            self.begin()
        self.load_features()
        self._check(scan_pending=True)

    def _check(self, scan_pending: bool) -> None:
        task = Task.from_job(jobs.check_job(self.project))
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
        task = Task.from_job(jobs.feature_load_job(self.project.path, key))
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
        self.image_ids = result.image_ids
        self.features = result.features
        self._paths.update(result.paths)
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
        if len(self._queue) < QUEUE_LOW:
            self.refill_queue()
        elif self.probabilities is None and self.latest_labels():
            self.start_retrain(write_queue=False, reason="predictions for the images read")

    def scan(self) -> None:
        """Rescan the folder and analyse new or changed files in the background."""
        if self._extract_task is not None:
            return
        task = Task.from_job(jobs.scan_job(self.project))
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
        task = Task.from_job(jobs.switch_job(self.project, name, description))
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
        if write_queue:
            # every label is committed: this call serves a retrain that was waiting for them, so
            # the save must not start (and log) the same due point a second time
            self._retrain_when_saved = False
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
            self._retrains_started += 1  # (predictions only serve no due point)
            self._retrain_due = False
        self._retrain_reason = reason
        self._retrain_description = f"Training ({reason})"
        task = Task.from_job(jobs.retrain_job(self.project, self.image_ids, self.features, self.extractor,
                                              write_queue))
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
        task = Task.from_job(jobs.refill_job(self.project, self.image_ids, self.features, self.extractor,
                                             self.model))
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
        self._set_queue(outcome.queue)
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
            self._set_queue(outcome.queue)
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
            reason, started = self._retrain_again_reason, self._retrains_started
            QTimer.singleShot(0, lambda: self._start_deferred_retrain(reason, started))

    def _start_deferred_retrain(self, reason: str, started: int) -> None:
        """The retrain that waited for a running one, unless another retrain started meanwhile
        (the labels it waited for were committed first and started it): that one serves it, and
        starting again would count a due point of its own (a retrain "after 1 new label")."""
        if self._retrains_started == started:
            self.start_retrain(reason=reason)

    def close(self) -> None:
        """Stop background work and close the project file."""
        self.closed = True
        for task in (self._retrain_task, self._refill_task, self._extract_task, self._feature_task, self._switch_task,
                     self._start_task):
            if task is not None:
                task.cancel()
        for name in ("background", "images"):
            pool(name).waitForDone(30000)
        self.writer.close()  # commits every label still pending
        self.project.close()

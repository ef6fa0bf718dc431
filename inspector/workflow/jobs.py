"""The background jobs of a labelling session, as plain functions.

Each takes ``progress`` and ``cancel`` keywords (see :mod:`inspector.core.progress`) and opens
its own connection to the project (``Project.worker_connection`` or a read-only one): in WAL
mode its reads never block, never make the UI thread wait for the store's lock, and its writes
wait only on another writer's short transaction. The desktop app runs them in its Qt worker
threads (:mod:`inspector.ui.workers`); the command line and the tests call them directly.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inspector.core.errors import UserError
from inspector.core.progress import check
from inspector.core.store import Project, QueueEntry
from inspector.workflow.labelling import LabelState, read_label_book


# ----------------------------------------------------------------------------- opening
@dataclass
class SessionStart:
    """What the labelling view needs first: the queue, the queued images' paths and every
    image's latest label (small reads, so the first image is not held back by the features)."""

    queue: list[QueueEntry]
    paths: dict[int, str]  # image id -> path relative to the image folder (the queued images)
    label_states: dict[int, LabelState]
    class_labels: dict[int, int]


def read_session_start(project: Project, progress=None, cancel=None) -> SessionStart:
    reader = project.worker_connection()
    try:
        queue = reader.queue()
        paths = {}
        for entry in queue:
            try:
                paths[entry.image_id] = reader.image(entry.image_id).path
            except Exception:  # noqa: BLE001 - an image gone from the project: its path is looked up when shown
                continue
        states, class_labels = read_label_book(reader)
        return SessionStart(queue, paths, states, class_labels)
    finally:
        reader.close()


@dataclass
class OpenedProject:
    project: Project
    image_root_found: bool  # False: the image folder moved (the app offers to point at it)
    created: bool = False


def open_project_file(path: Path, progress=None, cancel=None) -> OpenedProject:
    """Open a project file (its lock, integrity and version checks read the disk: a worker's
    job, never the UI thread's). Raises UserError with one line for a person."""
    project = Project.open(Path(path))
    return OpenedProject(project, project.image_root_found())


def create_project_file(folder: Path, project_path: Path, goals=None, progress=None, cancel=None) -> OpenedProject:
    """Create the project for an image folder with the default extractor (and the target and
    budget chosen in the new-project dialog). Raises UserError with one line for a person."""
    from inspector.core.extractor_choice import start_project_with

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise UserError(f"the folder {folder} cannot be read (permission denied)")
    project = Project.create(Path(project_path), folder)
    try:
        start_project_with(project)
        if goals is not None and any(g is not None for g in goals):
            from inspector.core.learning import stopping

            stopping.write_goals(project, *goals)
    except BaseException:
        project.close()
        raise
    return OpenedProject(project, True, created=True)


def read_queue(project: Project) -> list[QueueEntry]:
    """The learner's queue, through the worker's own connection."""
    reader = project.worker_connection()
    try:
        return reader.queue()
    finally:
        reader.close()


@dataclass
class FeatureLoad:
    image_ids: np.ndarray  # int64, ascending
    features: np.ndarray  # float32 rows of image_ids
    paths: dict[int, str] = field(default_factory=dict)  # every usable image's relative path


def load_features(project_path, extractor: tuple[str, int], progress=None, cancel=None) -> FeatureLoad:
    """Read the feature matrix (and every image's path) through a separate read-only
    connection, so a long read never holds the lock the UI thread needs to write a label."""
    reader = Project.open(project_path, read_only=True)
    try:
        image_ids, features = reader.feature_matrix(*extractor)
        return FeatureLoad(np.asarray(image_ids, np.int64), np.asarray(features, np.float32), reader.image_paths())
    finally:
        reader.close()


def image_path(project_path, image_id: int) -> Path:
    """The file of one image, read through its own read-only connection (a decode worker asks
    for an image the session has no path for, e.g. one added by a scan since)."""
    reader = Project.open(project_path, read_only=True)
    try:
        return reader.image_path(int(image_id))
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


# ----------------------------------------------------------------------------- images and features
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


# ----------------------------------------------------------------------------- the learner
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
    queue: Optional[list[QueueEntry]] = None  # the queue as written (read back), when one was


def retrain(project: Project, image_ids: np.ndarray, features: np.ndarray, extractor: tuple[str, int],
            write_queue: bool = True, progress=None, cancel=None) -> RetrainOutcome:
    """Fit on the current labels and (when ``write_queue``) record a version and refill the
    queue: ``learner.retrain``, the call the CLI makes, given the features held in memory.
    ``write_queue=False``: predictions only (nothing recorded)."""
    from inspector.core.learning import learner

    start = time.perf_counter()
    worker = project.worker_connection()
    try:
        if write_queue:
            result = learner.retrain(worker, extractor=extractor, features=(image_ids, features), cancel=cancel)
            version, snapshot, fitted_proba = result.version, result.snapshot, result.proba
            n_labels, metrics, model = result.n_labels, result.metrics, result.model
            queue = worker.queue()
        else:
            snapshot = learner.take_snapshot(worker, extractor=extractor, features=(image_ids, features))
            fitted = learner.fit(snapshot, cancel=cancel)
            check(cancel)
            version, fitted_proba, queue = None, fitted.proba, None
            n_labels, metrics, model = fitted.n_labels, fitted.metrics, fitted.model
    finally:
        worker.close()
    proba = None if fitted_proba is None else np.asarray(fitted_proba, np.float32)
    return RetrainOutcome(version, n_labels, metrics, proba, snapshot.classes, snapshot.image_ids, write_queue,
                          time.perf_counter() - start, model=model, queue=queue)


def refill(project: Project, image_ids: np.ndarray, features: np.ndarray, extractor: tuple[str, int],
           model=None, progress=None, cancel=None) -> RetrainOutcome:
    """Choose a new queue with the model the session already has: no new version, not a retrain.

    Without a usable model in memory (a reopened project, classes changed since) but with labels,
    the model is fitted again from the current labels for the ranking; nothing is recorded."""
    from inspector.core.learning import learner

    start = time.perf_counter()
    worker = project.worker_connection()
    try:
        snapshot = learner.take_snapshot(worker, extractor=extractor, features=(image_ids, features))
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
        queue = worker.queue()
    finally:
        worker.close()
    proba = None if fitted.proba is None else np.asarray(fitted.proba, np.float32)
    return RetrainOutcome(None, fitted.n_labels, fitted.metrics, proba, snapshot.classes, snapshot.image_ids,
                          True, time.perf_counter() - start, model=fitted.model, refill=True, queue=queue)


# ----------------------------------------------------------------------------- job descriptions
@dataclass
class Job:
    """One background job described without Qt: the app's worker layer runs it in a thread pool
    (``pool``: 'background' for long work, 'images' for reads the next image waits on), the CLI
    and the tests call :meth:`run` in the calling thread."""

    description: str  # for the progress display ("Training", "Loading features"…)
    fn: Any
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    pool: str = "background"
    with_progress: bool = True

    def run(self, progress=None, cancel=None):
        if not self.with_progress:
            return self.fn(*self.args, **self.kwargs)
        return self.fn(*self.args, progress=progress, cancel=cancel, **self.kwargs)


# The session's jobs by name: what runs, with which inputs, on which pool. The app's worker
# layer runs each as a Task (inspector.ui.workers.Task.from_job); ``job.run()`` runs it here.
def open_project_job(path: Path) -> Job:
    return Job("Opening the project file", open_project_file, (Path(path),))


def create_project_job(folder: Path, project_path: Path, goals=None) -> Job:
    return Job("Creating the project", create_project_file, (Path(folder), Path(project_path), goals))


def session_start_job(project: Project) -> Job:
    return Job("Opening the project", read_session_start, (project,), pool="images")


def queue_job(project: Project) -> Job:
    return Job("Reading the queue", read_queue, (project,), pool="images", with_progress=False)


def check_job(project: Project) -> Job:
    return Job("Checking the project", read_counts_and_problems, (project,), pool="images")


def feature_load_job(project_path, extractor: tuple[str, int]) -> Job:
    return Job("Loading features", load_features, (project_path, extractor), pool="images")


def scan_job(project: Project) -> Job:
    return Job("Reading images", scan_and_extract, (project,))


def switch_job(project: Project, name: str, description: str) -> Job:
    return Job(description, switch_features, (project, name))


def retrain_job(project: Project, image_ids: np.ndarray, features: np.ndarray, extractor: tuple[str, int],
                write_queue: bool = True) -> Job:
    return Job("Training", retrain, (project, image_ids, features, extractor, write_queue))


def refill_job(project: Project, image_ids: np.ndarray, features: np.ndarray, extractor: tuple[str, int],
               model=None) -> Job:
    return Job("Choosing the next images", refill, (project, image_ids, features, extractor, model))


def dashboard_job(project: Project, classes: list, labels: dict, probabilities, class_ids, features,
                  previous_map, goals: tuple = (None, None)) -> Job:
    from inspector.workflow.dashboard_data import compute_dashboard

    return Job("Dashboard", compute_dashboard,
               (project, classes, labels, probabilities, class_ids, features, previous_map, goals),
               with_progress=False)


def gallery_sort_job(spec, labels: np.ndarray, probabilities, class_ids: np.ndarray) -> Job:
    from inspector.workflow.gallery_data import filter_rows

    return Job("Sorting the gallery", filter_rows, (spec, labels, probabilities, class_ids), pool="gallery",
               with_progress=False)


def disagreements_job(project: Project, image_ids: np.ndarray) -> Job:
    from inspector.workflow.gallery_data import disagreement_rows

    return Job("Finding disagreements", disagreement_rows, (project, image_ids), pool="gallery", with_progress=False)


def similar_job(features: np.ndarray, query_row: int, stats, metric: str) -> Job:
    from inspector.workflow.gallery_data import find_similar

    return Job("Finding similar images", find_similar, (features, query_row, stats, metric), with_progress=False)

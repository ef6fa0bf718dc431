"""The main window: composes the start page, the labelling view, gallery and dashboard, the
problems panel and the status bar, and routes signals between them. No business logic, no I/O:
project work goes through the session and its workers."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog, QDockWidget, QFileDialog, QHBoxLayout, QLabel, QListWidget, QMainWindow, QMessageBox, QProgressBar,
    QPushButton, QStackedWidget, QTabWidget, QVBoxLayout, QWidget,
)

from inspector.core.errors import UserError
from inspector.core import modelfile, report
from inspector.core.store import PROJECT_SUFFIX, Project
from inspector.core.version import __version__
from inspector.ui.app_data import data_folder
# The gallery and dashboard (pyqtgraph) take a second or more to import on a busy machine:
# imported with the window, not while a project opens. A broken view module fails here, loudly.
from inspector.ui.dashboard import DashboardView
from inspector.ui.dialogs import ClassesDialog, SettingsDialog, show_error
from inspector.ui.features_dialog import FeaturesDialog
from inspector.ui.gallery import GalleryView
from inspector.ui.goals import GoalBanner, NewProjectDialog
from inspector.ui.icons import icon
from inspector.ui.label_view import KEYS, LabellingView
from inspector.ui.session import ProjectSession
from inspector.ui.start_page import StartPage, forget_project, recent_projects, remember_project
from inspector.ui.team import confirm_network_share, create_pack_interactively, merge_interactively
from inspector.ui.theme import apply_theme
from inspector.ui.workers import Task, pool, run_task
from inspector.workflow import jobs

log = logging.getLogger("inspector.ui")


def _warm_up() -> None:
    """Import the learner and the feature extractor (scikit-learn, scikit-image: seconds on a
    busy machine) in a thread while the start page shows, so the first retrain or extraction
    of a project does not spend its first seconds importing next to the UI thread. A module
    that cannot be imported fails here (the thread's traceback) and again where it is used."""
    try:
        import inspector.core.features  # noqa: F401
        import inspector.core.ingest  # noqa: F401
        import inspector.core.learning.learner  # noqa: F401
        import inspector.core.learning.strategies  # noqa: F401
        # The first queue's choice (cold start: k-means and an isolation forest) would import
        # scikit-learn's clustering and ensembles and have it probe the loaded math libraries
        # (threadpoolctl), all holding the interpreter while the first image is due: done here
        # once, on a toy problem, while the start page shows
        import numpy as np
        from sklearn.cluster import KMeans
        from sklearn.ensemble import IsolationForest

        toy = np.random.default_rng(0).normal(size=(16, 2))
        KMeans(n_clusters=2, n_init=1, random_state=0).fit(toy)
        IsolationForest(n_estimators=2, random_state=0).fit(toy)
    except RuntimeError:
        # the app quit while this daemon thread still imported: a module registering an exit
        # handler is refused then ("can't register atexit after shutdown"); nothing is broken
        log.debug("warm-up stopped by the app's exit", exc_info=True)


def _open_and_remember(job, recent_path: Optional[str], progress=None, cancel=None):
    """Run an open or create job (worker thread), then put the project first in the recent list;
    a recent project whose file is gone leaves the list (resolving paths and writing the settings
    file are disk work, kept off the UI thread)."""
    try:
        opened = job.run(progress=progress, cancel=cancel)
    except UserError:
        if recent_path is not None and not Path(recent_path).exists():
            forget_project(str(Path(recent_path).resolve()))
        raise
    remember_project(opened.project.path)
    return opened


def demo_folder() -> Path:
    return data_folder() / "demo"


def write_demo(folder: Path, progress=None, cancel=None) -> Path:
    """Write the demo images (once) and return the demo project's path (worker thread)."""
    from inspector.core.demo import TRUTH_FILE, write_demo_dataset

    images = folder / "images"
    project_path = folder / f"demo{PROJECT_SUFFIX}"
    if not (images / TRUTH_FILE).exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_demo_dataset(images, progress=progress, cancel=cancel, overwrite=True)
    if not project_path.exists():
        from inspector.core.demo import DEFECT_CLASSES, OK_CLASS

        # the demo is ready to label: its classes exist (keys 1-5), its labels do not
        from inspector.core.extractor_choice import start_project_with

        with Project.create(project_path, images) as project:
            start_project_with(project)
            for name in (OK_CLASS, *DEFECT_CLASSES):
                project.add_class(name)
    return project_path


def _with_worker_connection(function, project: Project, *args):
    """Run ``function(connection, *args)`` on a connection of the worker's own (worker thread),
    so a long export never holds the UI thread's connection."""
    connection = project.worker_connection()
    try:
        return function(connection, *args)
    finally:
        connection.close()


class JobIndicator(QWidget):
    """Progress of the long job in the status bar: what, how far, time left, Cancel."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        h = QHBoxLayout(self)
        h.setContentsMargins(0, 0, 0, 0)
        self.text = QLabel("")
        self.bar = QProgressBar()
        self.bar.setFixedWidth(180)
        self.cancel_button = QPushButton(icon("cancel"), "Cancel")
        self.cancel_button.setProperty("icon_name", "cancel")
        self.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cancel_button.clicked.connect(self._cancel)
        h.addWidget(self.text)
        h.addWidget(self.bar)
        h.addWidget(self.cancel_button)
        self.task: Optional[Task] = None
        self.description = ""
        self._start = 0.0
        self.hide()

    def start(self, description: str, task: Task) -> None:
        self.task, self.description, self._start = task, description, time.monotonic()
        self.text.setText(description + "…")
        self.bar.setRange(0, 0)
        self.show()

    def update(self, description: str, done: int, total: int, message: str) -> None:
        if description != self.description:
            return
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(done)
            elapsed = time.monotonic() - self._start
            left = ""
            if 0 < done < total and elapsed > 2:
                seconds = elapsed / done * (total - done)
                left = f", about {seconds / 60:.0f} min left" if seconds > 90 else f", about {seconds:.0f} s left"
            self.text.setText(f"{description}: {done:,} of {total:,}{left}")
        elif message:
            self.text.setText(f"{description}: {message}")

    def finish(self, description: str) -> None:
        if description == self.description:
            self.task = None
            self.hide()

    def _cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.text.setText(f"{self.description}: cancelling…")


class _LazyView(QWidget):
    """A tab whose view is built the first time the tab is shown."""

    def __init__(self, build, parent=None) -> None:
        super().__init__(parent)
        self._build = build
        self.view: Optional[QWidget] = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

    def ensure_built(self) -> QWidget:
        if self.view is None:
            self.view = self._build()
            self.layout().addWidget(self.view)
        return self.view

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.ensure_built()
        super().showEvent(event)


class MainWindow(QMainWindow):
    project_opened = Signal(object)  # the ProjectSession
    project_open_done = Signal(bool)  # after every open_project/new_project_from_folder: opened or not

    def __init__(self) -> None:
        super().__init__()
        self.session: Optional[ProjectSession] = None
        self._opening: Optional[Task] = None  # a project file opening in a worker
        self._closing = False
        self.label_view: Optional[LabellingView] = None
        self.goal_banner = None
        self._goals_checked = None
        self.resize(1400, 900)
        self.stack = QStackedWidget()
        self.setCentralWidget(self.stack)
        self.start_page = StartPage()
        self.start_page.new_from_folder.connect(self.ask_new_project)
        self.start_page.open_requested.connect(self.open_project)
        self.start_page.demo_requested.connect(self.open_demo)
        self.stack.addWidget(self.start_page)
        self.tabs: Optional[QTabWidget] = None
        self._build_status()
        self._build_problems()
        self._build_menus()
        self._update_title()
        settings = QSettings()
        if settings.value("window/geometry"):
            self.restoreGeometry(settings.value("window/geometry"))
        if settings.value("window/state"):
            self.restoreState(settings.value("window/state"))
        self.problems_dock.hide()
        import threading

        threading.Thread(target=_warm_up, name="inspector-warm-up", daemon=True).start()

    # ================================================================== chrome
    def _build_status(self) -> None:
        self.job = JobIndicator()
        self.model_status = QLabel("")
        self.model_status.setToolTip("Model version, labels, and the accuracy estimated from random audit labels")
        self.statusBar().addPermanentWidget(self.job)
        self.statusBar().addPermanentWidget(self.model_status)

    def _build_problems(self) -> None:
        self.problems_dock = QDockWidget("Problems", self)
        self.problems_dock.setObjectName("problemsDock")
        self.problems_list = QListWidget()
        self.problems_dock.setWidget(self.problems_list)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.problems_dock)

    def _action(self, menu, text: str, slot, shortcut=None, icon_name=None, tip=None) -> QAction:
        a = QAction(text, self)
        if icon_name:
            a.setIcon(icon(icon_name))
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.setToolTip(f"{tip or text.rstrip('…')}" + (f" ({shortcut})" if shortcut else ""))
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&New project from a folder…", self.start_page._choose_folder, "Ctrl+N", "new-project")
        self._action(file, "&Open project…", self.start_page._choose_project, "Ctrl+O", "folder-open")
        self.recent_menu = file.addMenu("Recent projects")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._action(file, "Open the &demo", self.open_demo, None, "demo")
        file.addSeparator()
        self.export_model_action = self._action(file, "Export &model…", self.export_model, None, "export")
        self.export_report_action = self._action(file, "Export &report…", self.export_report, None, "report")
        file.addSeparator()
        self.team_actions = [  # several workstations on one project (inspector.ui.team)
            self._action(file, "Create labelling &pack…", self.create_pack, None, "export",
                         tip="Write a slice of the images to label for another workstation"),
            self._action(file, "Mer&ge labels…", self.merge_labels, None, "folder-open",
                         tip="Bring home the labels of labelling packs"),
        ]
        file.addSeparator()
        self.close_action = self._action(file, "&Close project", self.close_project, "Ctrl+W")
        self._action(file, "&Quit", self.close, "Ctrl+Q")
        project = bar.addMenu("&Project")
        self.project_actions = [
            self._action(project, "&Rescan folder", self.rescan, "F5", "rescan"),
            self._action(project, "Re&locate images…", self.relocate, None, "folder-open"),
            self._action(project, "&Classes…", self.edit_classes, "Ctrl+K", "classes"),
            self._action(project, "&Settings…", self.edit_settings, "Ctrl+,", "settings"),
            self._action(project, "&Features…", self.edit_features, None, None,
                         "Which feature extractor this project uses; compare them on its labels and switch"),
            self._action(project, "&Retrain now", lambda: self.session and self.session.start_retrain(reason="you asked"), "Ctrl+R"),
        ]
        view = bar.addMenu("&View")
        view.addAction(self.problems_dock.toggleViewAction())
        self._action(view, "&Dark theme", self.toggle_theme)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keys", self.show_keys, "F1", "keys")
        self._action(help_menu, "&About Inspector", self.about)
        self._update_actions()

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in recent_projects():
            a = self.recent_menu.addAction(path)
            a.triggered.connect(lambda _=False, p=path: self.open_project(p))

    def _update_actions(self) -> None:
        has = self.session is not None
        for a in self.project_actions + self.team_actions + [self.close_action]:
            a.setEnabled(has)
        self.export_model_action.setEnabled(has)
        self.export_report_action.setEnabled(has)

    def _update_title(self) -> None:
        if self.session is None:
            self.setWindowTitle("Inspector")
        else:
            saved = "saving…" if self.session.pending_labels() else "all labels saved"
            self.setWindowTitle(f"{self.session.name} — {saved} — Inspector")

    # ================================================================== projects
    def ask_new_project(self, folder: str) -> bool:
        """A folder was chosen or dropped: open its project if it has one, else ask where to save
        the new one and (optionally) its target and labelling budget."""
        folder_path = Path(folder)
        default = folder_path.parent / f"{folder_path.name}{PROJECT_SUFFIX}"
        if default.exists():
            return self.open_project(str(default))
        dialog = NewProjectDialog(folder_path, default, self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return False
        return self.new_project_from_folder(folder, str(dialog.project_path()), goals=dialog.result_goals)

    def new_project_from_folder(self, folder: str, project_path: Optional[str] = None, goals=None) -> bool:
        """Create the project for ``folder`` in a worker and open it when ready (a folder with a
        project already beside it opens that one). Returns whether it started; the outcome
        arrives as ``project_open_done`` (and an error dialog when it failed)."""
        folder_path = Path(folder)
        if project_path is None:
            project_path = str(folder_path.parent / f"{folder_path.name}{PROJECT_SUFFIX}")
            if Path(project_path).exists():
                return self.open_project(project_path)
        return self._open_in_worker(jobs.create_project_job(folder_path, Path(project_path), goals),
                                    "New project", None)

    def open_project(self, path: str) -> bool:
        """Open a project file in a worker (locking, checking and migrating it read the disk) and
        show it when ready. Returns whether it started; the outcome arrives as
        ``project_open_done`` (and an error dialog when it failed)."""
        if Path(path).is_file():
            if not confirm_network_share(self, Path(path)):  # NFS/SMB: the user chooses before any write
                self.project_open_done.emit(False)
                return False
        return self._open_in_worker(jobs.open_project_job(Path(path)), "Open project", str(path))

    def _open_in_worker(self, job, title: str, recent_path: Optional[str]) -> bool:
        if self._opening is not None:  # one at a time: a second request while one opens is ignored
            self.statusBar().showMessage("A project is still opening; try again in a moment", 5000)
            self.project_open_done.emit(False)
            return False
        task = Task(_open_and_remember, job, recent_path, name=job.description)
        task.signals.finished.connect(self._opened)
        task.signals.failed.connect(lambda message: self._open_failed(title, message, recent_path is not None))
        self._opening = task
        self.job.start(task.name, task)
        run_task(task, pool(job.pool))
        return True

    def _opened(self, opened) -> None:
        task, self._opening = self._opening, None
        self.job.finish(task.name)
        if self._closing:  # the window closed while the file opened
            opened.project.close()
            return
        if task.cancel_token.cancelled:  # Cancel pressed while it opened
            name = opened.project.path.name
            opened.project.close()
            self.statusBar().showMessage(f"Opening {name} cancelled", 5000)
            self.project_open_done.emit(False)
            return
        self._adopt(opened.project, created=opened.created, image_root_found=opened.image_root_found)
        self.project_open_done.emit(True)

    def _open_failed(self, title: str, message: str, from_recent_list: bool) -> None:
        task, self._opening = self._opening, None
        self.job.finish(task.name)
        if from_recent_list:  # the worker took a vanished file off the list
            self.start_page.refresh()
        if not self._closing:
            show_error(self, title, message)
        self.project_open_done.emit(False)

    def open_demo(self) -> None:
        folder = demo_folder()
        task = Task(write_demo, folder, name="Writing the demo images")
        task.signals.progress.connect(lambda d, t, m: self.job.update("Writing the demo images", d, t, m))
        task.signals.finished.connect(lambda path: (self.job.finish("Writing the demo images"),
                                                    self.open_project(str(path))))
        task.signals.failed.connect(lambda m: (self.job.finish("Writing the demo images"),
                                               show_error(self, "Demo", m)))
        task.signals.cancelled.connect(lambda: self.job.finish("Writing the demo images"))
        self.job.start("Writing the demo images", task)
        run_task(task, pool("background"))

    def _adopt(self, project: Project, created: bool = False, image_root_found: bool = True) -> None:
        self.close_project()
        self._goals_checked = None
        self.start_page.show_notice("")
        session = ProjectSession(project, self)
        self.session = session
        session.begin()  # the queue and labels are read in a worker while the views are built
        session.job_started.connect(self.job.start)
        session.job_progress.connect(self.job.update)
        session.job_finished.connect(self._job_finished)
        session.job_failed.connect(self._job_failed)
        session.model_updated.connect(lambda _v: self._update_model_status())
        session.labels_changed.connect(lambda _ids: self._update_model_status())
        session.labels_changed.connect(lambda _ids: self._update_title())
        session.labels_saved.connect(self._update_title)
        session.label_failed.connect(lambda m: show_error(self, "Label not saved", m))
        session.problems_changed.connect(self._fill_problems)
        session.no_usable_image.connect(lambda m, s=session, c=created: self._no_usable_image(s, m, c))
        session.goals_changed.connect(self._update_model_status)
        session.goals_changed.connect(self._announce_goals)
        session.model_updated.connect(lambda _v: self._announce_goals())
        session.labels_saved.connect(self._announce_goals)
        session.open_image_requested.connect(lambda _i: self.tabs and self.tabs.setCurrentIndex(0))
        self.label_view = LabellingView(session)
        self.label_view.message.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.goal_banner = GoalBanner()
        self.goal_banner.export_model_requested.connect(self.export_model)
        self.goal_banner.export_report_requested.connect(self.export_report)
        labelling = QWidget()  # the banner above the labelling view: said once, never in the way
        column = QVBoxLayout(labelling)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.goal_banner)
        column.addWidget(self.label_view, 1)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(labelling, icon("label"), "Label")
        # built when first shown: opening a project (and its first image) does not wait for them
        self.tabs.addTab(_LazyView(lambda: self._view(GalleryView, session)),
                         icon("gallery"), "Gallery")
        self.tabs.addTab(_LazyView(lambda: self._view(DashboardView, session)),
                         icon("dashboard"), "Dashboard")
        self.tabs.currentChanged.connect(lambda i: i == 0 and self.label_view.setFocus())
        self.stack.addWidget(self.tabs)
        self.stack.setCurrentWidget(self.tabs)
        self.label_view.setFocus()
        self._fill_problems()
        self._update_model_status()
        self._update_title()
        self._update_actions()
        self.project_opened.emit(session)
        self._announce_goals()  # a project opened with its target already shown says so (once)
        if not image_root_found:
            self._offer_relocate(project)
        session.start()

    def _no_usable_image(self, session: ProjectSession, message: str, created: bool) -> None:
        """A scan found nothing to label. A project just created from that folder is removed
        (it holds nothing) and the start page says why; an existing project stays open and the
        status bar says it."""
        text = message[0].upper() + message[1:]
        if session is not self.session:
            return
        if not created or session.latest_labels():
            self.statusBar().showMessage(text, 15000)
            return
        path = session.project.path
        self.close_project()
        discarded = False
        try:
            discarded = Project.open(path).discard_if_empty()
        except UserError as exc:
            log.warning("empty project %s not removed: %s", path, exc)
        if discarded:
            forget_project(str(Path(path).resolve()))
            self.start_page.refresh()
        self.start_page.show_notice(f"{text}. " + ("No project was created." if discarded else f"{path} was kept."))

    def _offer_relocate(self, project: Project) -> None:
        """The image folder moved: offer to point the project at its new place before scanning
        (a scan of a missing folder would only report it gone)."""
        answer = QMessageBox.question(
            self, "Images not found",
            f"The images of {project.name} are not at\n{project.image_root}\n\n"
            "Labels and features are safe in the project file. Locate the image folder now?",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        folder = QFileDialog.getExistingDirectory(self, "Where are the images now?")
        if not folder:
            return
        try:
            project.set_image_root(Path(folder))
        except UserError as exc:
            show_error(self, "Relocate images", str(exc))

    def _view(self, view_class, session) -> QWidget:
        """Build the gallery or dashboard (when its tab is first shown) and route its requests."""
        view = view_class(session)
        if hasattr(view, "export_report_requested"):  # the dashboard files what it shows
            view.export_report_requested.connect(self.export_report)
            view.export_model_requested.connect(self.export_model)
        if hasattr(view, "features_requested"):
            view.features_requested.connect(self.edit_features)
        return view

    def close_project(self) -> None:
        if self.session is None:
            return
        session, self.session = self.session, None
        if getattr(self, "features_dialog", None) is not None:
            self.features_dialog.close()
            self.features_dialog = None
        if self.tabs is not None:
            self.stack.removeWidget(self.tabs)
            self.tabs.deleteLater()
            self.tabs = None
        self.label_view = None
        self.goal_banner = None
        self.job.hide()
        session.close()
        session.deleteLater()
        self.problems_list.clear()
        self.model_status.setText("")
        self.start_page.refresh()
        self.stack.setCurrentWidget(self.start_page)
        self._update_title()
        self._update_actions()

    # ================================================================== status
    def _job_finished(self, description: str, summary: str) -> None:
        self.job.finish(description)
        self.statusBar().showMessage(summary, 6000)
        self._update_model_status()

    def _job_failed(self, description: str, message: str) -> None:
        self.job.finish(description)
        show_error(self, description, message)

    def _update_model_status(self) -> None:
        s = self.session
        if s is None:
            return
        n = len(s.latest_labels())
        status = s.goal_status()
        labels = f"{n} of {status.budget} labels" if status.budget is not None else f"{n} labelled"
        if not s.model_version:
            # a fresh project: say what will happen, not "model v0" and an empty estimate
            until = s.labels_until_retrain()
            text = (f"No model yet: label a few images ({labels}; the first model trains after {until} more)"
                    if until else f"No model yet ({labels}; the first model is training)")
        else:
            text = (f"Model v{s.model_version} ({s.n_labels_trained} labels) · {labels} · "
                    f"retrain in {s.labels_until_retrain()} · {s.audit_summary()}")
        if status.budget_spent:
            text += " · budget spent"
        if status.target is not None:
            text += f" · target {status.target.words}: {status.target_state_words()}"
        self.model_status.setText(text)
        self.model_status.setToolTip("\n".join(filter(None, [
            "Model version, labels, and the honest accuracy estimate with its 95 % interval",
            status.target_sentence(), status.budget_sentence()])))

    def _announce_goals(self) -> None:
        """Once per rule: the target shown or the budget spent is said above the image."""
        s = self.session
        if s is None or getattr(self, "goal_banner", None) is None:
            return
        from inspector.core.learning import stopping

        status = s.goal_status()
        if not (status.target_shown or status.budget_spent):
            return
        key = (status.target_shown and status.target.as_text(), status.budget_spent and status.budget)
        if key == self._goals_checked:
            return  # already announced (or found announced in an earlier session)
        self._goals_checked = key
        due = stopping.announcements_due(s.project, status)
        if due:
            self.goal_banner.announce(status, due)

    def _fill_problems(self) -> None:
        self.problems_list.clear()
        if self.session is None:
            return
        problems = self.session.problems()
        for record in problems:
            self.problems_list.addItem(f"{record.path} — {record.error}")
        self.problems_dock.setWindowTitle(f"Problems ({len(problems)})")
        if problems:
            self.problems_dock.show()

    # ================================================================== project actions
    def rescan(self) -> None:
        if self.session is not None:
            self.session.scan()

    def relocate(self) -> None:
        if self.session is None:
            return
        folder = QFileDialog.getExistingDirectory(self, "Where are the images now?")
        if folder:
            self.relocate_to(folder)

    def relocate_to(self, folder: str) -> None:
        try:
            self.session.project.set_image_root(Path(folder))
        except UserError as exc:
            show_error(self, "Relocate images", str(exc))
            return
        self.session.scan()

    def edit_classes(self) -> None:
        if self.session is not None:
            ClassesDialog(self.session, self).exec()

    def edit_settings(self) -> None:
        if self.session is None:
            return
        if SettingsDialog(self.session, self).exec():
            apply_theme(str(QSettings().value("theme", "light")))

    def edit_features(self) -> None:
        """The feature extractor dialog; not modal, so labelling goes on while it compares or switches."""
        if self.session is None:
            return
        dialog = getattr(self, "features_dialog", None)
        if dialog is None or dialog.session is not self.session:
            dialog = self.features_dialog = FeaturesDialog(self.session, self)
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()

    def toggle_theme(self) -> None:
        theme = "light" if QSettings().value("theme", "light") == "dark" else "dark"
        QSettings().setValue("theme", theme)
        apply_theme(theme)

    def _export(self, write, title: str, suffix: str, filter_text: str) -> None:
        """Ask where, then ``write(project, path)`` on a worker with its own connection."""
        if self.session is None:
            return
        default = str(self.session.project.path.with_suffix(suffix))
        path, _ = QFileDialog.getSaveFileName(self, title, default, filter_text)
        if not path:
            return
        task = Task(_with_worker_connection, write, self.session.project, Path(path),
                    name=title, with_progress=False)
        task.signals.finished.connect(lambda _r: (self.job.finish(title),
                                                  self.statusBar().showMessage(f"{title}: written to {path}", 8000)))
        task.signals.failed.connect(lambda m: (self.job.finish(title), show_error(self, title, m)))
        self.job.start(title, task)
        run_task(task, pool("background"))

    def create_pack(self) -> None:
        if self.session is not None:
            create_pack_interactively(self, self.session)

    def merge_labels(self) -> None:
        if self.session is not None:
            merge_interactively(self, self.session)

    def export_model(self) -> None:
        self._export(modelfile.export_model, "Export model", ".inspector-model",
                     "Inspector model (*.inspector-model)")

    def export_report(self) -> None:
        self._export(report.write_report, "Export report", ".html", "HTML report (*.html)")

    def show_keys(self) -> None:
        if self.label_view is not None and self.tabs is not None:
            self.tabs.setCurrentIndex(0)
            self.label_view.show_keys()
        else:
            QMessageBox.information(self, "Keys", "\n".join(f"{k}: {v}" for k, v in KEYS))

    def about(self) -> None:
        QMessageBox.about(self, "About Inspector",
                          f"Inspector {__version__}\nOffline visual-inspection labelling with an active learner.")

    def closeEvent(self, event) -> None:
        settings = QSettings()
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        self._closing = True  # a project still opening in a worker is closed when it arrives
        self.close_project()
        super().closeEvent(event)

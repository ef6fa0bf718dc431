"""File ▸ Create labelling pack… and File ▸ Merge labels…, and the network-share warning.

The dialogs only collect choices; the work (inspector.core.packs) runs in a background worker
with progress in the main window's job bar, on its own connection to the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import (
    QButtonGroup, QCheckBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout,
    QLabel, QLineEdit, QMessageBox, QPushButton, QRadioButton, QSpinBox, QVBoxLayout, QWidget,
)

from inspector.core import packs
from inspector.core.errors import UserError
from inspector.ui.workers import Task, pool, run_task


def _create_pack_job(project, out_path: Path, options: dict, wait_for_labels=None, progress=None, cancel=None):
    if wait_for_labels is not None:
        wait_for_labels()  # labels given a moment ago are on disk, so those images are not handed out
    connection = project.worker_connection()
    try:
        return packs.create_pack(connection, out_path, progress=progress, **options)
    finally:
        connection.close()


def _merge_job(project, pack_paths: list[Path], progress=None, cancel=None):
    connection = project.worker_connection()
    try:
        return packs.merge_packs(connection, pack_paths, progress=progress)
    finally:
        connection.close()


class CreatePackDialog(QDialog):
    """Choose the pack file, its size, who labels it and whether its images travel with it."""

    def __init__(self, project, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Create labelling pack")
        self.project = project
        handed = len(project.handed_out_images())
        unlabelled = len(project.image_ids()) - len(project.latest_labels())
        n_packs = len(project.packs_out())
        intro = QLabel(
            "A labelling pack is a project file for another workstation: a slice of the images still to "
            "label, with the classes, settings, features and the labels so far. Label it there, then bring "
            f"it back with File ▸ Merge labels.\n\n{unlabelled:,} images are unlabelled; {handed:,} of them are "
            f"already in {n_packs} pack(s) and are not handed out again (except the double-labelling share).")
        intro.setWordWrap(True)
        self.path_edit = QLineEdit(str(project.path.with_name(f"{project.path.stem}-pack{n_packs + 1}.inspector")))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        self.by_count = QRadioButton("Number of images")
        self.by_share = QRadioButton("Share of the unlabelled images")
        group = QButtonGroup(self)
        group.addButton(self.by_count)
        group.addButton(self.by_share)
        self.by_share.setChecked(True)
        self.count = QSpinBox()
        self.count.setRange(1, max(1, unlabelled))
        self.count.setValue(min(500, max(1, unlabelled)))
        self.share = QLineEdit("1/3")
        self.share.setToolTip("e.g. 1/3: three packs of 1/3 split the unlabelled images in three")
        self.workstation = QLineEdit(f"workstation {n_packs + 2}")
        self.annotator = QLineEdit()
        self.annotator.setPlaceholderText("inspector who will label the pack")
        self.double = QDoubleSpinBox()
        self.double.setRange(0, 50)
        self.double.setSuffix(" %")
        self.double.setValue(100 * float(project.get_setting(packs.SETTING_DOUBLE_SHARE, packs.DEFAULT_DOUBLE_SHARE)))
        self.double.setToolTip("Share of the pack also given to another pack, so two people label it and "
                               "their agreement (Cohen's kappa) can be measured")
        self.copy = QCheckBox("Copy the images beside the pack (for a workstation that cannot reach the image folder)")
        self.where = QLabel()
        self.where.setWordWrap(True)
        self.copy.toggled.connect(self._explain)
        self._explain()
        form = QFormLayout()
        form.addRow("Pack file", path_row)
        count_row, share_row = QHBoxLayout(), QHBoxLayout()
        count_row.addWidget(self.by_count)
        count_row.addWidget(self.count)
        share_row.addWidget(self.by_share)
        share_row.addWidget(self.share)
        form.addRow("Size", _wrap(share_row))
        form.addRow("", _wrap(count_row))
        form.addRow("Workstation", self.workstation)
        form.addRow("Annotator", self.annotator)
        form.addRow("Double-labelled", self.double)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create pack")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.copy)
        layout.addWidget(self.where)
        layout.addWidget(buttons)
        self.resize(620, self.sizeHint().height())

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Labelling pack", self.path_edit.text(),
                                              "Inspector project (*.inspector)")
        if path:
            self.path_edit.setText(path)

    def _explain(self) -> None:
        if self.copy.isChecked():
            self.where.setText("The pack's images are copied into a folder <pack name>-images beside the pack: "
                               "carry both to the other workstation.")
        else:
            self.where.setText(f"Images stay where they are; the other workstation must reach\n{self.project.image_root}\n"
                               "(a shared archive mounted at the same path), or point the pack at a copy with "
                               "Project ▸ Relocate images.")

    def choices(self) -> tuple[Path, dict]:
        """The pack path and create_pack's options; UserError for a bad share."""
        options = {"workstation": self.workstation.text(), "annotator": self.annotator.text(),
                   "copy_images": self.copy.isChecked(), "double_share": self.double.value() / 100}
        if self.by_share.isChecked():
            options["share"] = packs.parse_share(self.share.text())
        else:
            options["n_images"] = self.count.value()
        text = self.path_edit.text().strip()
        if not text:
            raise UserError("choose where to write the pack")
        path = Path(text)
        if path.suffix != ".inspector":
            path = path.with_name(path.name + ".inspector")
        return path, options


def _wrap(layout) -> QWidget:
    widget = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    widget.setLayout(layout)
    return widget


def create_pack_interactively(window, session) -> Optional[Task]:
    """Ask for the pack's options, then write it in a worker; returns the task (None if cancelled)."""
    from inspector.ui.dialogs import show_error

    dialog = CreatePackDialog(session.project, window)
    while True:
        if not dialog.exec():
            return None
        try:
            out_path, options = dialog.choices()
            break
        except UserError as exc:
            show_error(window, "Create labelling pack", str(exc))
    title = "Creating labelling pack"
    task = Task(_create_pack_job, session.project, out_path, options, session.writer.wait, name=title)

    def done(result) -> None:
        window.job.finish(title)
        where = "images copied beside it" if result.copied else f"images referenced at {result.image_root}"
        QMessageBox.information(
            window, "Labelling pack written",
            f"Wrote {result.path.name}: {result.n_images:,} images to label ({result.n_double} also in another pack, "
            f"to measure agreement), {result.n_labels_carried:,} labels carried for its learner.\n\n{where}."
            + (f"\n\n{result.short_by:,} fewer images than asked: no more unlabelled images to hand out."
               if result.short_by else ""))

    task.signals.progress.connect(lambda d, t, m: window.job.update(title, d, t, m))
    task.signals.finished.connect(done)
    task.signals.failed.connect(lambda m: (window.job.finish(title), show_error(window, "Create labelling pack", m)))
    task.signals.cancelled.connect(lambda: window.job.finish(title))
    window.job.start(title, task)
    return run_task(task, pool("background"))


def merge_interactively(window, session, pack_paths: Optional[list[str]] = None) -> Optional[Task]:
    """Choose packs and merge them in a worker; the views reload the labels afterwards."""
    from inspector.ui.dialogs import show_error

    if pack_paths is None:
        pack_paths, _ = QFileDialog.getOpenFileNames(window, "Merge labels from labelling packs",
                                                     str(session.project.path.parent),
                                                     "Inspector labelling pack (*.inspector)")
    if not pack_paths:
        return None
    title = "Merging labels"
    task = Task(_merge_job, session.project, [Path(p) for p in pack_paths], name=title)

    def done(results) -> None:
        window.job.finish(title)
        session.notify_classes_changed()  # labels (and maybe classes) came from elsewhere: views reload
        if sum(r.added for r in results):
            session.start_retrain()
        lines = [packs.summary_line(r) for r in results]
        from inspector.core.agreement import unresolved_disagreement_ids

        waiting = len(unresolved_disagreement_ids(session.project))
        if waiting:
            lines.append(f"\n{waiting} images were labelled differently by two inspectors: see Gallery ▸ "
                         "Disagreements (kept out of training until a reviewer labels them).")
        QMessageBox.information(window, "Labels merged", "\n".join(lines))

    task.signals.progress.connect(lambda d, t, m: window.job.update(title, d, t, m))
    task.signals.finished.connect(done)
    task.signals.failed.connect(lambda m: (window.job.finish(title), show_error(window, "Merge labels", m)))
    task.signals.cancelled.connect(lambda: window.job.finish(title))
    window.job.start(title, task)
    return run_task(task, pool("background"))


# ------------------------------------------------------------------ a project on a network share
def _copy_project(source: Path, target: Path, progress=None, cancel=None) -> Path:
    """Copy a project file (and a write-ahead log left by a crash) to ``target``; returns it."""
    import shutil

    from inspector.core.errors import UserError as _UserError

    if target.exists():
        raise _UserError(f"{target} already exists; choose another name")
    partial = target.with_name(f".{target.name}.part")
    try:
        shutil.copyfile(source, partial)
        wal = Path(str(source) + "-wal")
        if wal.exists() and wal.stat().st_size:
            shutil.copyfile(wal, Path(str(target) + "-wal"))
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise _UserError(f"cannot copy the project to {target}: {exc.strerror or exc}") from None
    return target


def ask_network_share_choice(window, path: Path, kind: str) -> str:
    """'copy', 'open' or 'cancel' (replaced in tests)."""
    box = QMessageBox(window)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Project on a network share")
    box.setText(f"{path.name} is on a network share ({kind}).")
    box.setInformativeText(
        "SQLite, which keeps the project file, cannot lock files reliably on network shares: two "
        "workstations writing it at once can corrupt it, and a dropped connection can lose a label.\n\n"
        "Copy it to this computer and work on the copy. To share the work between workstations, make "
        "labelling packs from the copy (File ▸ Create labelling pack…) and merge them back.\n\n"
        "Nothing has been written to the share.")
    copy = box.addButton("Copy to this computer…", QMessageBox.ButtonRole.AcceptRole)
    anyway = box.addButton("Open on the share anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(copy)
    box.exec()
    clicked = box.clickedButton()
    return "copy" if clicked is copy else "open" if clicked is anyway else "cancel"


def ask_copy_target(window, path: Path) -> Optional[Path]:
    """Where to put the local copy (replaced in tests)."""
    from PySide6.QtCore import QStandardPaths

    documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or str(Path.home())
    chosen, _ = QFileDialog.getSaveFileName(window, "Copy the project to this computer",
                                            str(Path(documents) / path.name), "Inspector project (*.inspector)")
    return Path(chosen) if chosen else None


def confirm_network_share(window, path: Path) -> bool:
    """True to go on opening ``path``. On a network share the user chooses first: a local copy
    (copied in a worker, then opened), opening it anyway, or nothing; nothing is written before."""
    from inspector.core.filesystems import network_share
    from inspector.ui.dialogs import show_error

    kind = network_share(path)
    if kind is None:
        return True
    choice = ask_network_share_choice(window, Path(path), kind)
    if choice == "open":
        return True
    if choice != "copy":
        return False
    target = ask_copy_target(window, Path(path))
    if target is None:
        return False
    title = "Copying the project to this computer"
    task = Task(_copy_project, Path(path), target, name=title)
    task.signals.finished.connect(lambda copied: (window.job.finish(title), window.open_project(str(copied))))
    task.signals.failed.connect(lambda m: (window.job.finish(title), show_error(window, "Copy project", m)))
    window.job.start(title, task)
    run_task(task, pool("background"))
    return False

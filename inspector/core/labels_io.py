"""Labels out of and into a project: CSV/JSON files keyed by relative path, and folder-per-class copies.

Paths are relative to the project's image folder with '/' separators, so a file written on one
workstation imports on another whose image folder lives elsewhere. Export writes to a temporary
file and renames it, so an interrupted export never leaves half a file in place of a good one.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from inspector.core.csv_cells import SafeWriter, unescape_cell
from inspector.core.errors import UserError
from inspector.core.progress import CancelToken, ProgressCallback, check, report
from inspector.core.store import clean_class_name

LATEST_COLUMNS = ("path", "label", "annotator", "time", "source", "audit")
HISTORY_COLUMNS = ("path", "kind", "label", "annotator", "time", "source", "audit")


def label_rows(project, history: bool = False) -> list[dict]:
    """Rows describing the project's labels, sorted by path.

    Without ``history``: one row per image whose latest event is a class label (columns
    :data:`LATEST_COLUMNS`). With ``history``: every label event in order (columns
    :data:`HISTORY_COLUMNS`; ``label`` is empty for unsure/skip/cleared).
    """
    names = {c.id: c.name for c in project.classes()}
    paths = {r.id: r.path for r in project.images(usable_only=False)}
    rows = []
    if not history:
        latest = project.latest_labels()
        events = project.latest_label_events()
        for image_id, class_id in latest.items():
            e = events[image_id]
            rows.append({"path": paths[image_id], "label": names[class_id], "annotator": e.annotator,
                         "time": e.created_at, "source": e.source, "audit": e.audit})
        rows.sort(key=lambda r: r["path"])
        return rows
    for image_id in sorted(project.latest_label_events(), key=lambda i: paths.get(i, "")):
        for e in project.label_history(image_id):
            rows.append({"path": paths[image_id], "kind": e.kind,
                         "label": "" if e.class_id is None else names.get(e.class_id, f"(removed class {e.class_id})"),
                         "annotator": e.annotator, "time": e.created_at, "source": e.source, "audit": e.audit})
    return rows


def _replace_atomically(out_path: Path, write) -> None:
    out_path = Path(out_path)
    if not out_path.parent.is_dir():
        raise UserError(f"folder {out_path.parent} does not exist")
    temporary = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            write(handle)
        os.replace(temporary, out_path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write {out_path}: {exc.strerror or exc}") from None


def export_labels(project, out_path: Path, history: bool = False) -> int:
    """Write the project's labels to ``out_path`` (.csv or .json, chosen by the suffix).

    Returns the number of rows written. Raises :class:`UserError` for another suffix or when
    the file cannot be written.
    """
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise UserError(f"label files are .csv or .json, not '{out_path.suffix or out_path.name}'")
    rows = label_rows(project, history)
    columns = HISTORY_COLUMNS if history else LATEST_COLUMNS

    def write_csv(handle) -> None:
        writer = SafeWriter(handle)  # names and paths are escaped so no cell is a spreadsheet formula
        writer.writerow(columns)
        for row in rows:
            row = {**row, "audit": "true" if row["audit"] else "false"}
            writer.writerow([row[c] for c in columns])

    def write_json(handle) -> None:
        json.dump({"project": project.name, "kind": "label history" if history else "latest labels",
                   "labels": rows}, handle, indent=1, ensure_ascii=False)
        handle.write("\n")

    _replace_atomically(out_path, write_csv if suffix == ".csv" else write_json)
    return len(rows)


@dataclass
class ImportSummary:
    """What an import did: labels added, paths not in the project, rows skipped and why."""

    imported: int = 0
    unknown_paths: list[str] = field(default_factory=list)
    skipped: int = 0
    new_classes: list[str] = field(default_factory=list)


def _read_rows(path: Path) -> list[dict]:
    path = Path(path)
    try:
        if path.suffix.lower() == ".json":
            with open(path, encoding="utf-8-sig") as handle:
                data = json.load(handle)
            rows = data.get("labels") if isinstance(data, dict) else data
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise UserError(f"{path} is not a label file: expected a list of {{path, label}} objects")
            return [{str(k).lower().strip(): ("" if v is None else str(v)) for k, v in r.items()} for r in rows]
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise UserError(f"no label file at {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a label file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable label file ({exc})") from None
    # cells as written by export_labels, whose leading quote only keeps spreadsheets from formulas
    return [{unescape_cell(str(k)).lower().strip(): unescape_cell(v or "") for k, v in r.items() if k is not None}
            for r in rows]


def nearest_classes(name: str, existing: list[str], n: int = 3) -> list[str]:
    """The existing class names closest to ``name`` (a typo's likely intention), best first."""
    lowered = {c.lower(): c for c in existing}
    return [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)]


def unknown_classes_message(names: list[str], existing: list[str], flag: str) -> str:
    """One line naming classes the project lacks, the nearest existing ones, and how to create them."""
    def one(name: str) -> str:
        shown = name.encode("unicode_escape").decode("ascii") if not name.isprintable() else name
        near = nearest_classes(name, existing)
        return f"'{shown[:64]}'" + (f" (did you mean {' or '.join(repr(c) for c in near)}?)" if near else "")

    listed = ", ".join(one(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    have = ", ".join(existing[:12]) + (" ..." if len(existing) > 12 else "") if existing else "none yet"
    return (f"this project has no class {listed}; its classes: {have}. "
            f"Nothing was changed; to create new classes, add {flag}")


def import_labels(project, path: Path, annotator: str = "", create_classes: bool = False) -> ImportSummary:
    """Add the labels in a CSV or JSON file (columns ``path`` and ``label`` or ``class``; optional
    ``annotator`` and ``kind``) to the project, matched by path relative to the image folder.

    Classes the project lacks are created only with ``create_classes`` (a typo must not quietly
    become a class); otherwise the file is refused naming them and their nearest existing
    classes. Paths that are not images of the project are listed in the summary, never guessed;
    rows of a history file whose kind is not a class label are skipped. ``annotator`` is used
    where a row names none. Nothing is written when the file is refused. Returns an
    :class:`ImportSummary`. Raises :class:`UserError` for an unreadable file, one without
    path/label columns, unknown classes (see above) or class names with control characters.
    """
    rows = _read_rows(path)
    summary = ImportSummary()
    if not rows:
        return summary
    columns = set().union(*(r.keys() for r in rows))
    label_column = "label" if "label" in columns else "class" if "class" in columns else None
    if "path" not in columns or label_column is None:
        raise UserError(f"{path} needs 'path' and 'label' columns")
    wanted: list[tuple[str, int, str]] = []  # (annotator, image id, class name) in file order
    for row in rows:
        image_path, label = row.get("path", "").strip(), row.get(label_column, "").strip()
        if row.get("kind", "class").strip() not in ("", "class") or not image_path or not label:
            summary.skipped += 1
            continue
        raw_path = row.get("path", "")
        # a file name may really begin or end with white space (a tab): the exact name first
        image_id = project.find_image(raw_path) if raw_path != image_path else None
        if image_id is None:
            image_id = project.find_image(image_path)
        if image_id is None:
            summary.unknown_paths.append(image_path)
            continue
        wanted.append((row.get("annotator", "").strip() or annotator, image_id, label))
    class_ids: dict[str, int] = {}
    unknown: list[str] = []
    for _, _, label in wanted:
        if label not in class_ids and label not in unknown:
            record = project.class_by_name(label)
            if record is None:
                unknown.append(label)
            else:
                class_ids[label] = record.id
    if unknown and not create_classes:
        raise UserError(unknown_classes_message(unknown, [c.name for c in project.classes()], "--create-classes"))
    for label in unknown:
        clean_class_name(label)  # every new name is checked before the first is created
    for label in unknown:
        class_ids[label] = project.add_class(label)
        summary.new_classes.append(label)
    # One bulk write per run of rows by the same annotator, in file order, so that in a history
    # file an image's last row is still its latest label after the import.
    start = 0
    while start < len(wanted):
        end = start
        while end < len(wanted) and wanted[end][0] == wanted[start][0]:
            end += 1
        summary.imported += project.add_labels_bulk([(i, class_ids[label]) for _, i, label in wanted[start:end]],
                                                    annotator=wanted[start][0], source="imported")
        start = end
    return summary


_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def import_folder_labels(project, annotator: str = "") -> int:
    """Label every usable image with its parent folder's name, creating the classes it needs
    (images at the root stay unlabelled). Returns the number of labels added."""
    class_ids: dict[str, int] = {}
    labels = []
    for image_id, path in sorted(project.image_paths().items()):
        parent = Path(path).parent.name
        if not parent:
            continue
        if parent not in class_ids:
            record = project.class_by_name(parent)
            class_ids[parent] = record.id if record else project.add_class(parent)
        labels.append((image_id, class_ids[parent]))
    return project.add_labels_bulk(labels, annotator=annotator, source="imported")


def safe_folder_name(name: str) -> str:
    """A class name usable as a folder name on Windows, macOS and Linux.

    A name that had to be changed ('.', '..', 'a/b', 'CON' ...) gets a short tag computed from
    the original name, so two classes never share a folder ('.' and '..' were both '_').
    """
    cleaned = _UNSAFE.sub("_", name).strip().rstrip(".") or "_"
    if cleaned != name or cleaned.split(".")[0].lower() in _WINDOWS_RESERVED:
        cleaned = f"{cleaned}~{hashlib.sha1(name.encode('utf-8')).hexdigest()[:6]}"
    return cleaned


def class_folder_names(names: list[str]) -> dict[str, str]:
    """A distinct folder name per class, also on file systems that ignore letter case."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        folder = safe_folder_name(name)
        candidate, n = folder, 2
        while candidate.lower() in taken:
            candidate, n = f"{folder}~{n}", n + 1
        taken.add(candidate.lower())
        folders[name] = candidate
    return folders


@dataclass
class FolderExport:
    """Result of a folder-per-class export: files placed and files that could not be."""

    placed: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    how: str = "copy"


def export_label_folder(project, folder: Path, link: bool = False, progress: Optional[ProgressCallback] = None,
                        cancel: Optional[CancelToken] = None) -> FolderExport:
    """Place every labelled image in ``folder/<class>/`` for training elsewhere.

    File names are the relative path with '/' replaced by '__' (unique, traceable to the
    source). ``link`` makes hard links (symbolic links where hard links are impossible, e.g.
    across disks) instead of copies. Existing files are never overwritten: ``folder`` must be
    empty or new. Returns a :class:`FolderExport`; a source file that cannot be placed is listed
    there, not raised. Raises :class:`UserError` when ``folder`` is not empty or not writable.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} is not an empty folder; choose a new one so no file is overwritten")
    names = {c.id: c.name for c in project.classes()}
    paths = {r.id: r.path for r in project.images(usable_only=False)}
    labels = sorted(project.latest_labels().items(), key=lambda item: paths.get(item[0], ""))
    root = project.image_root
    result = FolderExport(how="link" if link else "copy")
    folder_of = class_folder_names([names[c] for c in sorted(names)])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for class_id in {c for _, c in labels}:
            (folder / folder_of[names[class_id]]).mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror or exc}") from None
    for done, (image_id, class_id) in enumerate(labels):
        check(cancel)
        relative = paths.get(image_id)
        if relative is None:
            continue
        source = root / relative
        target = folder / folder_of[names[class_id]] / relative.replace("/", "__")
        try:
            if link:
                try:
                    os.link(source, target)
                except OSError:
                    os.symlink(source.resolve(), target)
            else:
                shutil.copy2(source, target)
            result.placed += 1
        except OSError as exc:
            result.problems.append((relative, exc.strerror or str(exc)))
        report(progress, done + 1, len(labels), "")
    return result

"""Labelling packs: several workstations on one project without a network between them.

A *pack* is an ordinary project file (made through the store API, so the app opens it like any
other) holding one workstation's slice of the images still to label, plus what it needs to run
the active learner on its own: the classes, the settings, the feature vectors, the labels made so
far at home (so its learner trains on them) and the latest model version's record. Its ``meta``
names the project it came from, its own pack id, the workstation and the annotator.

Images are referenced by path: the pack's image folder is the home project's image folder, which
the other workstation must reach under the same path (a mounted archive, a copied folder at the
same place, or it can be re-pointed with ``inspector relocate``). ``copy_images=True`` copies the
pack's images into a folder beside the pack instead, for a workstation that reaches nothing.

Handing out: two packs never get the same image, except a share (``packs.double_share``, 5 % by
default) of each pack taken on purpose from images another pack already has, so two people label
them independently and their agreement can be measured. The home project records which images
went out in which pack, so the next pack does not repeat them.

Merging brings every label event made in a pack home with its annotator, workstation, time and an
event identity (``<pack id>:<event id in the pack>``), in one transaction; merging the same pack
again adds nothing. A pack from another project, or written by a newer Inspector, is refused with
one line and left unchanged (it is only ever opened read-only).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from inspector.core.errors import ProjectError, UserError
from inspector.core.progress import ProgressCallback, report
from inspector.core.store import ImageAnalysis, Project, QueueEntry

SETTING_DOUBLE_SHARE = "packs.double_share"
DEFAULT_DOUBLE_SHARE = 0.05
PACK_IMAGES_SUFFIX = "-images"

# meta keys of a pack
META_PACK_ID = "pack_id"
META_SOURCE = "pack_source_project"
META_SOURCE_NAME = "pack_source_name"
META_WORKSTATION = "pack_workstation"
META_ANNOTATOR = "pack_annotator"


@dataclass
class PackResult:
    path: Path
    pack_id: str
    n_images: int
    n_double: int
    n_labels_carried: int
    image_root: Path
    copied: bool
    short_by: int = 0  # images asked for but none left to hand out


@dataclass
class MergeResult:
    pack: Path
    pack_id: str
    workstation: str
    annotator: str
    added: int
    already_present: int
    skipped_images: list = field(default_factory=list)  # paths in the pack that this project lacks


def parse_share(text: str) -> Fraction:
    """'1/3', '0.25' or '25%' as a fraction in (0, 1]; UserError otherwise."""
    raw = str(text).strip()
    try:
        value = Fraction(raw[:-1]) / 100 if raw.endswith("%") else Fraction(raw)
    except (ValueError, ZeroDivisionError):
        raise UserError(f"share '{text}' is not a fraction such as 1/3, 0.25 or 25%") from None
    if not 0 < value <= 1:
        raise UserError(f"share '{text}' must be more than 0 and at most 1")
    return value


def is_pack(project: Project) -> bool:
    return bool(project.meta_value(META_PACK_ID))


def _candidates(project: Project, seed: str) -> list[int]:
    """Unlabelled usable images in the order they are handed out: the learner's queue first (most
    informative), then the rest in a random order fixed by the project (uniform, so audit picks a
    pack's learner makes among them stay a random sample)."""
    settled = {i for i, e in project.latest_label_events().items() if e.kind != "cleared"}
    usable = [int(i) for i in project.image_ids() if int(i) not in settled]
    queued = [q.image_id for q in project.queue() if q.image_id not in settled]
    queued_set = set(queued)
    rest = np.asarray([i for i in usable if i not in queued_set], np.int64)
    rng = np.random.default_rng(int(uuid.UUID(seed).int % (2**32)))
    rng.shuffle(rest)
    usable_set = set(usable)
    return [i for i in queued if i in usable_set] + rest.tolist()


def choose_pack_images(project: Project, n_images: Optional[int] = None, share: Optional[Fraction] = None,
                       double_share: Optional[float] = None) -> tuple[list[tuple[int, bool]], int]:
    """Which images the next pack gets: ``[(image_id, double)]`` and how many it is short by.

    ``n_images`` or ``share`` (of the unlabelled images, handed out or not: three packs of 1/3
    split them in three). Of those, ``double_share`` are taken from images exactly one other pack
    has (labelled twice on purpose); the rest have never been handed out.
    """
    if (n_images is None) == (share is None):
        raise UserError("give either a number of images or a share")
    if double_share is None:
        double_share = float(project.get_setting(SETTING_DOUBLE_SHARE, DEFAULT_DOUBLE_SHARE))
    if not 0 <= double_share < 1:
        raise UserError("the double-labelling share must be at least 0 and below 1")
    project_id = project.ensure_project_id()
    order = _candidates(project, project_id)
    if share is not None:
        n_images = int(np.ceil(float(share) * len(order)))
    if n_images is None or n_images < 1:
        raise UserError("a pack needs at least one image")
    handed = project.handed_out_images()
    fresh = [i for i in order if i not in handed]
    once = [i for i in order if len(handed.get(i, ())) == 1]
    n_double = min(int(round(double_share * n_images)), len(once))
    n_fresh = min(n_images - n_double, len(fresh))
    chosen = [(i, False) for i in fresh[:n_fresh]]
    # spread the doubled images over the earlier packs rather than taking one pack's first images
    if n_double:
        rng = np.random.default_rng(len(handed))
        picks = rng.choice(len(once), size=n_double, replace=False)
        chosen += [(once[int(k)], True) for k in sorted(picks)]
    return chosen, n_images - len(chosen)


def create_pack(project: Project, out_path: Path, n_images: Optional[int] = None, share: Optional[Fraction] = None,
                workstation: str = "", annotator: str = "", copy_images: bool = False,
                double_share: Optional[float] = None, extractor: Optional[tuple[str, int]] = None,
                progress: Optional[ProgressCallback] = None) -> PackResult:
    """Write a labelling pack for another workstation and record its images as handed out."""
    out_path = Path(out_path)
    if is_pack(project):
        raise UserError(f"{project.path.name} is itself a labelling pack; make packs from the home project")
    if out_path.exists():
        raise UserError(f"{out_path} already exists; choose another name")
    if not out_path.parent.is_dir():
        raise UserError(f"folder {out_path.parent} does not exist")
    if not project.image_root_found():
        raise UserError(f"the image folder {project.image_root} is not reachable; relocate the project first")
    if extractor is None:
        from inspector.core.features import default_extractor

        ex = default_extractor()
        extractor = (ex.name, ex.version)
    report(progress, 0, 5, "choosing images")
    chosen, short_by = choose_pack_images(project, n_images, share, double_share)
    if not chosen:
        raise UserError("no unlabelled images are left to hand out")
    project_id = project.ensure_project_id()
    pack_id = uuid.uuid4().hex
    packs_so_far = len(project.packs_out())
    workstation = workstation.strip() or f"workstation {packs_so_far + 2}"  # home is workstation 1
    from inspector.core.agreement import training_labels

    latest = training_labels(project, project.latest_labels())  # not a disagreement waiting for review
    events = project.latest_label_events()
    records = {r.id: r for r in project.images()}
    chosen_ids = [i for i, _ in chosen]
    carried = [i for i in latest if i in records]  # labelled at home: the pack's learner trains on them
    members = chosen_ids + [i for i in carried if i not in set(chosen_ids)]
    ids, X = project.feature_matrix(*extractor)
    row_of = {int(i): r for r, i in enumerate(ids.tolist())}
    scan = project.scan_state()
    mtimes = {v[0]: (v[1], v[2]) for v in scan.values()}
    home_root = project.image_root
    part = out_path.with_name(f".{out_path.name}.{os.getpid()}.part")
    image_folder = out_path.with_name(out_path.stem + PACK_IMAGES_SUFFIX) if copy_images else None
    try:
        if image_folder is not None:
            if image_folder.exists():
                raise UserError(f"{image_folder} already exists; choose another pack name")
            report(progress, 1, 5, f"copying {len(members)} images")
            for k, image_id in enumerate(members):
                target = image_folder / records[image_id].path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(home_root / records[image_id].path, target)
        image_root = image_folder if image_folder is not None else home_root
        report(progress, 2, 5, "writing the pack")
        with Project.create(part, image_root) as pack:
            pack.record_scan(new=[(records[i].path, *mtimes[i]) for i in members], changed=(), missing=(), returned=())
            pack_ids = {path: v[0] for path, v in pack.scan_state().items()}
            to_pack = {i: pack_ids[records[i].path] for i in members}
            pack.save_analyses(
                [ImageAnalysis(to_pack[i], records[i].content_hash, records[i].width, records[i].height,
                               records[i].bit_depth, records[i].channels, None, records[i].note or "",
                               X[row_of[i]] if i in row_of else None) for i in members],
                *extractor)
            for c in project.classes():
                pack.add_class(c.name, c.color)
            for key, value in project.settings().items():
                pack.set_setting(key, value)
            model = project.latest_model_version()
            if model is not None:
                pack.add_model_version(model.kind, model.settings, model.n_labels, model.metrics)
            names = {c.id: c.name for c in project.classes()}
            pack.import_label_events([
                {"image_id": to_pack[i], "class_name": names[latest[i]], "kind": "class",
                 "annotator": events[i].annotator, "source": events[i].source, "audit": events[i].audit,
                 "created_at": events[i].created_at, "workstation": "", "pack_id": None,
                 "event_uid": f"{project_id}:{events[i].id}"} for i in carried])
            home_queue = {q.image_id: q for q in project.queue()}
            entries = []
            for image_id, double in chosen:
                q = home_queue.get(image_id)
                reason = q.reason if q is not None else "handed out with the pack (random among unlabelled images)"
                if double:
                    reason += "; also in another pack (double-labelled to measure agreement)"
                entries.append(QueueEntry(to_pack[image_id], len(entries), q.strategy if q else "pack",
                                          q.score if q else None, reason, None, bool(q.audit) if q else False))
            pack.replace_queue(entries)
            pack.set_meta_values({
                META_PACK_ID: pack_id, META_SOURCE: project_id, META_SOURCE_NAME: project.name,
                META_WORKSTATION: workstation, META_ANNOTATOR: annotator.strip(),
                "name": f"{project.name} - {workstation}",
            })
        Path(str(part) + ".lock").unlink(missing_ok=True)
        report(progress, 4, 5, "recording the handed-out images")
        os.replace(part, out_path)
    except BaseException:
        part.unlink(missing_ok=True)
        Path(str(part) + ".lock").unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(part) + suffix).unlink(missing_ok=True)
        if image_folder is not None and image_folder.exists():
            shutil.rmtree(image_folder, ignore_errors=True)
        raise
    project.record_pack_out(pack_id, workstation, annotator.strip(), str(out_path.resolve()), chosen)
    report(progress, 5, 5, "done")
    return PackResult(out_path, pack_id, len(chosen), sum(1 for _, d in chosen if d), len(carried),
                      image_folder if image_folder is not None else home_root, copy_images, short_by)


def read_pack_events(project: Project, pack_path: Path) -> tuple[dict, list[dict], list[str]]:
    """Open a pack read-only and return its identity, the events made in it (mapped to this
    project's images) and the paths this project lacks. Refuses a foreign or newer pack."""
    pack_path = Path(pack_path)
    try:
        pack = Project.open(pack_path, read_only=True)
    except ProjectError as exc:
        raise UserError(f"cannot merge {pack_path.name}: {exc}") from None
    with pack:
        pack_id = pack.meta_value(META_PACK_ID)
        if not pack_id:
            raise UserError(f"{pack_path.name} is not a labelling pack (no pack identity); nothing merged")
        source = pack.meta_value(META_SOURCE)
        home_id = project.meta_value("project_id")
        if source != home_id:
            raise UserError(f"{pack_path.name} is a pack of another project ({pack.meta_value(META_SOURCE_NAME)}), "
                            f"not of {project.name}; nothing merged")
        identity = {"pack_id": pack_id, "workstation": pack.meta_value(META_WORKSTATION) or "",
                    "annotator": pack.meta_value(META_ANNOTATOR) or ""}
        events = pack.label_events_full()
    home_prefix = f"{home_id}:"
    paths = {r.path: r.id for r in project.images(usable_only=False)}
    out, missing = [], []
    for e in events:
        uid = e["event_uid"] or f"{pack_id}:{e['id']}"
        if uid.startswith(home_prefix):
            continue  # a home label the pack carried for its learner
        if e["class_removed"]:
            continue  # its class was deleted in the pack (a 'cleared' event followed): not a class to bring home
        image_id = paths.get(e["path"])
        if image_id is None:
            missing.append(e["path"])
            continue
        out.append({**e, "image_id": image_id, "event_uid": uid,
                    "annotator": e["annotator"] or identity["annotator"],
                    "workstation": e["workstation"] or identity["workstation"],
                    "pack_id": e["pack_id"] or pack_id})
    return identity, out, sorted(set(missing))


def merge_pack(project: Project, pack_path: Path, progress: Optional[ProgressCallback] = None) -> MergeResult:
    """Bring a pack's label events home in one transaction (idempotent)."""
    if is_pack(project):
        raise UserError(f"{project.path.name} is a labelling pack; merge packs into the home project")
    if not project.meta_value("project_id"):
        raise UserError(f"{project.path.name} has handed out no packs, so {Path(pack_path).name} cannot be one of its packs; "
                        "nothing merged")
    report(progress, 0, 2, f"reading {Path(pack_path).name}")
    identity, events, missing = read_pack_events(project, pack_path)
    report(progress, 1, 2, f"merging {len(events)} label events")
    added = project.import_label_events(events, merged_pack=identity)
    report(progress, 2, 2, "done")
    return MergeResult(Path(pack_path), identity["pack_id"], identity["workstation"], identity["annotator"],
                       added, len(events) - added, missing)


def merge_packs(project: Project, pack_paths: Sequence[Path], progress: Optional[ProgressCallback] = None
                ) -> list[MergeResult]:
    """Merge several packs; each is checked before any is merged, so a foreign pack stops them all."""
    for path in pack_paths:
        read_pack_events(project, path)  # refuse early: one bad pack, nothing merged
    results = []
    for k, path in enumerate(pack_paths):
        results.append(merge_pack(project, path))
        report(progress, k + 1, len(pack_paths), f"merged {Path(path).name}")
    return results


def summary_line(result: MergeResult) -> str:
    who = ", ".join(x for x in (result.annotator, result.workstation) if x)
    line = f"Merged {result.pack.name}" + (f" ({who})" if who else "") + f": {result.added} new label events"
    if result.already_present:
        line += f", {result.already_present} already here"
    if result.skipped_images:
        line += f"; {len(result.skipped_images)} images of the pack are not in this project (skipped)"
    return line


def elapsed(start: float) -> str:
    return f"{time.perf_counter() - start:.2f} s"

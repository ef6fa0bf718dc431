"""A labelling shift in the real window, driven by keys: the walk an inspector would do.

    Xvfb :66 -screen 0 1600x1000x24 &
    DISPLAY=:66 QT_QPA_PLATFORM=xcb .venv/bin/python tests/reliability/labelling_shift.py \
        --images /path/to/elpv --labels 200 --shots /tmp/shift

Opens a new project on a folder whose images sit in one sub-folder per class (the sub-folder is
the truth the script answers with; the app does not use it), adds the classes by typing them,
then labels ``--labels`` images with the class keys (Enter when the model's suggestion is right),
undoes one label, opens the keys overlay, zooms, and visits the gallery and the dashboard.
Saves screenshots (window and whole screen) along the way and prints, per slow step, what the
inspector was waiting for, then the waits (median, 95th percentile, max), the retrains and why
they started, and the model versions. Run it with its own HOME/XDG folders to keep your
settings clean. Use the app's own start-up (QApplication, theme, error dialog).
"""
import os, shutil, subprocess, sys, time, statistics, json
from pathlib import Path
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from inspector.ui.app import application, configure_logging
from inspector.ui.dialogs import install_excepthook
from inspector.ui.main_window import MainWindow

def main():
    global app, w, log, ARGS, N, SHOTS, CLASSES, KEYS
    import argparse
    options = argparse.ArgumentParser(description="a labelling shift in the real window")
    options.add_argument("--images", required=True, help="folder with one sub-folder of images per class")
    options.add_argument("--labels", type=int, default=200)
    options.add_argument("--shots", default="shift-shots", help="folder for the screenshots")
    ARGS = options.parse_args()
    N = ARGS.labels
    SHOTS = Path(ARGS.shots); SHOTS.mkdir(parents=True, exist_ok=True)
    CLASSES = sorted(p.name for p in Path(ARGS.images).iterdir() if p.is_dir())
    KEYS = {name: getattr(Qt.Key, f"Key_{i + 1}") for i, name in enumerate(CLASSES[:9])}

    app = application()
    configure_logging(); install_excepthook()
    w = MainWindow(); w.resize(1500, 950); w.show()
    log = []
    from PySide6.QtCore import QEventLoop
    def pump(seconds, until=lambda: False):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            loop = QEventLoop(); QTimer.singleShot(5, loop.quit); loop.exec()
            if until(): return True
            time.sleep(0.005)
        return until()
    def shot(name):
        pump(0.3)
        w.grab().save(str(SHOTS / f"{name}.png"))
        if os.environ.get("DISPLAY") and shutil.which("import"):  # ImageMagick: the whole screen
            subprocess.run(["import", "-window", "root", str(SHOTS / f"{name}-screen.png")], capture_output=True)
        log.append(f"shot {name}: status='{w.statusBar().currentMessage()}' model='{w.model_status.text()}' job='{w.job.text.text() if w.job.isVisible() else ''}'")

    pump(1.0)
    shot("00-start")
    t0 = time.monotonic()
    project = SHOTS / f"{Path(ARGS.images).name}.inspector"
    for old in SHOTS.glob(f"{project.name}*"):
        old.unlink()
    w.new_project_from_folder(ARGS.images, str(project))  # the file is created in a worker
    pump(60, lambda: w.session is not None)
    s, v = w.session, w.label_view
    pump(120, lambda: v.current is not None and v._prepared is not None)
    log.append(f"first image after {time.monotonic()-t0:.1f} s")
    shot("01-first-image")
    for name in KEYS:
        v.new_class_edit.setText(name)
        QTest.keyClick(v.new_class_edit, Qt.Key.Key_Return)
    pump(0.5)
    v.setFocus()
    shot("02-classes")
    waits = []
    accepted = 0
    for i in range(N):
        ok = pump(60, lambda: v.current is not None and not v.saving and v._prepared is not None
                  and v._prepared.image_id == v.current)
        if not ok:
            log.append(f"label {i}: no image after 60 s (placeholder: {v.placeholder.text()!r})"); shot(f"stuck-{i}"); break
        path = s.project.image(v.current).path
        truth = path.split("/")[0]
        sug = s.suggestion(v.current)
        names = {c.id: c.name for c in s.classes()}
        before = v.current
        t = time.monotonic()
        if sug and names.get(sug[0]) == truth:
            QTest.keyClick(v, Qt.Key.Key_Return); accepted += 1
        else:
            QTest.keyClick(v, KEYS[truth])
        pump(30, lambda: v.current != before and v._prepared is not None and v._prepared.image_id == v.current)
        waits.append(time.monotonic() - t)
        if waits[-1] > 1.5:
            log.append(f"label {i+1}: next image after {waits[-1]:.1f} s; placeholder={v.placeholder.text()!r} "
                       f"visible={v.placeholder.isVisible()} upcoming={len(v.upcoming)} retraining={s.retraining()} "
                       f"refill={s._refill_task is not None} retrain={s._retrain_task is not None} saving={v.saving}")
        if i in (5, 12, 25, 60, 110, 160, 199):
            shot(f"10-label-{i+1:03d}")
        if i == 30:
            QTest.keyClick(v, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
            shot("20-after-undo")
        if i == 40:
            QTest.keyClick(v, Qt.Key.Key_F1); shot("21-keys"); QTest.keyClick(v, Qt.Key.Key_Escape)
        if i == 90:
            w.tabs.setCurrentIndex(1); pump(3); shot("30-gallery")
            w.tabs.setCurrentIndex(2); pump(8); shot("31-dashboard")
            w.tabs.setCurrentIndex(0); v.setFocus()
        if i == 150:
            QTest.keyClick(v, Qt.Key.Key_C); QTest.keyClick(v, Qt.Key.Key_Plus); QTest.keyClick(v, Qt.Key.Key_Plus)
            shot("22-zoom-contrast"); QTest.keyClick(v, Qt.Key.Key_F); QTest.keyClick(v, Qt.Key.Key_C)
    pump(5, lambda: not s.retraining())
    w.tabs.setCurrentIndex(2); pump(10); shot("40-dashboard-end")
    w.tabs.setCurrentIndex(1); pump(3); shot("41-gallery-end")
    log.append(f"labels {len(waits)}, accepted {accepted}, wait median {statistics.median(waits or [0])*1000:.0f} ms, "
               f"p95 {sorted(waits or [0])[int(.95*len(waits))]*1000:.0f} ms, max {max(waits or [0])*1000:.0f} ms")
    log.append(f"retrains: {s.retrain_log}")
    log.append(f"versions: {[(m.version, m.n_labels) for m in s.project.model_versions()]}")
    log.append(f"images in memory {len(s.image_ids)}, extracting {s.extracting()}")
    (SHOTS / "log.txt").write_text("\n".join(log))
    print("\n".join(log))
    w.close(); pump(1)

if __name__ == '__main__':
    main()

"""What the command line prints for a person reading a log: progress, errors, the simulate table."""

from __future__ import annotations

import io
import math

from inspector.cli import build_parser, main
from inspector.cli.common import StageProgress, terminal_progress
from inspector.cli.learning_cmds import print_table


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_simulate_takes_a_space_separated_strategy_list():
    args = build_parser().parse_args(["simulate", "--images", "x", "--strategy", "uncertain_diverse", "margin",
                                      "--strategy", "entropy"])
    assert args.strategy == ["uncertain_diverse", "margin", "entropy"]


def test_progress_in_a_log_is_one_line_per_stage_in_its_own_unit(tmp_path, capsys):
    """Output to a file (not a terminal): no bar updates, one line per stage, images counted as
    images and the model export's steps as steps."""
    demo = tmp_path / "demo"
    code, out, err = run(capsys, "demo", str(demo), "-n", "12")
    assert code == 0
    assert err.count("\n") == 1 and err.startswith("Drawing demo parts: 12 images in "), err
    assert "\r" not in err and "img/s" not in err
    project = tmp_path / "p.inspector"
    code, out, err = run(capsys, "new", str(project), "--images", str(demo), "--labels-csv",
                         str(demo / "truth.csv"), "--workers", "1")
    assert code == 0
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("Reading images: 12 images in ")]
    assert len(err.splitlines()) == 1
    code, out, err = run(capsys, "export-model", str(project), str(tmp_path / "m.inspector-model"))
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Exporting model: 4 steps in "), err


def test_a_terminal_gets_a_bar_but_never_an_empty_one_first():
    stream = io.StringIO()
    stage = StageProgress("Reading images", "images", stream, terminal=True)
    stage.close()
    assert stream.getvalue() == ""  # a stage with nothing to do draws nothing
    stage = StageProgress("Reading images", "images", stream, terminal=True)
    for done in range(1, 4):
        stage(done, 3, "")
    stage.close()
    text = stream.getvalue()
    assert "3/3" in text and "images/s" in text and "0img" not in text and "?img/s" not in text


def test_a_quiet_stage_says_nothing(capsys):
    with terminal_progress("Reading images", enabled=False) as progress:
        progress(1, 2, "")
    assert capsys.readouterr().err == ""


def test_predict_on_a_missing_folder_is_an_input_error(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert run(capsys, "demo", str(demo), "-n", "12")[0] == 0
    project = tmp_path / "p.inspector"
    assert run(capsys, "new", str(project), "--images", str(demo), "--labels-csv", str(demo / "truth.csv"),
               "--quiet", "--workers", "1")[0] == 0
    model = tmp_path / "m.inspector-model"
    assert run(capsys, "export-model", str(project), str(model), "--quiet")[0] == 0
    out_csv = tmp_path / "out.csv"
    code, out, err = run(capsys, "predict", str(model), str(tmp_path / "no-such-folder"), "--csv", str(out_csv))
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspector: error:") and "no-such-folder" in lines[0], err
    assert not out_csv.exists()
    code, _, err = run(capsys, "predict", str(model), str(demo), str(tmp_path / "gone.png"), "--quiet")
    assert code == 1 and "gone.png does not exist" in err


def _summary(seen_median, to_90):
    counts = [10, 20, 30]
    strategy = {"accuracy_mean": [0.5, 0.6, 0.7], "area_under_accuracy_curve": 0.6, "area_under_macro_f1_curve": 0.5,
                "labels_to_90pct_of_all_labels_accuracy": to_90, "labels_to_95pct_of_all_labels_accuracy": None,
                "labels_until_every_class_seen_median": seen_median,
                "audit_coverage": {"covers_audit_model": None, "covers_current_model": None, "points": 0}}
    return {"label_counts": counts, "all_labels": {"accuracy": 0.8, "macro_f1": 0.7},
            "settings": {"seeds": 2, "test_fraction": 0.3},
            "strategies": {"uncertain_diverse": strategy, "random": dict(strategy, labels_until_every_class_seen_median=20.0)}}


def test_simulate_table_says_what_it_means():
    stream = io.StringIO()
    print_table(_summary(seen_median=math.inf, to_90=20), file=stream)
    text = stream.getvalue()
    assert "inf" not in text.replace("information", "")
    assert "not reached" in text
    cells = text.split()
    assert "-" not in cells
    assert "acc@20" in text and "all classes seen" in text
    assert "Columns:" in text and "held-out test images" in text  # the legend in words
    stream = io.StringIO()
    print_table(_summary(seen_median=None, to_90=None), file=stream)
    assert stream.getvalue().count("not reached") >= 3

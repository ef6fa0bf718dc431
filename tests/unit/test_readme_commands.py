"""Every `inspector …` command shown in README.md's code blocks runs as written (against the demo).

The commands are read from the README itself, so an example that stops working (a renamed option,
a list option that takes one value) fails here, not for a new user. They run in order in a temporary
folder, in this process (faster than a new interpreter per command), after `inspector demo
demo-images` made a small demo. What the README calls `parts/`, `sorted/`, `new-parts/`,
`labels.csv` and `/new/place` is made from that demo (see _prepare_places); a README command
reading a folder that is not made there fails with a message saying so. `gui` commands are only parsed.
"""

from __future__ import annotations

import csv
import re
import shlex
import shutil
from pathlib import Path

import pytest

from inspector.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
#: images in the test's demo: fewer than ingest.IN_PROCESS_BELOW, so no worker processes start
DEMO_IMAGES = 23
SIMULATE_BUDGET = 12


def readme_commands(text: str) -> list[list[str]]:
    """The `inspector …` commands of the README's fenced code blocks, as argument lists (program
    name dropped, `[optional]` brackets opened, comments dropped, `a && b` split)."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            for part in line.split("&&"):
                words = shlex.split(part.replace("[", " ").replace("]", " "))
                if words and (words[0] == "inspector" or words[0].endswith("/inspector")):
                    commands.append(words[1:])
    return commands


def test_readme_has_the_commands_this_test_expects():
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    names = {c[0] for c in commands if c}
    assert {"demo", "new", "predict", "simulate", "gui", "export-model", "label"} <= names
    simulate = [c for c in commands if c and c[0] == "simulate"]
    assert any(c.count("--strategy") == 1 and len(c) > c.index("--strategy") + 2 for c in simulate), \
        "the README shows a space-separated --strategy list; this test must run it"


def _prepare_places(tmp: Path) -> dict[str, str]:
    """Folders and files the README names, made from the demo written by the README's first command."""
    demo = tmp / "demo-images"
    truth = {row["path"]: row["label"] for row in csv.DictReader(open(demo / "truth.csv", encoding="utf-8"))}
    for name in truth:
        for target in ("parts", "new-parts"):
            (tmp / target).mkdir(exist_ok=True)
            shutil.copy2(demo / name, tmp / target / name)
        (tmp / "sorted" / truth[name]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(demo / name, tmp / "sorted" / truth[name] / name)
    # A labels CSV for half the images, as a team starting from an older spreadsheet would have:
    # the rest is left to label (and to hand out in labelling packs).
    with open(tmp / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows(sorted(truth.items())[::2])
    shutil.copytree(tmp / "parts", tmp / "moved-parts")
    return {"/new/place": str(tmp / "moved-parts")}


def _adapted(args: list[str], places: dict[str, str]) -> list[str]:
    """The README command made small and fast: a small demo, a small simulation budget."""
    args = [places.get(a, a) for a in args]
    if args[0] == "demo":
        args += ["-n", str(DEMO_IMAGES)]
    if args[0] == "simulate":
        if "--budget" in args:
            args[args.index("--budget") + 1] = str(SIMULATE_BUDGET)
        else:
            args += ["--budget", str(SIMULATE_BUDGET)]
        args += ["--seeds", "1", "--initial", "6", "--batch", "3", "--quiet"]
    return args


def test_every_readme_command_runs_on_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    places: dict[str, str] = {}
    ran = 0
    for args in commands:
        if args[:1] == ["gui"]:
            parsed = build_parser().parse_args(args)
            assert parsed.command == "gui"
            continue
        args = _adapted(args, places)
        if args[0] == "new" and Path(args[1]).exists():
            Path(args[1]).unlink()  # the README shows several ways to create the same project
        if "--images" in args and args[0] != "pack":  # pack --images N is a count
            folder = args[args.index("--images") + 1]
            assert Path(folder).is_dir(), f"README command uses {folder}: add it to _prepare_places"
        code = main(args)
        out = capsys.readouterr()
        assert code == 0, f"`inspector {' '.join(args)}` exited {code}: {out.err.strip()[-500:]}"
        ran += 1
        if args[0] == "demo":
            places = _prepare_places(tmp_path)
    assert ran >= 15
    assert (tmp_path / "sim" / "summary.json").is_file() and (tmp_path / "predictions.csv").is_file()

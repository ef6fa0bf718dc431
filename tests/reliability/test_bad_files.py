"""No crash on any file in a folder: `inspector new` over the nasty corpus (see nasty_files.py).

Each bad file must be listed by `info --json` with a reason a person understands, every good
file must be usable (features present), hidden files and folders must be left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from inspector.cli import main
from inspector.core.features import get_extractor
from inspector.core.store import Project
from nasty_files import make_nasty_corpus

NOBODY = 65534


def _preload_for_unprivileged_child() -> None:
    """Import everything a scan needs while we can still read the interpreter's files."""
    import csv  # noqa: F401
    import io  # noqa: F401

    import tifffile  # noqa: F401
    import tqdm  # noqa: F401
    from PIL import Image

    Image.init()  # Pillow loads its format plugins lazily
    from inspector.core import ingest

    ingest._extractor().dim  # builds kernels and look-up tables
    import inspector.cli.project_cmds  # noqa: F401


def run_new_as_nobody(argv: list[str]) -> tuple[int, str]:
    """`inspector new` in a forked child holding the rights of the 'nobody' user."""
    _preload_for_unprivileged_child()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read_fd)
            os.dup2(write_fd, 2)  # the child's stderr is what the parent inspects
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = main(argv)
        except BaseException as exc:  # the parent asserts on this text and the exit code
            os.write(write_fd, f"CRASH {type(exc).__name__}: {exc}".encode())
        os._exit(code)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def corpus():
    # world-traversable (pytest's tmp_path is private to its user, and we may drop privileges)
    base = Path(tempfile.mkdtemp(prefix="inspector-nasty-"))
    os.chmod(base, 0o755)
    expected = make_nasty_corpus(base / "corpus")
    (base / "projects").mkdir()
    os.chmod(base / "projects", 0o777)
    yield base, expected
    for root, dirs, files in os.walk(base):
        for name in dirs + files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o755)
    shutil.rmtree(base, ignore_errors=True)


def _check_project(project_path: Path, expected: dict, capsys, permission_enforced: bool) -> dict:
    capsys.readouterr()  # drop what `new` printed
    assert main(["info", str(project_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    reasons = {e["path"]: e["reason"] for e in summary["errors"]}
    bad = dict(expected["bad"])
    good = dict(expected["good"])
    unreadable = expected["unreadable"]
    if not permission_enforced:  # a privileged user reads it: it is then a fine image
        bad.pop(unreadable)
        good[unreadable] = "readable to this user"
    problems = []
    for rel, (description, words) in bad.items():
        reason = reasons.get(rel)
        if reason is None:
            problems.append(f"{rel} ({description}) is not reported")
        elif not any(w in reason.lower() for w in words):
            problems.append(f"{rel} ({description}): reason '{reason}' says none of {words}")
        elif "\n" in reason or "0x" in reason or len(reason) > 200:
            problems.append(f"{rel}: reason not readable: {reason!r}")
    unexpected = set(reasons) - set(bad)
    problems += [f"{rel} reported but should be fine: {reasons[rel]}" for rel in sorted(unexpected)]
    from inspector.core.extractor_choice import project_extractor

    with Project.open(project_path, read_only=True) as p:
        extractor = project_extractor(p)  # the one the project was created with
        with_features = set(p.feature_matrix(extractor.name, extractor.version)[0].tolist())
        for rel, description in good.items():
            image_id = p.find_image(rel)
            if image_id is None or image_id not in with_features:
                problems.append(f"{rel} ({description}) has no features")
        for rel, description in expected["ignored"].items():
            if p.find_image(rel) is not None:
                problems.append(f"{rel} ({description}) should have been ignored")
        assert p.integrity_check() == "ok"
    assert not problems, "\n".join(problems)
    pairs = {frozenset((d["path"], d["same_as"])) for d in summary["duplicates"]}  # first found is the original
    assert pairs == {frozenset(pair) for pair in expected["duplicates"]}
    assert summary["features"] == len(good)
    return summary


@pytest.mark.skipif(os.name != "posix", reason="symlinks and file modes as on Linux/macOS")
def test_nasty_corpus_with_ordinary_user_rights(corpus, capsys):
    base, expected = corpus
    project = base / "projects" / "as_user.inspector"
    argv = ["new", str(project), "--images", str(base / "corpus"), "--quiet", "--workers", "1"]
    if os.geteuid() == 0:  # root reads unreadable files: scan with an ordinary user's rights
        code, err = run_new_as_nobody(argv)
    else:
        code = main(argv)
        err = capsys.readouterr().err
    assert code == 0, err
    assert "CRASH" not in err and "Traceback" not in err
    summary = _check_project(project, expected, capsys, permission_enforced=True)
    assert len(summary["errors"]) == len(expected["bad"])
    print(f"good {len(expected['good'])}, bad {len(expected['bad'])}, ignored {len(expected['ignored'])}")


@pytest.mark.skipif(os.name != "posix", reason="symlinks and file modes as on Linux/macOS")
def test_nasty_corpus_through_the_worker_pool(corpus, capsys):
    base, expected = corpus
    project = base / "projects" / "pool.inspector"
    code = main(["new", str(project), "--images", str(base / "corpus"), "--quiet", "--workers", "2"])
    assert code == 0
    _check_project(project, expected, capsys, permission_enforced=os.geteuid() != 0)


def test_corpus_is_big_enough(corpus):
    _, expected = corpus
    assert len(expected["bad"]) + len(expected["good"]) + len(expected["ignored"]) >= 30
    assert len(expected["bad"]) >= 15

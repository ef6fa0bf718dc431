"""Short version of the kill test for CI (the full run: python tests/reliability/kill_test.py)."""

from __future__ import annotations

import os

import pytest

from kill_test import run_kill_test

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the kill test needs fork and SIGKILL")


def test_thirty_kills_lose_no_acknowledged_label(tmp_path):
    stats = run_kill_test(kills=30, seed=7, n_images=120, workdir=tmp_path)
    report = "\n".join(stats.lines() + stats.child_errors[:3] + stats.open_failures[:3] + stats.integrity_failures[:3])
    assert stats.kills == 30, report
    assert stats.acknowledged > 100, report  # the children really labelled
    assert stats.lost == 0, report
    assert not stats.integrity_failures and not stats.open_failures, report
    assert not stats.child_errors, report
    assert stats.kills_during["retrain"] >= 1 and stats.kills_during["extract"] >= 1, report


def test_kills_with_symlinked_and_hard_linked_openers_lose_nothing(tmp_path):
    """The same file by three names: a second opener is always refused, and a writer killed while
    using one name leaves a log the next writer finds whatever name it was given."""
    stats = run_kill_test(kills=15, seed=11, n_images=60, workdir=tmp_path, names=True)
    report = "\n".join(stats.lines() + stats.child_errors[:3] + stats.open_failures[:3]
                       + stats.intruders_admitted[:3])
    assert stats.kills == 15 and stats.acknowledged > 30, report
    assert set(stats.opened_by) == {"path", "symlink", "hardlink"}, report
    assert stats.intruders >= 12 and stats.intruders_refused == stats.intruders, report
    assert stats.lost == 0 and not stats.integrity_failures and not stats.open_failures, report
    assert not stats.child_errors, report

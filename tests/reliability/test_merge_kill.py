"""Short merge kill test for CI (the full run: python tests/reliability/merge_kill_test.py --kills 30)."""

from __future__ import annotations

import os

import pytest

from merge_kill_test import run_merge_kill_test

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the kill test needs fork and SIGKILL")


def test_thirty_kills_during_merges_leave_before_or_after(tmp_path):
    stats = run_merge_kill_test(kills=30, seed=3, labels_per_pack=150, workdir=tmp_path)
    report = "\n".join(stats.lines() + stats.partial_merges[:3] + stats.child_errors[:3] + stats.open_failures[:3])
    assert stats.kills == 30, report
    assert stats.acknowledged > 30, report
    assert stats.kills_during_merge >= 3, report  # the kills really hit merges
    assert stats.lost == 0 and not stats.partial_merges, report
    assert not stats.integrity_failures and not stats.open_failures and not stats.child_errors, report

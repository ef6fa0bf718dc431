"""Short version of the long labelling session (the full one: python tests/reliability/long_session.py)."""

from __future__ import annotations

from long_session import run_long_session


def test_labelling_with_background_retraining_keeps_every_label(tmp_path):
    r = run_long_session(n_labels=300, retrain_every=50, n_images=800, dim=32, workdir=tmp_path,
                         wait_when_busy=True)  # six retrains, each overlapping the labels that follow it
    assert r["retrain_errors"] == []
    assert r["retrains_started"] == 6 and r["model_versions"] == r["retrains_started"]
    assert r["lost"] == 0
    assert r["queued_labelled"] == 0  # a labelled image never comes back in the queue
    assert r["integrity"] == "ok"

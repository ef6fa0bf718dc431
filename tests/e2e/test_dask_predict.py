"""`inspector predict --dask` and `inspector.predict_dask` on a LocalCluster of two worker
processes (loopback only): the same CSV rows as a local run on 60 NEU images, a lost worker's
batches run again, and one clear line when the scheduler cannot be reached or workers lack Inspector."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from inspector.cli import main

distributed = pytest.importorskip("distributed", reason="dask[distributed] is not installed (pip install -e '.[dev]')")

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def neu_model(neu_dir, tmp_path_factory):
    """A model trained on 60 NEU images (10 per class, every third file), and 60 other images
    plus one unreadable file to predict."""
    base = tmp_path_factory.mktemp("dask")
    train, test = base / "train", base / "test"
    for folder in sorted(p for p in neu_dir.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jpg"), key=lambda p: p.name)
        for half, chosen in ((train, files[0:30:3]), (test, files[1:31:3])):
            (half / folder.name).mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, half / folder.name / f.name)
    (test / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    project, model = base / "neu.inspector", base / "neu.inspector-model"
    assert main(["new", str(project), "--images", str(train), "--labels-from-folders", "--quiet", "--workers", "1"]) == 0
    assert main(["export-model", str(project), str(model), "--quiet"]) == 0
    return model, test, base


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local, Client(local) as client:
        yield local, client


def test_dask_rows_equal_local_rows(neu_model, cluster, capsys):
    model, test, base = neu_model
    local_cluster, _ = cluster
    local_csv, dask_csv = base / "local.csv", base / "dask.csv"
    assert main(["predict", str(model), str(test), "--csv", str(local_csv), "--quiet", "--jobs", "1"]) == 0
    assert main(["predict", str(model), str(test), "--csv", str(dask_csv), "--quiet",
                 "--dask", local_cluster.scheduler_address, "--batch-size", "7"]) == 0
    local_rows = local_csv.read_text(encoding="utf-8").splitlines()
    assert len(local_rows) == 62 and any("broken.jpg" in r for r in local_rows)
    assert dask_csv.read_text(encoding="utf-8").splitlines() == local_rows


def test_api_survives_a_lost_worker(neu_model, cluster):
    import inspector

    model_path, test, _ = neu_model
    _, client = cluster
    model = inspector.load_model(model_path)
    local = model.predict([test])
    killed = []

    def progress(done, total, message):
        if done and not killed:  # after the first batch, one worker process dies mid-run
            victim = sorted(client.scheduler_info()["workers"])[0]
            killed.append(victim)
            try:
                client.run(os._exit, 1, workers=[victim], wait=False)
            except Exception:  # noqa: BLE001 - the worker dies while answering; that is the point
                pass

    remote = inspector.predict_dask(model, [test], client, batch_size=4, progress=progress)
    assert killed
    assert [(p.source, p.predicted, p.error) for p in remote] == [(p.source, p.predicted, p.error) for p in local]
    for a, b in zip(remote, local):
        if a.error is None:
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-9)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next test


def test_unreachable_scheduler_is_one_line(neu_model, capsys):
    model, test, _ = neu_model
    code = main(["predict", str(model), str(test), "--dask", "tcp://127.0.0.1:9", "--quiet"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("inspector:")]
    assert code == 1 and "Traceback" not in err
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]


def test_workers_without_inspector_are_named():
    from inspector.core import distributed as dist
    from inspector.core.errors import UserError

    class FakeClient:
        def wait_for_workers(self, n, timeout):
            return None

        def run(self, function, *args, on_error):
            return {"tcp://10.0.0.5:4000": "0.1.0", "tcp://10.0.0.6:4000": ModuleNotFoundError("inspector")}

    with pytest.raises(UserError, match=r"1 of 2 Dask workers lack Inspector \(first: tcp://10.0.0.6:4000\)"):
        dist.check_workers(FakeClient())

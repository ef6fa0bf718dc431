"""Reading PyTorch weight files without PyTorch and without running code; the EfficientNet extractor."""

from __future__ import annotations

import io
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.features import WeightsError
from inspector.core.features.safe_weights import load_torch_state_dict
from inspector.core.images import _describe


class _RunsCode:
    """Unpickling this calls os.system: what a booby-trapped weights file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def fake_torch(monkeypatch):
    """Importable stand-ins for the names ``torch.save`` writes, so tests can write such files
    without PyTorch (pickle records a class or function by module and name only)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    for cls in (FloatStorage, LongStorage):
        cls.__module__, cls.__qualname__ = "torch", cls.__name__
        setattr(torch, cls.__name__, cls)
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Tensor:
    def __init__(self, array: np.ndarray, key: str, storage_type) -> None:
        self.array, self.key, self.storage_type = array, key, storage_type

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        stride = tuple(s // self.array.itemsize for s in self.array.strides)
        return rebuild, (self, 0, self.array.shape, stride, False, {})


class _Writer(pickle.Pickler):
    """Writes tensors as ``torch.save`` does: storages as persistent ids, bytes elsewhere."""

    def __init__(self, file, zip_layout: bool) -> None:
        super().__init__(file, protocol=2)
        self.zip_layout = zip_layout
        self.storages: dict[str, tuple[bytes, int]] = {}
        self._rebuilding: set[int] = set()

    def persistent_id(self, obj):
        if isinstance(obj, _Tensor) and id(obj) in self._rebuilding:
            array = obj.array  # raw bytes in memory order, so the recorded strides apply
            self.storages[obj.key] = (array.tobytes(order="C" if array.flags.c_contiguous else "F"), array.size)
            if self.zip_layout:
                return ("storage", obj.storage_type, obj.key, "cpu", obj.array.size)
            return ("storage", obj.storage_type, obj.key, "cpu", obj.array.size, None)
        if isinstance(obj, _Tensor):
            self._rebuilding.add(id(obj))
        return None


def _torch_file(state: dict, zip_layout: bool, torch) -> bytes:
    types_by_kind = {"f": torch.FloatStorage, "i": torch.LongStorage}
    wrapped = {k: (_Tensor(v, f"{i}", types_by_kind[v.dtype.kind]) if isinstance(v, np.ndarray)
                   else v) for i, (k, v) in enumerate(state.items())}
    body = io.BytesIO()
    writer = _Writer(body, zip_layout)
    writer.dump(wrapped)
    if zip_layout:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("archive/data.pkl", body.getvalue())
            for key, (raw, _) in writer.storages.items():
                archive.writestr(f"archive/data/{key}", raw)
        return out.getvalue()
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(body.getvalue())
    keys = list(writer.storages)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        raw, count = writer.storages[key]
        out.write(np.int64(count).tobytes() + raw)
    return out.getvalue()


@pytest.mark.parametrize("zip_layout", [False, True], ids=["legacy", "zip"])
def test_torch_files_load_into_numpy(fake_torch, zip_layout):
    state = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
             "bn.running_var": np.array([0.5, 2.0], np.float32),
             "bn.num_batches_tracked": np.array(7, np.int64),
             "fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3).T}  # not contiguous: strides kept
    loaded = load_torch_state_dict(_torch_file(state, zip_layout, fake_torch))
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value), key


@pytest.mark.parametrize("zip_layout", [False, True], ids=["legacy", "zip"])
def test_torch_file_that_would_run_code_is_refused(fake_torch, tmp_path, zip_layout):
    marker = tmp_path / "ran"
    state = {"conv.weight": np.zeros((2, 2), np.float32), "evil": _RunsCode(marker)}
    data = _torch_file(state, zip_layout, fake_torch)
    with pytest.raises(WeightsError) as caught:
        load_torch_state_dict(data)
    assert "system" in str(caught.value) and "not loaded" in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "not torch", "too short storage", "header runs code"])
def test_damaged_torch_files_give_one_line(fake_torch, tmp_path, damage):
    data = _torch_file({"w": np.ones((4, 4), np.float32)}, False, fake_torch)
    if damage == "truncated":
        data = data[:-9]
    elif damage == "not torch":
        data = pickle.dumps({"w": 1})
    elif damage == "too short storage":  # the storage claims fewer elements than the tensor needs
        data = data.replace(np.int64(16).tobytes(), np.int64(3).tobytes())
    else:
        data = pickle.dumps(_RunsCode(tmp_path / "ran"), protocol=2) + data
    with pytest.raises(WeightsError) as caught:
        load_torch_state_dict(data)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "ran").exists()


# ------------------------------------------------------------------ the extractor on the shipped weights
@pytest.fixture(scope="module")
def effnet():
    from inspector.core.features.efficientnet import EfficientNetExtractor, efficientnet_weights_path

    try:
        efficientnet_weights_path()
    except WeightsError as exc:
        pytest.skip(str(exc))
    return EfficientNetExtractor()


def test_effnet_weights_build_the_whole_network(effnet):
    from inspector.core.features.efficientnet import efficientnet_lite0_onnx

    weights = load_torch_state_dict(effnet.weights_path.read_bytes())
    assert weights["_conv_stem.weight"].shape == (32, 3, 3, 3) and weights["_conv_head.weight"].shape == (1280, 320, 1, 1)
    _, outputs = efficientnet_lite0_onnx(weights, ("block10", "head"))
    assert outputs == ["block10_mean", "block10_max", "head_mean", "head_max"]
    broken = dict(weights)
    broken["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)  # 5 x 5 expected
    with pytest.raises(WeightsError, match="_blocks.3._depthwise_conv"):
        efficientnet_lite0_onnx(broken, ("head",))


def test_effnet_output_finite_deterministic_and_discriminating(effnet):
    rng = np.random.default_rng(5)
    grey = (rng.random((200, 260)) * 60 + 100).astype(np.uint8)
    cracked = grey.copy()
    cv2.line(cracked, (10, 20), (250, 180), 10, 3)
    images = [_describe(grey), _describe(cracked), _describe(np.dstack([grey, grey, grey, np.full_like(grey, 90)])),
              _describe(grey.astype(np.uint16) * 257), _describe(np.full((3, 900), np.nan, np.float32))]
    batch = effnet.features_of_batch(images)
    assert batch.shape == (5, effnet.dim) and batch.dtype == np.float32 and np.isfinite(batch).all()
    assert np.allclose(effnet.features_of(images[1]), batch[1], atol=1e-4)  # batch = one by one
    assert np.array_equal(effnet.features_of_batch(images[:2]), effnet.features_of_batch(images[:2]))
    assert np.allclose(batch[0], batch[3], atol=1e-3)  # 16-bit of the same picture reads the same
    assert np.linalg.norm(batch[0] - batch[1]) > 0.05 * np.linalg.norm(batch[0])
    params = effnet.params()
    assert len(params["weights_sha256"]) == 64 and params["network"] == "efficientnet-lite0-imagenet"

"""Body model files: official-style SMPL pickles, npz files, and every way they can be broken."""
import io
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ikol_engine import skeleton
from ikol_engine.body import BodyModel, BodyModelError
from synthetic_body import synthetic_body_arrays, write_synthetic_body


def _fake_module(name: str, **classes: type) -> types.ModuleType:
    module = types.ModuleType(name)
    for cls_name, cls in classes.items():
        cls.__module__, cls.__qualname__ = name, cls_name
        setattr(module, cls_name, cls)
    return module


def write_smpl_style_pickle(path: Path, arrays: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pickle shaped like the official SMPL files: chumpy arrays and a scipy CSC regressor.

    chumpy does not import on Python 3.11, so stand-in classes are registered under
    chumpy's and scipy's module names only while writing.
    """
    class Ch:  # pickles like chumpy.ch.Ch: a __dict__ holding 'x' and bookkeeping
        def __init__(self, x):
            self.x, self._dirty_vars, self._itr = np.asarray(x, np.float64), set(), None

    class csc_matrix:  # pickles like scipy.sparse's CSC matrix
        def __init__(self, dense):
            rows, cols = np.nonzero(dense.T)
            self.data = dense.T[rows, cols]
            self.indices = cols.astype(np.int32)
            self.indptr = np.searchsorted(rows, np.arange(dense.shape[1] + 1)).astype(np.int32)
            self._shape, self.maxprint = dense.shape, 50

    monkeypatch.setitem(sys.modules, "chumpy", _fake_module("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", _fake_module("chumpy.ch", Ch=Ch))
    monkeypatch.setitem(sys.modules, "scipy.sparse._csc", _fake_module("scipy.sparse._csc", csc_matrix=csc_matrix))
    data = dict(arrays)
    data["shapedirs"] = Ch(arrays["shapedirs"])
    data["J_regressor"] = csc_matrix(arrays["J_regressor"])
    data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def test_default_body_has_smpl_tree(body):
    assert body.joint_names == skeleton.JOINT_NAMES and body.parents == skeleton.PARENTS
    assert len(body.keypoint_names) == 29 and body.num_betas >= 10
    rest = body.rest_keypoints(torch.zeros(1, body.num_betas))
    assert rest.shape == (1, 29, 3)
    # Shape enters linearly: the rest keypoints of 2*beta are twice as far from the mean.
    beta = torch.zeros(1, body.num_betas)
    beta[0, 0] = 1.0
    delta = body.rest_keypoints(beta) - rest
    assert torch.allclose(body.rest_keypoints(2 * beta) - rest, 2 * delta, atol=1e-6)
    assert delta.norm(dim=-1).max() > 0.005  # the first shape direction visibly moves joints


def test_smpl_style_pickle_loads_like_npz(tmp_path, monkeypatch):
    arrays = synthetic_body_arrays()
    from_npz = BodyModel(write_synthetic_body(tmp_path / "body.npz"))
    del arrays["landmark_names"], arrays["landmark_vertex_ids"]
    # An official-topology file needs no landmark keys: pad the mesh to SMPL's 6890 vertices.
    pad = 6890 - len(arrays["v_template"])
    arrays["v_template"] = np.concatenate([arrays["v_template"], np.zeros((pad, 3), np.float32)])
    arrays["J_regressor"] = np.pad(arrays["J_regressor"], ((0, 0), (0, pad)))
    arrays["weights"] = np.concatenate([arrays["weights"], np.tile(np.eye(24, dtype=np.float32)[:1], (pad, 1))])
    arrays["shapedirs"] = np.concatenate([arrays["shapedirs"], np.zeros((pad, 3, 10), np.float32)])
    arrays["posedirs"] = np.zeros((6890, 3, 207), np.float32)
    path = write_smpl_style_pickle(tmp_path / "SMPL_NEUTRAL.pkl", arrays, monkeypatch)
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    monkeypatch.delitem(sys.modules, "chumpy")
    from_pkl = BodyModel(path)
    betas = torch.randn(3, 10)
    joints_npz = from_npz.rest_joints(betas)
    joints_pkl = from_pkl.rest_joints(betas)
    assert (joints_npz - joints_pkl).abs().max() < 1e-6
    assert list(from_pkl.arrays.leaf_vertices) == list(skeleton.SMPL_LEAF_VERTICES)



def test_pickle_with_foreign_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    data = synthetic_body_arrays()
    data["v_template"] = Evil()
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(BodyModelError, match=r"evil\.pkl: refusing to load"):
        BodyModel(path)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("weights"), "missing 'weights'"),
    (lambda a: a.update(shapedirs=a["shapedirs"][:, :2]), "'shapedirs' has shape"),
    (lambda a: a.update(J_regressor=a["J_regressor"][:23]), "'J_regressor' has shape"),
    (lambda a: a.update(kintree_table=a["kintree_table"][:, ::-1].copy()), "not SMPL's 24-joint tree"),
    (lambda a: a.update(v_template=np.full_like(a["v_template"], np.nan)), "'v_template' contains NaN"),
    (lambda a: a.update(f=a["f"] + 1000), "'f' indexes vertices"),
    (lambda a: a.update(weights=2 * a["weights"]), "do not sum to 1"),
    (lambda a: a.pop("landmark_names"), "needs 'landmark_names'"),
])
def test_broken_npz_names_file_and_fault(tmp_path, change, message):
    arrays = synthetic_body_arrays()
    change(arrays)
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    with pytest.raises(BodyModelError, match=message) as error:
        BodyModel(path)
    assert str(path) in str(error.value)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    arrays = synthetic_body_arrays()
    arrays["v_template"] = np.array([{"not": "an array"}], dtype=object)
    path = tmp_path / "objects.npz"
    np.savez(path, **arrays)
    with pytest.raises(BodyModelError, match="pickled Python objects"):
        BodyModel(path)


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_truncated_file(tmp_path, monkeypatch, suffix):
    if suffix == ".npz":
        whole = write_synthetic_body(tmp_path / "whole.npz").read_bytes()
    else:
        whole = write_smpl_style_pickle(tmp_path / "whole.pkl", synthetic_body_arrays(), monkeypatch).read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(BodyModelError, match="truncated"):
        BodyModel(path)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(BodyModelError, match="no such body model file"):
        BodyModel(tmp_path / "absent.pkl")
    other = tmp_path / "model.json"
    other.write_text("{}")
    with pytest.raises(BodyModelError, match="unsupported body model format"):
        BodyModel(other)


def test_non_dict_pickle(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(BodyModelError, match="expected a dict"):
        BodyModel(path)


@pytest.mark.parametrize("flag", [0x1, 0x20])  # encrypted, patch data: zipfile refuses both
def test_npz_member_flagged_unreadable_is_named(tmp_path, flag):
    data = bytearray(write_synthetic_body(tmp_path / "whole.npz").read_bytes())
    entry = data.rfind(b"PK\x01\x02")
    data[entry + 8] |= flag
    path = tmp_path / "flagged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(BodyModelError, match="truncated or not a body model file") as refused:
        BodyModel(path)
    assert str(path) in str(refused.value)

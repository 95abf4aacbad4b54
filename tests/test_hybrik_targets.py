"""The track solver's path for HybrIK's 29 keypoints, on real mocap seen by a known camera.

The "network output" is made from a DeepMimic walk posed on the bundled body: the 29
keypoints in HybrIK's axes (x right, y down, z away, metres about the pelvis), their
pixels, and the true twist of every joint in the IK's convention. The IK contract: with
exact keypoints and twist, the solved pose reproduces the keypoints and the rotations,
twist included (a wrong twist sign or axis would turn the forearms and shins).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import roma
import torch

from ikol_engine import skeleton
from ikol_engine.track.camera import Camera
from ikol_engine.ik.rotations import bone_twists
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.observations import Observations
from ikol_engine.regressors.hybrik.layout import HYBRIK_LAYOUT
from ikol_engine.track.options import SolveOptions, TrackError
from ikol_engine.track.solve import solve_observations
from ikol_engine.skeleton.tree import SMPL_TREE

FRAMES = 90
CAMERA = Camera(1280, 720, fov_deg=60.0)
GAP = slice(30, 34)  # a short dropout, interpolated
TWISTED = [skeleton.JOINT_NAMES.index(n) for n in ("L_Elbow", "R_Elbow", "L_Knee", "R_Knee", "L_Hip", "R_Hip")]


@pytest.fixture(scope="module")
def clip(body):
    walk = load_deepmimic("walk")
    order = torch.arange(FRAMES) % walk.num_frames
    rotations = walk.rotations[order].clone()
    turn = roma.rotvec_to_rotmat(torch.tensor([0.21, 0.0, 0.0]))  # camera tilted 12 degrees down
    rotations[:, 0] = turn @ rotations[:, 0]
    rest = body.rest_keypoints(torch.zeros(1, 10))
    offsets = rest_offsets(rest, SMPL_TREE).expand(FRAMES, -1, -1)
    placement = torch.tensor([0.0, -0.6, -4.5]) - rest[0, 0]
    _, keypoints = forward_kinematics(rotations, offsets, placement.expand(FRAMES, 3), SMPL_TREE)
    keypoints = keypoints.numpy().astype(np.float64)
    twist = bone_twists(rotations, offsets).numpy()
    hybrik_axes = (keypoints - keypoints[:, :1]) * np.array([1.0, -1.0, -1.0])
    detected = np.ones(FRAMES, dtype=bool)
    detected[GAP] = False
    pixels = CAMERA.project(keypoints).astype(np.float32)
    track = Observations(names=skeleton.KEYPOINT_NAMES, keypoints=hybrik_axes.astype(np.float32),
                      confidence=np.full((FRAMES, 29), 0.9, np.float32), image=pixels,
                      detected=detected, frame_indices=np.arange(FRAMES), fps=walk.fps, image_size=(1280, 720),
                      twist=twist.astype(np.float32), twist_confidence=np.ones((FRAMES, 23), np.float32),
                      betas=np.zeros(10, np.float32))
    return dict(track=track, keypoints=keypoints, rotations=rotations)


def _rotation_error_deg(solution, clip) -> np.ndarray:
    """(T, 24) angle between solved and true local rotations, degrees."""
    q = torch.from_numpy(solution.rotations).double()
    solved = roma.unitquat_to_rotmat(torch.cat([q[..., 1:], q[..., :1]], dim=-1))
    return np.degrees(roma.rotmat_geodesic_distance(solved, clip["rotations"].double()).numpy())


@pytest.fixture(scope="module")
def solved(clip, body):
    return solve_observations(clip["track"], HYBRIK_LAYOUT, SolveOptions(smoothing=0.0, level_floor=False, device="cpu"), body)


def test_keypoints_root_and_rotations_are_reproduced(clip, solved) -> None:
    assert solved.valid.all() and solved.info["interpolated"] == GAP.stop - GAP.start
    assert solved.info["keypoints"] == "hybrik" and solved.info["shape"] == "bone lengths"  # default body: not SMPL
    seen = np.ones(FRAMES, dtype=bool)
    seen[GAP] = False
    error = np.linalg.norm(solved.keypoints - clip["keypoints"], axis=-1)[seen]
    # Exact targets on the same body: the IK converges onto them (root from pixels
    # included); what is left is float32 round-off (about 0.01 mm measured).
    assert np.median(error) < 1e-3 and error.max() < 5e-3, (np.median(error), error.max())
    assert np.median(solved.residual_mm[seen]) < 1.0
    angles = _rotation_error_deg(solved, clip)[seen]
    assert np.median(angles) < 0.5, np.median(angles)
    assert np.percentile(angles[:, TWISTED], 95) < 1.0, np.percentile(angles[:, TWISTED], 95)
    q = solved.rotations
    assert np.allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-5)


def test_twist_is_used_with_the_ik_sign_convention(clip, solved, body) -> None:
    # The same clip with every twist negated: the bones point the same way, so only the
    # twist can turn them; the rotation error about the limbs must grow well past the
    # error with the true twist (measured: 0.003 against 8.6 degrees).
    flipped = dataclasses.replace(clip["track"], twist=-clip["track"].twist)
    wrong = solve_observations(flipped, HYBRIK_LAYOUT, SolveOptions(smoothing=0.0, level_floor=False, device="cpu"), body)
    good = np.median(_rotation_error_deg(solved, clip)[:, TWISTED])
    bad = np.median(_rotation_error_deg(wrong, clip)[:, TWISTED])
    assert good < 0.5 and bad > 4.0, (good, bad)


def test_smoothing_keeps_the_pose_and_bad_input_is_refused(clip, body) -> None:
    solution = solve_observations(clip["track"], HYBRIK_LAYOUT, SolveOptions(iterations=3, level_floor=False, device="cpu"), body)
    assert solution.valid.all() and np.isfinite(solution.rotations).all()
    both = solution.valid[1:] & solution.valid[:-1]
    assert ((solution.rotations[1:] * solution.rotations[:-1]).sum(-1)[both] >= 0).all()
    # Filtering (keypoints, twist, root) and the temporal term cost a little accuracy only.
    local = solution.local_keypoints - solution.local_keypoints[:, :1]
    truth = clip["keypoints"] - clip["keypoints"][:, :1]
    assert np.median(np.linalg.norm(local - truth, axis=-1)) < 0.02
    nobody = dataclasses.replace(clip["track"], detected=np.zeros(FRAMES, dtype=bool))
    with pytest.raises(TrackError, match="no person was found"):
        solve_observations(nobody, HYBRIK_LAYOUT, body=body)
    with pytest.raises(TrackError, match="nothing to fit"):
        solve_observations(clip["track"], HYBRIK_LAYOUT, SolveOptions(torso=0, arms=0, legs=0, head=0), body)

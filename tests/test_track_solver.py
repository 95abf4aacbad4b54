"""Everything after the regressor, on BlazePose-like keypoints of real mocap seen by a known camera."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import roma
import torch

from ikol_engine.regressors.blazepose import BLAZEPOSE_LAYOUT, LANDMARK_NAMES
from ikol_engine.track.camera import Camera
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.track.filtering import jitter
from ikol_engine.observations import Observations
from ikol_engine.track.options import SolveOptions, TrackError
from ikol_engine.track.solve import solve_observations
from synthetic_landmarks import J, L, posed_landmarks

FRAMES = 240
NOISE_M = 0.005
CAMERA = Camera(1280, 720, fov_deg=60.0)
SEEN = [L[name] for name in LANDMARK_NAMES if name != "nose" and "thumb" not in name]
SWAPPED = slice(100, 112)
SHORT_GAP, LONG_GAP = slice(40, 44), slice(170, 200)


def camera_pose() -> tuple[np.ndarray, np.ndarray]:
    """Mocap world -> camera frame: 3.5 m in front, camera tilted 12 degrees down."""
    tilt = roma.rotvec_to_rotmat(torch.tensor([0.21, 0.0, 0.0])).numpy()
    return tilt, np.array([0.0, -0.6, -4.5])


@pytest.fixture(scope="module")
def clip(body):
    walk = load_deepmimic("walk")
    # One walk cycle played forwards and backwards: a long clip with no jumps in it.
    cycle = list(range(walk.num_frames)) + list(range(walk.num_frames - 2, 0, -1))
    order = torch.tensor((cycle * (FRAMES // len(cycle) + 1))[:FRAMES])
    rotations = walk.rotations[order]
    rest_pelvis = body.rest_joints(torch.zeros(1, 10))[0, 0]
    mocap_translation = walk.translation[order] - walk.translation[:1] * torch.tensor([1.0, 0.0, 1.0]) - rest_pelvis
    turn, shift = camera_pose()
    turn_t = torch.from_numpy(turn).float()
    # The whole scene seen from the camera: root orientation and placement turned.
    rotations = rotations.clone()
    rotations[:, 0] = turn_t @ rotations[:, 0]
    translation = (mocap_translation + rest_pelvis) @ turn_t.T + torch.from_numpy(shift).float() - rest_pelvis
    landmarks, _, keypoints = posed_landmarks(body, rotations, translation)
    generator = torch.Generator().manual_seed(3)
    landmarks = landmarks + NOISE_M * torch.randn(landmarks.shape, generator=generator)
    landmarks = landmarks.numpy().astype(np.float64)
    hips = (landmarks[:, L["left_hip"]] + landmarks[:, L["right_hip"]]) / 2
    pixels = CAMERA.project(landmarks)
    relative = (landmarks - hips[:, None]) * np.array([1.0, -1.0, -1.0])  # BlazePose's axes
    confidence = np.zeros((FRAMES, len(LANDMARK_NAMES)))
    confidence[:, SEEN] = 0.95
    detected = np.ones(FRAMES, dtype=bool)
    for gap in (SHORT_GAP, LONG_GAP):
        detected[gap] = False
    relative[~detected], pixels[~detected], confidence[~detected] = 0.0, 0.0, 0.0
    pairs = [(L[n], L[n.replace("left", "right")]) for n in LANDMARK_NAMES if n.startswith("left")]
    for left, right in pairs:  # the regressor takes a back view for a front view
        for array in (relative, pixels):
            array[SWAPPED, [left, right]] = array[SWAPPED, [right, left]]
    track = Observations(names=LANDMARK_NAMES, keypoints=relative.astype(np.float32),
                      confidence=confidence.astype(np.float32), image=pixels.astype(np.float32), detected=detected,
                      frame_indices=np.arange(FRAMES), fps=walk.fps, image_size=(CAMERA.width, CAMERA.height))
    return dict(track=track, keypoints=keypoints.numpy(), rotations=rotations, translation=translation.numpy(),
                fps=walk.fps, turn=turn, shift=shift)


@pytest.fixture(scope="module")
def solved(clip, body):
    return solve_observations(clip["track"], BLAZEPOSE_LAYOUT, SolveOptions(level_floor=False, device="cpu"), body)


def test_swaps_gaps_and_validity_are_reported(clip, solved) -> None:
    assert np.flatnonzero(solved.swapped).tolist() == list(range(SWAPPED.start, SWAPPED.stop))
    expected_valid = np.ones(FRAMES, dtype=bool)
    expected_valid[LONG_GAP] = False
    assert (solved.valid == expected_valid).all()
    assert np.flatnonzero(solved.held).tolist() == list(range(LONG_GAP.start, LONG_GAP.stop))
    assert solved.info["interpolated"] == SHORT_GAP.stop - SHORT_GAP.start
    assert solved.info["dropouts"] == [[LONG_GAP.start, LONG_GAP.stop]]
    assert (solved.residual_mm[~solved.valid] == 0).all()


def test_limbs_and_root_land_where_the_camera_saw_them(clip, solved) -> None:
    valid = solved.valid
    limbs = [J[f"{s}_{j}"] for s in "LR" for j in ("Hip", "Knee", "Ankle", "Shoulder", "Elbow", "Wrist")]
    error = np.linalg.norm(solved.keypoints[valid][:, limbs] - clip["keypoints"][valid][:, limbs], axis=-1)
    # Depth from apparent size is what noise hurts most; per-frame shape is exact.
    assert np.median(error) < 0.04, np.median(error)
    local = solved.local_keypoints[valid][:, limbs] - solved.local_keypoints[valid][:, :1]
    truth = clip["keypoints"][valid][:, limbs] - clip["keypoints"][valid][:, :1]
    assert np.median(np.linalg.norm(local - truth, axis=-1)) < 0.02
    pelvis = solved.translation[valid] - clip["translation"][valid]
    assert np.median(np.abs(pelvis[:, :2])) < 0.02  # across the image: pixels pin it
    assert np.median(np.abs(pelvis[:, 2])) < 0.10   # depth
    travel = np.linalg.norm(solved.translation[valid] - solved.translation[valid][0], axis=-1).max()
    assert travel > 1.0, travel
    assert np.median(solved.residual_mm[valid]) < 25.0


def test_motion_is_continuous_and_smoother_than_its_input(clip, solved) -> None:
    q = solved.rotations
    both = solved.valid[1:] & solved.valid[:-1]
    dots = (q[1:] * q[:-1]).sum(-1)[both]
    assert (dots >= 0).all()  # one hemisphere from frame to frame
    angles = np.degrees(2 * np.arccos(np.clip(dots, 0, 1)))
    true_angles = np.degrees(roma.rotmat_geodesic_distance(clip["rotations"][1:], clip["rotations"][:-1]).numpy())
    assert angles.max() < true_angles[both].max() + 10.0, (angles.max(), true_angles[both].max())
    raw = jitter(solved.raw_targets[:, :24], clip["fps"], solved.valid)
    final = jitter(solved.local_keypoints[:, :24], clip["fps"], solved.valid)
    truth = jitter(clip["keypoints"][:, :24] - clip["translation"][:, None], clip["fps"], solved.valid)
    assert final < 0.5 * raw, (final, raw)
    assert final < 3 * truth, (final, truth)


def test_floor_is_found_and_levelled(clip, body) -> None:
    solution = solve_observations(clip["track"], BLAZEPOSE_LAYOUT, SolveOptions(iterations=2, device="cpu"), body)
    assert solution.info["floor"] is not None
    normal = np.asarray(solution.info["floor"]["normal_camera"])
    expected = clip["turn"] @ np.array([0.0, 1.0, 0.0])
    assert np.degrees(np.arccos(normal @ expected)) < 3.0
    # Feet touch y = 0: the lowest foot keypoint of each frame sits near the floor.
    feet = solution.keypoints[solution.valid][:, [J["L_Ankle"], J["R_Ankle"], J["L_BigToe"], J["R_BigToe"]], 1]
    assert abs(np.median(feet.min(axis=1))) < 0.1
    assert np.median(solution.keypoints[solution.valid][:, J["Head"], 1]) > 1.2


def test_bad_tracks_are_refused(clip, body) -> None:
    track = clip["track"]
    nobody = dataclasses.replace(track, detected=np.zeros(FRAMES, dtype=bool))
    with pytest.raises(TrackError, match="no person was found in any frame"):
        solve_observations(nobody, BLAZEPOSE_LAYOUT, body=body)
    with pytest.raises(TrackError, match="expected blazepose's 33 keypoints"):
        solve_observations(dataclasses.replace(track, names=track.names[:17]), BLAZEPOSE_LAYOUT, body=body)
    with pytest.raises(TrackError, match="iterations must be an integer"):
        SolveOptions(iterations=-1)
    with pytest.raises(TrackError, match="arms must be a finite number >= 0, got -0.5"):
        SolveOptions(arms=-0.5)
    with pytest.raises(TrackError, match="nothing to fit"):
        solve_observations(track, BLAZEPOSE_LAYOUT, SolveOptions(torso=0, arms=0, legs=0, head=0), body)

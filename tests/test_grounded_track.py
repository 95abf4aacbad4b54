"""The track stage in the camera's world: reprojection, foot contacts and the floor, end to end.

Observations made from real mocap (DeepMimic's walk on the bundled body, filmed by a
known camera with BlazePose-like errors: :mod:`ikol_engine.samples.filmed_mocap`) go
through ``solve_observations`` as a regressor's keypoints would, with the floor left
in the camera's frame so the solution compares with the truth directly.
"""
import dataclasses

import numpy as np
import pytest
import torch

from ikol_engine import skeleton
from ikol_engine.ik import default_body
from ikol_engine.ik.contacts import runs
from ikol_engine.ik.world_terms import FOOT_KEYPOINTS
from ikol_engine.observations import to_world_axes
from ikol_engine.regressors.hybrik.layout import HYBRIK_LAYOUT
from ikol_engine.samples.filmed_mocap import Filming, film, filmed_observations, foot_slide, true_contacts
from ikol_engine.track.grounding import ground_clip, grounding_terms
from ikol_engine.track.options import SolveOptions
from ikol_engine.track.solve import solve_observations

FEET = list(FOOT_KEYPOINTS)


@pytest.fixture(scope="module")
def clip():
    return film("walk", 4, default_body(), Filming(heading_deg=30.0, distance=5.0, focal_px=1200.0), seed=3)


def _solve(clip, contacts=None, **changes):
    fov = float(np.degrees(2 * np.arctan(clip.camera.cx / clip.camera.focal_px)))
    options = dataclasses.replace(SolveOptions(fov_deg=fov, level_floor=False, device="cpu"), **changes)
    return solve_observations(filmed_observations(clip), HYBRIK_LAYOUT, options, shape=clip.betas, contacts=contacts)


def _joint_error_mm(solution, clip) -> float:
    return float(np.linalg.norm(solution.keypoints - clip.keypoints, axis=-1).mean() * 1000)


def test_reprojection_lowers_joint_error(clip):
    alone = _solve(clip, reprojection=0.0, foot_lock=0.0)
    with_pixels = _solve(clip, foot_lock=0.0)
    before, after = _joint_error_mm(alone, clip), _joint_error_mm(with_pixels, clip)
    # Measured: 58.2 mm with the metric keypoints and the pinhole placement, 51.0 with pixels.
    assert after < 0.93 * before, (before, after)  # the issue asks for 7 %
    # In the image, the solved joints lie far closer to where the true ones are seen.
    image = np.stack([clip.camera.project(torch.from_numpy(solution.keypoints)).numpy()
                      for solution in (alone, with_pixels)])
    true_image = clip.camera.project(torch.from_numpy(clip.keypoints)).numpy()
    error = np.linalg.norm(image - true_image, axis=-1).mean(axis=(1, 2))
    # Measured: 6.8 px -> 4.1 (the pixels' noise: 2.5 px per axis).
    assert error[1] < 0.7 * error[0] and error[1] < 5.0, error


def test_contacts_stop_planted_feet_sliding_and_keep_them_above_the_floor(clip):
    truth = true_contacts(clip)
    normal, height = clip.floor
    free = _solve(clip, foot_lock=0.0)
    locked = _solve(clip)
    slide_free = foot_slide(free.keypoints[:, FEET], truth, normal) * 1000
    slide_locked = foot_slide(locked.keypoints[:, FEET], truth, normal) * 1000
    slide_held = foot_slide(locked.keypoints[:, FEET], truth & locked.contacts, normal) * 1000
    # mm per frame at 30 fps while the true foot rests; the truth itself slides 1.3
    # (its contacts are thresholded, not exact). Measured: 6.6 free, 1.4 locked, 0.2
    # where a contact was found (the rest at the edges of contacts found late or early).
    assert slide_locked < 0.5 * slide_free and slide_locked < 3.0, (slide_free, slide_locked)
    assert slide_held < 1.5, slide_held
    lowest = (locked.keypoints[:, FEET] @ normal - height - clip.clearance).min() * 1000
    assert lowest > -15.0, lowest
    found = locked.contacts
    assert found.shape == truth.shape and (found == truth).mean() > 0.85
    assert locked.info["contact_frames"] == [int(n) for n in found.sum(0)]


def test_given_contacts_are_kept(clip):
    # Only the left heel's longest true rest, as an animator might have marked it.
    begin, end = max(runs(true_contacts(clip)[:, 0]), key=lambda run: run[1] - run[0])
    given = np.zeros((len(clip.targets), 4), dtype=bool)
    given[begin:end, 0] = True
    solution = _solve(clip, contacts=given)
    assert (solution.contacts == given).all() and solution.info["contact_frames"] == [end - begin, 0, 0, 0]
    # The contact holds its heel: under 3 mm a frame along the floor.
    assert foot_slide(solution.keypoints[:, FEET], given, clip.floor[0]) < 3e-3


def test_focal_length_estimated_when_no_camera_is_given(clip):
    solution = _solve(clip, fov_deg=None)
    camera = solution.info["camera"]
    assert camera["source"] == "estimated"
    assert abs(camera["focal_px"] / clip.camera.focal_px - 1) < 0.1, camera
    lens = _solve(clip, focal_mm=24.0, sensor_mm=36.0).info["camera"]
    assert lens["source"] == "focal_mm" and lens["focal_px"] == pytest.approx(24.0 / 36.0 * 2 * clip.camera.cx)


def test_group_weights_and_switches_reach_the_last_pass(clip):
    observed = filmed_observations(clip)
    targets = to_world_axes(observed.keypoints)
    options = SolveOptions(fov_deg=60.0, arms=0.0, legs=0.5)
    grounding = ground_clip(targets, targets, observed.image, observed.confidence, HYBRIK_LAYOUT,
                            default_body().rest_keypoints(torch.from_numpy(clip.betas)[None])[0].numpy(), observed.image_size,
                            clip.fps, options)
    per_frame, settings = grounding_terms(grounding, options)
    weights = per_frame["pixel_confidence"][0]
    names = skeleton.KEYPOINT_NAMES
    assert weights[names.index("L_Elbow")] == 0 and weights[names.index("L_Knee")] == 0.5
    assert weights[names.index("Neck")] == 1 and settings["pixel_weight"] == options.reprojection
    assert "foot_lock" in per_frame and settings["foot_lock_weight"] == options.foot_lock
    off, _ = grounding_terms(grounding, dataclasses.replace(options, reprojection=0.0, foot_lock=0.0))
    assert set(off) <= {"placement", "floor_confidence"}

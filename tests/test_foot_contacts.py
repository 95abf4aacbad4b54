"""Foot contacts from image and 3D evidence, and the IK's foot-lock and floor terms.

On filmed mocap (:mod:`ikol_engine.samples.filmed_mocap`: DeepMimic's walk, four cycles, 152
frames at 30 fps, 2.5 px of pixel noise, 7.5 cm along the rays and 2.5 cm per axis in
the metric keypoints): a first solve with the reprojection term, contacts detected on
it, then a second solve with the contacts locked and the floor.
"""
import numpy as np
import pytest
import torch

from ikol_engine.samples.filmed_mocap import film, foot_slide, true_contacts
from ikol_engine.ik import default_body, solve
from ikol_engine.ik.contacts import ContactThresholds, contact_targets, detect_contacts
from ikol_engine.ik.world_terms import FOOT_KEYPOINTS, foot_clearance

MM = 1e-3
FEET = list(FOOT_KEYPOINTS)


def _resting_then_moving(frames: int, rest: slice, fps: float = 30.0) -> np.ndarray:
    """(T, 4, 3) feet on the floor y = 0 that rest in ``rest`` and move at 2 m/s elsewhere."""
    speed = np.full(frames, 2.0 / fps)
    speed[rest] = 0.0
    x = np.cumsum(speed)
    feet = np.zeros((frames, 4, 3))
    feet[..., 0] = x[:, None]
    return feet


def test_contacts_follow_rest_with_hysteresis_and_min_duration():
    fps = 30.0
    feet = _resting_then_moving(60, slice(10, 30))
    floor = (np.array([0.0, 1.0, 0.0]), 0.0)
    contacts = detect_contacts(feet, fps, floor=floor)
    # The foot stands still over frames 9-29; the 0.2 s speed window and the looser
    # threshold that keeps a contact move each edge by at most half the window (3 frames).
    frames = np.flatnonzero(contacts[:, 0])
    assert frames.min() in range(6, 13) and frames.max() in range(26, 33) and len(frames) >= 15
    assert contacts.all(axis=1)[frames].all()
    # A foot lifted 10 cm is not in contact, however still.
    assert not detect_contacts(feet + [0.0, 0.1, 0.0], fps, floor=floor).any()
    # Rest shorter than the minimum duration (2 frames < 0.1 s) is no contact.
    blip = _resting_then_moving(60, slice(20, 22))
    assert not detect_contacts(blip, fps, floor=floor, thresholds=ContactThresholds(window_s=0.0)).any()
    # Hysteresis: a foot creeping at 1.3x the start threshold stays in a contact it began
    # at rest, and never starts one.
    creep = np.zeros((60, 4, 3))
    creep[:, :, 0] = np.cumsum(np.where(np.arange(60) < 20, 0.0, 1.3 * 0.35 / fps))[:, None]
    assert detect_contacts(creep, fps)[:, 0].all()
    assert not detect_contacts(creep[25:], fps).any()


def test_contact_targets_are_the_mean_on_the_floor():
    feet = np.zeros((6, 4, 3))
    feet[:, 0] = [[0.0, 0.02, 0.0], [0.01, 0.03, 0.0], [0.02, 0.04, 0.0], [5, 5, 5], [5, 5, 5], [5, 5, 5]]
    contacts = np.zeros((6, 4), dtype=bool)
    contacts[:3, 0] = True
    targets, weights = contact_targets(feet, contacts, floor=(np.array([0.0, 2.0, 0.0]), 0.0),
                                       clearance=np.array([0.07, 0.07, 0.0, 0.0]))
    np.testing.assert_allclose(targets[:3, 0], [[0.01, 0.07, 0.0]] * 3, atol=1e-12)
    assert weights[:3, 0].tolist() == [1.0] * 3 and weights.sum() == 3
    with pytest.raises(ValueError, match="shape"):
        detect_contacts(feet[:, :2], 30.0)


@pytest.fixture(scope="module")
def scene():
    body = default_body()
    clip = film("walk", 4, body, seed=1)
    frames = len(clip.targets)
    args = (torch.from_numpy(clip.targets).float(), torch.ones(frames, 29), torch.from_numpy(clip.betas))
    pixels = torch.from_numpy(clip.pixels).float()
    first = solve(*args, pixels=pixels, camera=clip.camera, device="cpu")
    feet = first.keypoints.numpy()[:, FEET]
    span = clip.pixels[..., 1].max(1) - clip.pixels[..., 1].min(1)
    contacts = detect_contacts(feet, clip.fps, pixels=clip.pixels[:, FEET], body_height_px=span, floor=clip.floor,
                               clearance=clip.clearance)
    lock, lock_confidence = contact_targets(feet, contacts, floor=clip.floor, clearance=clip.clearance)
    second = solve(*args, pixels=pixels, camera=clip.camera, init=first.rotations, foot_lock=lock,
                   foot_lock_confidence=lock_confidence, floor=clip.floor, device="cpu")
    return clip, first, contacts, second


def test_detected_contacts_match_the_truth(scene):
    clip, _, contacts, _ = scene
    truth = true_contacts(clip)
    # Measured: 91 % of (frame, foot point) pairs agree; in contact 40 % of the time, truth 38 %.
    assert (contacts == truth).mean() > 0.85
    assert abs(contacts.mean() - truth.mean()) < 0.1


def test_locked_feet_do_not_slide_or_sink(scene):
    clip, first, _, second = scene
    truth = true_contacts(clip)
    normal, height = clip.floor
    slide = [foot_slide(result.keypoints.numpy()[:, FEET], truth, normal) for result in (first, second)]
    # Measured: 25.8 mm/frame with pixels alone, 8.2 with contacts and floor (truth: 1.3).
    assert slide[1] < 10 * MM and slide[1] < 0.4 * slide[0]
    below = [(result.keypoints.numpy()[:, FEET] @ normal - height - clip.clearance).min() for result in (first, second)]
    # Measured lowest foot point: 23.4 mm under the floor without it, 2.6 mm with it.
    assert below[0] < -5 * MM and below[1] > -5 * MM


def test_floor_alone_lifts_sunken_feet():
    """Without a camera the floor acts where the keypoint term puts the body."""
    body = default_body()
    clip = film("walk", 1, body, seed=2)
    normal, height = clip.floor
    # Targets in the camera frame, sunk 5 cm into the floor.
    targets = torch.from_numpy(clip.keypoints - 0.05 * normal).float()
    confidence = torch.ones(len(targets), 29)
    free = solve(targets, confidence, device="cpu")
    floored = solve(targets, confidence, floor=clip.floor, device="cpu")
    clearance = foot_clearance(body.rest_keypoints(torch.zeros(1, body.num_betas))).numpy()
    lowest = [(r.keypoints.numpy()[:, FEET] @ normal - height - clearance).min() for r in (free, floored)]
    assert lowest[0] < -40 * MM and lowest[1] > -5 * MM
    with pytest.raises(ValueError, match="floor"):
        solve(targets, confidence, floor=(np.zeros(3), 0.0), device="cpu")


def test_contact_targets_take_their_place_across_the_view_from_the_pixels():
    from ikol_engine.ik.world_terms import PinholeCamera

    camera = PinholeCamera(1000.0, 640.0, 360.0)
    true = np.array([0.1, -1.4, -4.0])
    feet = np.tile(true + [0.05, 0.0, 0.0], (8, 4, 1))  # 5 cm off across the view, right depth
    pixels = np.tile(camera.project(torch.from_numpy(true)).numpy(), (8, 4, 1))
    contacts = np.ones((8, 4), dtype=bool)
    floor = (np.array([0.0, 1.0, 0.0]), -1.4)
    seen, _ = contact_targets(feet, contacts, floor=floor, pixels=pixels, camera=camera)
    assert np.abs(seen - true).max() < 1e-9
    blind, _ = contact_targets(feet, contacts, floor=floor)
    assert np.abs(blind - true).max() == pytest.approx(0.05)

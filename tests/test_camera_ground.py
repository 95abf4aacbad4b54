"""Root translation from 2D-3D correspondences, and the floor from resting feet."""
import numpy as np
import pytest
import roma
import torch

from ikol_engine.track.camera import Camera, fit_translation
from ikol_engine.track.ground import fit_ground


@pytest.fixture
def scene(body):
    rng = np.random.default_rng(0)
    frames = 200
    rest = body.rest_keypoints(torch.zeros(1, body.num_betas))[0].numpy().astype(np.float64)
    rest = rest - rest[0]
    turn = roma.rotvec_to_rotmat(torch.from_numpy(rng.normal(0, 0.5, (frames, 3)))).numpy()
    points = np.einsum("tij,kj->tki", turn, rest)
    truth = np.stack([rng.uniform(-1, 1, frames), rng.uniform(-0.5, 0.5, frames), rng.uniform(-8, -2, frames)], -1)
    camera = Camera(1920, 1080, fov_deg=55)
    pixels = camera.project(points + truth[:, None])
    return points, pixels, truth, camera


def test_translation_exact_from_exact_points(scene):
    points, pixels, truth, camera = scene
    found = fit_translation(points, pixels, np.ones(points.shape[:2]), camera)
    assert np.abs(found - truth).max() < 1e-6


def test_translation_with_pixel_noise(scene):
    points, pixels, truth, camera = scene
    noisy = pixels + np.random.default_rng(1).normal(0, 2.0, pixels.shape)
    found = fit_translation(points, noisy, np.ones(points.shape[:2]), camera)
    error = np.linalg.norm(found - truth, axis=-1)
    # Depth is the weak direction: 2 px of noise on a person 2-8 m away.
    assert np.median(error) < 0.05 and np.abs(found[:, :2] - truth[:, :2]).max() < 0.05


def test_translation_needs_two_confident_points(scene):
    points, pixels, truth, camera = scene
    confidence = np.ones(points.shape[:2])
    confidence[3] = 0
    confidence[4, 1:] = 0
    pixels = pixels.copy()
    pixels[5, 7] = np.nan  # a lost 2D point is ignored, not propagated
    found = fit_translation(points, pixels, confidence, camera)
    assert np.isnan(found[3]).all() and np.isnan(found[4]).all()
    assert np.abs(found[5] - truth[5]).max() < 1e-6


@pytest.mark.parametrize("fov", [0.5, 179.0])
def test_bad_field_of_view(fov):
    with pytest.raises(ValueError, match="field of view"):
        Camera(640, 480, fov_deg=fov)


def walking_feet(frames: int, floor_normal: np.ndarray, floor_height: float, rng) -> np.ndarray:
    """Two feet (heel, toe each) alternating stance on a floor and swing above it."""
    tangent = np.cross(floor_normal, [0, 0, 1.0])
    tangent /= np.linalg.norm(tangent)
    forward = np.cross(tangent, floor_normal)
    feet = np.zeros((frames, 4, 3))
    for foot in range(2):
        phase = (np.arange(frames) / 30.0 + foot * 0.5) % 1.0
        swing = phase > 0.6
        lift = np.where(swing, 0.12 * np.sin((phase - 0.6) / 0.4 * np.pi), 0.0)
        step = np.floor(np.arange(frames) / 30.0 + foot * 0.5) * 0.7 + np.where(swing, (phase - 0.6) / 0.4 * 0.7, 0)
        for part, offset in enumerate((0.0, 0.2)):
            feet[:, 2 * foot + part] = (floor_height * floor_normal + (step + offset)[:, None] * forward
                                        + (0.1 - 0.2 * foot) * tangent + lift[:, None] * floor_normal)
    return feet + rng.normal(0, 0.003, feet.shape)


def test_ground_from_resting_feet():
    rng = np.random.default_rng(2)
    normal = np.array([0.0, np.cos(0.17), np.sin(0.17)])  # a camera tilted by ~10 degrees
    feet = walking_feet(300, normal, -1.4, rng)
    ground = fit_ground(feet, np.ones(300, bool), fps=30.0)
    assert ground is not None and ground.contacts > 100
    assert np.degrees(np.arccos(np.clip(ground.normal @ normal, -1, 1))) < 1.0
    assert abs(ground.height - -1.4) < 0.01
    rotation, offset = ground.leveling()
    levelled = feet @ rotation.T + offset
    stance = feet @ normal - -1.4 < 0.01
    assert np.abs(levelled[..., 1][stance]).max() < 0.02


def test_no_ground_without_resting_feet():
    feet = np.cumsum(np.ones((100, 2, 3)), axis=0)  # always moving 1.7 m per frame
    assert fit_ground(feet, np.ones(100, bool), fps=30.0) is None

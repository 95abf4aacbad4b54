"""The regressor's crop, normalisation and output decoding, against their definitions."""
from __future__ import annotations

import numpy as np
import torch

from ikol_engine.regressors.hybrik import conventions as hc
from ikol_engine.regressors.hybrik.crop import box_around, crop_affine, crop_box, crop_images
from ikol_engine.regressors.hybrik.decode import crop_to_image, crop_to_metric, soft_argmax_3d, twist_from_phi


def test_crop_box_is_square_scaled_and_centred() -> None:
    box = crop_box(np.array([[100.0, 50.0, 200.0, 450.0]]))
    assert np.allclose(box, [[150 - 250, 250 - 250, 150 + 250, 250 + 250]])  # side 400 * 1.25
    assert np.allclose(box_around(np.array([[[0.0, 0.0], [10.0, 20.0]]]), 0.1), [[-1.0, -2.0, 11.0, 22.0]])


def test_crop_pixels_map_back_to_the_frame() -> None:
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, 500, (5, 2))
    boxes = crop_box(np.concatenate([corner, corner + rng.uniform(50, 300, (5, 2))], axis=1))
    points = rng.uniform(0, 600, (5, 7, 2))
    affine = crop_affine(boxes)
    crop_px = np.einsum("nij,nkj->nki", affine[:, :, :2], points) + affine[:, None, :, 2]
    uvd = np.concatenate([crop_px / hc.INPUT_SIZE - 0.5, np.zeros((5, 7, 1))], axis=-1)
    assert np.allclose(crop_to_image(uvd, boxes), points, atol=1e-9)


def test_normalisation_uses_the_original_statistics_in_its_channel_order() -> None:
    image = np.zeros((300, 400, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 0, 128  # R, G, B
    out = crop_images([image], crop_box(np.array([[150.0, 100.0, 250.0, 200.0]])))
    assert out.shape == (1, 3, 256, 256) and out.dtype == np.float32
    # Channel 0 (red) gets 0.406 and 0.225: ImageNet's blue statistics, as the original does.
    expected = [(1.0 - 0.406) / 0.225, (0.0 - 0.457) / 0.224, (128 / 255 - 0.480) / 0.229]
    assert np.allclose(out[0, :, 128, 128], expected, atol=1e-5)
    outside = crop_images([image], crop_box(np.array([[-400.0, -400.0, -300.0, -300.0]])))
    assert np.allclose(outside[0, :, 128, 128], [-0.406 / 0.225, -0.457 / 0.224, -0.480 / 0.229], atol=1e-5)


def test_soft_argmax_finds_a_peak_and_the_centre_of_a_flat_heatmap() -> None:
    d = h = w = 8
    logits = torch.zeros(1, 2 * d, h, w)
    logits[0, 0 * d + 5, 2, 6] = 50.0  # joint 0: a sharp peak at z=5, y=2, x=6
    uvd, peak = soft_argmax_3d(logits, d, h, w)
    assert torch.allclose(uvd[0, 0], torch.tensor([6 / 8 - 0.5, 2 / 8 - 0.5, 5 / 8 - 0.5]), atol=1e-6)
    assert torch.allclose(uvd[0, 1], torch.full((3,), 3.5 / 8 - 0.5), atol=1e-6)  # flat: mean bin index
    assert peak[0, 0] > 0.99 and abs(peak[0, 1] - 1 / 512) < 1e-7


def test_metric_decoding_inverts_the_virtual_camera() -> None:
    # A skeleton in the camera frame seen through the original's virtual camera: focal
    # 1000 px for a 256 px crop, root depth f / (256 s), depths in units of 2.2 m.
    rng = np.random.default_rng(1)
    points = rng.normal(0, 0.4, (3, 29, 3)) + np.array([0.8, -0.3, 5.0])
    image_centres = np.array([[640.0, 360.0], [320.0, 240.0], [960.0, 540.0]])
    boxes = np.array([[700.0, 100.0, 1100.0, 500.0], [0.0, 0.0, 300.0, 300.0], [50.0, 60.0, 650.0, 660.0]])
    side = boxes[:, 2] - boxes[:, 0]
    focal = hc.FOCAL_LENGTH * side / hc.INPUT_SIZE                       # image pixels
    pixels = image_centres[:, None] + focal[:, None, None] * points[..., :2] / points[..., 2:]
    uv = (pixels - (boxes[:, None, :2] + boxes[:, None, 2:]) / 2) / side[:, None, None]
    root_depth = points[:, 0, 2]
    d = (points[..., 2] - root_depth[:, None]) / hc.DEPTH_FACTOR_M
    camera = np.stack([hc.FOCAL_LENGTH / (hc.INPUT_SIZE * root_depth), np.zeros(3), np.zeros(3)], axis=1)
    decoded = crop_to_metric(np.concatenate([uv, d[..., None]], -1), camera, boxes, image_centres)
    assert np.allclose(decoded, points - points[:, :1], atol=1e-9)


def test_twist_angle_and_confidence_from_cos_sin() -> None:
    angles = np.array([[0.3, -2.0, 3.0]])
    phi = np.stack([np.cos(angles), np.sin(angles)], -1) * np.array([1.0, 0.5, 2.0])[None, :, None]
    twist, confidence = twist_from_phi(phi)
    assert np.allclose(twist, angles) and np.allclose(confidence, [[1.0, 0.5, 1.0]])

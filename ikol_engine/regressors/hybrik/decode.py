"""Reading the regressor's outputs: soft-argmax of the heatmaps, then crop to image and metres.

Only :func:`soft_argmax_3d` runs inside the network (and so inside the ONNX graph); the
rest needs the person box, which lives outside the network, and is plain numpy so the
ONNX backend can use it without torch.

Crop coordinates ``uvd`` are HybrIK's: each axis in -0.5..0.5, u to the crop's right, v
down, d away from the camera, in units of the crop's side (u, v) and of
:data:`~.conventions.DEPTH_FACTOR_M` (d), about the root's depth.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from . import conventions as hc


def soft_argmax_3d(logits: torch.Tensor, depth: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected (u, v, d) of each joint under its softmax-normalised 3D heatmap.

    As the original: one softmax over the whole volume per joint, marginals along each
    axis, the expected bin index, divided by the axis size, minus 0.5.

    Args:
        logits: (B, K * depth, height, width) the final layer's output, depth-major per joint.
    Returns:
        uvd: (B, K, 3) in -0.5..0.5; peak: (B, K) the largest heatmap probability.
    """
    batch = logits.shape[0]
    flat = F.softmax(logits.reshape(batch, -1, depth * height * width), dim=2)
    volume = flat.reshape(batch, -1, depth, height, width)
    marginals = (volume.sum((2, 3)), volume.sum((2, 4)), volume.sum((3, 4)))  # along x, y, z
    coords = []
    for marginal, size in zip(marginals, (width, height, depth)):
        bins = torch.arange(size, dtype=logits.dtype, device=logits.device)
        coords.append((marginal * bins).sum(-1) / float(size) - 0.5)
    return torch.stack(coords, dim=-1), flat.amax(dim=2)


def crop_to_image(uvd: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixels of the full frame from crop coordinates.

    Args:
        uvd: (N, K, 3) crop coordinates (only u, v are used).
        boxes: (N, 4) the square crop boxes, x0, y0, x1, y1 in frame pixels.
    Returns:
        (N, K, 2) float64 pixels, x right, y down.
    """
    centre = (boxes[:, None, :2] + boxes[:, None, 2:]) / 2
    side = (boxes[:, None, 2:] - boxes[:, None, :2])
    return centre + uvd[..., :2].astype(np.float64) * side


def crop_to_metric(uvd: np.ndarray, camera: np.ndarray, boxes: np.ndarray, image_centres: np.ndarray) -> np.ndarray:
    """Root-relative metric keypoints, camera axes (x right, y down, z away), as the original.

    The camera head's scale s gives the root's depth from the crop's virtual camera,
    ``f / (256 s)``; each keypoint's depth adds its ``d`` times the depth factor; u and
    v, shifted by where the crop's centre lies from the image's centre (in crop sides),
    are then back-projected through that camera at that depth. This is the original's
    decoding with the box given (its demos' path), so an off-centre person is seen
    under the right perspective.

    Args:
        uvd: (N, K, 3) crop coordinates; camera: (N, 3) scale, x and y shift (the head's
            output plus its initial value); boxes: (N, 4) square crop boxes, pixels;
        image_centres: (N, 2) the frames' centres, pixels.
    Returns:
        (N, K, 3) float64 metres relative to keypoint 0 (the pelvis).
    """
    uvd = uvd.astype(np.float64)
    # A scale at or below zero would put the person at or behind the camera; the
    # released networks never predict one, a random one can.
    scale = np.maximum(camera[:, 0].astype(np.float64), 1e-3)
    root_depth = hc.FOCAL_LENGTH / (hc.INPUT_SIZE * scale)                          # (N,)
    side = (boxes[:, 2:] - boxes[:, :2]).astype(np.float64)
    offset = (((boxes[:, :2] + boxes[:, 2:]) / 2 - image_centres) / side)[:, None]  # (N, 1, 2)
    depth = uvd[..., 2] * hc.DEPTH_FACTOR_M + root_depth[:, None]                   # (N, K)
    xy = (uvd[..., :2] + offset) * (hc.INPUT_SIZE / hc.FOCAL_LENGTH) * depth[..., None]
    xyz = np.concatenate([xy, depth[..., None]], axis=-1)
    return xyz - xyz[:, :1]


def twist_from_phi(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Twist angles from the (cos, sin) pairs the twist head predicts.

    HybrIK turns joint j (1..23) by ``atan2(sin, cos)`` of pair j - 1 about its rest bone
    (towards the child the IK aims it at), on the right of the swing:
    ``R_j = swing @ exp(phi a_j)``; that is our IK's ``twist`` argument exactly.

    Args:
        phi: (N, 23, 2) raw (cos, sin) pairs (the original normalises them).
    Returns:
        twist: (N, 23) radians in (-pi, pi]; confidence: (N, 23) the pair's length, at
        most 1 (training pulls it to 1; a short pair has no clear direction).
    """
    phi = phi.astype(np.float64)
    length = np.linalg.norm(phi, axis=-1)
    return np.arctan2(phi[..., 1], phi[..., 0]), np.clip(length, 0.0, 1.0)

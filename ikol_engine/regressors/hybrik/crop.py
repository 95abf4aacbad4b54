"""The person crop, prepared as the original prepares it.

From a person box: make it square about its centre (the crop is 256x256, aspect 1),
enlarge it by :data:`~.conventions.BOX_SCALE`, map it onto the crop with an affine warp
(bilinear, zeros outside the frame), scale pixels to 0..1 and normalise channel by
channel with the original's mean and std (see :mod:`.conventions`).
"""
from __future__ import annotations

import cv2
import numpy as np

from . import conventions as hc

_MEAN = np.array(hc.MEAN, dtype=np.float32)
_STD = np.array(hc.STD, dtype=np.float32)


def crop_box(box: np.ndarray, scale: float = hc.BOX_SCALE) -> np.ndarray:
    """The square crop box for a person box: longer side kept, then scaled.

    Args:
        box: (N, 4) person boxes x0, y0, x1, y1, pixels.
    Returns:
        (N, 4) float64 square boxes with the same centres.
    """
    box = np.asarray(box, dtype=np.float64)
    centre = (box[:, :2] + box[:, 2:]) / 2
    half = np.max(box[:, 2:] - box[:, :2], axis=1, keepdims=True) * scale / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def box_around(points: np.ndarray, margin: float) -> np.ndarray:
    """Tight boxes around point sets, each side pushed out by ``margin`` of the box's size.

    Args:
        points: (N, P, 2) pixels.
    Returns:
        (N, 4) x0, y0, x1, y1.
    """
    low, high = points.min(axis=1), points.max(axis=1)
    pad = (high - low) * margin
    return np.concatenate([low - pad, high + pad], axis=1)


def crop_affine(box: np.ndarray, size: int = hc.INPUT_SIZE) -> np.ndarray:
    """The 2x3 affine maps taking square boxes onto a ``size`` x ``size`` crop.

    As the original's: the box centre goes to (size/2, size/2) and the box side to
    ``size`` pixels, so pixel x lands at ``(x - cx) * size / side + size / 2``.

    Args:
        box: (N, 4) square boxes.
    Returns:
        (N, 2, 3) float64.
    """
    centre = (box[:, :2] + box[:, 2:]) / 2
    zoom = size / (box[:, 2] - box[:, 0])
    maps = np.zeros((len(box), 2, 3))
    maps[:, 0, 0] = maps[:, 1, 1] = zoom
    maps[:, :, 2] = size / 2 - zoom[:, None] * centre
    return maps


def crop_images(images: list[np.ndarray], boxes: np.ndarray, size: int = hc.INPUT_SIZE) -> np.ndarray:
    """Normalised network input from RGB frames and their square crop boxes.

    Args:
        images: N (H, W, 3) uint8 RGB frames.
        boxes: (N, 4) square crop boxes (see :func:`crop_box`).
    Returns:
        (N, 3, size, size) float32, (pixel / 255 - mean) / std per channel, in the
        original's channel order (R, G, B with its BGR-listed statistics).
    """
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, (image, affine) in enumerate(zip(images, crop_affine(boxes, size))):
        crop = cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR)
        out[i] = ((crop.astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)
    return out

"""The square image region to hand the landmark model for one chosen person, and back.

For each frame of a track's span, :func:`follow_boxes` gives the person's box (linearly
interpolated across frames where the detector missed them), :func:`crop_regions` turns
the boxes into padded squares smoothed over time, so that the crop does not jitter with the
detector's noise, and :func:`crop_image` cuts a region out (areas outside the frame black).

Landmarks found in a crop come back to the frame with :func:`crop_to_image`. BlazePose's
image landmarks are normalised to the crop it was given: x and y in 0..1 of the crop's
width and height, z on the scale of x; so they map as ``corner + u * side``. Its world
landmarks are metric and centred on the hips, and need no mapping.

A region is ``(cx, cy, side)`` in frame pixels: the centre and side of the square.
"""
from __future__ import annotations

import cv2
import numpy as np

from .tracker import Track

__all__ = ["crop_image", "crop_regions", "crop_to_image", "follow_boxes", "image_to_crop", "smooth"]


def follow_boxes(track: Track, frames: np.ndarray) -> np.ndarray:
    """The track's box at each requested frame, interpolated between its detections.

    Args:
        frames: (F,) frame indices within ``track.first_frame .. track.last_frame``.

    Returns:
        (F, 4) [x0, y0, x1, y1] pixels.

    Raises:
        ValueError: a frame outside the track's span.
    """
    frames = np.asarray(frames)
    outside = (frames < track.first_frame) | (frames > track.last_frame)
    if outside.any():
        raise ValueError(
            f"person {track.id} is tracked in frames {track.first_frame}-{track.last_frame}; "
            f"frame {int(frames[outside][0])} is outside"
        )
    return np.stack(
        [np.interp(frames, track.frames, track.boxes[:, k]) for k in range(4)], axis=1
    )


def smooth(values: np.ndarray, strength: float) -> np.ndarray:
    """Zero-lag exponential smoothing along time: a forward then a backward pass.

    Args:
        values: (F, K).
        strength: 0 returns the values unchanged; towards 1 smooths more (< 1).

    Returns:
        (F, K).
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"strength must be in [0, 1), got {strength!r}")
    out = np.array(values, dtype=float)
    for i in range(1, len(out)):
        out[i] = strength * out[i - 1] + (1.0 - strength) * out[i]
    for i in range(len(out) - 2, -1, -1):
        out[i] = strength * out[i + 1] + (1.0 - strength) * out[i]
    return out


def crop_regions(boxes: np.ndarray, padding: float = 1.25, strength: float = 0.6) -> np.ndarray:
    """Square regions around boxes: centred on each box, side ``padding`` times its longer side.

    Args:
        boxes: (F, 4) [x0, y0, x1, y1] for consecutive frames.
        padding: side over the box's longer side (>= 1).
        strength: temporal smoothing of centre and side, see :func:`smooth`.

    Returns:
        (F, 3) regions (cx, cy, side) in pixels.
    """
    if padding < 1.0:
        raise ValueError(f"padding must be >= 1, got {padding!r}")
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = np.max(boxes[:, 2:] - boxes[:, :2], axis=1, keepdims=True) * padding
    return smooth(np.concatenate([centre, side], axis=1), strength)


def _corner(region: np.ndarray) -> np.ndarray:
    """(..., 2) top-left corner of (..., 3) regions."""
    return region[..., :2] - region[..., 2:3] / 2


def crop_to_image(points: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Map points normalised to a crop (0..1 across it) to frame pixels.

    Args:
        points: (..., P, 2) or (..., P, 3) x, y[, z] normalised to the crop; z (BlazePose's
            relative depth, on the scale of x) is scaled to pixels too.
        region: (..., 3) the crop's (cx, cy, side), batch shape matching ``points``.

    Returns:
        Same shape as ``points``, in pixels.
    """
    side = region[..., None, 2:3]
    out = points * side
    out[..., :2] += _corner(region)[..., None, :]
    return out


def image_to_crop(points: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Inverse of :func:`crop_to_image`: frame pixels to 0..1 of the crop.

    Args:
        points: (..., P, 2) or (..., P, 3) pixels.
        region: (..., 3).
    """
    out = np.array(points, dtype=float)
    out[..., :2] -= _corner(region)[..., None, :]
    return out / region[..., None, 2:3]


def crop_image(image: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
    """Cut a square region out of a frame, scaled to ``size`` pixels, black outside the frame.

    Pixel centres follow :func:`crop_to_image`: output pixel (i, j) shows the frame at
    ``corner + ((j, i) + 0.5) / size * side``.

    Args:
        image: (H, W, 3) uint8.
        region: (3,) (cx, cy, side).

    Returns:
        (size, size, 3) uint8.
    """
    scale = size / region[2]
    corner = _corner(region)
    # Output pixel centre (j + 0.5) comes from frame position corner + (j + 0.5) / scale;
    # OpenCV puts pixel centres at integer coordinates, hence the half-pixel terms.
    shift = -corner * scale + 0.5 * scale - 0.5
    matrix = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )

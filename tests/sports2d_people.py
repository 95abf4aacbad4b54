"""Hand-marked people in the Sports2D demo video, for the detector and tracker tests.

Marked by eye on frames drawn with a 100-pixel grid (so about +-50 px): the middle of each
visible person's torso, in full-frame pixels (1768x994). "jumper" is the man who jumps off
the box; "walker" the woman who walks past from right to left (first in frame ~40, mostly
out of frame after ~195). Frames 170 and 180 show the jumper mid-flip against the sun,
a dark blur; frame 200 shows only the walker's arm at the left edge, so she is not marked.
"""
from __future__ import annotations

import numpy as np

#: frame index -> person -> (x, y) torso centre in pixels.
TORSO_POINTS: dict[int, dict[str, tuple[int, int]]] = {
    0: {"jumper": (650, 270)},
    20: {"jumper": (630, 260)},
    40: {"jumper": (650, 280), "walker": (1510, 740)},
    60: {"jumper": (630, 260), "walker": (1420, 700)},
    80: {"jumper": (640, 270), "walker": (1220, 730)},
    100: {"jumper": (650, 250), "walker": (1010, 730)},
    110: {"jumper": (690, 280), "walker": (920, 720)},
    120: {"jumper": (700, 260), "walker": (830, 720)},
    130: {"jumper": (750, 270), "walker": (720, 710)},
    140: {"jumper": (780, 230), "walker": (620, 720)},
    150: {"jumper": (800, 220), "walker": (500, 720)},
    160: {"jumper": (850, 250), "walker": (440, 720)},
    170: {"jumper": (870, 220), "walker": (300, 720)},
    180: {"jumper": (955, 280), "walker": (200, 720)},
    190: {"jumper": (1060, 640), "walker": (90, 720)},
    200: {"jumper": (1140, 790)},
    210: {"jumper": (1290, 760)},
    220: {"jumper": (1440, 760)},
}


def finds(boxes: np.ndarray, keypoints: np.ndarray, point: tuple[int, int]) -> np.ndarray:
    """Which detections find a marked person: hip keypoint within half the body radius.

    Args:
        boxes: (N, 4) body boxes [x0, y0, x1, y1]; keypoints: (N, 4, 2) detector keypoints.

    Returns:
        (N,) bool.
    """
    radius = (boxes[:, 2] - boxes[:, 0]) / 2
    return np.linalg.norm(keypoints[:, 0] - np.array(point), axis=1) <= 0.5 * radius

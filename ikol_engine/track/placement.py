"""A solved clip placed in the scene: the camera's frame turned so that the floor is y = 0."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .ground import Ground


@dataclass(frozen=True)
class Placed:
    """A solved clip's valid frames in the motion file's world frame.

    Attributes:
        rotations: (V, 24, 3, 3), the root turned with the floor; translation: (V, 3);
        keypoints, targets: (V, 29, 3); floor: the floor found and levelled (JSON-able:
        its normal and height in the camera frame, contacts), or None.
    """

    rotations: np.ndarray
    translation: np.ndarray
    keypoints: np.ndarray
    targets: np.ndarray
    floor: dict[str, Any] | None


def place_in_scene(rotations: np.ndarray, translation: np.ndarray, keypoints: np.ndarray, targets: np.ndarray,
                   ground: Ground | None, pelvis_rest: np.ndarray, level_floor: bool) -> Placed:
    """Turns a clip solved in the camera's frame so that its floor is y = 0 (if found and asked).

    Args:
        rotations: (V, 24, 3, 3), translation: (V, 3), keypoints and targets: (V, 29, 3),
            camera frame; ground: the floor there, or None; pelvis_rest: (3,).
    """
    if ground is None or not level_floor:
        return Placed(rotations, translation, keypoints, targets, None)
    turn, shift = ground.leveling()
    rotations = rotations.copy()
    rotations[:, 0] = turn @ rotations[:, 0]
    translation = (translation + pelvis_rest) @ turn.T + shift - pelvis_rest
    return Placed(rotations, translation, keypoints @ turn.T + shift, targets @ turn.T + shift,
                  {"normal_camera": ground.normal.tolist(), "height_camera": ground.height, "contacts": ground.contacts})

"""A solved clip placed in the scene: root motion from the pinhole fit, then the floor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .camera import Camera, fit_translation
from .cleanup import fill_gaps
from .filtering import one_euro_forward_backward
from .ground import fit_ground
from .options import SolveOptions


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


def place_in_scene(points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray, feet: np.ndarray,
                   rotations: np.ndarray, ik_translation: np.ndarray, local_keypoints: np.ndarray,
                   targets: np.ndarray, pelvis_rest: np.ndarray, image_size: tuple[int, int], fps: float,
                   options: SolveOptions) -> Placed:
    """Root motion from the pinhole fit of metric keypoints to their pixels, then the floor.

    Args:
        points: (V, R, 3) the regressor's metric keypoints (filtered, y-up, about the
            hips); pixels: (V, R, 2); confidence: (V, R); feet: (V, F, 3) foot points in
            the frame of ``points``.
        rotations: (V, 24, 3, 3), ik_translation: (V, 3), local_keypoints and targets:
            (V, 29, 3): the IK's solution and inputs about the hips; pelvis_rest: (3,).
    """
    camera = Camera(*image_size, fov_deg=options.fov_deg)
    offset = fit_translation(points, pixels, confidence, camera)
    lost = ~np.isfinite(offset).all(-1)
    if lost.any():  # too few confident pixels: carry the neighbours' placement
        offset = fill_gaps(offset, ~lost, max_gap=len(offset))[0]
    params = options.filter_params()
    if params is not None:
        # Depth from apparent size is the noisiest axis; smooth the placement like the pose.
        offset = one_euro_forward_backward(offset, fps, params)
    translation = ik_translation + offset
    keypoints = local_keypoints + offset[:, None]
    targets = targets + offset[:, None]
    ground = fit_ground(feet + offset[:, None], np.ones(len(feet), dtype=bool), fps)
    if ground is None or not options.level_floor:
        return Placed(rotations, translation, keypoints, targets, None)
    turn, shift = ground.leveling()
    rotations = rotations.copy()
    rotations[:, 0] = turn @ rotations[:, 0]
    translation = (translation + pelvis_rest) @ turn.T + shift - pelvis_rest
    return Placed(rotations, translation, keypoints @ turn.T + shift, targets @ turn.T + shift,
                  {"normal_camera": ground.normal.tolist(), "height_camera": ground.height, "contacts": ground.contacts})

"""How the track stage reads BlazePose's landmarks (see :mod:`.targets` for the map)."""
from __future__ import annotations

import numpy as np

from ...observations import KeypointLayout, TwistSides
from .landmarks import FOOT_LANDMARKS, LANDMARK_NAMES, LEFT_RIGHT_GROUPS, swapped_against_torso
from .targets import blazepose_image_targets, blazepose_to_targets, blazepose_twist_observations


class BlazePoseLayout(KeypointLayout):
    """BlazePose's 33 landmarks: it swaps sides in back views (each part on its own,
    and hips or ears against the shoulders), sees no spine, and shows twist only
    through points off the bones (palms, feet, ears)."""

    name = "blazepose"
    names = LANDMARK_NAMES
    swap_groups = LEFT_RIGHT_GROUPS
    torso_checked = ("legs", "face")
    foot_points = FOOT_LANDMARKS

    def swapped_against_torso(self, points: np.ndarray, part: str) -> np.ndarray:
        return swapped_against_torso(points, part)

    def targets(self, points: np.ndarray, confidence: np.ndarray,
                rest_keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return blazepose_to_targets(points, confidence, rest_keypoints)

    def image_targets(self, pixels: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return blazepose_image_targets(pixels, confidence)

    def twist_sides(self, points: np.ndarray, confidence: np.ndarray) -> TwistSides:
        return blazepose_twist_observations(points, confidence)


BLAZEPOSE_LAYOUT = BlazePoseLayout()

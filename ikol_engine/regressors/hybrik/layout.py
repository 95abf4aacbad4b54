"""How the track stage reads HybrIK's 29 keypoints, twist and shape (the paper's regressor).

The network already gives what the IK takes: SMPL's 24 joints and five leaf points, a
twist angle for each of joints 1..23, and SMPL shape. So, unlike BlazePose's landmarks,
nothing is mapped or estimated: the keypoints are the targets (in HybrIK's camera axes,
the same as BlazePose's, turned y-up like them), the twists go to the IK as they are,
and the betas are used where the body has SMPL's own shape space. There is no
left/right repair: that answers BlazePose's back-view swaps.
"""
from __future__ import annotations

import numpy as np

from ... import skeleton
from ...observations import KeypointLayout

# Keypoints that touch the floor when a foot rests.
_FEET = tuple(skeleton.KEYPOINT_NAMES.index(name) for name in (
    "L_Ankle", "R_Ankle", "L_Foot", "R_Foot", "L_BigToe", "R_BigToe"))


class HybrIKLayout(KeypointLayout):
    """HybrIK's SMPL keypoints with twist angles and SMPL betas."""

    name = "hybrik"
    names = skeleton.KEYPOINT_NAMES
    foot_points = _FEET
    smpl_betas = True

    def targets(self, points: np.ndarray, confidence: np.ndarray,
                rest_keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return points.astype(np.float32), confidence.astype(np.float32)

    def image_targets(self, pixels: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pixels.astype(np.float32), confidence.astype(np.float32)


HYBRIK_LAYOUT = HybrIKLayout()

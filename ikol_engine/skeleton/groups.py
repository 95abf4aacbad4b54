"""The keypoint groups whose weights the user sets (the Refine panel's sliders)."""
from __future__ import annotations

import numpy as np

from .names import KEYPOINT_NAMES, NUM_KEYPOINTS

_K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Keypoint groups whose weights the user sets (the Refine panel's sliders).
KEYPOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "torso": ("Pelvis", "L_Hip", "R_Hip", "Spine1", "Spine2", "Spine3", "Neck", "L_Collar", "R_Collar",
              "L_Shoulder", "R_Shoulder"),
    "arms": ("L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand", "L_Fingertip", "R_Fingertip"),
    "legs": ("L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "L_Foot", "R_Foot", "L_BigToe", "R_BigToe"),
    "head": ("Head", "Head_Top"),
}


def group_weights(torso: float = 1.0, arms: float = 1.0, legs: float = 1.0, head: float = 1.0) -> np.ndarray:
    """Per-target multipliers (29,) from the four group weights (each >= 0)."""
    weights = np.ones(NUM_KEYPOINTS, dtype=np.float32)
    for group, value in (("torso", torso), ("arms", arms), ("legs", legs), ("head", head)):
        if not value >= 0:
            raise ValueError(f"the {group} weight must be >= 0, got {value!r}")
        weights[[_K[name] for name in KEYPOINT_GROUPS[group]]] = value
    return weights

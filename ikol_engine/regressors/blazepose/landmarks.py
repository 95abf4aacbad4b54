"""BlazePose's 33 landmarks: their names, the left/right pairs a detector confuses, and
the check that catches a swapped part against the shoulders."""
from __future__ import annotations

import numpy as np

LANDMARK_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
LANDMARK_INDEX: dict[str, int] = {name: i for i, name in enumerate(LANDMARK_NAMES)}
_L = LANDMARK_INDEX


def _pairs(*parts: str) -> tuple[tuple[int, int], ...]:
    return tuple((_L[f"left_{part}"], _L[f"right_{part}"]) for part in parts)



# Landmark pairs that trade places when a detector mistakes the body's left for its
# right, by body part: a detector often swaps one part alone (the legs for a few frames
# after the arms came back), so each part is repaired on its own.
LEFT_RIGHT_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    "face": _pairs("eye_inner", "eye", "eye_outer", "ear") + ((_L["mouth_left"], _L["mouth_right"]),),
    "arms": _pairs("shoulder", "elbow", "wrist", "pinky", "index", "thumb"),
    "legs": _pairs("hip", "knee", "ankle", "heel", "foot_index"),
}
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = sum(LEFT_RIGHT_GROUPS.values(), ())
# Landmarks that touch the floor when a foot rests.
FOOT_LANDMARKS: tuple[int, ...] = tuple(_L[name] for name in (
    "left_heel", "right_heel", "left_foot_index", "right_foot_index"))


def swapped_against_torso(landmarks: np.ndarray, part: str) -> np.ndarray:
    """Frames (T,) where a part's left-right line points against the shoulders'.

    A pelvis never turns a quarter turn against the chest, nor a head (the neck turns
    about 80 degrees each way), so hips or ears whose left-to-right line points against
    the shoulders' are mislabelled. This catches swaps the temporal repair cannot: one
    that slowly un-swaps as the knees cross back, or a face that stayed swapped when
    the arms were repaired.

    Args:
        landmarks: (T, 33, 3) world landmarks, arms already repaired.
        part: "legs" (judged by the hips) or "face" (by the ears).
    """
    point = {"legs": "hip", "face": "ear"}[part]
    line = landmarks[:, _L[f"left_{point}"]] - landmarks[:, _L[f"right_{point}"]]
    shoulders = landmarks[:, _L["left_shoulder"]] - landmarks[:, _L["right_shoulder"]]
    return (line * shoulders).sum(-1) < 0

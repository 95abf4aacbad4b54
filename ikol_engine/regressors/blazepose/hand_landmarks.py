"""MediaPipe Hands' 21 landmarks, and the BlazePose body landmarks each hand's crop is
placed from."""
from __future__ import annotations

from .landmarks import LANDMARK_INDEX

#: MediaPipe's hand landmarks in its output order (``mp.solutions.hands.HandLandmark``,
#: lower-cased as :data:`~.landmarks.LANDMARK_NAMES` is): the wrist, then each finger
#: from its base joint to its tip, thumb first.
HAND_LANDMARK_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_finger_mcp", "index_finger_pip", "index_finger_dip", "index_finger_tip",
    "middle_finger_mcp", "middle_finger_pip", "middle_finger_dip", "middle_finger_tip",
    "ring_finger_mcp", "ring_finger_pip", "ring_finger_dip", "ring_finger_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
NUM_HAND_LANDMARKS = len(HAND_LANDMARK_NAMES)
HAND_WRIST = HAND_LANDMARK_NAMES.index("wrist")

#: Hand order in every per-side array: the person's own left, then right.
SIDES: tuple[str, ...] = ("left", "right")
#: Per side, BlazePose's landmarks on the hand itself (wrist, pinky, index and thumb).
BODY_HAND_POINTS: tuple[tuple[int, ...], ...] = tuple(
    tuple(LANDMARK_INDEX[f"{side}_{part}"] for part in ("wrist", "pinky", "index", "thumb"))
    for side in SIDES
)
#: Per side, BlazePose's wrist and elbow.
BODY_WRISTS: tuple[int, ...] = tuple(LANDMARK_INDEX[f"{side}_wrist"] for side in SIDES)
BODY_ELBOWS: tuple[int, ...] = tuple(LANDMARK_INDEX[f"{side}_elbow"] for side in SIDES)

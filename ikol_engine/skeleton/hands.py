"""SMPL-H's finger joints, and the per-hand tree the finger IK solves.

SMPL-H replaces SMPL's two hand joints (22, 23) with 15 finger joints per hand,
parented to the wrists: the left hand's are SMPL-H joints 22..36, the right's 37..51,
each finger from the knuckle out (index, middle, pinky, ring, thumb: SMPL-H's order),
so finger rotations line up with files made by the official SMPL-H/SMPL-X tools.
A thumb's first joint is its carpometacarpal joint at the base of the palm; the other
fingers' first joint is the knuckle.

The finger IK works on one hand at a time: the wrist (the tree's root) with its 15
finger joints, then the five fingertips as leaf keypoints. Those 21 keypoints are the
21 landmarks of MediaPipe's hand model, reordered (:data:`MEDIAPIPE_TO_HAND`).
"""
from __future__ import annotations

from .names import JOINT_NAMES

SIDES: tuple[str, ...] = ("left", "right")
FINGERS: tuple[str, ...] = ("index", "middle", "pinky", "ring", "thumb")
JOINTS_PER_FINGER = 3
FINGER_JOINT_NAMES: tuple[str, ...] = tuple(f"{finger}{k}" for finger in FINGERS
                                            for k in range(1, JOINTS_PER_FINGER + 1))
NUM_FINGER_JOINTS = len(FINGER_JOINT_NAMES)
#: The body's wrist joint of each side (SMPL's and SMPL-H's indices agree up to 21).
WRISTS: tuple[int, ...] = (JOINT_NAMES.index("L_Wrist"), JOINT_NAMES.index("R_Wrist"))

#: SMPL-H's 30 finger joint names, left hand then right.
HAND_JOINT_NAMES: tuple[str, ...] = tuple(f"{side}_{name}" for side in SIDES for name in FINGER_JOINT_NAMES)
#: SMPL-H's 52 joints: SMPL's first 22, then the fingers.
SMPLH_NUM_BODY_JOINTS = 22
SMPLH_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES[:SMPLH_NUM_BODY_JOINTS] + HAND_JOINT_NAMES


def _finger_parents(wrist: int, first: int) -> tuple[int, ...]:
    """Parents of one hand's 15 finger joints whose first one has index ``first``."""
    return tuple(wrist if k == 0 else first + f * JOINTS_PER_FINGER + k - 1
                 for f in range(len(FINGERS)) for k in range(JOINTS_PER_FINGER))


SMPLH_PARENTS: tuple[int, ...] = (
    (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
    + _finger_parents(WRISTS[0], SMPLH_NUM_BODY_JOINTS)
    + _finger_parents(WRISTS[1], SMPLH_NUM_BODY_JOINTS + NUM_FINGER_JOINTS)
)

# One hand's tree: keypoint 0 the wrist, 1..15 the finger joints (SMPL-H's order),
# 16..20 the fingertips (FINGERS' order).
HAND_NUM_JOINTS = 1 + NUM_FINGER_JOINTS
HAND_KEYPOINT_NAMES: tuple[str, ...] = ("wrist",) + FINGER_JOINT_NAMES + tuple(f"{f}_tip" for f in FINGERS)
HAND_PARENTS: tuple[int, ...] = (
    (-1,) + _finger_parents(0, 1) + tuple(1 + f * JOINTS_PER_FINGER + JOINTS_PER_FINGER - 1 for f in range(len(FINGERS)))
)
NUM_HAND_KEYPOINTS = len(HAND_KEYPOINT_NAMES)
#: Per hand keypoint, the index of the landmark of MediaPipe's hand model at it
#: (0 wrist; thumb 1-4 CMC, MCP, IP, tip; index 5-8 MCP, PIP, DIP, tip; middle 9-12;
#: ring 13-16; pinky 17-20).
_MEDIAPIPE_FIRST = {"thumb": 1, "index": 5, "middle": 9, "ring": 13, "pinky": 17}
MEDIAPIPE_TO_HAND: tuple[int, ...] = (
    (0,) + tuple(_MEDIAPIPE_FIRST[f] + k for f in FINGERS for k in range(JOINTS_PER_FINGER))
    + tuple(_MEDIAPIPE_FIRST[f] + JOINTS_PER_FINGER for f in FINGERS)
)
#: Per finger joint (1..15 of the hand tree), the keypoint its bone points at.
HAND_BONE_CHILD: tuple[int, ...] = tuple(
    k + 1 if (k - 1) % JOINTS_PER_FINGER < JOINTS_PER_FINGER - 1 else 1 + NUM_FINGER_JOINTS + (k - 1) // JOINTS_PER_FINGER
    for k in range(1, HAND_NUM_JOINTS)
)

#: Each finger joint's parent as a motion file names it: an index into the body's 24
#: joints, then the 30 finger joints (SMPL-H's own indices, past its 22 body joints,
#: move up by SMPL's two hand joints).
FILE_HAND_PARENTS: tuple[int, ...] = tuple(
    p if p < SMPLH_NUM_BODY_JOINTS else p + len(JOINT_NAMES) - SMPLH_NUM_BODY_JOINTS
    for p in SMPLH_PARENTS[SMPLH_NUM_BODY_JOINTS:])

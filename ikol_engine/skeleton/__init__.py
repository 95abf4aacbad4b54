"""SMPL's kinematic tree at the bottom of the engine: names and parents (:mod:`.names`,
re-exported here), the tree as arrays (:mod:`.tree`), forward kinematics
(:mod:`.kinematics`) and the user's keypoint groups (:mod:`.groups`)."""
from __future__ import annotations

from .names import (
    BONE_CHILD, JOINT_NAMES, KEYPOINT_NAMES, KEYPOINT_PARENTS, LEAF_LANDMARKS, LEAF_NAMES, LEAF_PARENTS,
    MULTI_CHILD_JOINTS, NUM_JOINTS, NUM_KEYPOINTS, NUM_TWISTS, PARENTS, SMPL_LEAF_VERTICES, TWIST_JOINTS,
)

__all__ = [
    "BONE_CHILD", "JOINT_NAMES", "KEYPOINT_NAMES", "KEYPOINT_PARENTS", "LEAF_LANDMARKS", "LEAF_NAMES",
    "LEAF_PARENTS", "MULTI_CHILD_JOINTS", "NUM_JOINTS", "NUM_KEYPOINTS", "NUM_TWISTS", "PARENTS",
    "SMPL_LEAF_VERTICES", "TWIST_JOINTS",
]

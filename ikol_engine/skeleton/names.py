"""SMPL's kinematic tree and the 29-keypoint set the IK layer fits.

The 24 joints follow SMPL's order and names (the names of the SMPL/SMPL-X Blender
add-on's armature, so rigs made there can be driven too). HybrIK's 29-keypoint set
appends five surface points that end the open chains, so that the rotation of the
last joint of each chain (head, hands, feet) has something to point at.
"""
from __future__ import annotations

JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
    "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand",
    "R_Hand",
)
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
NUM_JOINTS = len(JOINT_NAMES)

LEAF_NAMES: tuple[str, ...] = ("Head_Top", "L_Fingertip", "R_Fingertip", "L_BigToe", "R_BigToe")
LEAF_PARENTS: tuple[int, ...] = (15, 22, 23, 10, 11)
# Landmark names under which a body file stores the leaf vertices; the last four are
# smplx's SMPL-H vertex-id names, "head_top" is ours.
LEAF_LANDMARKS: tuple[str, ...] = ("head_top", "lmiddle", "rmiddle", "LBigToe", "RBigToe")
# The leaf vertices on the official SMPL mesh (as HybrIK uses them).
SMPL_LEAF_VERTICES: tuple[int, ...] = (411, 2445, 5905, 3216, 6617)

KEYPOINT_NAMES: tuple[str, ...] = JOINT_NAMES + LEAF_NAMES
KEYPOINT_PARENTS: tuple[int, ...] = PARENTS + LEAF_PARENTS
NUM_KEYPOINTS = len(KEYPOINT_NAMES)

# Joints whose orientation is fixed by several children at once (fitted as a whole);
# every other joint has one child keypoint that its bone points at.
MULTI_CHILD_JOINTS: tuple[int, ...] = (0, 9)
# For each joint, the keypoint its bone points at; its twist is the rotation about that
# rest bone. Spine3's bone is the neck (its collars make that twist observable).
BONE_CHILD: tuple[int, ...] = (
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 27, 28, 15, 16, 17, 24, 18, 19, 20, 21, 22, 23, 25, 26,
)
# Twist angles are given for joints 1..23 (the root has no bone of its own).
TWIST_JOINTS: tuple[int, ...] = tuple(range(1, NUM_JOINTS))
NUM_TWISTS = len(TWIST_JOINTS)

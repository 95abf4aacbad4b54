"""BlazePose-like landmarks placed on known SMPL poses, for tests of everything after the regressor."""
from __future__ import annotations

import torch

from ikol_engine import skeleton
from ikol_engine.regressors.blazepose.landmarks import LANDMARK_NAMES
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.skeleton.tree import SMPL_TREE

J = {name: i for i, name in enumerate(skeleton.KEYPOINT_NAMES)}
L = {name: i for i, name in enumerate(LANDMARK_NAMES)}
# Where the landmarks off SMPL's joints sit, in the rest frame of the joint that carries
# them (m): knuckles beside the hand joint (thumb side forward), heel under the ankle,
# ears beside the head joint, eyes and mouth on the face.
OFF_JOINT = {
    "left_index": ("L_Hand", (0, 0, 0.03)), "left_pinky": ("L_Hand", (0, 0, -0.03)),
    "right_index": ("R_Hand", (0, 0, 0.03)), "right_pinky": ("R_Hand", (0, 0, -0.03)),
    "left_heel": ("L_Ankle", (0, -0.06, -0.05)), "right_heel": ("R_Ankle", (0, -0.06, -0.05)),
    # BlazePose's "foot index" is the tip of the foot, on its midline (SMPL's big toe is medial).
    "left_foot_index": ("L_Foot", (0, -0.01, 0.06)), "right_foot_index": ("R_Foot", (0, -0.01, 0.06)),
    "left_ear": ("Head", (0.07, 0.02, 0)), "right_ear": ("Head", (-0.07, 0.02, 0)),
    "left_eye": ("Head", (0.03, 0.07, 0.1)), "right_eye": ("Head", (-0.03, 0.07, 0.1)),
    "mouth_left": ("Head", (0.02, 0.0, 0.1)), "mouth_right": ("Head", (-0.02, 0.0, 0.1)),
}
ON_JOINT = {f"{word}_{part}": f"{side}_{joint}" for side, word in (("L", "left"), ("R", "right"))
            for part, joint in (("hip", "Hip"), ("knee", "Knee"), ("ankle", "Ankle"), ("shoulder", "Shoulder"),
                                ("elbow", "Elbow"), ("wrist", "Wrist"))}
# The carrying joints for landmarks the wrist's and ankle's rotations move.
CARRIER = {"L_Hand": "L_Wrist", "R_Hand": "R_Wrist", "L_Ankle": "L_Ankle", "R_Ankle": "R_Ankle", "Head": "Head",
           "L_Foot": "L_Foot", "R_Foot": "R_Foot"}


def posed_landmarks(body, rotations: torch.Tensor, translation: torch.Tensor | None = None,
                    betas: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, 33, 3) y-up landmarks on poses, with the poses' globals (B, 24, 3, 3) and keypoints (B, 29, 3)."""
    batch = len(rotations)
    betas = torch.zeros(batch, 10) if betas is None else betas.expand(batch, -1)
    translation = torch.zeros(batch, 3) if translation is None else translation
    offsets = rest_offsets(body.rest_keypoints(betas), SMPL_TREE)
    globals_, keypoints = forward_kinematics(rotations, offsets, translation, SMPL_TREE)
    landmarks = torch.zeros(len(rotations), len(LANDMARK_NAMES), 3)
    for landmark, joint in ON_JOINT.items():
        landmarks[:, L[landmark]] = keypoints[:, J[joint]]
    for landmark, (joint, offset) in OFF_JOINT.items():
        carrier = J[CARRIER[joint]]
        landmarks[:, L[landmark]] = keypoints[:, J[joint]] + (globals_[:, carrier] @ torch.tensor(offset,
                                                                   dtype=torch.float32))
    return landmarks, globals_, keypoints

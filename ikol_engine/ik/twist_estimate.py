"""Twist angles from directions seen off the bone (a palm's normal, the line through the ears).

A bone's end points fix its swing but not its twist. A direction known in the rest pose
(``rest_side``, e.g. the back of the hand points up in SMPL's T-pose) and observed in a
frame (``side``) fixes it: pose the body from its keypoints alone (the IK without twist,
so that every twist the keypoints do show is already in the ancestors), then turn the
bone about its own axis until the posed rest direction meets the observed one. A
right turn ``R_j exp(phi a_j)`` about the rest bone ``a_j`` turns every frame below the
joint about the posed bone, so that angle adds directly to the joint's twist, and the
direction may be carried by a joint further down (the palm, carried by the wrist, turns
with the elbow's twist).

A straight arm shows its bend too little to tell the upper arm's twist from the
forearm's: the keypoint-only pose then sets the upper arm's twist from noise (its bend
plane), and the forearm's twist measured against it comes out anywhere, up to
anatomically impossible turns that flip from one frame to the next. So as the elbow
straightens, the palm's turn passes to the shoulder's twist (:data:`HINGES`): bent,
the forearm takes it all, as before; straight, the upper arm does and the forearm keeps
its twist.
"""
from __future__ import annotations

import torch

from .. import skeleton
from ..skeleton.kinematics import forward_kinematics
from ..skeleton.tree import SMPL_TREE
from .rotations import bone_axes, bone_twists, wrap_angle

# An observed direction this close to the bone says little about the twist.
_MIN_SINE = 0.3
#: (twist joint, parent joint) pairs whose twists a straight hinge cannot tell apart.
HINGES = (("L_Elbow", "L_Shoulder"), ("R_Elbow", "R_Shoulder"))
# Sines of the hinge's flexion: at 10 degrees or less the parent takes the whole turn
# (BlazePose's 3D joints are a few centimetres off, so the bend's plane is then a guess),
# from 30 degrees on none of it.
_STRAIGHT_SINE, _BENT_SINE = 0.17, 0.5


def estimate_twist(
    rotations: torch.Tensor,
    offsets: torch.Tensor,
    sides: torch.Tensor,
    rest_sides: torch.Tensor,
    carriers: torch.Tensor,
    side_confidence: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Twist angles of joints 1..23 where a side direction is observed.

    Args:
        rotations: (B, 24, 3, 3) a pose fitted to the keypoints.
        offsets: (B, 29, 3) rest offsets (see kinematics.rest_offsets).
        sides: (B, 23, 3) observed directions, world axes.
        rest_sides: (23, 3) those directions in the rest pose.
        carriers: (23,) the joint whose frame carries each direction: the twist joint
            itself or one of its descendants.
        side_confidence: (B, 23) weights; 0 where nothing is observed.
    Returns:
        twist: (B, 23) radians; confidence: (B, 23), scaled down where the observed
        direction lies near the bone and 0 where it is unusable.
    """
    batch = rotations.shape[0]
    zeros = rotations.new_zeros(batch, skeleton.NUM_TWISTS)
    globals_, _ = forward_kinematics(rotations, offsets, rotations.new_zeros(batch, 3), SMPL_TREE.to(rotations.device))
    bone = (globals_[:, 1:] @ bone_axes(offsets)[..., None])[..., 0]                  # (B, 23, 3)
    posed_side = (globals_[:, carriers.to(rotations.device)] @ rest_sides.to(rotations)[None, :, :, None])[..., 0]

    def across(vectors: torch.Tensor) -> torch.Tensor:
        return vectors - (vectors * bone).sum(-1, keepdim=True) * bone

    seen = torch.nn.functional.normalize(sides, dim=-1)
    seen_across, posed_across = across(seen), across(posed_side)
    turn = torch.atan2((bone * torch.cross(posed_across, seen_across, dim=-1)).sum(-1),
                       (posed_across * seen_across).sum(-1))
    sine = seen_across.norm(dim=-1)
    weight = side_confidence * ((sine - _MIN_SINE) / (1 - _MIN_SINE)).clamp(0, 1)
    posed = bone_twists(rotations, offsets)
    turn, weight = _shared_with_straight_parents(torch.where(weight > 0, turn, zeros), weight, bone)
    twist = wrap_angle(posed + turn)
    return torch.where(weight > 0, twist, zeros), weight


def _shared_with_straight_parents(turn: torch.Tensor, weight: torch.Tensor, bone: torch.Tensor
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Each :data:`HINGES` joint's turn split with its parent by how straight the hinge is.

    Args:
        turn: (B, 23) radians each twist should change by; weight: (B, 23) their weights;
            bone: (B, 23, 3) posed unit bone directions.
    Returns:
        (turn, weight), (B, 23) each, the parents' rows filled with their share where
        nothing observed the parent's own twist.
    """
    turn, weight = turn.clone(), weight.clone()
    for joint, parent in HINGES:
        j, p = skeleton.JOINT_NAMES.index(joint) - 1, skeleton.JOINT_NAMES.index(parent) - 1
        flexion = torch.cross(bone[:, j], bone[:, p], dim=-1).norm(dim=-1)
        share = ((_BENT_SINE - flexion) / (_BENT_SINE - _STRAIGHT_SINE)).clamp(0, 1)
        share = torch.where(weight[:, p] > 0, torch.zeros_like(share), share)
        turn[:, p] = torch.where(share > 0, share * turn[:, j], turn[:, p])
        weight[:, p] = torch.where(share > 0, share * weight[:, j], weight[:, p])
        turn[:, j] = (1 - share) * turn[:, j]
    return turn, weight

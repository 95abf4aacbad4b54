"""Finger IK: a hand's 15 finger rotations and its wrist's orientation from 21 keypoints.

The same damped Gauss-Newton layer as the body's (:mod:`.gauss_newton`), on one hand's
tree (:mod:`..skeleton.hands`: the wrist, its 15 finger joints, the 5 fingertips), with
bounds that keep every finger joint inside its range (:mod:`.joint_limits`): a knuckle
or finger joint never bends backwards past a few degrees, nor sideways past its spread.
A finger's turn about its own bone cannot be seen from points along it; a twist
target of zero holds it, as anatomy does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import roma
import torch

from ..skeleton import hands
from ..skeleton.kinematics import forward_kinematics, rest_offsets
from ..skeleton.tree import KinematicTree
from .gauss_newton import Problem, iterate
from .joint_limits import JointLimits
from .normal_equations import tree_layout
from .rotations import swing_between

#: Per finger joint (1..3 along the finger), flexion range in degrees: towards the palm
#: is positive. Hyperextension of a few degrees at the knuckle and the last joint is
#: normal; the middle joint does not extend past straight.
FLEXION_DEG: dict[int, tuple[float, float]] = {1: (-25.0, 95.0), 2: (-5.0, 115.0), 3: (-10.0, 95.0)}
#: The thumb's own ranges: its base (a saddle joint) moves widely both ways.
THUMB_FLEXION_DEG: dict[int, tuple[float, float]] = {1: (-60.0, 60.0), 2: (-30.0, 80.0), 3: (-30.0, 100.0)}
#: Sideways bend (about the palm's normal), degrees each way: fingers spread at the
#: knuckle only.
SPREAD_DEG: dict[int, float] = {1: 30.0, 2: 10.0, 3: 10.0}
PALM_KEYPOINTS = tuple(hands.HAND_KEYPOINT_NAMES.index(n) for n in ("wrist", "index1", "middle1", "ring1", "pinky1"))


@dataclass(frozen=True)
class HandIKResult:
    """Solved hands.

    Attributes:
        rotations: (B, 16, 3, 3): [:, 0] the wrist's global rotation (the hand's
            orientation in the targets' frame), [:, 1:] the finger joints' local
            rotations in SMPL-H's order (each relative to its parent, rest frame axes).
        translation: (B, 3) the wrist's position.
        residual: (B,) mean distance of the seen keypoints from their targets, metres.
        keypoints: (B, 21, 3) the solved hand's keypoints.
    """

    rotations: torch.Tensor
    translation: torch.Tensor
    residual: torch.Tensor
    keypoints: torch.Tensor


@lru_cache(maxsize=None)
def hand_tree(device: torch.device) -> KinematicTree:
    return KinematicTree.from_parents(hands.HAND_PARENTS, hands.HAND_NUM_JOINTS).to(device)


def palm_normal(rest: torch.Tensor, side: int) -> torch.Tensor:
    """(3,) unit normal out of the palm of a rest hand (21, 3), from its knuckles' plane."""
    across = torch.cross(rest[PALM_KEYPOINTS[1]] - rest[0], rest[PALM_KEYPOINTS[4]] - rest[0], dim=-1)
    # Index-to-pinky turns the other way round on the left hand, a mirror image.
    return torch.nn.functional.normalize(across if side == 1 else -across, dim=-1)


def finger_limits(rest: torch.Tensor, side: int, weight: float) -> JointLimits:
    """The range bounds of one hand's 15 finger joints for its rest pose (21, 3).

    Flexion turns about ``bone x palm normal`` (positive curls the finger towards the
    palm), the spread about the palm's normal; the thumb, which lies across the palm,
    gets flexion bounds only.
    """
    normal = palm_normal(rest, side)
    bones = torch.nn.functional.normalize(rest[list(hands.HAND_BONE_CHILD)] - rest[1:hands.HAND_NUM_JOINTS], dim=-1)
    joints, axes, low, high = [], [], [], []
    for j in range(1, hands.HAND_NUM_JOINTS):
        finger, k = divmod(j - 1, hands.JOINTS_PER_FINGER)
        k += 1
        thumb = hands.FINGERS[finger] == "thumb"
        flexion_range = (THUMB_FLEXION_DEG if thumb else FLEXION_DEG)[k]
        hinge = torch.nn.functional.normalize(torch.cross(bones[j - 1], normal, dim=-1), dim=-1)
        joints.append(j), axes.append(hinge), low.append(flexion_range[0]), high.append(flexion_range[1])
        if not thumb:
            joints.append(j), axes.append(normal), low.append(-SPREAD_DEG[k]), high.append(SPREAD_DEG[k])
    radians = torch.tensor([low, high], dtype=rest.dtype, device=rest.device) * (math.pi / 180.0)
    return JointLimits(torch.tensor(joints, device=rest.device), torch.stack(axes), radians[0], radians[1], weight)


def palm_fit(targets: torch.Tensor, rest: torch.Tensor,
             confidence: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The rigid motion taking a rest palm (the wrist and the four knuckles) onto each
    target hand's: the orientation the palm shows, and where its wrist is.

    Args:
        targets: (B, 21, 3) hands in the hand tree's order; rest: (21, 3) or (B, 21, 3)
            rest hands; confidence: (B, 21) keypoint weights, or None for equal ones.
    Returns:
        (B, 3, 3) rotations and (B, 3) wrist positions.
    """
    palm = list(PALM_KEYPOINTS)
    rest_palm = (rest[..., palm, :] - rest[..., :1, :]).expand(len(targets), -1, -1).to(targets.dtype)
    weights = None if confidence is None else confidence[:, palm].clamp(min=1e-6)
    return roma.rigid_points_registration(rest_palm, targets[:, palm], weights=weights)


def _offsets(rest: torch.Tensor, tree: KinematicTree) -> torch.Tensor:
    """(B, 21, 3) rest offsets with the root's at zero, so the translation is the wrist's position."""
    offsets = rest_offsets(rest, tree).clone()
    offsets[:, 0] = 0.0
    return offsets


def _start_pose(targets: torch.Tensor, confidence: torch.Tensor, offsets: torch.Tensor,
                tree: KinematicTree, limits: JointLimits, wrist_rotation: torch.Tensor | None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form start: the palm fitted rigidly, each finger bone swung onto its target
    and turned back into its range (noise can bend a straight finger backwards), knuckle
    to tip, so that each bone aims from where its parent really is.

    Args:
        targets: (B, 21, 3); confidence: (B, 21); offsets: (B, 21, 3);
        wrist_rotation: (B, 3, 3) the wrist's orientation where it is given, else None.
    Returns:
        (B, 16, 3, 3) rotations, (B, 3) wrist position.
    """
    batch = targets.shape[0]
    if wrist_rotation is None:
        # The knuckles hang off the wrist, whose offset is zero: the offsets are the rest palm about it.
        wrist_rotation, wrist = palm_fit(targets, offsets, confidence)
    else:
        wrist = targets[:, 0]
    rotations = torch.eye(3, dtype=targets.dtype, device=targets.device).repeat(batch, hands.HAND_NUM_JOINTS, 1, 1)
    rotations[:, 0] = wrist_rotation
    globals_, _ = forward_kinematics(rotations, offsets, wrist, tree)
    children = torch.tensor(hands.HAND_BONE_CHILD, device=targets.device)
    for _, _, js, _ in tree.levels:
        if len(js) == 0:
            continue
        parent_global = globals_[:, torch.tensor([hands.HAND_PARENTS[j] for j in js.tolist()], device=js.device)]
        rest_bone = (parent_global @ offsets[:, children[js - 1], :, None])[..., 0]
        seen = (confidence[:, children[js - 1]] > 0) & (confidence[:, js] > 0)
        wanted = torch.where(seen[..., None], targets[:, children[js - 1]] - targets[:, js], rest_bone)
        swing = swing_between(rest_bone, wanted)
        rotations[:, js] = parent_global.transpose(-1, -2) @ swing @ parent_global
        rotations = limits.project(rotations)
        globals_, _ = forward_kinematics(rotations, offsets, wrist, tree)
    return rotations, wrist


def solve_hand(
    targets: torch.Tensor,
    confidence: torch.Tensor,
    rest: torch.Tensor,
    side: int,
    *,
    iterations: int = 20,
    tolerance: float = 0.0,
    prior_weight: float = 1e-8,
    twist_weight: float = 1e-4,
    limit_weight: float = 1.0,
    damping: float = 1e-7,
    wrist_rotation: torch.Tensor | None = None,
    wrist_weight: float = 1.0,
    reference: torch.Tensor | None = None,
    reference_weight: float = 0.0,
) -> HandIKResult:
    """Solves one hand's wrist orientation and finger rotations for its 21 keypoints.

    Weights are in m^2 of keypoint error per rad^2, as the body's. The prior and the
    twist decide only what the keypoints leave open (a hand is about 20 cm long: they
    are a hundredth of the body's); a range bound is a wall (a degree past it costs
    about what 2 cm of keypoint error does), which holds even where the body's wrist,
    held, points the hand elsewhere than its landmarks do.

    Args:
        targets: (B, 21, 3) keypoints in the hand tree's order (skeleton.hands), metres.
        confidence: (B, 21) weights in [0, inf); 0 ignores a keypoint.
        rest: (B, 21, 3) or (21, 3) the body's rest hand (BodyModel.rest_hand_keypoints).
        side: 0 the left hand, 1 the right (which way the palm faces in the rest pose).
        iterations: Levenberg-Marquardt steps after the closed-form start.
        tolerance: stop before ``iterations`` once a step lowers the batch's summed
            objective by less than this fraction of it (0: every step, as training wants).
        wrist_rotation: (B, 3, 3) the wrist's global orientation to hold the hand at (the
            body's), pulled towards with ``wrist_weight``, its position the wrist target's;
            None: the hand's orientation and position are solved too.
        reference: (B, 15, 3, 3) finger rotations each frame is pulled towards with
            ``reference_weight`` (a temporal term: a first pass's, smoothed), or None.
    """
    batch = targets.shape[0]
    if targets.shape[1:] != (hands.NUM_HAND_KEYPOINTS, 3) or confidence.shape != targets.shape[:2]:
        raise ValueError(f"targets must be (B, 21, 3) and confidence (B, 21), got {tuple(targets.shape)} and "
                         f"{tuple(confidence.shape)}")
    rest = rest.to(targets.dtype).expand(batch, -1, -1)
    tree = hand_tree(targets.device)
    offsets = _offsets(rest, tree)
    limits = finger_limits(rest.mean(0), side, limit_weight).to(targets.device, targets.dtype)
    rotations, wrist = _start_pose(targets, confidence, offsets, tree, limits, wrist_rotation)
    pulls = torch.zeros(hands.HAND_NUM_JOINTS, dtype=targets.dtype, device=targets.device)
    if wrist_rotation is not None:
        pulls[0] = wrist_weight
    if reference is not None:
        pulls[1:] = reference_weight
    towards = torch.cat([rotations[:, :1], rotations[:, 1:] if reference is None else reference.to(targets.dtype)], 1)
    bone_axes = torch.nn.functional.normalize(offsets[:, list(hands.HAND_BONE_CHILD)], dim=-1)
    zeros = targets.new_zeros(batch, hands.HAND_NUM_JOINTS - 1)
    problem = Problem(
        targets=targets, weights=confidence, offsets=offsets, twist=zeros,
        twist_weights=zeros + twist_weight, twist_axes=bone_axes, prior_weight=prior_weight, damping=damping,
        tree=tree, layout=tree_layout(hands.HAND_PARENTS[:hands.HAND_NUM_JOINTS], targets.device),
        reference=towards if bool(pulls.any()) else None, reference_weight=pulls,
        limits=limits)
    rotations, wrist, _ = iterate(problem, rotations, wrist, None, iterations, tolerance)
    _, keypoints = forward_kinematics(rotations, offsets, wrist, tree)
    seen = (confidence > 0).to(targets.dtype)
    residual = ((keypoints - targets).norm(dim=-1) * seen).sum(-1) / seen.sum(-1).clamp(min=1)
    return HandIKResult(rotations, wrist, residual, keypoints)

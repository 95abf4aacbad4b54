"""Closed-form twist-and-swing initialisation of the IK (as HybrIK does)."""
from __future__ import annotations

import torch
import roma

from .. import skeleton
from ..skeleton.kinematics import forward_kinematics
from ..skeleton.tree import KinematicTree
from .rotations import swing_between, twist_rotation

_CHILDREN = {j: [c for c, p in enumerate(skeleton.KEYPOINT_PARENTS) if p == j] for j in skeleton.MULTI_CHILD_JOINTS}


def _aim_chains() -> torch.Tensor:
    """(24, L) for each joint, its bone child, that one's bone child, ... padded with -1."""
    chains = []
    for joint in range(skeleton.NUM_JOINTS):
        chain, k = [], skeleton.BONE_CHILD[joint]
        while True:
            chain.append(k)
            if k >= skeleton.NUM_JOINTS:
                break
            k = skeleton.BONE_CHILD[k]
        chains.append(chain)
    length = max(map(len, chains))
    return torch.tensor([c + [-1] * (length - len(c)) for c in chains])


_AIM_CHAINS = _aim_chains()


def _scale(points: torch.Tensor) -> torch.Tensor:
    """(B, P, 3) -> (B, 1, 1) RMS size of a point set.

    Registration is scale-invariant, but roma damps its SVD gradients at singular
    values near 1e-5; body parts measured in metres come too close to that.
    """
    return points.square().sum(-1).mean(-1).sqrt()[:, None, None]


def _fit_children(rest: torch.Tensor, observed: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Rotation best taking rest child offsets onto observed ones (weighted Kabsch).

    Args:
        rest: (B, C, 3) rest offsets; observed: (B, C, 3); weights: (B, C).
    Returns:
        (B, 3, 3); identity where fewer than two children are observed.
    """
    enough = (weights > 0).sum(-1) >= 2
    safe = torch.where(enough[:, None], weights, torch.ones_like(weights))
    scale = _scale(rest)
    rotation = roma.rigid_vectors_registration(rest / scale, observed / scale, weights=safe)
    eye = torch.eye(3, dtype=rest.dtype, device=rest.device).expand_as(rotation)
    return torch.where(enough[:, None, None], rotation, eye)


def _fit_rigid(rest: torch.Tensor, observed: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid motion best taking rest points onto observed ones (weighted Kabsch).

    Args:
        rest: (B, P, 3); observed: (B, P, 3); weights: (B, P).
    Returns:
        rotation (B, 3, 3), translation (B, 3); identity rotation and the weighted
        centroid offset where fewer than three points are observed.
    """
    enough = (weights > 0).sum(-1) >= 3
    safe = torch.where(enough[:, None], weights, torch.ones_like(weights))
    scale = _scale(rest)
    rotation, translation = roma.rigid_points_registration(rest / scale, observed / scale, weights=safe)
    translation = translation * scale[:, 0]
    eye = torch.eye(3, dtype=rest.dtype, device=rest.device).expand_as(rotation)
    share = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    centroid_shift = (share[..., None] * (observed - rest)).sum(1)
    return (torch.where(enough[:, None, None], rotation, eye),
            torch.where(enough[:, None], translation, centroid_shift))


def _aim_points(targets: torch.Tensor, confidence: torch.Tensor, joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each joint's bone should point: its child, or the nearest observed keypoint further down.

    Aiming past a hidden joint (at the hand when the wrist is hidden) keeps the
    start away from the straight-limb pose, where Gauss-Newton cannot bend a limb.

    Returns:
        points: (B, n, 3); found: (B, n) bool.
    """
    chains = _AIM_CHAINS.to(targets.device)[joints]                                  # (n, L)
    seen = (chains >= 0) & (confidence[:, chains.clamp(min=0)] > 0)                   # (B, n, L)
    first = (seen.cumsum(-1) == 0).sum(-1).clamp(max=chains.shape[-1] - 1)             # (B, n)
    chosen = chains[torch.arange(len(joints), device=targets.device), first].clamp(min=0)  # (B, n)
    return torch.gather(targets, 1, chosen[..., None].expand(-1, -1, 3)), seen.any(-1)


def closed_form_pose(
    targets: torch.Tensor,
    confidence: torch.Tensor,
    offsets: torch.Tensor,
    twist: torch.Tensor,
    twist_confidence: torch.Tensor,
    tree: KinematicTree,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local rotations from keypoint directions, walking the tree from the root.

    Each joint with one child gets the minimal swing taking its rest bone onto the
    direction from the joint (as placed by its solved ancestors) to its observed child,
    then the given twist about that bone; pelvis and Spine3, with several children,
    get a weighted Kabsch fit. Bones with nothing observed below keep their rest
    orientation, which the prior also prefers.

    Args:
        targets: (B, K, 3) keypoint positions; confidence: (B, K).
        offsets: (B, K, 3) rest offsets (see kinematics.rest_offsets).
        twist: (B, 23) twist angles of joints 1..23; twist_confidence: (B, 23).
    Returns:
        rotations: (B, 24, 3, 3); translation: (B, 3), least-squares given the rotations.
    """
    batch = targets.shape[0]
    twist_all = torch.cat([twist.new_zeros(batch, 1), twist * (twist_confidence > 0)], dim=1)
    globals_: list[torch.Tensor | None] = [None] * tree.num_joints
    local: list[torch.Tensor | None] = [None] * tree.num_joints
    places: list[torch.Tensor | None] = [None] * tree.num_joints

    # The pelvis as a rigid body: its own point and its children's, so a hidden
    # pelvis joint is placed by its hips and spine.
    points = [0] + _CHILDREN[0]
    rest = torch.cat([torch.zeros_like(offsets[:, :1]), offsets[:, _CHILDREN[0]]], dim=1)
    local[0], places[0] = _fit_rigid(rest, targets[:, points], confidence[:, points])
    globals_[0] = local[0]

    for _, _, joints, parents in tree.levels:
        if joints.numel() == 0:
            continue
        parent_list = parents.tolist()
        parent_globals = torch.stack([globals_[p] for p in parent_list], dim=1)           # (B, n, 3, 3)
        parent_places = torch.stack([places[p] for p in parent_list], dim=1)              # (B, n, 3)
        joint_places = parent_places + (parent_globals @ offsets[:, joints, :, None])[..., 0]
        aim, found = _aim_points(targets, confidence, joints)
        aim_local = (parent_globals.transpose(-1, -2) @ (aim - joint_places)[..., None])[..., 0]
        rest_bone = offsets[:, torch.tensor(skeleton.BONE_CHILD, device=targets.device)[joints]]
        swing = swing_between(rest_bone, torch.where(found[..., None], aim_local, rest_bone))
        axis = torch.nn.functional.normalize(rest_bone, dim=-1)
        rotations = swing @ twist_rotation(axis, twist_all[:, joints])
        for i, j in enumerate(joints.tolist()):
            if j in _CHILDREN:
                kids = _CHILDREN[j]
                vectors = (parent_globals[:, i, None].transpose(-1, -2)
                           @ (targets[:, kids] - joint_places[:, i, None])[..., None])[..., 0]
                local[j] = _fit_children(offsets[:, kids], vectors, confidence[:, kids])
            else:
                local[j] = rotations[:, i]
            globals_[j] = parent_globals[:, i] @ local[j]
            places[j] = joint_places[:, i]

    rotations = torch.stack(local, dim=1)
    _, positions = forward_kinematics(rotations, offsets, targets.new_zeros(batch, 3), tree)
    weight = confidence / confidence.sum(-1, keepdim=True).clamp(min=1e-12)
    translation = (weight[..., None] * (targets - positions)).sum(1)
    return rotations, translation

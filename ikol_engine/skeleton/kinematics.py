"""Batched forward kinematics of the SMPL tree (joints and leaf keypoints)."""
from __future__ import annotations

import torch

from .tree import KinematicTree


def rest_offsets(rest_keypoints: torch.Tensor, tree: KinematicTree) -> torch.Tensor:
    """Offsets of each keypoint from its parent in the rest pose.

    Args:
        rest_keypoints: (B, K, 3) rest positions.
    Returns:
        (B, K, 3); row 0 (the root) is the root's rest position itself.
    """
    parents = torch.tensor(tree.parents, device=rest_keypoints.device).clamp(min=0)
    offsets = rest_keypoints - rest_keypoints[:, parents]
    return torch.cat([rest_keypoints[:, :1], offsets[:, 1:]], dim=1)


def forward_kinematics(
    rotations: torch.Tensor,
    offsets: torch.Tensor,
    translation: torch.Tensor,
    tree: KinematicTree,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local joint rotations to global rotations and keypoint positions.

    Follows smplx's convention: the root sits at its rest position plus ``translation``
    and joint ``j`` rotates its children about itself, ``G_j = G_parent(j) R_j``.

    Args:
        rotations: (B, J, 3, 3) local rotation matrices.
        offsets: (B, K, 3) rest offsets from :func:`rest_offsets`.
        translation: (B, 3) root translation.
    Returns:
        globals: (B, J, 3, 3) global rotations; keypoints: (B, K, 3) positions.
    """
    batch = rotations.shape[0]
    globals_ = rotations.new_empty(batch, tree.num_joints, 3, 3)
    positions = offsets.new_empty(batch, tree.num_keypoints, 3)
    globals_[:, 0] = rotations[:, 0]
    positions[:, 0] = offsets[:, 0] + translation
    # Depth by depth, so each step is one batched product over all joints at that depth.
    for ks, ps, js, jps in tree.levels:
        positions[:, ks] = positions[:, ps] + (globals_[:, ps] @ offsets[:, ks, :, None])[..., 0]
        globals_[:, js] = globals_[:, jps] @ rotations[:, js]
    return globals_, positions

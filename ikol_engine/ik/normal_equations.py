"""Gauss-Newton normal equations of the keypoint term, assembled from subtree moments.

With right increments ``R_a <- R_a exp(delta_a)``, keypoint ``k`` below joint ``a``
moves by ``(G_a delta_a) x (p_k - p_a)``. Every entry of ``J^T W J`` and ``J^T W r``
is then a sum over the keypoints below a joint of ``w``, ``w p``, ``w p p^T``,
``w r`` and ``w p x r``, so those five subtree sums (one small matrix product each)
replace the dense (3K x 3J) Jacobian.
"""
from __future__ import annotations

import torch

from ..tree import KinematicTree


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def keypoint_normal_equations(
    globals_: torch.Tensor,
    positions: torch.Tensor,
    residual: torch.Tensor,
    weights: torch.Tensor,
    tree: KinematicTree,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``J^T W J`` and ``J^T W r`` for the weighted keypoint residual.

    Args:
        globals_: (B, J, 3, 3) global rotations; positions: (B, K, 3) keypoints.
        residual: (B, K, 3) keypoints minus targets; weights: (B, K).
    Returns:
        normal: (B, 3J+3, 3J+3); gradient: (B, 3J+3). Unknowns are joint-major
        rotation increments, then the root translation.
    """
    batch, num_j = globals_.shape[:2]
    n = 3 * num_j + 3
    # Every term is translation-invariant; centring on the root keeps the float32
    # moments small so their differences do not cancel.
    positions = positions - positions[:, :1]
    w = weights[..., None]
    wp = w * positions
    moves = tree.moves.to(positions.dtype)
    # Subtree sums over the keypoints each joint moves.
    m0 = moves @ weights[..., None]                                     # (B, J, 1)
    m1 = moves @ wp                                                     # (B, J, 3)
    m2 = (moves @ (wp[..., :, None] * positions[..., None, :]).flatten(-2)).unflatten(-1, (3, 3))
    s = moves @ (w * residual)                                          # (B, J, 3)
    c = moves @ torch.cross(wp, residual, dim=-1)                       # (B, J, 3)
    joints = positions[:, :num_j]

    # Block (a, b), a above b: sum over k below b of w (p_k - p_a)(p_k - p_b)^T = q,
    # and [x]x^T [y]x summed is tr(q) I - q^T.
    a, b = tree.pair_upper, tree.pair_lower
    pa, pb = joints[:, a], joints[:, b]
    q = (m2[:, b] - m1[:, b, :, None] * pb[..., None, :] - pa[..., :, None] * m1[:, b, None, :]
         + m0[:, b, :, None] * pa[..., :, None] * pb[..., None, :])
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    inner = q.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] * eye - q.transpose(-1, -2)
    blocks = globals_[:, a].transpose(-1, -2) @ inner @ globals_[:, b]            # (B, P, 3, 3)
    translation_blocks = globals_.transpose(-1, -2) @ _skew(m1 - m0 * joints)     # (B, J, 3, 3)

    normal = positions.new_zeros(batch, num_j + 1, 3, num_j + 1, 3)
    normal[:, a, :, b, :] = blocks.transpose(0, 1)
    normal[:, b, :, a, :] = blocks.transpose(-1, -2).transpose(0, 1)
    normal[:, :num_j, :, num_j, :] = translation_blocks
    normal[:, num_j, :, :num_j, :] = translation_blocks.permute(0, 3, 1, 2)
    normal[:, num_j, :, num_j, :] = weights.sum(-1)[:, None, None] * eye
    gradient_joints = (globals_.transpose(-1, -2) @ (c - torch.cross(joints, s, dim=-1))[..., None])[..., 0]
    gradient = torch.cat([gradient_joints.flatten(1), (w * residual).sum(1)], dim=1)
    return normal.reshape(batch, n, n), gradient

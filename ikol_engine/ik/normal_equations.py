"""Gauss-Newton normal equations of the keypoint term, assembled from subtree moments.

Increments are taken in the world frame, ``G_a <- exp(delta_a) G_a`` for joint ``a``'s
global rotation, so keypoint ``k`` below ``a`` moves by ``delta_a x (p_k - p_a)`` and no
block needs turning into a joint's own frame (that took a third of the assembly time);
the solver maps steps back to local rotations. Every entry of ``J^T W J`` and ``J^T W r``
is then a sum over the keypoints below a joint of ``w``, ``w p``, ``w p p^T``,
``w r`` and ``w p x r``, so those five subtree sums (one small matrix product each)
replace the dense (3K x 3J) Jacobian. The result comes as the 3x3 blocks of a
:class:`BlockPattern` over the joints plus one node for the root translation, which
moves every keypoint and so sits above the root like an extra ancestor.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .. import skeleton
from ..skeleton.tree import KinematicTree
from .block_cholesky import BlockPattern



@dataclass(frozen=True)
class NormalLayout:
    """Where the three kinds of block sit in the pattern.

    Attributes:
        joint_pairs: (Pj,) block ids of (a, b), both joints; upper, lower: (Pj,) a and b.
        translation_pairs: (J,) block ids of (translation, j) for j = 0..J-1.
        translation_diagonal: block id of (translation, translation).
    """

    pattern: BlockPattern
    joint_pairs: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor
    translation_pairs: torch.Tensor
    translation_diagonal: int


@lru_cache(maxsize=None)
def tree_layout(parents: tuple[int, ...], device: torch.device) -> NormalLayout:
    """The layout of a tree of ``len(parents)`` joints plus the root translation's node."""
    translation = len(parents)
    pattern = BlockPattern.from_parents(tuple(translation if p < 0 else p for p in parents) + (-1,))
    joint = (pattern.upper < translation).nonzero()[:, 0]
    by_lower = {int(pattern.lower[i]): i for i in (pattern.upper == translation).nonzero()[:, 0].tolist()}
    layout = NormalLayout(pattern, joint, pattern.upper[joint], pattern.lower[joint],
                          torch.tensor([by_lower[j] for j in range(translation)]), by_lower[translation])
    return NormalLayout(pattern.to(device), *(x.to(device) for x in (layout.joint_pairs, layout.upper, layout.lower,
                                                                      layout.translation_pairs)),
                        layout.translation_diagonal)


def smpl_layout(device: torch.device) -> NormalLayout:
    return tree_layout(skeleton.PARENTS, device)


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def keypoint_normal_equations(
    positions: torch.Tensor,
    residual: torch.Tensor,
    weights: torch.Tensor,
    tree: KinematicTree,
    layout: NormalLayout,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``J^T W J`` and ``J^T W r`` for the weighted keypoint residual, world-frame increments.

    Args:
        positions: (B, K, 3) keypoints, the first J of them the joints.
        residual: (B, K, 3) keypoints minus targets; weights: (B, K).
    Returns:
        blocks: (B, P, 3, 3) of ``J^T W J`` in ``layout.pattern``; gradient: (B, J+1, 3),
        node-major (joint rotation increments, then the root translation).
    """
    batch, num_j = positions.shape[0], tree.num_joints
    # Every term is translation-invariant; centring on the root keeps the float32
    # moments small so their differences do not cancel.
    positions = positions - positions[:, :1]
    w = weights[..., None]
    wp = w * positions
    # Subtree sums over the keypoints each joint moves, as one (J x K) @ (K x B*19) product.
    per_keypoint = torch.cat([w, wp, (wp[..., :, None] * positions[..., None, :]).flatten(-2), w * residual,
                              torch.cross(wp, residual, dim=-1)], dim=-1)             # (B, K, 19)
    sums = tree.moves.to(positions.dtype) @ per_keypoint.transpose(0, 1).reshape(positions.shape[1], -1)
    m0, m1, m2, s, c = sums.view(num_j, batch, 19).transpose(0, 1).split([1, 3, 9, 3, 3], dim=-1)
    m2 = m2.unflatten(-1, (3, 3))
    joints = positions[:, :num_j]

    # Block (a, b), a above b: with x = p_k - p_a, y = p_k - p_b summed over k below b,
    # sum w [x]x^T [y]x = tr(q) I - q^T where q = sum w x y^T = Q_b - p_a u_b^T.
    q_own = m2 - m1[..., :, None] * joints[..., None, :]               # Q_b (B, J, 3, 3)
    u = m1 - m0 * joints                                                # u_b (B, J, 3)
    a, b = layout.upper, layout.lower
    pa, ub = joints[:, a], u[:, b]
    trace = q_own.diagonal(dim1=-2, dim2=-1).sum(-1)[:, b] - (pa * ub).sum(-1)
    eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
    inner = trace[..., None, None] * eye - q_own[:, b].transpose(-1, -2) + ub[..., :, None] * pa[..., None, :]
    blocks = positions.new_empty(batch, layout.pattern.num_blocks, 3, 3)
    blocks[:, layout.joint_pairs] = inner
    # Translation rows: sum over k below j of w [p_k - p_j]x.
    blocks[:, layout.translation_pairs] = _skew(u).transpose(-1, -2)
    blocks[:, layout.translation_diagonal] = weights.sum(-1)[:, None, None] * eye
    gradient_joints = c - torch.cross(joints, s, dim=-1)
    return blocks, torch.cat([gradient_joints, (w * residual).sum(1, keepdim=True)], dim=1)

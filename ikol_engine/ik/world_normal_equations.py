"""Normal equations of keypoint residuals with a full 3x3 weight, and the camera layout.

The metric keypoint term weighs each keypoint's 3D error equally in every direction.
Residuals that live in the world but see only some directions (a pixel sees the two
directions across its viewing ray, a floor only its normal) linearise, per keypoint, to
``r_k ~ r_k + A_k dp_k``; Gauss-Newton needs only ``M_k = A_k^T W_k A_k`` (3x3) and
``g_k = A_k^T W_k r_k`` (3,) of each, the keypoint's *information* in world space.
With world-frame increments (``dp_k = delta_a x (p_k - p_a)`` for joint ``a`` above
``k``), every block of ``J^T W J`` is again a sum over the keypoints below a joint, now of
``M``, ``M [p]x`` and ``[p]x M [p]x`` (see :func:`world_normal_equations`).

The camera layout adds two translation-like nodes above the root: ``t``, the root
translation the world terms (pixels, foot locks, floor) see, and ``o``, the free offset
the metric keypoint term sees instead. Metric keypoints from a monocular regressor come
about the person's own origin, so only their shape (bone directions, relative depth)
enters; where the person is comes from the pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .. import skeleton
from ..skeleton.tree import KinematicTree
from .block_cholesky import BlockPattern
from .normal_equations import NormalLayout, _skew, smpl_layout

TRANSLATION_NODE = skeleton.NUM_JOINTS
OFFSET_NODE = skeleton.NUM_JOINTS + 1


@dataclass(frozen=True)
class CameraLayout:
    """Blocks of the camera problem's pattern: joints, then ``t``, then ``o``.

    Attributes:
        joint_pairs: (Pj,) block ids of joint pairs, in the order of ``smpl_layout``'s
            ``joint_pairs`` (so its blocks copy over); upper, lower: (Pj,) the joints.
        translation_pairs, offset_pairs: (J,) block ids of (t, j) and (o, j).
        translation_diagonal, offset_diagonal, offset_translation: ids of (t, t), (o, o), (o, t).
    """

    pattern: BlockPattern
    joint_pairs: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor
    translation_pairs: torch.Tensor
    offset_pairs: torch.Tensor
    translation_diagonal: int
    offset_diagonal: int
    offset_translation: int


@lru_cache(maxsize=None)
def camera_layout(device: torch.device) -> CameraLayout:
    parents = tuple(TRANSLATION_NODE if p < 0 else p for p in skeleton.PARENTS) + (OFFSET_NODE, -1)
    pattern = BlockPattern.from_parents(parents)
    block = {(int(a), int(b)): i for i, (a, b) in enumerate(zip(pattern.upper.tolist(), pattern.lower.tolist()))}
    plain = smpl_layout(torch.device("cpu"))
    ids = lambda pairs: torch.tensor([block[p] for p in pairs], device=device)  # noqa: E731
    return CameraLayout(
        pattern=pattern.to(device),
        joint_pairs=ids(zip(plain.upper.tolist(), plain.lower.tolist())),
        upper=plain.upper.to(device), lower=plain.lower.to(device),
        translation_pairs=ids((TRANSLATION_NODE, j) for j in range(TRANSLATION_NODE)),
        offset_pairs=ids((OFFSET_NODE, j) for j in range(TRANSLATION_NODE)),
        translation_diagonal=block[(TRANSLATION_NODE, TRANSLATION_NODE)],
        offset_diagonal=block[(OFFSET_NODE, OFFSET_NODE)],
        offset_translation=block[(OFFSET_NODE, TRANSLATION_NODE)])


def world_normal_equations(
    positions: torch.Tensor,
    information: torch.Tensor,
    gradient: torch.Tensor,
    tree: KinematicTree,
    layout: NormalLayout,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``J^T W J`` and ``J^T W r`` for keypoint residuals given by their world-space information.

    Args:
        positions: (B, K, 3) keypoints, the first J of them the joints.
        information: (B, K, 3, 3) symmetric ``M_k``; gradient: (B, K, 3) ``g_k``.
    Returns:
        blocks: (B, P, 3, 3) in ``layout.pattern`` (a plain :func:`smpl_layout`, the
        translation being the root's parent); gradient: (B, J+1, 3), node-major.
    """
    batch, num_k, num_j = positions.shape[0], positions.shape[1], tree.num_joints
    positions = positions - positions[:, :1]  # translation-invariant terms: small float32 moments
    skew = _skew(positions)
    m_skew = information @ skew
    per_keypoint = torch.cat([information.flatten(-2), m_skew.flatten(-2), (skew @ m_skew).flatten(-2), gradient,
                              torch.cross(positions, gradient, dim=-1)], dim=-1)              # (B, K, 33)
    sums = tree.moves.to(positions.dtype) @ per_keypoint.transpose(0, 1).reshape(num_k, -1)
    s0, s1, s2, g, c = sums.view(num_j, batch, 33).transpose(0, 1).split([9, 9, 9, 3, 3], dim=-1)
    s0, s1, s2 = (s.unflatten(-1, (3, 3)) for s in (s0, s1, s2))
    joints = skew[:, :num_j]

    # Block (a, b), a above b, keypoints k below b: J_ka = -[p_k - p_a]x, so the block is
    # -sum [p_k - p_a]x M_k [p_k - p_b]x, expanded into the subtree sums S0, S1, S2.
    a, b = layout.upper, layout.lower
    sa, sb = joints[:, a], joints[:, b]
    s0b, s1b = s0[:, b], s1[:, b]
    inner = -s2[:, b] + sa @ s1b - s1b.transpose(-1, -2) @ sb - sa @ s0b @ sb
    blocks = positions.new_zeros(batch, layout.pattern.num_blocks, 3, 3)
    blocks[:, layout.joint_pairs] = inner
    blocks[:, layout.translation_pairs] = s0 @ joints - s1
    blocks[:, layout.translation_diagonal] = information.sum(1)
    gradient_joints = c - torch.cross(positions[:, :num_j], g, dim=-1)
    return blocks, torch.cat([gradient_joints, gradient.sum(1, keepdim=True)], dim=1)


def camera_blocks(metric: tuple[torch.Tensor, torch.Tensor], world: tuple[torch.Tensor, torch.Tensor],
                  plain: NormalLayout, layout: CameraLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Joins the metric term (seeing the offset ``o``) and the world terms (seeing ``t``).

    Args:
        metric, world: (blocks (B, P, 3, 3), gradient (B, J+1, 3)) in the ``plain`` layout.
    Returns:
        blocks: (B, P', 3, 3) in ``layout.pattern``; gradient: (B, J+2, 3) (joints, t, o).
    """
    (metric_blocks, metric_gradient), (world_blocks, world_gradient) = metric, world
    batch = metric_blocks.shape[0]
    blocks = metric_blocks.new_zeros(batch, layout.pattern.num_blocks, 3, 3)
    blocks[:, layout.joint_pairs] = metric_blocks[:, plain.joint_pairs] + world_blocks[:, plain.joint_pairs]
    blocks[:, layout.translation_pairs] = world_blocks[:, plain.translation_pairs]
    blocks[:, layout.translation_diagonal] = world_blocks[:, plain.translation_diagonal]
    blocks[:, layout.offset_pairs] = metric_blocks[:, plain.translation_pairs]
    blocks[:, layout.offset_diagonal] = metric_blocks[:, plain.translation_diagonal]
    num_j = plain.translation_pairs.shape[0]
    gradient = torch.cat([metric_gradient[:, :num_j] + world_gradient[:, :num_j], world_gradient[:, num_j:],
                          metric_gradient[:, num_j:]], dim=1)
    return blocks, gradient

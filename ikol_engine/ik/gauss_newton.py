"""Damped Gauss-Newton (Levenberg-Marquardt) steps of the IK objective.

Objective, per frame (all terms squared):
  keypoints  sum_k w_k |FK_k(R, t) - x_k|^2                 metres
  twist      sum_j u_j wrap(twist_j(R_j) - phi_j)^2          radians, joints 1..23
  prior      lambda_p sum_j |log R_j|^2                      radians, joints 1..23
Unknowns: right increments of the 24 local rotations and the root translation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import roma

from ..kinematics import forward_kinematics
from ..tree import KinematicTree
from .normal_equations import keypoint_normal_equations
from .rotations import twist_angle, wrap_angle

# Per-frame damping grows this much after a step that made things worse and shrinks
# back after one that helped (never below the configured damping).
_REJECT_GROWTH = 10.0
_ACCEPT_SHRINK = 0.3


@dataclass(frozen=True)
class Problem:
    """One batch of IK problems (tensors on one device and dtype).

    Attributes:
        targets: (B, K, 3); weights: (B, K) keypoint weights (0 = ignore).
        offsets: (B, K, 3) rest offsets for the frame's shape.
        twist: (B, 23) target twist angles; twist_weights: (B, 23) (0 = free).
        twist_axes: (B, 23, 3) unit rest bone axes of joints 1..23.
    """

    targets: torch.Tensor
    weights: torch.Tensor
    offsets: torch.Tensor
    twist: torch.Tensor
    twist_weights: torch.Tensor
    twist_axes: torch.Tensor
    prior_weight: float
    damping: float
    tree: KinematicTree


@dataclass(frozen=True)
class State:
    """A pose with its objective and normal equations.

    Attributes:
        rotations: (B, 24, 3, 3); translation: (B, 3); cost: (B,)
        normal: (B, 75, 75) J^T W J (+ twist and prior); gradient: (B, 75).
        damping: (B,) the damping the next step from here will use.
    """

    rotations: torch.Tensor
    translation: torch.Tensor
    cost: torch.Tensor
    normal: torch.Tensor
    gradient: torch.Tensor
    damping: torch.Tensor


def _block_diagonal(blocks: torch.Tensor) -> torch.Tensor:
    """(B, N, 3, 3) blocks -> (B, 3N, 3N) block-diagonal matrix."""
    n = blocks.shape[1]
    eye = torch.eye(n, dtype=blocks.dtype, device=blocks.device)
    return torch.einsum("bnxy,nm->bnxmy", blocks, eye).reshape(blocks.shape[0], 3 * n, 3 * n)


def linearize(rotations: torch.Tensor, translation: torch.Tensor, damping: torch.Tensor, problem: Problem) -> State:
    """Objective and Gauss-Newton normal equations at a pose.

    Args:
        rotations: (B, 24, 3, 3) local rotations; translation: (B, 3); damping: (B,).
    """
    p = problem
    batch = rotations.shape[0]
    globals_, positions = forward_kinematics(rotations, p.offsets, translation, p.tree)
    residual = positions - p.targets
    normal, gradient = keypoint_normal_equations(globals_, positions, residual, p.weights, p.tree)

    # Twist and prior act on one joint each: rank-1 and scaled-identity diagonal blocks.
    angle, d_angle = twist_angle(rotations[:, 1:], p.twist_axes)
    twist_error = wrap_angle(angle - p.twist)
    rotvec = roma.rotmat_to_rotvec(rotations[:, 1:])
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    blocks = p.twist_weights[..., None, None] * d_angle[..., :, None] * d_angle[..., None, :] + p.prior_weight * eye
    blocks = torch.cat([blocks.new_zeros(batch, 1, 3, 3), blocks], dim=1)
    block_gradient = p.twist_weights[..., None] * twist_error[..., None] * d_angle + p.prior_weight * rotvec
    normal = normal + torch.nn.functional.pad(_block_diagonal(blocks), (0, 3, 0, 3))
    gradient = gradient + torch.nn.functional.pad(
        torch.cat([block_gradient.new_zeros(batch, 3), block_gradient.reshape(batch, -1)], dim=1), (0, 3))
    cost = ((p.weights * residual.square().sum(-1)).sum(-1) + (p.twist_weights * twist_error.square()).sum(-1)
            + p.prior_weight * rotvec.square().sum((-1, -2)))
    return State(rotations, translation, cost, normal, gradient, damping)


def levenberg_marquardt_step(state: State, problem: Problem) -> State:
    """One damped step, kept per frame only where it lowers the objective.

    A frame whose step made things worse keeps its pose and retries next time with
    more damping (shorter, more gradient-like steps); frames are independent.
    """
    batch, num_j = state.rotations.shape[:2]
    dofs = state.normal.shape[-1]
    eye = torch.eye(dofs, dtype=state.normal.dtype, device=state.normal.device)
    factor, _ = torch.linalg.cholesky_ex(state.normal + state.damping[:, None, None] * eye)
    step = -torch.cholesky_solve(state.gradient[..., None], factor)[..., 0]
    rotations = state.rotations @ roma.rotvec_to_rotmat(step[:, : 3 * num_j].reshape(batch, num_j, 3))
    candidate = linearize(rotations, state.translation + step[:, 3 * num_j:], state.damping, problem)

    better = candidate.cost <= state.cost
    damping = torch.where(better, (state.damping * _ACCEPT_SHRINK).clamp(min=problem.damping),
                          state.damping * _REJECT_GROWTH)

    def pick(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return torch.where(better.view(-1, *([1] * (new.ndim - 1))), new, old)

    return State(pick(candidate.rotations, state.rotations), pick(candidate.translation, state.translation),
                 pick(candidate.cost, state.cost), pick(candidate.normal, state.normal),
                 pick(candidate.gradient, state.gradient), damping)

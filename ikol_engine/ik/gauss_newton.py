"""Damped Gauss-Newton (Levenberg-Marquardt) steps of the IK objective.

Objective, per frame (all terms squared):
  keypoints  sum_k w_k |FK_k(R, t) - x_k|^2                 metres
  twist      sum_j u_j wrap(twist_j(R_j) - phi_j)^2          radians, joints 1..23
  prior      lambda_p sum_j |log R_j|^2                      radians, joints 1..23
  reference  lambda_r sum_j |log(Ref_j^T R_j)|^2             radians, joints 0..23 (optional:
             a temporal term pulling each frame towards its smoothed neighbours)
  limits     lambda_l sum_l excess_l(R)^2                    radians beyond a joint's range
             (optional: :mod:`.joint_limits`)
Unknowns: increments of the 24 global rotations in the world frame,
``G_j <- exp(delta_j) G_j`` (see :mod:`.normal_equations`), and the root translation. Each
step is mapped back to the local rotation it is: ``R_j <- R_j exp(G_j^T delta_j)``.

With world terms (pixels through a camera, foot locks, a floor: :mod:`.world_terms`)
the keypoint term sees the body at a free offset ``o`` instead of the translation ``t``,
which the world terms place (:mod:`.world_normal_equations`): 3 more unknowns per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import roma

from ..skeleton.kinematics import forward_kinematics
from ..skeleton.tree import KinematicTree
from .block_cholesky import BlockPattern, solve_blocks
from .joint_limits import JointLimits
from .normal_equations import NormalLayout, keypoint_normal_equations
from .rotations import twist_angle, wrap_angle
from .world_normal_equations import CameraLayout, camera_blocks, world_normal_equations
from .world_terms import WorldTerms, world_information

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
        J joints: 24 for SMPL's tree, 16 for a hand's (:mod:`..skeleton.hands`).
        twist: (B, J-1) target twist angles; twist_weights: (B, J-1) (0 = free).
        twist_axes: (B, J-1, 3) unit rest bone axes of joints 1..J-1.
        reference: (B, J, 3, 3) rotations the reference term pulls towards, or None;
            reference_weight: one weight for every joint, or (J,) one each.
        world: the pixel, foot and floor terms, or None; camera_layout: the pattern
            with the offset node, or None: the world terms then see the keypoints
            where the keypoint term does (targets placed in the world).
        limits: bounds on joint turns (:mod:`.joint_limits`), or None.
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
    layout: NormalLayout
    reference: torch.Tensor | None = None
    reference_weight: float | torch.Tensor = 0.0
    world: WorldTerms | None = None
    camera_layout: CameraLayout | None = None
    limits: JointLimits | None = None

    @property
    def has_offset(self) -> bool:
        """Whether the keypoint term sees its own offset (given a layout for it)."""
        return self.world is not None and self.camera_layout is not None

    @property
    def pattern(self) -> BlockPattern:
        return self.camera_layout.pattern if self.has_offset else self.layout.pattern


@dataclass(frozen=True)
class State:
    """A pose with its objective and normal equations.

    Attributes:
        rotations: (B, 24, 3, 3); translation: (B, 3); cost: (B,)
        globals_: (B, 24, 3, 3) global rotations, the frames the increments live in;
        normal: (B, P, 3, 3) blocks of J^T W J (+ twist and prior), see NormalLayout;
        gradient: (B, 25, 3) node-major (24 joints, then the translation; then the
        offset with a camera: (B, 26, 3)).
        damping: (B,) the damping the next step from here will use.
        offset: (B, 3) where the keypoint term sees the root, with a camera; else None.
    """

    rotations: torch.Tensor
    translation: torch.Tensor
    cost: torch.Tensor
    globals_: torch.Tensor
    normal: torch.Tensor
    gradient: torch.Tensor
    damping: torch.Tensor
    offset: torch.Tensor | None = None


def linearize(rotations: torch.Tensor, translation: torch.Tensor, damping: torch.Tensor, problem: Problem,
              offset: torch.Tensor | None = None) -> State:
    """Objective and Gauss-Newton normal equations at a pose.

    Args:
        rotations: (B, 24, 3, 3) local rotations; translation: (B, 3); damping: (B,);
        offset: (B, 3), needed with a camera.
    """
    p = problem
    globals_, positions = forward_kinematics(rotations, p.offsets, translation, p.tree)
    if p.world is None:
        residual = positions - p.targets
        normal, gradient = keypoint_normal_equations(positions, residual, p.weights, p.tree, p.layout)
        keypoint_cost = (p.weights * residual.square().sum(-1)).sum(-1)
    else:
        seen = positions + (offset - translation)[:, None] if p.has_offset else positions
        residual = seen - p.targets
        information, world_gradient, world_cost = world_information(positions, p.world)
        if p.has_offset:
            metric = keypoint_normal_equations(seen, residual, p.weights, p.tree, p.layout)
            world = world_normal_equations(positions, information, world_gradient, p.tree, p.layout)
            normal, gradient = camera_blocks(metric, world, p.layout, p.camera_layout)
        else:
            # Both terms see the same keypoints: one assembly of their summed information
            # (the metric term's is w I).
            eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
            normal, gradient = world_normal_equations(
                positions, information + p.weights[..., None, None] * eye,
                world_gradient + p.weights[..., None] * residual, p.tree, p.layout)
        keypoint_cost = (p.weights * residual.square().sum(-1)).sum(-1) + world_cost
    diagonal = p.pattern.diagonal

    # Twist and prior act on one joint each: rank-1 and scaled-identity diagonal blocks.
    # Their derivatives come in the joint's frame; G_j turns them into the world's.
    quat = roma.rotmat_to_unitquat(rotations[:, 1:])
    angle, d_angle = twist_angle(quat, p.twist_axes)
    d_angle = (globals_[:, 1:] @ d_angle[..., None])[..., 0]
    twist_error = wrap_angle(angle - p.twist)
    rotvec = roma.unitquat_to_rotvec(quat)
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    num_j = rotations.shape[1]
    normal.index_add_(1, diagonal[1:num_j], p.twist_weights[..., None, None] * d_angle[..., :, None] * d_angle[..., None, :]
                              + p.prior_weight * eye)
    gradient = gradient.index_add(1, torch.arange(1, num_j, device=rotations.device),
                                  p.twist_weights[..., None] * twist_error[..., None] * d_angle
                                  + p.prior_weight * (globals_[:, 1:] @ rotvec[..., None])[..., 0])
    cost = (keypoint_cost + (p.twist_weights * twist_error.square()).sum(-1)
            + p.prior_weight * rotvec.square().sum((-1, -2)))
    if p.limits is not None:
        excess, d_excess = p.limits.excess(quat)
        d_excess = (globals_[:, p.limits.joints] @ d_excess[..., None])[..., 0]
        normal.index_add_(1, diagonal[p.limits.joints],
                          p.limits.weight * d_excess[..., :, None] * d_excess[..., None, :])
        gradient.index_add_(1, p.limits.joints, p.limits.weight * excess[..., None] * d_excess)
        cost = cost + p.limits.weight * excess.square().sum(-1)
    if p.reference is not None:
        # log(Ref^T R exp(d)) ~ log(Ref^T R) + d for the small offsets a temporal term sees.
        away = roma.rotmat_to_rotvec(p.reference.transpose(-1, -2) @ rotations)
        weight = torch.as_tensor(p.reference_weight, dtype=rotations.dtype, device=rotations.device).expand(num_j)
        normal.index_add_(1, diagonal[:num_j], (weight[:, None, None] * eye).expand(normal.shape[0], num_j, 3, 3))
        gradient[:, :num_j] += weight[:, None] * (globals_ @ away[..., None])[..., 0]
        cost = cost + (weight * away.square().sum(-1)).sum(-1)
    return State(rotations, translation, cost, globals_, normal, gradient, damping, offset)


def levenberg_marquardt_step(state: State, problem: Problem) -> State:
    """One damped step, kept per frame only where it lowers the objective.

    A frame whose step made things worse keeps its pose and retries next time with
    more damping (shorter, more gradient-like steps); frames are independent.
    """
    num_j = state.rotations.shape[1]
    step = -solve_blocks(state.normal, state.gradient, problem.pattern, state.damping)
    local_step = (state.globals_.transpose(-1, -2) @ step[:, :num_j, :, None])[..., 0]
    rotations = state.rotations @ roma.rotvec_to_rotmat(local_step)
    offset = None if state.offset is None else state.offset + step[:, num_j + 1]
    candidate = linearize(rotations, state.translation + step[:, num_j], state.damping, problem, offset)

    better = candidate.cost <= state.cost
    damping = torch.where(better, (state.damping * _ACCEPT_SHRINK).clamp(min=problem.damping),
                          state.damping * _REJECT_GROWTH)

    def pick(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return torch.where(better.view(-1, *([1] * (new.ndim - 1))), new, old)

    return State(pick(candidate.rotations, state.rotations), pick(candidate.translation, state.translation),
                 pick(candidate.cost, state.cost), pick(candidate.globals_, state.globals_),
                 pick(candidate.normal, state.normal),
                 pick(candidate.gradient, state.gradient), damping,
                 None if offset is None else pick(candidate.offset, state.offset))


def iterate(problem: Problem, rotations: torch.Tensor, translation: torch.Tensor, offset: torch.Tensor | None,
            iterations: int, tolerance: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Up to ``iterations`` Levenberg-Marquardt steps from (B, J, 3, 3) rotations, (B, 3)
    translation and the (B, 3) free offset (None without one); -> the three after the last
    step. Stops early once a step lowers the batch's summed objective by less than
    ``tolerance`` of it (0: every step, as unrolled training wants)."""
    batch, dtype, device = rotations.shape[0], rotations.dtype, rotations.device
    state = linearize(rotations, translation, torch.full((batch,), problem.damping, dtype=dtype, device=device),
                      problem, offset)
    for _ in range(iterations):
        before = state.cost.sum()
        state = levenberg_marquardt_step(state, problem)
        gain = before - state.cost.sum()
        # A step every frame rejected gains nothing but raised the damping: try again.
        if tolerance and 0 < gain <= tolerance * before:
            break
    return state.rotations, state.translation, state.offset

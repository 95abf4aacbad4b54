"""IKOL: 3D keypoints (+ twist, + shape) to SMPL local rotations by damped Gauss-Newton."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from .. import skeleton
from ..body import BodyModel
from ..common.devices import resolve_device
from ..skeleton.kinematics import forward_kinematics, rest_offsets
from ..skeleton.tree import SMPL_TREE
from .closed_form import closed_form_pose
from .gauss_newton import Problem, levenberg_marquardt_step, linearize
from .inputs import as_tensor, check_targets
from .normal_equations import smpl_layout
from .rotations import bone_axes


@dataclass(frozen=True)
class IKResult:
    """Solved poses.

    Attributes:
        rotations: (B, 24, 3, 3) SMPL local joint rotations.
        translation: (B, 3) root translation (smplx's ``transl``), metres.
        residual: (B,) mean distance of the observed keypoints from their targets, metres.
        keypoints: (B, 29, 3) the solved pose's keypoints.
    """

    rotations: torch.Tensor
    translation: torch.Tensor
    residual: torch.Tensor
    keypoints: torch.Tensor


@lru_cache(maxsize=1)
def default_body() -> BodyModel:
    """The bundled body, loaded once per process."""
    return BodyModel()


def solve(
    targets: Any,
    confidence: Any,
    betas: Any = None,
    twist: Any = None,
    *,
    twist_confidence: Any = None,
    init: Any = None,
    reference: Any = None,
    reference_weight: float = 0.0,
    iterations: int = 5,
    tolerance: float = 0.0,
    body: BodyModel | None = None,
    device: str | torch.device = "auto",
    prior_weight: float = 1e-6,
    twist_weight: float = 1e-2,
    damping: float = 1e-4,
) -> IKResult:
    """Solves SMPL local rotations and root translation for 3D keypoint targets.

    Starts from the closed-form twist-and-swing pose (or ``init``) and refines it by
    ``iterations`` damped Gauss-Newton steps with an analytic Jacobian, each kept
    only where it lowers the frame's objective (Levenberg-Marquardt). Everything is
    batched and differentiable: gradients reach ``targets``, ``twist`` and ``betas``
    through the unrolled iterations.

    Args:
        targets: (B, 29, 3) keypoints (SMPL's 24 joints then the 5 leaf points,
            see skeleton.KEYPOINT_NAMES), metres, SMPL's axes (y-up).
        confidence: (B, 29) keypoint weights in [0, inf); 0 ignores the keypoint.
        betas: (N,) or (B, N) shape coefficients; None for the mean shape.
        twist: (B, 23) twist angles (radians) of joints 1..23 about their rest bones.
        twist_confidence: (B, 23) weights of those twists (default 1 where given).
        init: (B, 24, 3, 3) starting rotations (e.g. the previous frame's solution).
        reference: (B, 24, 3, 3) rotations each frame is pulled towards with
            ``reference_weight`` (m^2 per rad^2): the temporal term, given the
            temporally smoothed solution of a first pass.
        iterations: Gauss-Newton steps; 0 returns the closed form (or ``init``).
        tolerance: stop before ``iterations`` once an accepted step lowers the batch's
            summed objective by less than this fraction of it (0: always take every
            step, as unrolled training wants).
        body: the body model (default: the bundled licence-clean body).
        device: "auto", "cpu", "cuda" or "cuda:N"; results come back on the
            device ``targets`` came on.
        prior_weight: pull of every joint towards its rest rotation, in m^2 of
            keypoint error per rad^2; decides only what keypoints and twist leave open.
        twist_weight: m^2 of keypoint error worth one rad^2 of twist error.
        damping: the smallest Levenberg-Marquardt damping added to the normal
            equations; a frame whose step fails retries with ten times more.
    Raises:
        ValueError: wrong shapes, NaN targets that are not ignored, frames with no
            confident keypoint, an unknown or unavailable device, bad settings.
    """
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    for name, value in (("prior_weight", prior_weight), ("twist_weight", twist_weight), ("damping", damping),
                        ("reference_weight", reference_weight), ("tolerance", tolerance)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if prior_weight + damping <= 0:
        raise ValueError("prior_weight and damping cannot both be 0: unobserved twists would be singular")
    out_device = targets.device if isinstance(targets, torch.Tensor) else torch.device("cpu")
    compute = resolve_device(device)
    body = body if body is not None else default_body()
    targets, confidence = check_targets(targets, confidence, compute)
    batch, dtype = targets.shape[0], targets.dtype

    betas = _betas(betas, batch, body, dtype, compute)
    offsets = rest_offsets(body.rest_keypoints(betas), SMPL_TREE)
    if twist is None:
        twist = targets.new_zeros(batch, skeleton.NUM_TWISTS)
        twist_confidence = targets.new_zeros(batch, skeleton.NUM_TWISTS)
    else:
        twist = as_tensor("twist", twist, (batch, skeleton.NUM_TWISTS), dtype, compute)
        twist_confidence = (torch.ones_like(twist) if twist_confidence is None else
                            as_tensor("twist_confidence", twist_confidence, (batch, skeleton.NUM_TWISTS), dtype, compute))
        if not (torch.isfinite(twist).all() and torch.isfinite(twist_confidence).all()) or (twist_confidence < 0).any():
            raise ValueError("twist must be finite and twist_confidence finite and >= 0")

    tree = SMPL_TREE.to(compute)
    if init is None:
        rotations, translation = closed_form_pose(targets, confidence, offsets, twist, twist_confidence, tree)
    else:
        rotations = as_tensor("init", init, (batch, skeleton.NUM_JOINTS, 3, 3), dtype, compute)
        if not torch.isfinite(rotations).all():
            raise ValueError("init contains NaN or infinite values")
        _, positions = forward_kinematics(rotations, offsets, targets.new_zeros(batch, 3), tree)
        weight = confidence / confidence.sum(-1, keepdim=True)
        translation = (weight[..., None] * (targets - positions)).sum(1)

    if reference is not None:
        reference = as_tensor("reference", reference, (batch, skeleton.NUM_JOINTS, 3, 3), dtype, compute)
        if not torch.isfinite(reference).all():
            raise ValueError("reference contains NaN or infinite values")
    problem = Problem(targets=targets, weights=confidence, offsets=offsets, twist=twist,
                      twist_weights=twist_weight * twist_confidence, twist_axes=bone_axes(offsets),
                      prior_weight=prior_weight, damping=damping, tree=tree,
                      layout=smpl_layout(compute), reference=reference, reference_weight=reference_weight)
    if iterations:
        state = linearize(rotations, translation, torch.full((batch,), damping, dtype=dtype, device=compute), problem)
        for _ in range(iterations):
            before = state.cost.sum()
            state = levenberg_marquardt_step(state, problem)
            gain = before - state.cost.sum()
            # A step every frame rejected gains nothing but raised the damping: try again.
            if tolerance and 0 < gain <= tolerance * before:
                break
        rotations, translation = state.rotations, state.translation

    _, keypoints = forward_kinematics(rotations, offsets, translation, tree)
    seen = (confidence > 0).to(dtype)
    residual = ((keypoints - targets).norm(dim=-1) * seen).sum(-1) / seen.sum(-1)
    move = lambda t: t.to(out_device)  # noqa: E731
    return IKResult(move(rotations), move(translation), move(residual), move(keypoints))


def _betas(betas: Any, batch: int, body: BodyModel, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if betas is None:
        return torch.zeros(batch, body.num_betas, dtype=dtype, device=device)
    raw = torch.as_tensor(betas)
    shape = (raw.shape[-1],) if raw.ndim == 1 else (batch, raw.shape[-1] if raw.ndim else 0)
    betas = as_tensor("betas", betas, shape, dtype, device)
    if betas.shape[-1] > body.num_betas:
        raise ValueError(f"betas has {betas.shape[-1]} coefficients; the body model has {body.num_betas}")
    if not torch.isfinite(betas).all():
        raise ValueError("betas contain NaN or infinite values")
    return betas.expand(batch, -1)

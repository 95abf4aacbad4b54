"""IKOL: 3D keypoints (+ twist, + shape) to SMPL local rotations by damped Gauss-Newton."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from .. import skeleton
from ..body import BodyModel
from ..common.devices import resolve_device
from ..skeleton.kinematics import forward_kinematics, rest_offsets
from ..skeleton.tree import SMPL_TREE, KinematicTree
from .closed_form import closed_form_pose
from .gauss_newton import Problem, iterate
from .inputs import as_tensor, check_targets, frames_where
from .normal_equations import smpl_layout
from .rotations import bone_axes
from .world_normal_equations import camera_layout
from .world_terms import (
    FOOT_KEYPOINTS, PinholeCamera, WorldTerms, foot_clearance, pinhole_translation, robust_pinhole_translation,
)


@dataclass(frozen=True)
class IKResult:
    """Solved poses.

    Attributes:
        rotations: (B, 24, 3, 3) SMPL local joint rotations.
        translation: (B, 3) root translation (smplx's ``transl``), metres; with pixels,
            in the camera's frame.
        residual: (B,) mean distance of the observed keypoints from their targets, metres
            (with pixels, from the targets moved to where the keypoint term saw the body).
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
    pixels: Any = None,
    pixel_confidence: Any = None,
    camera: PinholeCamera | None = None,
    pixel_weight: float = 4.0,
    pixel_huber: float = 20.0,
    foot_lock: Any = None,
    foot_lock_confidence: Any = None,
    foot_lock_weight: float = 10.0,
    floor: tuple[Any, float] | None = None,
    floor_weight: float = 100.0,
    floor_confidence: Any = None,
    metric_depth: bool = True,
    placement: Any = None,
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
        pixels: (B, 29, 2) the keypoints in the image, pixels; with ``camera`` this adds
            the reprojection term and the solve works in the camera's frame
            (:mod:`.world_terms`: x right, y up, camera at the origin looking down -z).
            ``targets`` may sit anywhere (e.g. about the hips, as a regressor gives
            them): see ``metric_depth``; ``translation`` places the body in the camera.
        pixel_confidence: (B, 29) weights of the pixels (0 = unseen); frames need two
            seen pixels. Default: ``confidence``.
        camera: the pinhole (:class:`.world_terms.PinholeCamera`).
        pixel_weight: how much an image error counts against a metric keypoint error
            of the same size across the viewing ray at the person's depth (1: equal;
            the default 4 trusts 2-3 px, ~1 cm at 4 m, over a regressor's 2-3 cm).
        pixel_huber: pixels beyond which an image error pulls with constant force.
        foot_lock: (B, 4, 3) world positions the foot keypoints (:data:`FOOT_KEYPOINTS`:
            left heel, right heel, left toe, right toe) are pulled to, e.g. from
            :func:`.contacts.contact_targets`; foot_lock_confidence: (B, 4), 0 = free.
        foot_lock_weight: m^2 of keypoint error worth one m^2 of a locked foot's drift.
        metric_depth: with pixels, True places ``targets`` in the camera by the pinhole
            fit of the targets themselves to their pixels, and the keypoint term then
            holds the body near that depth too; False lets the keypoint term see the
            body at a free offset, so that only the targets' shape counts and depth
            comes from the pixels alone (less accurate on BlazePose-like errors:
            tilted bones look shorter and the body is pulled towards the camera, see
            benchmarks/results/reprojection.md).
        floor: (normal (3,), height): the plane ``normal . p = height`` (world frame,
            normal pointing up) that no foot keypoint may go below (the heels by their
            rest height above the toes); floor_weight: the one-sided penalty's weight;
            floor_confidence: (B,) its weight per frame (default 1; 0: no floor under
            that frame, e.g. one where the person stands on something lower).
        placement: (B, 3) where ``targets`` sit in the world the world terms see
            (``targets + placement``), e.g. a temporally smoothed pinhole fit; default:
            with pixels and ``metric_depth``, the robust pinhole fit of each frame's
            targets to their pixels; otherwise the targets are there already. Ignored
            with ``metric_depth=False``.
    Raises:
        ValueError: wrong shapes, NaN targets that are not ignored, frames with no
            confident keypoint, an unknown or unavailable device, bad settings.
    """
    _check_settings(iterations, prior_weight=prior_weight, twist_weight=twist_weight, damping=damping,
                    reference_weight=reference_weight, tolerance=tolerance)
    out_device = targets.device if isinstance(targets, torch.Tensor) else torch.device("cpu")
    compute = resolve_device(device)
    body = body if body is not None else default_body()
    targets, confidence = check_targets(targets, confidence, compute)
    batch, dtype = targets.shape[0], targets.dtype

    betas = _betas(betas, batch, body, dtype, compute)
    offsets = rest_offsets(body.rest_keypoints(betas), SMPL_TREE)
    twist, twist_confidence = _twists(twist, twist_confidence, targets)
    tree = SMPL_TREE.to(compute)
    rotations, translation = _start_pose(init, targets, confidence, offsets, twist, twist_confidence, tree)
    if reference is not None:
        reference = as_tensor("reference", reference, (batch, skeleton.NUM_JOINTS, 3, 3), dtype, compute)
        if not torch.isfinite(reference).all():
            raise ValueError("reference contains NaN or infinite values")
    world = offset = None
    placed = placement is not None
    if placed:
        placement = as_tensor("placement", placement, (batch, 3), dtype, compute)
        if not torch.isfinite(placement).all():
            raise ValueError("placement contains NaN or infinite values")
        targets, translation = _moved(targets, confidence, placement), translation + placement
    if pixels is not None or foot_lock is not None or floor is not None:
        world = _world_terms(pixels, pixel_confidence, confidence, camera, pixel_weight, pixel_huber, foot_lock,
                             foot_lock_confidence, foot_lock_weight, floor, floor_weight, floor_confidence, body,
                             betas, batch, dtype, compute, placed=placed and metric_depth)
        if world.camera is not None:
            targets, translation, offset, world = _place_in_camera(world, targets, confidence, rotations, translation,
                                                                   offsets, tree, metric_depth, pixel_huber, placed)
    problem = Problem(targets=targets, weights=confidence, offsets=offsets, twist=twist,
                      twist_weights=twist_weight * twist_confidence, twist_axes=bone_axes(offsets),
                      prior_weight=prior_weight, damping=damping, tree=tree,
                      layout=smpl_layout(compute), reference=reference, reference_weight=reference_weight,
                      world=world, camera_layout=None if offset is None else camera_layout(compute))
    if iterations:
        rotations, translation, offset = iterate(problem, rotations, translation, offset, iterations, tolerance)

    _, keypoints = forward_kinematics(rotations, offsets, translation, tree)
    seen = (confidence > 0).to(dtype)
    fitted = keypoints if offset is None else keypoints + (offset - translation)[:, None]
    residual = ((fitted - targets).norm(dim=-1) * seen).sum(-1) / seen.sum(-1)
    move = lambda t: t.to(out_device)  # noqa: E731
    return IKResult(move(rotations), move(translation), move(residual), move(keypoints))


def _check_settings(iterations: int, **weights: float) -> None:
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    for name, value in weights.items():
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if weights["prior_weight"] + weights["damping"] <= 0:
        raise ValueError("prior_weight and damping cannot both be 0: unobserved twists would be singular")


def _twists(twist: Any, twist_confidence: Any, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 23) twist angles and (B, 23) their weights, checked; zero weights when none given.

    Args:
        targets: (B, 29, 3) the checked targets, which give batch, dtype and device.
    """
    batch, dtype, device = targets.shape[0], targets.dtype, targets.device
    if twist is None:
        return targets.new_zeros(batch, skeleton.NUM_TWISTS), targets.new_zeros(batch, skeleton.NUM_TWISTS)
    twist = as_tensor("twist", twist, (batch, skeleton.NUM_TWISTS), dtype, device)
    twist_confidence = (torch.ones_like(twist) if twist_confidence is None else
                        as_tensor("twist_confidence", twist_confidence, (batch, skeleton.NUM_TWISTS), dtype, device))
    if not (torch.isfinite(twist).all() and torch.isfinite(twist_confidence).all()) or (twist_confidence < 0).any():
        raise ValueError("twist must be finite and twist_confidence finite and >= 0")
    return twist, twist_confidence


def _start_pose(init: Any, targets: torch.Tensor, confidence: torch.Tensor, offsets: torch.Tensor,
                twist: torch.Tensor, twist_confidence: torch.Tensor, tree: KinematicTree,
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 24, 3, 3) rotations and (B, 3) translation to start from: the closed form, or
    ``init`` (B, 24, 3, 3) with the translation that best fits its keypoints to the targets.

    Args:
        targets: (B, 29, 3); confidence: (B, 29); offsets: (B, 29, 3) rest bone offsets;
        twist, twist_confidence: (B, 23).
    """
    if init is None:
        return closed_form_pose(targets, confidence, offsets, twist, twist_confidence, tree)
    rotations = as_tensor("init", init, (targets.shape[0], skeleton.NUM_JOINTS, 3, 3), targets.dtype, targets.device)
    if not torch.isfinite(rotations).all():
        raise ValueError("init contains NaN or infinite values")
    _, positions = forward_kinematics(rotations, offsets, targets.new_zeros(targets.shape[0], 3), tree)
    weight = confidence / confidence.sum(-1, keepdim=True)
    return rotations, (weight[..., None] * (targets - positions)).sum(1)


def _moved(targets: torch.Tensor, confidence: torch.Tensor, placement: torch.Tensor) -> torch.Tensor:
    """(B, 29, 3) targets moved by (B, 3) ``placement``; unseen ones stay where they are (zeros)."""
    return torch.where(confidence[..., None] > 0, targets + placement[:, None], targets)


def _place_in_camera(world: WorldTerms, targets: torch.Tensor, confidence: torch.Tensor, rotations: torch.Tensor,
                     translation: torch.Tensor, offsets: torch.Tensor, tree: KinematicTree, metric_depth: bool,
                     pixel_huber: float, placed: bool,
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, WorldTerms]:
    """Puts the start pose in the camera's frame (see ``metric_depth`` in :func:`solve`).

    Args:
        targets: (B, 29, 3); confidence: (B, 29); rotations: (B, 24, 3, 3) and
            translation: (B, 3) the start pose; offsets: (B, 29, 3); placed: the
            targets are in the camera already (a ``placement`` was given).
    Returns:
        The targets (moved into the camera with metric depth), the translation there, the
        keypoint term's free offset (B, 3) (None with metric depth), and ``world`` with the
        body's depth set.
    """
    batch, offset = targets.shape[0], None
    if metric_depth and not placed:
        both = world.pixel_weights * (confidence > 0).to(targets.dtype)
        few = (both > 0).sum(-1) < 2
        if few.any():
            raise ValueError(f"frames {frames_where(few)} have fewer than 2 keypoints seen in 3D and in the "
                             "image: their targets cannot be placed in the camera")
        place = robust_pinhole_translation(targets, world.pixels, both, world.camera, pixel_huber)
        targets, translation = _moved(targets, confidence, place), translation + place
    elif not metric_depth:
        # The metric term keeps where it put the body; the pixels place it in the camera.
        offset = translation
        _, at_zero = forward_kinematics(rotations, offsets, targets.new_zeros(batch, 3), tree)
        translation = pinhole_translation(at_zero, world.pixels, world.pixel_weights, world.camera)
    _, at_solve = forward_kinematics(rotations, offsets, translation, tree)
    depth = -at_solve[:, 0, 2]
    if not (depth > 0).all():
        raise ValueError(f"the body is behind the camera in frames {frames_where(depth <= 0)}")
    return targets, translation, offset, dataclasses.replace(world, depth=depth)


def _world_terms(pixels: Any, pixel_confidence: Any, confidence: torch.Tensor, camera: PinholeCamera | None,
                 pixel_weight: float, pixel_huber: float, foot_lock: Any, foot_lock_confidence: Any,
                 foot_lock_weight: float, floor: tuple[Any, float] | None, floor_weight: float,
                 floor_confidence: Any, body: BodyModel,
                 betas: torch.Tensor, batch: int, dtype: torch.dtype, device: torch.device, placed: bool) -> WorldTerms:
    """Checks the pixel, foot-lock and floor arguments; -> the terms (depth still unset).

    ``placed``: the targets come placed in the camera, so a frame needs no pixels to be.
    """
    for name, value in (("pixel_weight", pixel_weight), ("pixel_huber", pixel_huber),
                        ("foot_lock_weight", foot_lock_weight), ("floor_weight", floor_weight)):
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    terms: dict[str, Any] = {}
    if pixels is not None:
        if camera is None:
            raise ValueError("pixels need a camera (ik.world_terms.PinholeCamera)")
        if not camera.focal_px > 0:
            raise ValueError(f"the camera's focal length must be > 0 pixels, got {camera.focal_px!r}")
        k = skeleton.NUM_KEYPOINTS
        pixels = as_tensor("pixels", pixels, (batch, k, 2), dtype, device)
        weights = (confidence if pixel_confidence is None
                   else as_tensor("pixel_confidence", pixel_confidence, (batch, k), dtype, device))
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("pixel_confidence must be finite and >= 0")
        bad = (~torch.isfinite(pixels).all(-1)) & (weights > 0)
        if bad.any():
            raise ValueError(f"pixels contain NaN or infinite values at keypoints with confidence > 0 "
                             f"(frames {frames_where(bad.any(-1))})")
        few = (weights > 0).sum(-1) < 2
        if few.any() and not placed:
            raise ValueError(f"frames {frames_where(few)} have fewer than 2 pixels with confidence > 0: "
                             "the camera cannot place them")
        pixels = torch.where(weights[..., None] > 0, pixels, torch.zeros_like(pixels))
        terms.update(camera=camera, pixels=pixels, pixel_weights=pixel_weight * weights, huber_px=pixel_huber)
    elif camera is not None:
        raise ValueError("a camera was given without pixels")
    if foot_lock is not None:
        lock = as_tensor("foot_lock", foot_lock, (batch, len(FOOT_KEYPOINTS), 3), dtype, device)
        lock_weights = (torch.ones(batch, len(FOOT_KEYPOINTS), dtype=dtype, device=device)
                        if foot_lock_confidence is None else
                        as_tensor("foot_lock_confidence", foot_lock_confidence, (batch, len(FOOT_KEYPOINTS)), dtype,
                                  device))
        if not torch.isfinite(lock_weights).all() or (lock_weights < 0).any():
            raise ValueError("foot_lock_confidence must be finite and >= 0")
        if ((~torch.isfinite(lock).all(-1)) & (lock_weights > 0)).any():
            raise ValueError("foot_lock contains NaN or infinite values where its confidence is > 0")
        terms.update(lock_targets=torch.where(lock_weights[..., None] > 0, lock, torch.zeros_like(lock)),
                     lock_weights=foot_lock_weight * lock_weights)
    if floor is not None:
        normal = as_tensor("floor normal", floor[0], (3,), dtype, device)
        if not (torch.isfinite(normal).all() and normal.norm() > 0 and math.isfinite(floor[1])):
            raise ValueError("floor must be (a non-zero finite normal (3,), a finite height)")
        frames = (torch.ones(batch, dtype=dtype, device=device) if floor_confidence is None
                  else as_tensor("floor_confidence", floor_confidence, (batch,), dtype, device))
        if not torch.isfinite(frames).all() or (frames < 0).any():
            raise ValueError("floor_confidence must be finite and >= 0")
        terms.update(floor_normal=normal / normal.norm(), floor_height=float(floor[1]),
                     floor_weights=floor_weight * frames, floor_clearance=foot_clearance(body.rest_keypoints(betas)))
    return WorldTerms(**terms)


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

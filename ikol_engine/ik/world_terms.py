"""The IK's terms on keypoints placed in the camera's world: pixels, foot locks, the floor.

Camera (the frame of :mod:`ikol_engine.track.camera`, also the frame these terms live in): a
pinhole at the origin looking down -z, x to the image's right, y up, z towards the
viewer; ``u = cx + f x / -z``, ``v = cy - f y / -z`` with ``(cx, cy)`` the image centre
and one focal length ``f`` in pixels. OpenCV's camera frame is this one turned 180
degrees about x.

Each term is a residual on keypoint positions, returned as its per-keypoint world-space
information (``M_k``, ``g_k``, see :mod:`.world_normal_equations`) and its cost.

* pixels: ``r_k = D (pi(p_k) - u_k) / f``, the image error as an angle (pixels over
  ``f``) times ``D``, the frame's depth at the start of the solve (held fixed). ``r_k``
  is then in metres across the viewing ray at the person's distance, so
  ``pixel_weight`` 1 makes an image error count like a metric keypoint error of the
  same size. Huber-robust beyond ``huber_px`` pixels (a swapped or misplaced landmark
  pulls with a constant force instead of a growing one).
* foot locks: ``p_k - c_k`` for feet in contact, ``c_k`` the contact's position, metres.
* floor: ``min(n . p_k - h - clearance_k, 0)``, one-sided: only a foot below the floor costs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import skeleton

#: Foot keypoints of the lock and floor terms and of :mod:`.contacts`, in this order:
#: left heel, right heel, left toe, right toe (SMPL's ankles stand in for the heels).
FOOT_KEYPOINTS: tuple[int, ...] = tuple(skeleton.KEYPOINT_NAMES.index(n) for n in (
    "L_Ankle", "R_Ankle", "L_BigToe", "R_BigToe"))
# Keypoints nearer the camera plane than this (metres) are dropped from the pixel term
# for the step: the projection's derivative blows up there.
_MIN_DEPTH = 1e-2


@dataclass(frozen=True)
class PinholeCamera:
    """Focal length ``f`` (pixels) and principal point (pixels) of a camera at the origin."""

    focal_px: float
    cx: float
    cy: float

    @classmethod
    def centred(cls, focal_px: float, width: int, height: int) -> "PinholeCamera":
        return cls(float(focal_px), width / 2, height / 2)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) camera-frame points in front of the camera -> (..., 2) pixels."""
        depth = -points[..., 2]
        return torch.stack([self.cx + self.focal_px * points[..., 0] / depth,
                            self.cy - self.focal_px * points[..., 1] / depth], dim=-1)


@dataclass(frozen=True)
class WorldTerms:
    """Residuals on the world positions of keypoints (tensors on one device and dtype).

    Attributes:
        camera: the pinhole; pixels: (B, K, 2); pixel_weights: (B, K), weight times
            confidence, 0 = unseen; depth: (B,) the ``D`` that turns angles into metres;
            huber_px: Huber threshold in pixels (inf: plain least squares).
        lock_targets: (B, 4, 3) contact positions of FOOT_KEYPOINTS; lock_weights: (B, 4).
        floor_normal: (3,) unit, up; floor_height: metres; floor_clearance: (B, 4) height
            of each foot keypoint above the floor when it rests; floor_weights: (B,)
            weight times confidence (0: the frame has no floor), None: no floor.
    """

    camera: PinholeCamera | None = None
    pixels: torch.Tensor | None = None
    pixel_weights: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    huber_px: float = float("inf")
    lock_targets: torch.Tensor | None = None
    lock_weights: torch.Tensor | None = None
    floor_normal: torch.Tensor | None = None
    floor_height: float = 0.0
    floor_clearance: torch.Tensor | None = None
    floor_weights: torch.Tensor | None = None


def foot_clearance(rest_keypoints: torch.Tensor) -> torch.Tensor:
    """Resting height of each foot keypoint above the floor, from the rest pose.

    The floor is where the toe keypoints rest (as :func:`ikol_engine.ground.fit_ground`
    finds it from the lowest foot landmarks); a heel keypoint (the ankle) rests as far
    above it as the ankle stands above the toe in the rest pose.

    Args:
        rest_keypoints: (B, 29, 3) y-up rest pose.
    Returns:
        (B, 4) metres, in FOOT_KEYPOINTS' order.
    """
    height = rest_keypoints[:, list(FOOT_KEYPOINTS), 1]
    toes = height[:, 2:]
    return torch.cat([height[:, :2] - toes, torch.zeros_like(toes)], dim=1)


def pinhole_translation(points: torch.Tensor, pixels: torch.Tensor, weights: torch.Tensor,
                        camera: PinholeCamera) -> torch.Tensor:
    """Translations that best project body points onto their pixels (algebraic error).

    Every pixel gives two equations linear in the translation ``t``:
    ``f (x + tx) + du (z + tz) = 0`` and ``-f (y + ty) + dv (z + tz) = 0``.

    Args:
        points: (B, K, 3) the body at zero translation; pixels: (B, K, 2); weights: (B, K),
            at least two keypoints > 0 per frame.
    Returns:
        (B, 3).
    """
    f = camera.focal_px
    du, dv = pixels[..., 0] - camera.cx, pixels[..., 1] - camera.cy
    full, zero = torch.full_like(du, f), torch.zeros_like(du)
    rows = torch.stack([torch.stack([full, zero, du], -1), torch.stack([zero, -full, dv], -1)], dim=-2)
    rhs = torch.stack([-f * points[..., 0] - du * points[..., 2], f * points[..., 1] - dv * points[..., 2]], -1)
    weighted = rows * weights[..., None, None]
    normal = (weighted.transpose(-1, -2) @ rows).sum(1)
    return torch.linalg.solve(normal, (weighted.transpose(-1, -2) @ rhs[..., None]).sum(1))[..., 0]


def robust_pinhole_translation(points: torch.Tensor, pixels: torch.Tensor, weights: torch.Tensor,
                               camera: PinholeCamera, huber_px: float, rounds: int = 3) -> torch.Tensor:
    """:func:`pinhole_translation`, refitted ``rounds`` times with Huber weights on the
    reprojection error, so a misplaced landmark does not move the whole body.

    Args:
        points: (B, K, 3); pixels: (B, K, 2); weights: (B, K). Returns (B, 3).
    """
    translation = pinhole_translation(points, pixels, weights, camera)
    if math.isinf(huber_px):
        return translation
    for _ in range(rounds):
        placed = points + translation[:, None]
        error = (camera.project(placed) - pixels).norm(dim=-1)
        robust = torch.where(error > huber_px, huber_px / error.clamp(min=1e-12), torch.ones_like(error))
        in_front = (-placed[..., 2] > _MIN_DEPTH).to(points.dtype)
        translation = pinhole_translation(points, pixels, weights * robust * in_front, camera)
    return translation


def pixel_information(positions: torch.Tensor, terms: WorldTerms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixel term at keypoints ``positions``: (B, K, 3) camera frame.

    Returns:
        information: (B, K, 3, 3); gradient: (B, K, 3); cost: (B,).
    """
    cam = terms.camera
    f = cam.focal_px
    x, y, z = positions.unbind(-1)
    depth = -z
    seen = depth > _MIN_DEPTH
    inv = 1 / torch.where(seen, depth, torch.ones_like(depth))
    # Angles: pixel error over f, then metres across the ray at the frame's depth D.
    scale = terms.depth[:, None]
    error = torch.stack([x * inv - (terms.pixels[..., 0] - cam.cx) / f,
                         -y * inv - (terms.pixels[..., 1] - cam.cy) / f], dim=-1) * scale[..., None]
    zero = torch.zeros_like(x)
    # d(angle)/dp: rows d(x/-z)/dp and d(-y/-z)/dp.
    jacobian = torch.stack([torch.stack([inv, zero, x * inv * inv], -1),
                            torch.stack([zero, -inv, -y * inv * inv], -1)], dim=-2) * scale[..., None, None]
    weight = terms.pixel_weights * seen.to(positions.dtype)
    squared = error.square().sum(-1)
    if math.isinf(terms.huber_px):
        robust, cost = torch.ones_like(squared), squared
    else:
        # Huber: r^2 inside the threshold k, 2 k |r| - k^2 beyond it; as iteratively
        # reweighted least squares, weight k / |r| there. (The tiny floor keeps the
        # root's derivative finite at a zero residual.)
        k = terms.huber_px * scale[:, 0] / f
        norm = (squared + 1e-30).sqrt()
        outside = norm > k[:, None]
        robust = torch.where(outside, k[:, None] / norm, torch.ones_like(norm))
        cost = torch.where(outside, 2 * k[:, None] * norm - k[:, None].square(), squared)
    irls = weight * robust
    information = irls[..., None, None] * (jacobian.transpose(-1, -2) @ jacobian)
    gradient = irls[..., None] * (jacobian.transpose(-1, -2) @ error[..., None])[..., 0]
    return information, gradient, (weight * cost).sum(-1)


def foot_information(positions: torch.Tensor, terms: WorldTerms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Foot locks and the floor at the foot keypoints.

    Args:
        positions: (B, 4, 3) FOOT_KEYPOINTS, world frame.
    Returns:
        information: (B, 4, 3, 3); gradient: (B, 4, 3); cost: (B,).
    """
    batch = positions.shape[0]
    eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
    information = positions.new_zeros(batch, 4, 3, 3)
    gradient = positions.new_zeros(batch, 4, 3)
    cost = positions.new_zeros(batch)
    if terms.lock_targets is not None:
        w = terms.lock_weights
        residual = positions - terms.lock_targets
        information = information + w[..., None, None] * eye
        gradient = gradient + w[..., None] * residual
        cost = cost + (w * residual.square().sum(-1)).sum(-1)
    if terms.floor_weights is not None:
        n, w = terms.floor_normal, terms.floor_weights[:, None]
        below = (positions @ n - terms.floor_height - terms.floor_clearance).clamp(max=0)
        active = (below < 0).to(positions.dtype)
        information = information + (w * active)[..., None, None] * (n[:, None] * n[None, :])
        gradient = gradient + (w * below)[..., None] * n
        cost = cost + (w * below.square()).sum(-1)
    return information, gradient, cost


def world_information(positions: torch.Tensor, terms: WorldTerms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every world term at keypoints ``positions``: (B, K, 3).

    Returns:
        information: (B, K, 3, 3); gradient: (B, K, 3); cost: (B,).
    """
    batch, num_k = positions.shape[:2]
    information = positions.new_zeros(batch, num_k, 3, 3)
    gradient = positions.new_zeros(batch, num_k, 3)
    cost = positions.new_zeros(batch)
    if terms.camera is not None:
        information, gradient, cost = pixel_information(positions, terms)
    if terms.lock_targets is not None or terms.floor_weights is not None:
        feet = list(FOOT_KEYPOINTS)
        foot_info, foot_gradient, foot_cost = foot_information(positions[:, feet], terms)
        information = information.index_add(1, torch.tensor(feet, device=positions.device), foot_info)
        gradient = gradient.index_add(1, torch.tensor(feet, device=positions.device), foot_gradient)
        cost = cost + foot_cost
    return information, gradient, cost

"""The camera's focal length from a clip of metric 3D keypoints and their pixels.

A body of known metric shape fixes only ``f / depth`` through its size in the image;
``f`` itself shows in perspective: the parts nearer the camera look larger, and a body
off the image centre is seen from the side. So for each candidate ``f`` every frame
gets the translation that best projects its metric keypoints onto their pixels, and the
``f`` whose clip-wide reprojection error is least wins: a coarse scan over log ``f``,
then golden-section refinement. Large errors are Huber-weighted, so a few bad frames
or swapped landmarks do not decide it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .world_terms import PinholeCamera, pinhole_translation

_SCAN = 25
_GOLDEN = 0.5 * (math.sqrt(5) - 1)
_REFINE_STEPS = 30
_TRANSLATION_STEPS = 3
_MIN_DEPTH = 0.1


def reprojection_error(points: torch.Tensor, pixels: torch.Tensor, weights: torch.Tensor, camera: PinholeCamera,
                       huber_px: float) -> float:
    """Clip-wide robust reprojection error at the best per-frame translations, pixels^2.

    The translation starts from the linear (algebraic) fit and takes a few Gauss-Newton
    steps on the pixel error itself, which is what decides between focal lengths.

    Args:
        points: (T, K, 3) metric keypoints about the person; pixels: (T, K, 2); weights: (T, K).
    """
    f = camera.focal_px
    translation = pinhole_translation(points, pixels, weights, camera)
    for _ in range(_TRANSLATION_STEPS):
        p = points + translation[:, None]
        depth = (-p[..., 2]).clamp(min=_MIN_DEPTH)
        error = camera.project(p) - pixels
        zero = torch.zeros_like(depth)
        # d(pixel)/d(translation), camera frame (x right, y up, looking down -z).
        jac = torch.stack([torch.stack([f / depth, zero, f * p[..., 0] / depth ** 2], -1),
                           torch.stack([zero, -f / depth, -f * p[..., 1] / depth ** 2], -1)], dim=-2)
        w = weights * _huber_weight(error, huber_px)
        normal = (w[..., None, None] * jac.transpose(-1, -2) @ jac).sum(1)
        rhs = (w[..., None, None] * jac.transpose(-1, -2) @ error[..., None]).sum(1)
        translation = translation - torch.linalg.solve(normal, rhs)[..., 0]
    error = camera.project(points + translation[:, None]) - pixels
    norm = error.norm(dim=-1)
    huber = torch.where(norm > huber_px, 2 * huber_px * norm - huber_px ** 2, norm ** 2)
    return float((weights * huber).sum() / weights.sum())


def _huber_weight(error: torch.Tensor, huber_px: float) -> torch.Tensor:
    norm = error.norm(dim=-1)
    return torch.where(norm > huber_px, huber_px / norm.clamp(min=1e-12), torch.ones_like(norm))


def estimate_focal(points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray, image_size: tuple[int, int], *,
                   fov_range_deg: tuple[float, float] = (15.0, 120.0), huber_px: float = 10.0) -> float:
    """The focal length (pixels) that best explains a clip's pixels by its metric keypoints.

    Args:
        points: (T, K, 3) metric keypoints about the person, camera axes (x right, y up,
            z towards the camera); frames may come from anywhere in the clip.
        pixels: (T, K, 2) the same keypoints in the image; confidence: (T, K), 0 = unseen
            (frames need at least 3 seen keypoints; others are skipped).
        image_size: (width, height); the principal point is the image centre.
        fov_range_deg: horizontal fields of view searched.
        huber_px: reprojection errors beyond this many pixels count linearly.
    Returns:
        f in pixels; the horizontal field of view is ``2 atan(width / 2f)``.
    Raises:
        ValueError: wrong shapes, no usable frame, a bad range.
    """
    points = np.asarray(points, dtype=np.float64)
    pixels = np.asarray(pixels, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if points.ndim != 3 or points.shape[-1] != 3 or pixels.shape != (*points.shape[:2], 2) \
            or confidence.shape != points.shape[:2]:
        raise ValueError(f"points must be (T, K, 3), pixels (T, K, 2), confidence (T, K); got "
                         f"{points.shape}, {pixels.shape}, {confidence.shape}")
    low, high = fov_range_deg
    if not 1.0 <= low < high <= 170.0:
        raise ValueError(f"fov_range_deg must be increasing within 1..170 degrees, got {fov_range_deg!r}")
    seen = (confidence > 0) & np.isfinite(points).all(-1) & np.isfinite(pixels).all(-1)
    usable = seen.sum(-1) >= 3
    if not usable.any():
        raise ValueError("no frame has 3 keypoints seen in 3D and in the image: the focal length is unknown")
    weights = torch.from_numpy(np.where(seen, confidence, 0.0)[usable])
    p = torch.from_numpy(np.where(seen[..., None], points, 0.0)[usable])
    px = torch.from_numpy(np.where(seen[..., None], pixels, 0.0)[usable])
    width, height = image_size

    def cost(log_f: float) -> float:
        camera = PinholeCamera.centred(math.exp(log_f), width, height)
        return reprojection_error(p, px, weights, camera, huber_px)

    focal = lambda fov: 0.5 * width / math.tan(math.radians(fov) / 2)  # noqa: E731
    lo, hi = math.log(focal(high)), math.log(focal(low))
    grid = np.linspace(lo, hi, _SCAN)
    costs = [cost(g) for g in grid]
    best = int(np.argmin(costs))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, _SCAN - 1)]
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = cost(c), cost(d)
    for _ in range(_REFINE_STEPS):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = cost(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = cost(d)
    return math.exp((a + b) / 2)

"""Where the person is: root translation from metric 3D keypoints and their 2D image points.

The regressor gives keypoints in metres relative to the person's own origin, and the
same keypoints in pixels. Under a pinhole camera the only unknown that places the
body in the scene is its translation, and every keypoint gives two equations linear
in it, so each frame is a 3x3 weighted least-squares solve (batched over frames).
Depth comes from the person's metric size against their size in pixels, so the
character walks towards and away from the camera instead of being pinned at the hips.

World frame (the motion file's): camera-aligned, y up: x to the image's right, y up,
z towards the camera; the camera sits at the origin looking down -z. OpenCV's camera
frame is this one turned 180 degrees about x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..ik.focal import estimate_focal
from ..ik.world_terms import PinholeCamera

#: The horizontal fields of view a pinhole camera is taken with, degrees.
MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0
#: The fields of view an estimate searches: a long telephoto to a wide action camera.
MIN_ESTIMATED_FOV_DEG, MAX_ESTIMATED_FOV_DEG = 15.0, 120.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera without distortion, principal point at the image centre."""

    width: int
    height: int
    fov_deg: float  # horizontal field of view

    def __post_init__(self) -> None:
        if not MIN_FOV_DEG <= self.fov_deg <= MAX_FOV_DEG:
            raise ValueError(f"field of view must be between {MIN_FOV_DEG:g} and {MAX_FOV_DEG:g} degrees, "
                             f"got {self.fov_deg}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_focal(cls, width: int, height: int, focal_px: float) -> "Camera":
        return cls(width, height, math.degrees(2 * math.atan(0.5 * width / focal_px)))

    @property
    def focal_px(self) -> float:
        return 0.5 * self.width / math.tan(math.radians(self.fov_deg) / 2)

    @property
    def pinhole(self) -> PinholeCamera:
        """The same camera for the IK's pixel term."""
        return PinholeCamera.centred(self.focal_px, self.width, self.height)

    def project(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points in front of the camera -> (..., 2) pixels."""
        depth = -points[..., 2]
        u = self.focal_px * points[..., 0] / depth + self.width / 2
        v = -self.focal_px * points[..., 1] / depth + self.height / 2
        return np.stack([u, v], axis=-1)


def fit_translation(points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray, camera: Camera) -> np.ndarray:
    """Translations that best project person-relative 3D points onto their pixels.

    Solves, per frame, the weighted linear least squares of
    ``(u - cx) * depth = f * x`` and ``(v - cy) * depth = -f * y`` for ``p + t``
    (an algebraic error, exact when the 3D points are exact).

    Args:
        points: (T, K, 3) metric keypoints relative to the person, world axes.
        pixels: (T, K, 2) the same keypoints in the image.
        confidence: (T, K) weights; frames need two confident keypoints.
    Returns:
        (T, 3) translations; NaN for frames without enough confident keypoints.
    """
    f = camera.focal_px
    du = pixels[..., 0] - camera.width / 2
    dv = pixels[..., 1] - camera.height / 2
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    zeros = np.zeros_like(du)
    # Rows a . t = b from  f (x + tx) + du (z + tz) = 0  and  -f (y + ty) + dv (z + tz) = 0.
    a = np.stack([np.stack([np.full_like(du, f), zeros, du], -1),
                  np.stack([zeros, np.full_like(dv, -f), dv], -1)], axis=-2)            # (T, K, 2, 3)
    b = np.stack([-f * x - du * z, f * y - dv * z], axis=-1)                            # (T, K, 2)
    w = np.where(np.isfinite(pixels).all(-1) & np.isfinite(points).all(-1), confidence, 0.0)[..., None]
    a, b = np.nan_to_num(a), np.nan_to_num(b)
    normal = np.einsum("tkri,tkr,tkrj->tij", a, np.broadcast_to(w, b.shape), a)
    rhs = np.einsum("tkri,tkr,tkr->ti", a, np.broadcast_to(w, b.shape), b)
    enough = (w[..., 0] > 0).sum(-1) >= 2
    normal[~enough] = np.eye(3)
    translation = np.linalg.solve(normal, rhs[..., None])[..., 0]
    translation[~enough] = np.nan
    return translation


# Frames the focal length is estimated from, spread over the clip: enough to see the
# perspective of every pose, few enough to cost a fraction of a second.
_FOCAL_FRAMES = 300


def clip_camera(image_size: tuple[int, int], points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray, *,
                fov_deg: float | None, focal_mm: float | None, sensor_mm: float,
                estimated_px: float | None = None) -> tuple[Camera, str]:
    """The camera a clip is solved with, and where its focal length came from.

    In order: the lens's focal length over the sensor's width ("focal_mm"); the field of
    view given ("fov"); an earlier estimate for this clip (``estimated_px``, so a refine
    keeps its camera); else estimated from the clip's perspective ("estimated",
    :func:`~ikol_engine.ik.focal.estimate_focal`). The estimate is within 8 % on mocap
    filmed with BlazePose-like errors (benchmarks/results/reprojection.md), but
    BlazePose's own world landmarks show little perspective: on the Sports2D sample the
    reprojection error falls steadily towards a telephoto (24 degrees, against the
    default's 60 and a phone's wider view), so it is asked for, not the default.

    Args:
        points: (V, K, 3) metric keypoints about the person, y-up camera axes;
            pixels: (V, K, 2); confidence: (V, K).
    """
    width, height = image_size
    if focal_mm is not None:
        return Camera.from_focal(width, height, focal_mm / sensor_mm * width), "focal_mm"
    if fov_deg is not None:
        return Camera(width, height, fov_deg), "fov"
    if estimated_px is not None:
        return Camera.from_focal(width, height, estimated_px), "estimated"
    rows = np.unique(np.linspace(0, len(points) - 1, min(len(points), _FOCAL_FRAMES)).round().astype(int))
    focal = estimate_focal(points[rows], pixels[rows], confidence[rows], image_size,
                           fov_range_deg=(MIN_ESTIMATED_FOV_DEG, MAX_ESTIMATED_FOV_DEG))
    return Camera.from_focal(width, height, focal), "estimated"

"""The floor, from where the feet rest.

Feet touch the ground when they stop moving; a plane fitted through the foot points of
those moments (trimming the ones that stay above it, like a foot lifted but still)
gives the floor. The scene is then turned so the floor is y = 0 with +y up, which
fixes a tilted camera and stands the character on the ground in Blender.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ground:
    """The plane ``normal . p = height`` (unit normal pointing up, metres)."""

    normal: np.ndarray
    height: float
    contacts: int  # foot points the fit used

    def leveling(self) -> tuple[np.ndarray, np.ndarray]:
        """Rotation (3, 3) and offset (3,) mapping world points p to R p + o, floor at y = 0."""
        up = np.array([0.0, 1.0, 0.0])
        axis = np.cross(self.normal, up)
        sin, cos = np.linalg.norm(axis), float(self.normal @ up)
        if sin < 1e-12:
            rotation = np.eye(3)
        else:
            k = axis / sin
            skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
            rotation = np.eye(3) + sin * skew + (1 - cos) * skew @ skew  # Rodrigues: normal -> up
        return rotation, np.array([0.0, -self.height, 0.0])


def fit_ground(feet: np.ndarray, valid: np.ndarray, fps: float, *, still_speed: float = 0.3,
               tolerance: float = 0.03, min_contacts: int = 20) -> Ground | None:
    """Fits the floor through foot points at rest.

    Args:
        feet: (T, F, 3) world positions of foot points (heels, toes, ankles), y roughly up.
        valid: (T,) frames with a person.
        fps: frame rate, to turn displacements into speeds.
        still_speed: m/s below which a foot point counts as resting.
        tolerance: m; points farther above the plane than this are not contacts.
    Returns:
        The floor, or None where fewer than ``min_contacts`` resting foot points exist.
    """
    speed = np.full(feet.shape[:2], np.inf)
    both = valid[1:] & valid[:-1]
    speed[1:][both] = np.linalg.norm(feet[1:] - feet[:-1], axis=-1)[both] * fps
    points = feet[(speed < still_speed) & np.isfinite(feet).all(-1)]
    if len(points) < min_contacts:
        return None
    keep = np.ones(len(points), dtype=bool)
    for _ in range(5):
        centre = points[keep].mean(0)
        _, _, vt = np.linalg.svd(points[keep] - centre, full_matrices=False)
        normal = vt[-1] if vt[-1][1] > 0 else -vt[-1]
        height = float(normal @ centre)
        # Only the lowest points are on the floor: trim those well above the plane, then
        # refit; a floor lower than every contact would be the wrong answer, so the fit
        # settles on the lower envelope.
        above = points @ normal - height
        new_keep = above < tolerance
        if new_keep.sum() < min_contacts or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    return Ground(normal=normal, height=height, contacts=int(keep.sum()))

"""When a foot rests on the floor, and where: contacts for the IK's foot-lock term.

A resting heel or toe barely moves in the image, barely moves in 3D and sits on the
floor. The image evidence is the precise one across the viewing ray (a regressor's
pixels are far better than its depth), so its speed is measured in body heights per
second, the same for a near and a far person; the 3D speed and the height above the
floor cover what the image cannot see (motion along the ray, a foot held still in the
air). Hysteresis (strict thresholds to start a contact, looser ones to keep it) stops a
noisy foot flickering in and out, and contacts shorter than a minimum are dropped.

Foot points are :data:`.world_terms.FOOT_KEYPOINTS`: left heel, right heel, left toe,
right toe (columns of every (T, 4) array here).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world_terms import PinholeCamera


@dataclass(frozen=True)
class ContactThresholds:
    """What counts as resting, to start a contact; ``keep`` times more keeps it going.

    Attributes:
        image_speed: body heights per second in the image.
        speed: m/s in 3D.
        height: m above the floor (after the point's resting clearance).
        keep: factor on every threshold while a contact lasts (>= 1).
        min_duration_s: shorter contacts are dropped.
        window_s: speeds are displacements over this long.
    """

    image_speed: float = 0.12
    speed: float = 0.35
    height: float = 0.05
    keep: float = 1.6
    min_duration_s: float = 0.1
    window_s: float = 0.2

    def __post_init__(self) -> None:
        for name in ("image_speed", "speed", "height", "min_duration_s", "window_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.keep >= 1:
            raise ValueError(f"keep must be >= 1, got {self.keep!r}")


def _speed(values: np.ndarray, fps: float, window_s: float) -> np.ndarray:
    """(T, F, D) -> (T, F) speed per second over a window of ``window_s`` centred on each
    frame (shortened at the clip's ends): frame-to-frame noise would swamp a resting foot's."""
    frames = len(values)
    if frames < 2:
        return np.zeros(values.shape[:2])
    half = max(1, int(round(window_s * fps / 2)))
    index = np.arange(frames)
    after, before = np.minimum(index + half, frames - 1), np.maximum(index - half, 0)
    return np.linalg.norm(values[after] - values[before], axis=-1) * fps / (after - before)[:, None]


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(T,) bool -> [(start, stop)] of its True runs, stop exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def detect_contacts(feet: np.ndarray, fps: float, *, pixels: np.ndarray | None = None,
                    body_height_px: np.ndarray | None = None, floor: tuple[np.ndarray, float] | None = None,
                    clearance: np.ndarray | None = None, floor_frames: np.ndarray | None = None,
                    thresholds: ContactThresholds = ContactThresholds()) -> np.ndarray:
    """Per-frame contacts of each heel and toe.

    Args:
        feet: (T, 4, 3) world positions of the foot keypoints, metres (e.g. a first solve's).
        fps: frame rate of the T consecutive frames.
        pixels: (T, 4, 2) the same points in the image, or None (no image evidence).
        body_height_px: (T,) the person's height in the image (e.g. the span of their
            keypoints' pixels), needed with ``pixels``.
        floor: (normal (3,) pointing up, height): the plane ``normal . p = height``, or
            None (no height evidence).
        clearance: (4,) or (T, 4) resting height of each point above the floor
            (:func:`.world_terms.foot_clearance`); default 0.
        floor_frames: (T,) bool, the frames the floor is under the person (default all);
            elsewhere (on something lower) speeds alone decide.
    Returns:
        (T, 4) bool.
    Raises:
        ValueError: wrong shapes, non-finite values, pixels without body heights.
    """
    feet = np.asarray(feet, dtype=np.float64)
    if feet.ndim != 3 or feet.shape[1:] != (4, 3):
        raise ValueError(f"feet must have shape (T, 4, 3), got {feet.shape}")
    if not np.isfinite(feet).all():
        raise ValueError("feet contain NaN or infinite values")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    frames = len(feet)
    # Each piece of evidence: (value per frame and point, threshold to start a contact).
    evidence = [(_speed(feet, fps, thresholds.window_s), thresholds.speed)]
    if pixels is not None:
        pixels = np.asarray(pixels, dtype=np.float64)
        if pixels.shape != (frames, 4, 2) or not np.isfinite(pixels).all():
            raise ValueError(f"pixels must be finite with shape ({frames}, 4, 2), got {pixels.shape}")
        if body_height_px is None:
            raise ValueError("pixels need body_height_px to turn pixel speeds into body heights per second")
        size = np.asarray(body_height_px, dtype=np.float64)
        if size.shape != (frames,) or not (size > 0).all():
            raise ValueError(f"body_height_px must be ({frames},) and > 0")
        evidence.append((_speed(pixels, fps, thresholds.window_s) / size[:, None], thresholds.image_speed))
    if floor is not None:
        normal = np.asarray(floor[0], dtype=np.float64)
        normal = normal / np.linalg.norm(normal)
        rest = np.zeros(4) if clearance is None else np.asarray(clearance, dtype=np.float64)
        height = feet @ normal - float(floor[1]) - rest
        if floor_frames is not None:
            height = np.where(np.asarray(floor_frames, dtype=bool)[:, None], height, 0.0)
        evidence.append((height, thresholds.height))
    start = np.logical_and.reduce([value <= limit for value, limit in evidence])
    keep = np.logical_and.reduce([value <= limit * thresholds.keep for value, limit in evidence])

    contacts = np.zeros((frames, 4), dtype=bool)
    min_frames = max(1, int(round(thresholds.min_duration_s * fps)))
    for point in range(4):
        # A contact grows out of frames that pass the strict test, forwards and backwards
        # through those that pass the loose one.
        held = np.zeros(frames, dtype=bool)
        for begin, end in runs(keep[:, point]):
            if start[begin:end, point].any():
                held[begin:end] = True
        for begin, end in runs(held):
            if end - begin >= min_frames:
                contacts[begin:end, point] = True
    return contacts


def contact_targets(feet: np.ndarray, contacts: np.ndarray, *, floor: tuple[np.ndarray, float] | None = None,
                    clearance: np.ndarray | None = None, floor_frames: np.ndarray | None = None,
                    pixels: np.ndarray | None = None,
                    camera: PinholeCamera | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where each contact holds its foot point: the mean over the contact, on the floor if given.

    With the points' pixels and the camera, the image decides where across the view the
    contact is (a regressor's pixels are far better than its depth): the point goes on
    the viewing ray of its mean pixel at the contact's mean depth, then onto the floor.
    (Not where the ray meets the floor: a camera looks along the floor at a grazing
    angle, so a centimetre of error in the floor's height moves that point by several.)

    Args:
        feet: (T, 4, 3) world positions of the foot keypoints; contacts: (T, 4) bool.
        floor: (normal (3,), height), or None; clearance: (4,) resting heights above it;
            floor_frames: (T,) bool, the frames the floor is under the person (default
            all): a contact with a frame elsewhere stays off the floor.
        pixels: (T, 4, 2) the points in the image, with ``camera`` (``feet`` then in its
            frame: :mod:`.world_terms`).
    Returns:
        targets: (T, 4, 3), the contact's position in each of its frames (0 elsewhere);
        confidence: (T, 4), 1 in contact, else 0: ``solve``'s ``foot_lock`` and
        ``foot_lock_confidence``.
    """
    feet = np.asarray(feet, dtype=np.float64)
    contacts = np.asarray(contacts, dtype=bool)
    if feet.ndim != 3 or feet.shape[1:] != (4, 3) or contacts.shape != feet.shape[:2]:
        raise ValueError(f"feet must be (T, 4, 3) and contacts (T, 4), got {feet.shape} and {contacts.shape}")
    if (pixels is None) != (camera is None):
        raise ValueError("pixels and camera come together")
    targets = np.zeros_like(feet)
    if floor is not None:
        normal = np.asarray(floor[0], dtype=np.float64)
        normal = normal / np.linalg.norm(normal)
        rest = np.zeros(4) if clearance is None else np.asarray(clearance, dtype=np.float64)
    for point in range(4):
        for begin, end in runs(contacts[:, point]):
            centre = feet[begin:end, point].mean(0)
            on_floor = floor is not None and (floor_frames is None or np.all(floor_frames[begin:end]))
            if camera is not None:
                centre = _viewing_ray(pixels[begin:end, point].mean(0), camera) * -centre[2]
            if on_floor:
                centre = centre - (centre @ normal - float(floor[1]) - rest[point]) * normal
            targets[begin:end, point] = centre
    return targets, contacts.astype(np.float64)


def _viewing_ray(pixel: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """(3,) the direction through a pixel, camera frame, scaled to z = -1."""
    return np.array([(pixel[0] - camera.cx) / camera.focal_px, -(pixel[1] - camera.cy) / camera.focal_px, -1.0])

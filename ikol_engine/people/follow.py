"""Landmarks of one chosen person only: the regressor sees nobody else found in the clip.

Given the person's track and everyone else's (from :mod:`.scan`), :class:`FollowPlan`
holds the person's box at every frame of the track's span (interpolated between
detections). The regressor gets each frame with every other person's box blacked out,
except where it overlaps the chosen person's: the frame keeps its size, its coordinates
and the chosen person's surroundings, so a video regressor's own tracking and smoothing
(BlazePose's) run as on the untouched frame, while nobody else can be seen, let alone
followed. Someone can still show inside the chosen person's box, where another person
passes in front: a frame whose pose is centred nearer another person's box than the
chosen one's, or outside the chosen box, is dropped (a gap) by :func:`keep_chosen`,
never keyed as the chosen person. Frames outside the track's span are gaps too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..regressors.base import KeypointFrames
from .boxes import follow_boxes
from .scan import boxes_at
from .tracker import Track

__all__ = ["FollowPlan", "keep_chosen", "spread"]


@dataclass(frozen=True)
class FollowPlan:
    """Where the chosen person is in each frame of their span, and where the others are.

    Attributes:
        track: the chosen person.
        others: everyone else found in the clip.
        boxes: (S, 4) the chosen person's box at frames ``first`` .. ``last``.
        first, last: the span followed: the track's, reaching to the frames the detector
            skipped around it (see :meth:`make`).
    """

    track: Track
    others: tuple[Track, ...]
    boxes: np.ndarray
    first: int
    last: int

    @classmethod
    def make(cls, track: Track, tracks: list[Track], step: int = 1, start: int = 0,
             end: int | None = None) -> FollowPlan:
        """The plan for ``track`` among all of a scan's ``tracks`` (which include it).

        The detector ran every ``step`` frames of ``start .. end - 1``, so the person may
        be there up to ``step - 1`` frames before their first detection and after their
        last: the span reaches that far (within the scanned range), holding the edge box.
        """
        first = max(track.first_frame - (step - 1), start)
        last = track.last_frame + step - 1
        if end is not None:
            last = min(last, end - 1)
        frames = np.clip(np.arange(first, last + 1), track.first_frame, track.last_frame)
        others = tuple(t for t in tracks if t.id != track.id)
        return cls(track, others, follow_boxes(track, frames), first, last)

    def covers(self, frame: int) -> bool:
        return self.first <= frame <= self.last

    def view(self, frame: int, image: np.ndarray) -> np.ndarray:
        """Frame ``frame``'s (H, W, 3) uint8 image with every other person's box black,
        except where it overlaps the chosen person's (changed in place, and returned)."""
        height, width = image.shape[:2]
        own = _pixels(self.boxes[frame - self.first], width, height)
        keep = image[own].copy()
        for box in boxes_at(list(self.others), np.array([frame]))[:, 0]:
            if not np.isnan(box).any():
                image[_pixels(box, width, height)] = 0
        image[own] = keep
        return image

    def boxes_over(self, frames: np.ndarray) -> np.ndarray:
        """(F, 4) float32 the chosen person's box at each of (F,) frames, NaN outside the span."""
        frames = np.asarray(frames)
        out = np.full((len(frames), 4), np.nan, np.float32)
        inside = (frames >= self.first) & (frames <= self.last)
        out[inside] = self.boxes[frames[inside] - self.first]
        return out


def keep_chosen(plan: FollowPlan, frames: np.ndarray, found: KeypointFrames) -> KeypointFrames:
    """The regressor's output with poses that are not the chosen person's dropped.

    Args:
        frames: (N,) the frame index of each of ``found``'s frames.
        found: the regressor's output on those N frames.

    Returns:
        The same frames, with ``detected`` False (and every row zero) where the pose is
        someone else's, or the frame is outside the plan's span.
    """
    frames = np.asarray(frames)
    inside = (frames >= plan.first) & (frames <= plan.last)
    mine = found.detected & inside
    mine[inside] &= _is_chosen(plan, frames[inside], found.image_keypoints[inside], found.confidence[inside])
    keep = mine[:, None]
    return KeypointFrames(
        found.keypoint_names, np.where(keep[..., None], found.keypoints, 0.0), np.where(keep, found.confidence, 0.0),
        np.where(keep[..., None], found.image_keypoints, 0.0), mine,
        twist=None if found.twist is None else np.where(keep, found.twist, 0.0),
        twist_confidence=None if found.twist_confidence is None else np.where(keep, found.twist_confidence, 0.0),
        betas=found.betas)


def _pixels(box: np.ndarray, width: int, height: int) -> tuple[slice, slice]:
    """The rows and columns of an [x0, y0, x1, y1] box, clipped to a width x height frame."""
    x0, x1 = (int(np.clip(round(v), 0, width)) for v in (box[0], box[2]))
    y0, y1 = (int(np.clip(round(v), 0, height)) for v in (box[1], box[3]))
    return slice(y0, y1), slice(x0, x1)


def _is_chosen(plan: FollowPlan, frames: np.ndarray, image: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """(N,) whether each pose (image (N, R, 2) pixels, confidence (N, R)) is centred in the
    chosen person's box and nearer its centre than any other person's, in box sides."""
    weights = np.maximum(confidence, 1e-6)
    centre = np.einsum("nr,nrk->nk", weights, image) / weights.sum(axis=1, keepdims=True)
    own = plan.boxes[frames - plan.first]
    inside = np.all((centre >= own[:, :2]) & (centre <= own[:, 2:]), axis=1)
    own_distance = _distance_in_sides(centre, own)
    nearest_other = np.full(len(frames), np.inf)
    if plan.others:
        for box in boxes_at(list(plan.others), frames):  # (N, 4) per other person, NaN where absent
            distance = _distance_in_sides(centre, box)
            nearest_other = np.fmin(nearest_other, distance)
    return inside & (own_distance <= nearest_other)


def _distance_in_sides(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) distance of (N, 2) points from the centres of (N, 4) boxes, over each box's side."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    return np.linalg.norm(points - (boxes[:, :2] + boxes[:, 2:]) / 2, axis=1) / side


def spread(found: KeypointFrames, rows: np.ndarray, total: int) -> KeypointFrames:
    """Frames regressed at positions ``rows`` (N,) of a clip of ``total`` frames, with
    empty (undetected) frames everywhere else."""

    def placed(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        out = np.zeros((total, *values.shape[1:]), values.dtype)
        out[rows] = values
        return out

    return KeypointFrames(found.keypoint_names, placed(found.keypoints), placed(found.confidence),
                          placed(found.image_keypoints), placed(found.detected), twist=placed(found.twist),
                          twist_confidence=placed(found.twist_confidence), betas=found.betas)

"""A clip's observations made ready for the IK: sides repaired, dropouts bridged, noise filtered.

Steps, for any regressor (its :class:`~ikol_engine.observations.KeypointLayout` says
which points pair up and which parts to check against the shoulders):

1. the camera axes turned into the motion file's y-up frame;
2. left/right swaps undone, body part by body part (BlazePose swaps sides in back
   views, and often the legs alone for a few frames), then the layout's torso-checked
   parts judged against the shoulders frame by frame;
3. dropouts up to ``max_gap_s`` interpolated (twist through its cosine and sine, so it
   never goes the long way round), longer ones held and reported;
4. one-euro filtering, forward and backward (no lag), of the keypoints, their pixels
   (in metres at the person's distance: the filter's speed coefficient is per metre) and
   the unwrapped twist.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import skeleton
from ..observations import KeypointLayout, Observations, to_world_axes
from .cleanup import fill_gaps, fix_left_right_swaps, swap_pairs
from .filtering import one_euro_forward_backward
from .options import SolveOptions


@dataclass(frozen=True)
class CleanClip:
    """A clip's keypoints after clean-up, all frames.

    Attributes:
        points: (T, R, 3) filtered, y-up metres about the hips; raw_points: the same
            before filtering; confidence: (T, R); image: (T, R, 2) pixels.
        twist, twist_confidence: (T, 23) the regressor's twist angles, zeros (unseen)
            where it gives none.
        valid: (T,) frames seen or interpolated; filled: (T,) interpolated; held: (T,)
            in a dropout too long to bridge; swapped: (T,) some part's sides swapped back.
    """

    points: np.ndarray
    raw_points: np.ndarray
    confidence: np.ndarray
    image: np.ndarray
    twist: np.ndarray
    twist_confidence: np.ndarray
    valid: np.ndarray
    filled: np.ndarray
    held: np.ndarray
    swapped: np.ndarray


def clean_clip(observed: Observations, layout: KeypointLayout, options: SolveOptions) -> CleanClip:
    """Steps 1-4 of the module docstring."""
    detected = observed.detected
    points, confidence, image, swapped = _repair_sides(observed, layout)
    max_gap = int(round(options.max_gap_s * observed.fps))
    points, filled, held = fill_gaps(points, detected, max_gap)
    confidence, image = (fill_gaps(a, detected, max_gap)[0] for a in (confidence, image))
    valid = detected | filled
    raw_points = points
    params = options.filter_params()
    if params is not None:
        scale = _pixels_per_metre(points[valid], image[valid], confidence[valid])
        points = one_euro_forward_backward(points, observed.fps, params, valid)
        image = one_euro_forward_backward(image / scale, observed.fps, params, valid) * scale
    twist, twist_confidence = _clean_twist(observed, max_gap, valid, options)
    return CleanClip(points, raw_points, confidence, image, twist, twist_confidence, valid, filled, held, swapped)


def _pixels_per_metre(points: np.ndarray, image: np.ndarray, confidence: np.ndarray) -> float:
    """The person's median size in the image over their metric size: (V, R, 3) points,
    (V, R, 2) pixels, (V, R) confidence."""
    seen = (confidence > 0)[..., None]

    def span(values: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.where(seen, values, -np.inf).max(1) - np.where(seen, values, np.inf).min(1), axis=-1)

    ratio = span(image) / span(points)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    return float(np.median(ratio)) if len(ratio) else 1.0


def _repair_sides(observed: Observations,
                  layout: KeypointLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points (T, R, 3) in y-up axes, confidence (T, R), pixels (T, R, 2) with swapped
    sides put back, and the frames (T,) where any part was swapped."""
    points = to_world_axes(observed.keypoints.astype(np.float64))
    confidence, image = observed.confidence.astype(np.float64), observed.image.astype(np.float64)
    exchanged = {}  # per body part: frames whose labels end up exchanged
    for part, pairs in layout.swap_groups.items():
        points, confidence, exchanged[part] = fix_left_right_swaps(points, confidence, pairs, valid=observed.detected)
        image = swap_pairs(image, pairs, exchanged[part])
    for part in layout.torso_checked:
        against = layout.swapped_against_torso(points, part) & observed.detected
        points, confidence, image = (swap_pairs(a, layout.swap_groups[part], against)
                                     for a in (points, confidence, image))
        exchanged[part] ^= against
    swapped = np.logical_or.reduce([np.zeros(len(observed.detected), dtype=bool), *exchanged.values()])
    return points, confidence, image, swapped


def _clean_twist(observed: Observations, max_gap: int, valid: np.ndarray,
                 options: SolveOptions) -> tuple[np.ndarray, np.ndarray]:
    """(T, 23) twist and confidence, bridged and filtered; zeros (unseen) where the
    regressor gives no twist angles."""
    if observed.twist is None:
        unseen = np.zeros((len(observed.detected), skeleton.NUM_TWISTS))
        return unseen, unseen.copy()
    detected = observed.detected
    confidence = (np.ones(observed.twist.shape) if observed.twist_confidence is None
                  else np.clip(observed.twist_confidence.astype(np.float64), 0.0, None))
    confidence = fill_gaps(confidence, detected, max_gap)[0]
    twist = observed.twist.astype(np.float64)
    turn = fill_gaps(np.stack([np.cos(twist), np.sin(twist)], axis=-1), detected, max_gap)[0]
    twist = np.arctan2(turn[..., 1], turn[..., 0])
    params = options.filter_params()
    if params is not None:
        unwrapped = np.unwrap(twist, axis=0)
        twist = np.angle(np.exp(1j * one_euro_forward_backward(unwrapped, observed.fps, params, valid)))
    return twist, confidence

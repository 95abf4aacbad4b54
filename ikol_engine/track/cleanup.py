"""Clean-up of a clip's keypoints before the IK: dropouts and left/right swaps.

Per-frame numpy arrays whose first axis is time (T frames); a ``valid`` mask (T,) marks
the frames that hold a measurement. Which keypoints form left/right pairs is the
regressor's business (its :class:`~ikol_engine.observations.KeypointLayout`); the
repair here works on any pairs.

* :func:`gap_runs`, :func:`fill_gaps`: interpolate short dropouts, hold across long ones.
* :func:`fix_left_right_swaps`, :func:`swap_pairs`: undo frames where the pose
  estimator swapped the body's left and right sides.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# --------------------------------------------------------------------------------------
# Gaps


def gap_runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """Runs of invalid frames, as half-open ``(start, end)`` frame ranges, in order.

    Args:
        valid: (T,) bool.
    """
    valid = np.asarray(valid, dtype=bool)
    edges = np.diff(np.concatenate([[0], (~valid).astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def fill_gaps(x: np.ndarray, valid: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fills invalid frames from their valid neighbours.

    A gap of at most ``max_gap`` invalid frames with valid frames on both sides is
    interpolated linearly between them. Longer gaps, and invalid runs at the start or
    end of the clip, are held at the nearest valid frame (the earlier one on a tie):
    interpolating across a long dropout would invent motion.

    Args:
        x: (T, ...) samples.
        valid: (T,) bool; at least one frame must be valid.
        max_gap: longest gap (frames) to interpolate, >= 0.
    Returns:
        filled: (T, ...) float64; valid frames unchanged.
        filled_mask: (T,) bool, frames that were interpolated.
        held_mask: (T,) bool, frames that hold a neighbour's value.
    """
    x = np.asarray(x, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (len(x),):
        raise ValueError(f"valid must have shape ({len(x)},), got {valid.shape}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    if not valid.any():
        raise ValueError("fill_gaps needs at least one valid frame")
    frames = np.arange(len(x))
    # Index of the last valid frame at or before t (-1: none) and the first at or after
    # t (T: none).
    before = np.maximum.accumulate(np.where(valid, frames, -1))
    after = np.minimum.accumulate(np.where(valid, frames, len(x))[::-1])[::-1]
    inside = (before >= 0) & (after < len(x))
    interpolate = ~valid & inside & (after - before - 1 <= max_gap)
    held = ~valid & ~interpolate

    filled = x.copy()
    lo, hi = before[interpolate], after[interpolate]
    weight = ((frames[interpolate] - lo) / (hi - lo)).reshape((-1,) + (1,) * (x.ndim - 1))
    filled[interpolate] = (1.0 - weight) * x[lo] + weight * x[hi]
    use_before = (before >= 0) & ((after >= len(x)) | (frames - before <= after - frames))
    nearest = np.where(use_before, before, after)
    filled[held] = x[nearest[held]]
    return filled, interpolate, held


# --------------------------------------------------------------------------------------
# Left/right swaps


def _pair_permutation(pairs: Sequence[tuple[int, int]], num_keypoints: int) -> np.ndarray:
    """(K,) index map exchanging each pair; each keypoint may be in one pair at most."""
    permutation = np.arange(num_keypoints)
    seen: set[int] = set()
    for left, right in pairs:
        if left == right or {left, right} & seen:
            raise ValueError(f"pairs must be disjoint pairs of distinct keypoints, got {list(pairs)}")
        if not (0 <= left < num_keypoints and 0 <= right < num_keypoints):
            raise ValueError(f"pair ({left}, {right}) is out of range for {num_keypoints} keypoints")
        seen |= {left, right}
        permutation[left], permutation[right] = right, left
    return permutation


def swap_pairs(array: np.ndarray, pairs: Sequence[tuple[int, int]], frames_mask: np.ndarray) -> np.ndarray:
    """Exchanges the left/right keypoints of every pair in the chosen frames.

    Args:
        array: (T, K, ...) per-keypoint values: 3D or image keypoints, confidences.
        pairs: (left, right) keypoint indices.
        frames_mask: (T,) bool, frames to swap.
    Returns:
        (T, K, ...) a copy with the pairs exchanged where ``frames_mask``.
    """
    array = np.asarray(array)
    frames_mask = np.asarray(frames_mask, dtype=bool)
    if array.ndim < 2 or frames_mask.shape != (len(array),):
        raise ValueError(f"need array (T, K, ...) and frames_mask (T,), "
                         f"got {array.shape} and {frames_mask.shape}")
    permutation = _pair_permutation(pairs, array.shape[1])
    out = array.copy()
    out[frames_mask] = array[frames_mask][:, permutation]
    return out


def _centred_pairs(keypoints: np.ndarray, confidence: np.ndarray,
                   paired: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paired keypoints about their confidence-weighted centroid, and their weights.

    Centring removes the body's translation, which can be a sizeable fraction of its
    width per frame (a person running across the view) and grows across dropouts; the
    centroid of both sides is the same whichever way they are labelled.

    Args:
        keypoints: (T, K, 3); confidence: (T, K); paired: (P,) keypoint indices.
    Returns:
        (T, P, 3) centred positions (0 where unusable) and (T, P) weights (0 there).
    """
    points = keypoints[:, paired]
    weight = np.where(np.isfinite(points).all(-1), np.maximum(confidence[:, paired], 0.0), 0.0)
    points = np.where(weight[..., None] > 0, points, 0.0)
    total = weight.sum(-1, keepdims=True)
    centre = (weight[..., None] * points).sum(1) / np.where(total > 0, total, 1.0)
    return np.where(weight[..., None] > 0, points - centre[:, None], 0.0), weight


def _link_flips(points: np.ndarray, weight: np.ndarray, exchange: np.ndarray,
                earlier: np.ndarray, later: np.ndarray, ratio: float) -> np.ndarray:
    """Whether the left/right labelling changes between frames ``earlier`` and ``later``.

    Compares the paired keypoints of the later frame with those of the earlier one as
    labelled and with left and right exchanged: a confidence-weighted mean distance for
    each. The labelling is taken to change when the exchanged one is clearly closer
    (``ratio`` times the as-labelled one or less); near ties (a pair whose sides are
    close together, or a frame too blurred to tell) keep it.

    Args:
        points: (T, P, 3) and weight: (T, P) from :func:`_centred_pairs`.
        exchange: (P,) the index map that swaps left and right among the P points.
        earlier, later: (L,) frame indices of the L links.
    Returns:
        (L,) bool.
    """
    def cost(order: np.ndarray) -> np.ndarray:
        both = weight[earlier] * weight[later][:, order]
        distance = np.linalg.norm(points[later][:, order] - points[earlier], axis=-1)
        total = both.sum(-1)
        return np.where(total > 0, (both * distance).sum(-1) / np.where(total > 0, total, 1.0), np.nan)

    as_is, exchanged = cost(np.arange(len(exchange))), cost(exchange)
    # NaN (no confident keypoint in common) compares False: no evidence, no change.
    return exchanged < ratio * as_is


def fix_left_right_swaps(keypoints: np.ndarray, confidence: np.ndarray, pairs: Sequence[tuple[int, int]],
                         valid: np.ndarray | None = None, *, ratio: float = 0.5,
                         max_link_gap: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finds and undoes frames whose left and right sides the pose estimator swapped.

    How it decides:

    1. Link each valid frame to the previous valid frame, when at most ``max_link_gap``
       invalid frames lie between them. For each link, test whether the labelling
       changes: swapping all pairs of the later frame must bring its paired keypoints
       clearly closer to the earlier frame's (confidence-weighted mean distance below
       ``ratio`` times the unswapped one), both frames taken about the centroid of
       their paired keypoints so that the body's own travel does not count. Motion
       between neighbouring frames is small next to the distance between a body's
       left and right sides, so a real swap gives a ratio near 0 and ordinary motion
       one near 1 or above; a pair whose two sides pass close to each other (knees in
       a stride, crossing hands) moves both costs alike and does not trigger, since
       the other pairs stay far apart.
    2. Chain the changes into a labelling parity per frame; frames of equal parity form
       runs of consistent labelling. Links only tell relative labelling, so which
       parity is right comes from the assumption that swaps are the exception: within
       each chain of linked frames, the parity held by the majority of its frames is
       taken as correct and the frames of the other parity are swapped back. This also
       catches a clip that *starts* swapped, which a frame-to-previous rule would take
       as the reference.

    A wrong link decision would invert the labelling of everything after it in the
    chain until the next one; the clear-margin ``ratio`` keeps that rare, and a chain
    breaks at long dropouts, where neighbouring frames no longer predict each other.
    All pairs are swapped together (the usual failure: the estimator takes a back view
    for a front view).

    Args:
        keypoints: (T, K, 3) positions (any unit; may be NaN where confidence is 0).
        confidence: (T, K) weights >= 0.
        pairs: (left, right) keypoint indices of the body's symmetric keypoints.
        valid: (T,) frames with a person; None = all. Invalid frames are never swapped.
        ratio: how much closer the swapped labelling must be to count, in (0, 1).
        max_link_gap: invalid frames a link may span.
    Returns:
        keypoints: (T, K, 3) with the swapped frames undone.
        confidence: (T, K) likewise.
        swapped: (T,) bool, the frames that were swapped back; pass it to
            :func:`swap_pairs` to fix other per-keypoint arrays (image keypoints).
    """
    keypoints = np.asarray(keypoints, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if keypoints.ndim != 3 or confidence.shape != keypoints.shape[:2]:
        raise ValueError(f"need keypoints (T, K, 3) and confidence (T, K), "
                         f"got {keypoints.shape} and {confidence.shape}")
    if valid is None:
        valid = np.ones(len(keypoints), dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (len(keypoints),):
        raise ValueError(f"valid must have shape ({len(keypoints)},), got {valid.shape}")
    if not 0 < ratio < 1:
        raise ValueError(f"ratio must lie in (0, 1), got {ratio}")
    permutation = _pair_permutation(pairs, keypoints.shape[1])

    frames = np.flatnonzero(valid)
    paired = np.flatnonzero(permutation != np.arange(len(permutation)))
    swapped = np.zeros(len(keypoints), dtype=bool)
    if len(frames) == 0 or len(paired) == 0:
        return keypoints.copy(), confidence.copy(), swapped
    linked = np.diff(frames) <= max_link_gap + 1
    points, weight = _centred_pairs(keypoints, confidence, paired)
    exchange = np.searchsorted(paired, permutation[paired])
    flips = _link_flips(points, weight, exchange, frames[:-1], frames[1:], ratio) & linked
    parity = np.concatenate([[0], np.cumsum(flips) % 2])
    chain = np.concatenate([[0], np.cumsum(~linked)])
    # Per chain: frames of odd parity vs all its frames; the minority parity is swapped.
    odd = np.bincount(chain, weights=parity)
    size = np.bincount(chain)
    right_parity = (2 * odd > size).astype(int)  # a tie keeps the chain's first labelling
    swapped[frames] = parity != right_parity[chain]
    return swap_pairs(keypoints, pairs, swapped), swap_pairs(confidence, pairs, swapped), swapped

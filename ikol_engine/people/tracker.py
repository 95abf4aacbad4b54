"""Per-frame person detections linked into tracks: one id per person for the whole clip.

Each frame, every live track predicts its box with constant velocity from its last
detection, and detections are assigned to tracks by the Hungarian method on a cost that
adds box overlap, centre distance and size change (:func:`association_cost`), measured
from the predicted box or from the last detected one, whichever fits better. A track's
size is the median of its recent boxes, so that one odd detection (two overlapping people
boxed as one) neither rescales it nor keeps it from its person afterwards. A track
missing a detection coasts on its prediction for up to ``max_gap`` frames, so a person
walking behind another, or lost by the detector for a moment, is re-linked when seen
again. The allowed centre distance grows with the time a track has been unseen, since
its prediction becomes less certain.

A detection claimed by no track starts a tentative track, unless it mostly overlaps a
claimed detection (a second box on the same person); a track gets an id only once it has
been detected ``min_hits`` times, which discards one-frame false detections. Ids are
integers from 1, given in order of first appearance when tracking ends.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .detector import Detections, box_iou

__all__ = ["Track", "Tracker", "TrackerOptions", "assign", "association_cost", "track_detections"]

#: Cost marking a pair as not allowed.
FORBIDDEN = 1e6


@dataclass(frozen=True)
class Track:
    """One person over the clip, at the frames they were detected.

    Attributes:
        id: integer from 1.
        frames: (N,) int, increasing frame indices.
        boxes: (N, 4) float, [x0, y0, x1, y1] pixels.
        scores: (N,) float, detector scores.
        keypoints: (N, 4, 2) float, the detector's keypoints in pixels.
    """

    id: int
    frames: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    @property
    def first_frame(self) -> int:
        return int(self.frames[0])

    @property
    def last_frame(self) -> int:
        return int(self.frames[-1])

    @property
    def mean_area(self) -> float:
        """Mean box area in square pixels."""
        sizes = self.boxes[:, 2:] - self.boxes[:, :2]
        return float(np.mean(sizes[:, 0] * sizes[:, 1]))


@dataclass(frozen=True)
class TrackerOptions:
    """How detections are linked.

    Attributes:
        max_gap: frames a track may go undetected and still be re-linked; the default is
            one second at 30 fps, callers set it from the video's frame rate.
        min_hits: detections a track needs to be kept.
        max_distance: centre distance allowed for a track seen in the previous frame, in
            units of the track's box side.
        distance_growth: extra allowed distance per frame unseen, in box sides.
        max_size_ratio: largest allowed ratio between the box sides of track and detection.
        distance_weight, size_weight: weights of the distance and log-size terms against
            ``1 - IoU`` in the cost.
        velocity_smoothing: weight of the newest velocity measurement (0..1).
        size_window: a track's size is the median over its last this many detections.
        duplicate_overlap: an unclaimed detection starts no track where it and a claimed
            one overlap by more than this fraction of the smaller box: the detector
            sometimes boxes one person twice at different scales.
    """

    max_gap: int = 30
    min_hits: int = 3
    max_distance: float = 0.5
    distance_growth: float = 0.05
    max_size_ratio: float = 1.5
    distance_weight: float = 1.0
    size_weight: float = 0.5
    velocity_smoothing: float = 0.5
    duplicate_overlap: float = 0.6
    size_window: int = 10

    def __post_init__(self) -> None:
        if self.max_gap < 0 or self.min_hits < 1:
            raise ValueError(f"need max_gap >= 0 and min_hits >= 1, got {self.max_gap}, {self.min_hits}")
        if self.max_size_ratio < 1.0:
            raise ValueError(f"max_size_ratio must be >= 1, got {self.max_size_ratio}")
        if not 0.0 < self.velocity_smoothing <= 1.0:
            raise ValueError(f"velocity_smoothing must be in (0, 1], got {self.velocity_smoothing}")
        if not 0.0 < self.duplicate_overlap <= 1.0:
            raise ValueError(f"duplicate_overlap must be in (0, 1], got {self.duplicate_overlap}")
        if self.size_window < 1:
            raise ValueError(f"size_window must be >= 1, got {self.size_window}")


def association_cost(
    predicted: np.ndarray, unseen: np.ndarray, boxes: np.ndarray, options: TrackerOptions
) -> np.ndarray:
    """Cost of giving each detection to each track; :data:`FORBIDDEN` outside the gates.

    Args:
        predicted: (T, 4) the tracks' predicted boxes [x0, y0, x1, y1].
        unseen: (T,) frames since each track was last detected (>= 1).
        boxes: (D, 4) the detections' boxes.

    Returns:
        (T, D) float: ``1 - IoU + distance_weight * d + size_weight * |log side ratio|``,
        d being the centre distance in track box sides.
    """
    side_t = _side(predicted)[:, None]
    side_d = _side(boxes)[None, :]
    centre_t = (predicted[:, :2] + predicted[:, 2:])[:, None, :] / 2
    centre_d = (boxes[:, :2] + boxes[:, 2:])[None, :, :] / 2
    distance = np.linalg.norm(centre_d - centre_t, axis=2) / side_t
    log_ratio = np.abs(np.log(side_d / side_t))
    cost = (
        1.0
        - box_iou(predicted, boxes)
        + options.distance_weight * distance
        + options.size_weight * log_ratio
    )
    allowed_distance = options.max_distance + options.distance_growth * (unseen[:, None] - 1)
    allowed = (distance <= allowed_distance) & (log_ratio <= np.log(options.max_size_ratio))
    return np.where(allowed, cost, FORBIDDEN)


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one pairs of rows and columns, leaving forbidden pairs out.

    Args:
        cost: (T, D), :data:`FORBIDDEN` where a pair is not allowed.

    Returns:
        [(row, column), ...] sorted by row.
    """
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < FORBIDDEN]


def _side(boxes: np.ndarray) -> np.ndarray:
    """(N,) mean of width and height, floored at one pixel, of (N, 4) boxes."""
    return np.maximum(((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2, 1.0)


def _covered(boxes: np.ndarray, claimed: list[int], overlap: float) -> np.ndarray:
    """(D,) bool: which of (D, 4) boxes share more than ``overlap`` of the smaller box's
    area with one of the boxes indexed by ``claimed``."""
    if not claimed:
        return np.zeros(len(boxes), bool)
    others = boxes[claimed]
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    smaller = np.minimum(area[:, None], area[claimed][None, :])
    return np.any(inter > overlap * np.maximum(smaller, 1e-9), axis=1)


@dataclass
class _LiveTrack:
    """A track being built: its history and its motion state."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    serial: int = 0  # the tracker's count of tracks started before this one

    def last_seen(self, size_window: int) -> np.ndarray:
        """(4,) the last box's centre with the median width and height of recent boxes.

        One odd-sized detection (two people boxed as one) does not rescale the track.
        """
        recent = np.array(self.boxes[-size_window:])
        half = np.median(recent[:, 2:] - recent[:, :2], axis=0) / 2
        centre = (self.boxes[-1][:2] + self.boxes[-1][2:]) / 2
        return np.concatenate([centre - half, centre + half])

    def predict(self, frame: int, size_window: int) -> np.ndarray:
        """(4,) the box expected at ``frame``: :meth:`last_seen` moved at constant velocity."""
        return self.last_seen(size_window) + np.tile(self.velocity * (frame - self.frames[-1]), 2)

    def add(self, frame: int, detections: Detections, index: int, smoothing: float) -> None:
        """Append detection ``index`` of ``detections`` at ``frame``; update the velocity."""
        box = detections.boxes[index]
        if self.frames:
            step = frame - self.frames[-1]
            measured = ((box[:2] + box[2:]) - (self.boxes[-1][:2] + self.boxes[-1][2:])) / (2 * step)
            if len(self.frames) > 1:
                measured = smoothing * measured + (1 - smoothing) * self.velocity
            self.velocity = measured
        self.frames.append(frame)
        self.boxes.append(box)
        self.scores.append(float(detections.scores[index]))
        self.keypoints.append(detections.keypoints[index])


class Tracker:
    """Links detections frame by frame; :meth:`tracks` gives the result so far.

    Args:
        options: see :class:`TrackerOptions`.
    """

    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options or TrackerOptions()
        self._live: list[_LiveTrack] = []
        self._ended: list[_LiveTrack] = []
        self._last_frame: int | None = None
        self._started = 0

    def update(self, frame: int, detections: Detections) -> None:
        """Add one frame's detections.

        Raises:
            ValueError: ``frame`` is not after the previous frame given.
        """
        if self._last_frame is not None and frame <= self._last_frame:
            raise ValueError(f"frames must increase: got {frame} after {self._last_frame}")
        self._last_frame = frame
        options = self.options
        self._ended += [t for t in self._live if frame - t.frames[-1] > options.max_gap]
        self._live = [t for t in self._live if frame - t.frames[-1] <= options.max_gap]
        pairs: list[tuple[int, int]] = []
        if self._live and len(detections):
            predicted = np.array([t.predict(frame, options.size_window) for t in self._live])
            last_seen = np.array([t.last_seen(options.size_window) for t in self._live])
            unseen = np.array([frame - t.frames[-1] for t in self._live], float)
            # Velocity from noisy boxes can point the wrong way (a person turning, a
            # jump's apex), so a detection may also match where the track was last seen.
            cost = np.minimum(
                association_cost(predicted, unseen, detections.boxes, options),
                association_cost(last_seen, unseen, detections.boxes, options),
            )
            pairs = assign(cost)
        claimed = set()
        for row, col in pairs:
            self._live[row].add(frame, detections, col, options.velocity_smoothing)
            claimed.add(col)
        covered = _covered(detections.boxes, sorted(claimed), options.duplicate_overlap)
        for col in range(len(detections)):
            if col not in claimed and not covered[col]:
                track = _LiveTrack(serial=self._started)
                self._started += 1
                track.add(frame, detections, col, options.velocity_smoothing)
                self._live.append(track)

    def missed(self, frame: int) -> int:
        """How many tracks still followed were not detected at ``frame`` (the last one given)."""
        return sum(1 for t in self._live if t.frames[-1] != frame and frame - t.frames[-1] <= self.options.max_gap)

    def expected_boxes(self, frame: int) -> np.ndarray:
        """(L, 4) where each track still followed (seen within ``max_gap``) should be at
        ``frame``: a detector can look there first."""
        live = [t for t in self._live if frame - t.frames[-1] <= self.options.max_gap]
        return np.array([t.predict(frame, self.options.size_window) for t in live]).reshape(-1, 4)

    def tracks(self) -> list[Track]:
        """The tracks with at least ``min_hits`` detections, ids from 1 by first frame."""
        return list(self.kept().values())

    def kept(self, since: int | None = None) -> dict[int, Track]:
        """:meth:`tracks` by the number each got when it started, which (unlike an id,
        which an earlier track kept later would shift) stays the same while tracking.

        Args:
            since: only the detections from this frame on (a track with none left out).
        """
        kept = [t for t in self._ended + self._live if len(t.frames) >= self.options.min_hits]
        kept.sort(key=lambda t: (t.frames[0], -len(t.frames)))
        out = {}
        for number, t in enumerate(kept, start=1):
            first = 0 if since is None else bisect.bisect_left(t.frames, since)
            if first < len(t.frames):
                out[t.serial] = Track(id=number, frames=np.array(t.frames[first:], int),
                                      boxes=np.array(t.boxes[first:], float),
                                      scores=np.array(t.scores[first:], float),
                                      keypoints=np.array(t.keypoints[first:], float))
        return out


def track_detections(
    frames: list[int], detections: list[Detections], options: TrackerOptions | None = None
) -> list[Track]:
    """Track a whole clip's detections at once.

    Args:
        frames: increasing frame indices, one per entry of ``detections``.
        detections: each frame's :class:`Detections`.
    """
    if len(frames) != len(detections):
        raise ValueError(f"{len(frames)} frame indices for {len(detections)} detection sets")
    tracker = Tracker(options)
    for frame, found in zip(frames, detections):
        tracker.update(frame, found)
    return tracker.tracks()

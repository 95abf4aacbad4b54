"""Everyone in a stretch of video: the detector run over its frames, linked into tracks.

The detector is the costly part (a model run takes milliseconds on a CPU, and covering
a whole frame at two scales takes eleven for a 16:9 frame), so it runs on every n-th
frame only, :data:`DETECTIONS_PER_S` times a second of video; the frames in between are
grabbed, not converted, and a track's box there is interpolated
(:func:`.boxes.follow_boxes`). Most of those runs look only around where the tracked
people are expected (:meth:`.detector.PersonDetector.around`, one model run a person);
the whole frame is searched :data:`FULL_SEARCHES_PER_S` times a second to find people
coming in, right after a tracked person was missed (they may have moved far, or been
hidden: a window around where they were expected missed the sample's jumper in the
middle of his jump where the whole frame's tiles found him), and whenever nobody is
being tracked. People move little between runs, and a track that misses detections
coasts for :data:`MAX_GAP_S`, so a person walking behind another keeps their id.

:class:`Scanner` holds that schedule and the tracker, fed one frame at a time:
:func:`scan_people` runs it over a video, and the analyze pass runs it on the frames it
decodes for the regressor anyway (:mod:`..pipeline`), with the same ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..track.options import Progress
from ..video.decode import VideoInfo, frame_range, frames_at, iter_frames, prefetched, probe
from .boxes import follow_boxes
from .detector import PersonDetector
from .overview import contact_sheet, describe, write_contact_sheet
from .tracker import Track, Tracker, TrackerOptions

__all__ = ["DETECTIONS_PER_S", "FULL_SEARCHES_PER_S", "MAX_GAP_S", "SHEET_FRAMES", "PeopleScan", "Scanner",
           "boxes_at", "detection_step", "scan_people", "write_scan_sheet"]

DETECTIONS_PER_S = 15.0
FULL_SEARCHES_PER_S = 2.0
#: Frames shown on a contact sheet, spread evenly over the scanned range.
SHEET_FRAMES = 6
#: How long a person may go undetected (hidden, or missed) and keep their id.
MAX_GAP_S = 1.0
# The detector's interpreter threads: on the 2-core machines the targets are set on, two
# take 0.7 of one's time for a whole-frame search, and beside BlazePose in analyze's one
# pass (.lookahead) two made the sample's pass 2 to 3 s faster than one did.
_DETECTOR_THREADS = 2


@dataclass(frozen=True)
class PeopleScan:
    """The people found in frames ``start .. end - 1`` of a video.

    Attributes:
        tracks: ids from 1, in order of first appearance.
        info: the video's size, rate and length.
        start, end: the frame range scanned; step: frames between detector runs.
    """

    tracks: list[Track]
    info: VideoInfo
    start: int
    end: int
    step: int

    def as_json(self) -> list[dict]:
        """One object per person: ``id``, ``frames`` (detected), ``first_frame``,
        ``last_frame``, ``box`` (the first, [x0, y0, x1, y1] pixels), ``description``."""
        return [{"id": track.id, "frames": len(track.frames), "first_frame": track.first_frame,
                 "last_frame": track.last_frame, "box": [round(float(v), 1) for v in track.boxes[0]],
                 "description": describe(track, self.info.width, self.info.height)}
                for track in self.tracks]


def detection_step(fps: float) -> int:
    """Frames between detector runs for a video at ``fps``."""
    return max(1, round(fps / DETECTIONS_PER_S))


class Scanner:
    """The people in frames ``start .. end - 1`` of a video, found as frames are shown.

    Show it every frame :meth:`due` asks for, in order (:meth:`see`); :meth:`result`
    then holds everyone found, and :meth:`kept` those found so far.

    Args:
        info: the video's size, rate and length.
        detector: default: BlazePose's person detector, two tile levels.
    """

    def __init__(self, info: VideoInfo, start: int, end: int, detector: PersonDetector | None = None) -> None:
        self.info, self.start, self.end = info, start, end
        self.step = detection_step(info.fps)
        self._full_every = max(1, round(info.fps / self.step / FULL_SEARCHES_PER_S))  # in detector runs
        self._detector = detector or PersonDetector(num_threads=_DETECTOR_THREADS)
        self._tracker = Tracker(TrackerOptions(max_gap=max(1, round(MAX_GAP_S * info.fps))))
        self._runs = 0
        self._missed = False  # someone tracked was missed in the last run
        self.seen_through = start - 1  # the last frame shown

    @property
    def max_gap(self) -> int:
        """Frames a person may go undetected and keep their id."""
        return self._tracker.options.max_gap

    def due(self, index: int) -> bool:
        """Whether the detector runs on frame ``index``."""
        return self.start <= index < self.end and (index - self.start) % self.step == 0

    def see(self, index: int, image: np.ndarray) -> None:
        """Detect the people in frame ``index`` ((H, W, 3) uint8 RGB) and track them.

        Raises:
            ValueError: a frame :meth:`due` does not ask for, or not after the last one.
        """
        if not self.due(index) or index <= self.seen_through:
            raise ValueError(f"frame {index} is not the scan's next detection frame")
        expected = self._tracker.expected_boxes(index)
        if self._runs % self._full_every == 0 or len(expected) == 0 or self._missed:
            found = self._detector(image)
        else:
            found = self._detector.around(image, expected)
        self._tracker.update(index, found)
        self._runs += 1
        self._missed = self._tracker.missed(index) > 0
        self.seen_through = index

    @property
    def min_hits(self) -> int:
        """Detections a person needs to be kept."""
        return self._tracker.options.min_hits

    def kept(self, since: int | None = None) -> dict[int, Track]:
        """The people found so far (see :meth:`.tracker.Tracker.kept`)."""
        return self._tracker.kept(since)

    def result(self) -> PeopleScan:
        """Everyone found in the frames shown."""
        return PeopleScan(self._tracker.tracks(), self.info, self.start, self.end, self.step)


def scan_people(video: str | Path, start_s: float | None = None, end_s: float | None = None,
                fps: float | None = None, progress: Progress | None = None,
                detector: PersonDetector | None = None) -> PeopleScan:
    """Detects and tracks everyone in the chosen part of a video.

    Args:
        fps: the real frame rate for a container that states a broken one (see
            :func:`..video.decode.iter_frames`).
        progress: called with ("people", frames done, frames total).
        detector: default: BlazePose's person detector, two tile levels.

    Raises:
        VideoError: the video cannot be read or the range is empty.
        FileNotFoundError: the detector's model is missing from mediapipe.
    """
    report = progress or (lambda stage, done, total: None)
    info = probe(video, fps)
    start, end = frame_range(info, start_s, end_s)
    scanner = Scanner(info, start, end, detector)
    total = end - start
    report("people", 0, total)
    for frame in prefetched(iter_frames(video, start, end, scanner.step, fps=fps)):
        scanner.see(frame.index, frame.image)
        report("people", min(total, frame.index - start + scanner.step), total)
    return scanner.result()


def boxes_at(tracks: list[Track], frames: np.ndarray) -> np.ndarray:
    """Each track's box at each frame, NaN outside the track's span.

    Args:
        frames: (F,) frame indices.

    Returns:
        (P, F, 4) [x0, y0, x1, y1] pixels, P = len(tracks).
    """
    frames = np.asarray(frames)
    out = np.full((len(tracks), len(frames), 4), np.nan)
    for p, track in enumerate(tracks):
        inside = (frames >= track.first_frame) & (frames <= track.last_frame)
        if inside.any():
            out[p, inside] = follow_boxes(track, frames[inside])
    return out


def write_scan_sheet(video: str | Path, scan: PeopleScan, path: str | Path, fps: float | None = None) -> Path:
    """Writes a contact sheet of :data:`SHEET_FRAMES` frames spread over the scan, each
    person's box numbered with their id (on frames the detector ran on, so every box
    drawn is a detection); returns the path.

    Args:
        fps: as given to :func:`scan_people`.
    """
    steps = range(scan.start, scan.end, scan.step)
    picks = {steps[round(k * (len(steps) - 1) / (SHEET_FRAMES - 1))] for k in range(SHEET_FRAMES)}
    frames = [(frame.index, frame.image) for frame in frames_at(video, picks, fps)]
    write_contact_sheet(Path(path), contact_sheet(frames, scan.tracks))
    return Path(path)

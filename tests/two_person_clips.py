"""Two-person clips made from the real Sports2D sample, for the person-following tests.

In frames 0-95 of the sample the jumper stands on the box in the left part of the frame
and the walker comes in from the right, still right of x = 1000 (see the marks in
``sports2d_people.py``). So a region around each holds that person alone:

* :func:`side_by_side`: the jumper's region of frames 0..N-1 beside the walker's region
  of frames 40..40+N-1, one clip with a person in each half;
* :func:`passing_in_front`: the jumper's region, with a patch of the walker's region
  (her and the grass around her) sliding across it from right to left, covering him
  completely for a stretch, as someone walking in front of the camera does.

Each is written as an mp4 (OpenCV's mp4v) with the halves' own clips beside it, so a
test can compare a two-person run with single-person runs of each half.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ikol_engine.samples import demo_video
from ikol_engine.video.decode import iter_frames

FRAMES = 56
WALKER_START = 40
#: x ranges (pixels of the 1768x994 sample) holding one person alone in frames 0-95.
JUMPER_X = (250, 1000)
WALKER_X = (1010, 1760)


@dataclass(frozen=True)
class TwoPersonClip:
    """A clip with two people, and where each is.

    Attributes:
        path: the two-person clip; halves: each person's clip alone (same frames).
        width: the two-person clip's width; split: x where the right half starts.
    """

    path: Path
    halves: tuple[Path, Path]
    width: int
    split: int


def _write(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _regions(first: int, x_range: tuple[int, int]) -> list[np.ndarray]:
    x0, x1 = x_range
    return [frame.image[:, x0:x1].copy() for frame in iter_frames(demo_video(), first, first + FRAMES)]


def side_by_side(folder: Path) -> TwoPersonClip:
    """The jumper (left half) beside the walker (right half)."""
    left, right = _regions(0, JUMPER_X), _regions(WALKER_START, WALKER_X)
    both = [np.hstack([a, b]) for a, b in zip(left, right)]
    return TwoPersonClip(_write(folder / "side_by_side.mp4", both),
                         (_write(folder / "jumper.mp4", left), _write(folder / "walker.mp4", right)),
                         width=both[0].shape[1], split=left[0].shape[1])


def passing_in_front(folder: Path, patch_width: int = 320) -> tuple[Path, np.ndarray]:
    """The jumper's region with the walker's patch sliding over it from right to left,
    across the whole width in the clip's :data:`FRAMES` (about 19 pixels a frame).

    Returns:
        the clip, and (FRAMES, 2) the patch's x range in each frame (pixels of the clip,
        clipped to it; empty where the patch is outside).
    """
    back, front = _regions(0, JUMPER_X), _regions(WALKER_START, WALKER_X)
    width = back[0].shape[1]
    lefts = np.linspace(width, -patch_width, FRAMES).round().astype(int)
    frames, spans = [], []
    for k, (image, other) in enumerate(zip(back, front)):
        centre = _walker_x(k) - WALKER_X[0]
        p0 = int(np.clip(centre - patch_width // 2, 0, other.shape[1] - patch_width))
        x0, x1 = max(lefts[k], 0), min(lefts[k] + patch_width, width)
        image = image.copy()
        if x1 > x0:
            image[:, x0:x1] = other[:, p0 + x0 - lefts[k]:p0 + x1 - lefts[k]]
        frames.append(image)
        spans.append((x0, max(x0, x1)))
    return _write(folder / "passing_in_front.mp4", frames), np.array(spans)


def _walker_x(k: int) -> float:
    """The walker's torso x in the sample at frame WALKER_START + k (from the hand marks)."""
    marks = {40: 1510, 60: 1420, 80: 1220, 100: 1010}
    frames = np.array(sorted(marks))
    return float(np.interp(WALKER_START + k, frames, [marks[f] for f in frames]))

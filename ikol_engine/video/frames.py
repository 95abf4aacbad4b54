"""Chosen video frames to PNG files, for previews made where OpenCV is not available.

Blender's side of the project reads no video itself; it asks the engine for the frames
it wants to show beside a render of the rig.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2

from ..common.atomic_file import atomic_path
from .decode import VideoError, frames_at


def export_frames(video: str | Path, indices: Sequence[int], directory: str | Path,
                  max_width: int | None = None) -> list[Path]:
    """Writes frames ``indices`` of ``video`` as ``frame_NNNNNN.png`` in ``directory``.

    Frames are read in one pass, only the ones asked for converted. Wider frames
    are scaled down to ``max_width`` pixels, keeping their aspect.

    Returns:
        The files written, in the order of ``indices``.
    Raises:
        VideoError: the video cannot be read, or an index lies beyond its last frame.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return []
    if wanted[0] < 0:
        raise VideoError(f"{video}: frame index {wanted[0]} is negative")
    directory = Path(directory)
    written: dict[int, Path] = {}
    for frame in frames_at(video, wanted):
        image = frame.image
        if max_width is not None and image.shape[1] > max_width:
            height = round(image.shape[0] * max_width / image.shape[1])
            image = cv2.resize(image, (max_width, height), interpolation=cv2.INTER_AREA)
        path = directory / f"frame_{frame.index:06d}.png"
        with atomic_path(path) as temp:
            if not cv2.imwrite(str(temp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                raise VideoError(f"could not write {path}")
        written[frame.index] = path
    missing = [i for i in wanted if i not in written]
    if missing:
        raise VideoError(f"{video}: no frame {missing[0]} (the video ends before it)")
    return [written[int(i)] for i in indices]

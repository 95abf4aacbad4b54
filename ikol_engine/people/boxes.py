"""A person's box at every frame of their track, between the frames the detector ran on."""
from __future__ import annotations

import numpy as np

from .tracker import Track

__all__ = ["follow_boxes"]


def follow_boxes(track: Track, frames: np.ndarray) -> np.ndarray:
    """The track's box at each requested frame, interpolated between its detections.

    Args:
        frames: (F,) frame indices within ``track.first_frame .. track.last_frame``.

    Returns:
        (F, 4) [x0, y0, x1, y1] pixels.

    Raises:
        ValueError: a frame outside the track's span.
    """
    frames = np.asarray(frames)
    outside = (frames < track.first_frame) | (frames > track.last_frame)
    if outside.any():
        raise ValueError(
            f"person {track.id} is tracked in frames {track.first_frame}-{track.last_frame}; "
            f"frame {int(frames[outside][0])} is outside"
        )
    return np.stack(
        [np.interp(frames, track.frames, track.boxes[:, k]) for k in range(4)], axis=1
    )

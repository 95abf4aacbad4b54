"""Telling the people apart for a user: a few words per track and a numbered contact sheet."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from ..common.atomic_file import atomic_path
from .tracker import Track

__all__ = ["contact_sheet", "describe", "write_contact_sheet"]

# Box colours (RGB) cycled by track id; strongly different hues so that neighbours differ.
_COLOURS = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60))


def describe(track: Track, image_width: int, image_height: int | None = None) -> str:
    """A few words saying where a person is and how large: "left, large, frames 0-227".

    Position is where the person is first seen, the box centre in thirds of the width
    (left, centre, right): people move, and the first sight is what a user compares with
    the first frame. Size is the mean box side against the frame height (small below a
    quarter, large above a half), or against the width where no height is given.

    Args:
        image_width: frame width in pixels (> 0).
        image_height: frame height in pixels.
    """
    if image_width <= 0:
        raise ValueError(f"image_width must be > 0, got {image_width}")
    centre_x = float(track.boxes[0, 0] + track.boxes[0, 2]) / 2
    third = min(2, max(0, int(3 * centre_x / image_width)))
    where = ("left", "centre", "right")[third]
    side = np.sqrt(track.mean_area) / (image_height or image_width)
    size = "small" if side < 0.25 else "large" if side > 0.5 else "medium"
    return f"{where}, {size}, frames {track.first_frame}-{track.last_frame}"


def contact_sheet(
    frames: Iterable[tuple[int, np.ndarray]], tracks: list[Track], columns: int = 3, width: int = 640
) -> np.ndarray:
    """The given frames side by side, each person's box drawn and numbered with their id.

    Args:
        frames: (frame index, (H, W, 3) uint8 RGB image) pairs, all of one size.
        tracks: boxes are drawn where a track was detected in that frame.
        columns: frames per row.
        width: width of each frame on the sheet, in pixels.

    Returns:
        (rows * h, columns * width, 3) uint8 RGB; empty cells black.
    """
    cells = []
    for index, image in frames:
        scale = width / image.shape[1]
        cell = cv2.resize(image, (width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        for track in tracks:
            hit = np.flatnonzero(track.frames == index)
            if hit.size == 0:
                continue
            x0, y0, x1, y1 = (track.boxes[hit[0]] * scale).round().astype(int)
            colour = _COLOURS[(track.id - 1) % len(_COLOURS)]
            cv2.rectangle(cell, (x0, y0), (x1, y1), colour, 2)
            label_at = (max(x0, 0) + 4, min(max(y0, 0) + 24, cell.shape[0] - 4))
            cv2.putText(cell, str(track.id), label_at, cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2)
        cv2.putText(cell, f"frame {index}", (6, cell.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX,
                    0.6, (255, 255, 255), 2)
        cells.append(cell)
    if not cells:
        raise ValueError("a contact sheet needs at least one frame")
    while len(cells) % columns:
        cells.append(np.zeros_like(cells[0]))
    rows = [np.hstack(cells[i : i + columns]) for i in range(0, len(cells), columns)]
    return np.vstack(rows)


def write_contact_sheet(path: Path, sheet: np.ndarray) -> None:
    """Write a sheet from :func:`contact_sheet` (RGB) as an image file, atomically.

    The format follows the suffix (.png, .jpg).

    Raises:
        ValueError: OpenCV cannot write that format.
    """
    path = Path(path)
    with atomic_path(path) as temp:
        if not cv2.imwrite(str(temp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise ValueError(f"cannot write an image as {path.suffix!r}: {path}")

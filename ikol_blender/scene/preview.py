"""A picture to judge a conversion at a glance: video frames beside the rig.

Each row is one moment of the clip: on the left the video frame, on the right the
rig's body rendered through the video's camera (:mod:`.camera`) over that same
frame, so a wrong pose, a swapped side or a misplaced body shows at once. Rendering
uses Workbench, which works without a GPU and in background mode. The video frames
come from the engine (Blender's Python reads no video here), as PNG files.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import bpy
import numpy as np

from ..engine.link import Motion, atomic_path

# Width of one picture in the preview, pixels.
CELL_WIDTH = 480
_BODY_COLOUR = (0.35, 0.75, 1.0)


def preview_frames(motion: Motion, count: int = 4) -> np.ndarray:
    """(count,) or fewer positions in the motion's arrays, spread over its solved frames."""
    valid = np.flatnonzero(motion.valid)
    if len(valid) == 0:
        return valid
    picks = np.linspace(0.1, 0.9, count) * (len(valid) - 1)
    return np.unique(valid[np.round(picks).astype(int)])


def render_percentage(width: int) -> int:
    """Resolution percentage that makes a ``width``-pixel video about CELL_WIDTH wide."""
    return int(np.clip(round(100 * CELL_WIDTH / width), 1, 100))


def render_views(scene: bpy.types.Scene, camera: bpy.types.Object, frames: Sequence[int]) -> list[np.ndarray]:
    """Renders the scene through ``camera`` at Blender ``frames`` on a transparent film.

    The scene's render settings and current frame are restored afterwards.

    Returns:
        One (H, W, 4) float32 RGBA image per frame, top row first, values 0..1.
    """
    render = scene.render
    saved = (scene.camera, scene.frame_current, render.engine, render.film_transparent,
             render.resolution_percentage, render.filepath, render.image_settings.file_format,
             scene.display.shading.color_type, tuple(scene.display.shading.single_color))
    images = []
    try:
        scene.camera = camera
        render.engine = "BLENDER_WORKBENCH"
        render.film_transparent = True
        render.resolution_percentage = render_percentage(render.resolution_x)
        render.image_settings.file_format = "PNG"
        scene.display.shading.color_type = "SINGLE"
        scene.display.shading.single_color = _BODY_COLOUR
        with tempfile.TemporaryDirectory(prefix="ikol-preview-") as scratch:
            for frame in frames:
                scene.frame_set(int(frame))
                render.filepath = str(Path(scratch) / f"render_{frame}.png")
                with bpy.context.temp_override(scene=scene):
                    bpy.ops.render.render(write_still=True, scene=scene.name)
                images.append(read_png(render.filepath))
    finally:
        (scene.camera, current, render.engine, render.film_transparent, render.resolution_percentage,
         render.filepath, render.image_settings.file_format, scene.display.shading.color_type,
         scene.display.shading.single_color) = saved
        scene.frame_set(current)
    return images


def compose(video_frames: Sequence[np.ndarray], renders: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of [video frame | render over the video frame] -> (H, W, 4) RGBA, top row first.

    Args:
        video_frames: (h, w, 3 or 4) images 0..1; renders: (h', w', 4) RGBA 0..1. Each
            pair is cropped to the size both have (the two may differ by a rounding pixel).
    """
    rows = []
    for video, render in zip(video_frames, renders, strict=True):
        height, width = min(video.shape[0], render.shape[0]), min(video.shape[1], render.shape[1])
        video = video[:height, :width, :3]
        render = render[:height, :width]
        alpha = render[..., 3:]
        over = render[..., :3] * alpha + video * (1.0 - alpha)
        rows.append(np.concatenate([video, over], axis=1))
    width = min(row.shape[1] for row in rows)
    picture = np.concatenate([row[:, :width] for row in rows], axis=0)
    return np.concatenate([picture, np.ones(picture.shape[:2] + (1,), picture.dtype)], axis=-1)


def read_png(path: str | Path) -> np.ndarray:
    """An image file -> (H, W, 4) float32 RGBA, top row first, the file's values 0..1."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]


def write_png(pixels: np.ndarray, path: str | Path) -> Path:
    """(H, W, 4) RGBA 0..1, top row first -> a PNG at ``path``, written atomically."""
    path = Path(path)
    height, width = pixels.shape[:2]
    image = bpy.data.images.new(path.stem, width, height, alpha=True)
    try:
        image.pixels.foreach_set(np.ascontiguousarray(pixels[::-1], dtype=np.float32).ravel())
        with atomic_path(path) as temp:
            image.filepath_raw = str(temp)
            image.file_format = "PNG"
            image.save()
    finally:
        bpy.data.images.remove(image)
    return path

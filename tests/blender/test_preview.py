"""The preview shows the body where the camera saw the joints, beside the untouched video frame."""
from __future__ import annotations

import numpy as np

from filmed_clip import WIDTH, engine_pixels, filmed  # noqa: F401 (a fixture)


def test_rendered_body_covers_the_projected_joints(blank, filmed, clip, tmp_path):
    import bpy

    from ikol_blender.scene import preview
    from ikol_blender.scene.importer import CAMERA_PROPERTY, import_motion

    path, motion = filmed
    armature = import_motion(blank, path)
    scene = blank.scene
    positions = preview.preview_frames(motion, count=3)
    assert len(positions) == 3 and motion.valid[positions].all()
    frames = motion.frame_indices[positions] + 1
    before = (scene.frame_current, scene.render.engine, scene.render.resolution_percentage)
    renders = preview.render_views(scene, bpy.data.objects[armature[CAMERA_PROPERTY]], frames)
    assert (scene.frame_current, scene.render.engine, scene.render.resolution_percentage) == before
    scale = renders[0].shape[1] / WIDTH
    assert abs(renders[0].shape[1] - preview.CELL_WIDTH) <= WIDTH / 100
    for render, position in zip(renders, positions):
        pixels = engine_pixels(clip.joints[position], motion.options["result"]["floor"]) * scale
        inside = [render[int(y), int(x), 3] > 0.5 for x, y in pixels
                  if 0 <= x < render.shape[1] and 0 <= y < render.shape[0]]
        assert len(inside) >= 10 and np.mean(inside) >= 0.9, np.mean(inside)
        # The body is a figure on an empty film, not a full frame.
        assert 0.005 < (render[..., 3] > 0.5).mean() < 0.5

    video = [np.full(render.shape[:2] + (3,), 0.2 * (i + 1), np.float32) for i, render in enumerate(renders)]
    picture = preview.compose(video, renders)
    height, width = renders[0].shape[:2]
    assert picture.shape == (3 * height, 2 * width, 4)
    assert np.allclose(picture[:height, :width, :3], 0.2)  # the video frame, untouched
    written = preview.write_png(picture, tmp_path / "preview.png")
    back = preview.read_png(written)
    assert back.shape == picture.shape and np.abs(back - picture).max() < 1.0 / 255 + 1e-6

"""The camera that filmed the video, in Blender's world (numpy only, no bpy).

The engine places the person with a pinhole camera at the origin of its camera frame
(x right, y up, looking down -z, principal point at the image centre, the run's
horizontal field of view: given, or estimated from the clip), then turns the scene so
the floor is y = 0 (see ``ikol_engine.track.ground``). Undoing that levelling gives the
camera's pose in the motion file's world; Blender's camera has the same local axes
(looks down -Z, +Y up), so its world matrix is that pose seen through the y-up to z-up
change of :mod:`.bone_space`. Through this camera the rig lines up with the video frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.link import Ground, Motion
from .bone_space import AXIS_CHANGE


@dataclass(frozen=True)
class VideoCamera:
    """Attributes:
        matrix_world: (4, 4) Blender world matrix (z-up) of the camera object.
        fov_deg: horizontal field of view; width, height: the video's pixels.
    """

    matrix_world: np.ndarray
    fov_deg: float
    width: int
    height: int


def video_camera(motion: Motion) -> VideoCamera | None:
    """The camera a motion was solved with, or None if the file does not record it.

    The field of view is the one the solve used, ``result.camera.fov_deg``; files from
    before the engine estimated it (no ``result.camera``) record only the requested one,
    ``solve.fov_deg``, which newer runs leave null when the clip chose it.
    """
    options = motion.options
    size = options.get("image_size")
    result = options.get("result")
    result = result if isinstance(result, dict) else {}
    solve = options.get("solve")
    used = result.get("camera")
    if isinstance(used, dict):
        fov = used.get("fov_deg")
    else:
        fov = solve.get("fov_deg") if isinstance(solve, dict) else None
    if not (isinstance(size, list) and len(size) == 2 and isinstance(fov, (int, float))):
        return None
    floor = result.get("floor")
    turn, shift = np.eye(3), np.zeros(3)
    if isinstance(floor, dict):
        # The engine mapped camera-frame points p to turn @ p + shift; the camera sits at p = 0.
        turn, shift = Ground(np.asarray(floor["normal_camera"], dtype=np.float64), float(floor["height_camera"]),
                             int(floor.get("contacts", 0))).leveling()
    matrix = np.eye(4)
    matrix[:3, :3] = AXIS_CHANGE @ turn
    matrix[:3, 3] = AXIS_CHANGE @ shift
    return VideoCamera(matrix_world=matrix, fov_deg=float(fov), width=int(size[0]), height=int(size[1]))

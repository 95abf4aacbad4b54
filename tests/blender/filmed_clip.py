"""The test clip as if filmed: a run's camera recorded in the motion's options."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ikol_engine.track.camera import Camera
from ikol_engine.track.ground import Ground
from ikol_engine.motion import write_motion

WIDTH, HEIGHT, FOV = 1768, 994, 55.0
# A camera 1.3 m above the floor, tilted about 11 degrees downwards.
FLOOR = {"normal_camera": [0.0, 0.981, 0.194], "height_camera": -1.3, "contacts": 40}


@pytest.fixture
def filmed(clip, tmp_path):
    """The test clip with the camera of a run: image size, field of view, levelled floor."""
    normal = np.asarray(FLOOR["normal_camera"])
    floor = dict(FLOOR, normal_camera=(normal / np.linalg.norm(normal)).tolist())
    options = {"image_size": [WIDTH, HEIGHT], "solve": {"fov_deg": FOV}, "result": {"floor": floor}}
    motion = dataclasses.replace(clip.motion, options=options)
    return write_motion(tmp_path / "filmed.npz", motion), motion


def engine_pixels(world_points: np.ndarray, floor: dict) -> np.ndarray:
    """(..., 3) motion-world points -> (..., 2) pixels, by the engine's own camera model."""
    turn, shift = Ground(np.asarray(floor["normal_camera"]), floor["height_camera"], 0).leveling()
    in_camera = (world_points - shift) @ turn  # undo p -> turn @ p + shift
    return Camera(WIDTH, HEIGHT, FOV).project(in_camera)

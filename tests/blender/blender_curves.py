"""Reading an object's F-Curves and keys back, independently of the writer under test."""
from __future__ import annotations

import bpy
import numpy as np

from ikol_blender.scene import keyframes


def fcurves(obj: bpy.types.Object):
    """The F-Curves animating ``obj``, through whichever action API this Blender has."""
    animation = obj.animation_data
    if keyframes.is_slotted():
        return animation.action.layers[0].strips[0].channelbag(animation.action_slot).fcurves
    return animation.action.fcurves


def keys(curve: bpy.types.FCurve) -> np.ndarray:
    """(K, 2) frame and value of each key."""
    co = np.empty(2 * len(curve.keyframe_points), dtype=np.float32)
    curve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2)

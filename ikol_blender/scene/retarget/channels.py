"""Rotations as a pose bone's own rotation channels (numpy only, no bpy).

A bone keyed here may rotate by quaternion, axis-angle or Euler angles in any of
Blender's six orders; the retarget writes the channels its ``rotation_mode`` reads, so
the animator's rig keeps its settings.

Blender's Euler order names the axes in the order they apply: ``'XYZ'`` is
``R = Rz(z) Ry(y) Rx(x)``.
"""
from __future__ import annotations

import numpy as np

from ..bone_space import quaternion_to_matrix

EULER_ORDERS = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
_AXIS = {"X": 0, "Y": 1, "Z": 2}


def channel_property(rotation_mode: str) -> str:
    """The pose-bone property keyed for a ``rotation_mode``."""
    if rotation_mode == "QUATERNION":
        return "rotation_quaternion"
    if rotation_mode == "AXIS_ANGLE":
        return "rotation_axis_angle"
    if rotation_mode in EULER_ORDERS:
        return "rotation_euler"
    raise ValueError(f"unknown rotation mode {rotation_mode!r}")


def channel_values(quaternions: np.ndarray, rotation_mode: str) -> np.ndarray:
    """(T, 4) wxyz quaternions of one bone, continuous in time, as its channel values.

    Returns:
        (T, 4) for QUATERNION (unchanged) and AXIS_ANGLE (angle, axis x, y, z), (T, 3)
        Euler angles (radians, x, y, z) otherwise, unwrapped so no key jumps a full turn.
    """
    quaternions = np.asarray(quaternions, dtype=np.float64)
    if rotation_mode == "QUATERNION":
        return quaternions
    if rotation_mode == "AXIS_ANGLE":
        return quaternion_to_axis_angle(quaternions)
    return np.unwrap(matrix_to_euler(quaternion_to_matrix(quaternions), rotation_mode), axis=0)


def quaternion_to_axis_angle(quaternions: np.ndarray) -> np.ndarray:
    """(..., 4) wxyz -> (..., 4) angle (radians, 0..2 pi) and unit axis; identity gives axis +y as Blender."""
    q = np.asarray(quaternions, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    sine = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sine[..., 0], q[..., 0])
    axis = np.where(sine > 1e-12, q[..., 1:] / np.maximum(sine, 1e-12), np.array([0.0, 1.0, 0.0]))
    return np.concatenate([angle[..., None], axis], axis=-1)


def matrix_to_euler(matrices: np.ndarray, order: str) -> np.ndarray:
    """(..., 3, 3) rotations to (..., 3) Euler angles x, y, z for a Blender order.

    With the axes relabelled so the order reads X, Y, Z, ``R = Rz Ry Rx`` gives the
    angles directly; an odd relabelling mirrors the frame, which negates the angles.
    """
    if order not in EULER_ORDERS:
        raise ValueError(f"unknown Euler order {order!r}")
    axes = [_AXIS[letter] for letter in order]
    m = np.asarray(matrices, dtype=np.float64)[..., axes, :][..., :, axes]
    first = np.arctan2(m[..., 2, 1], m[..., 2, 2])
    second = -np.arcsin(np.clip(m[..., 2, 0], -1.0, 1.0))
    third = np.arctan2(m[..., 1, 0], m[..., 0, 0])
    even = order in ("XYZ", "YZX", "ZXY")
    relabelled = np.stack([first, second, third], axis=-1) * (1.0 if even else -1.0)
    angles = np.empty_like(relabelled)
    angles[..., axes] = relabelled
    return angles

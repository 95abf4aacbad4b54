"""Fingers for the Blender tests: a motion file's finger keys on the body its mesh came from,
every finger joint bending by a known angle, and the file's pose composed down the chain."""
from __future__ import annotations

import dataclasses

import numpy as np
import roma
import torch

from ikol_engine.motion import Motion
from ikol_engine.skeleton import hands

MAX_BEND_DEG = 80.0
#: SMPL's T-pose holds the hands palm down: a finger curls towards -y.
PALM_SIDE = np.array([0.0, -1.0, 0.0])


def bend_axes(rest_joints: np.ndarray, parents: np.ndarray, seed: int, curl: bool = False) -> np.ndarray:
    """(30, 3) for each finger joint a unit axis perpendicular to its bone, SMPL axes:
    random, or with ``curl`` the one turning the bone towards the palm's side.

    Args:
        rest_joints: (54, 3) the body's rest joints then the finger joints'.
        parents: (54,) their parents.
    A bone runs to the finger's next joint; a fingertip's continues the phalanx before it.
    Turning about such an axis bends the finger (curl or spread) without twisting it.
    """
    fingers = range(len(parents) - len(hands.HAND_JOINT_NAMES), len(parents))
    child = {int(parents[joint]): joint for joint in fingers}
    directions = np.array([rest_joints[child[joint]] - rest_joints[joint] if joint in child
                           else rest_joints[joint] - rest_joints[parents[joint]] for joint in fingers])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    if curl:
        axes = np.cross(directions, PALM_SIDE)  # a positive turn about d x n takes d towards n
    else:
        random = np.random.default_rng(seed).normal(size=directions.shape)
        axes = random - (random * directions).sum(1, keepdims=True) * directions
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def bend_rotations(axes: np.ndarray, frames: int, seed: int) -> np.ndarray:
    """(T, 30, 4) unit wxyz: each joint turning about its axis from rest to its own peak
    (up to :data:`MAX_BEND_DEG`) and back over the clip; quaternion signs scrambled, as a
    file may hold either.

    Args:
        axes: (30, 3) unit rotation axes.
    """
    rng = np.random.default_rng(seed)
    peaks = np.radians(rng.uniform(20.0, MAX_BEND_DEG, len(axes)))
    angles = peaks[None] * np.sin(np.pi * np.linspace(0.0, 1.0, frames))[:, None]  # (T, 30)
    quaternions = np.concatenate([np.cos(angles / 2)[..., None], np.sin(angles / 2)[..., None] * axes[None]], -1)
    signs = np.where(rng.random(quaternions.shape[:2]) < 0.5, -1.0, 1.0)
    return quaternions * signs[..., None]


def with_fingers(motion: Motion, body, seed: int = 7, curl: bool = False) -> Motion:
    """``motion`` with the finger keys of ``body`` for its shape and bending fingers
    (:func:`bend_rotations`, about :func:`bend_axes`); the left hand unseen on every fifth frame."""
    betas = torch.from_numpy(motion.betas.astype(np.float64))[None]
    rest = body.rest_finger_joints(betas)[0].numpy()
    parents = np.array(hands.FILE_HAND_PARENTS, dtype=np.int64)
    axes = bend_axes(np.concatenate([motion.rest_joints, rest]), np.concatenate([motion.parents, parents]), seed,
                     curl)
    frames = len(motion.valid)
    seen = np.ones((frames, 2), dtype=bool)
    seen[::5, 0] = False
    f32 = np.float32
    return dataclasses.replace(
        motion, hand_joint_names=np.array(hands.HAND_JOINT_NAMES), hand_parents=parents,
        hand_rest_joints=rest.astype(f32), skin_weights_with_fingers=body.skin_weights_with_fingers.astype(f32),
        hand_rotations=bend_rotations(axes, frames, seed).astype(f32), hand_valid=seen,
        hand_residual_mm=np.where(seen, 3.0, 0.0).astype(f32))


def global_pose(motion: Motion) -> tuple[np.ndarray, np.ndarray]:
    """The file's pose composed down the chain, body then fingers, SMPL axes (float64).

    Returns:
        rotations: (T, 54, 3, 3) each joint's global rotation;
        positions: (T, 54, 3) each joint's position, metres.
    """
    local = roma.unitquat_to_rotmat(torch.from_numpy(np.concatenate(
        [motion.rotations, motion.hand_rotations], axis=1).astype(np.float64))[..., [1, 2, 3, 0]]).numpy()
    rest = np.concatenate([motion.rest_joints, motion.hand_rest_joints]).astype(np.float64)
    parents = np.concatenate([motion.parents, motion.hand_parents])
    rotations, positions = np.empty_like(local), np.empty(local.shape[:2] + (3,))
    for joint, parent in enumerate(parents):
        if parent < 0:
            rotations[:, joint] = local[:, joint]
            positions[:, joint] = rest[joint] + motion.translation
        else:
            rotations[:, joint] = rotations[:, parent] @ local[:, joint]
            positions[:, joint] = positions[:, parent] + rotations[:, parent] @ (rest[joint] - rest[parent])
    return rotations, positions

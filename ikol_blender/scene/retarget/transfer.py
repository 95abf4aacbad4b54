"""Rotation maths of retargeting (numpy only, no bpy).

The rule. A mapped target bone turns in the world exactly as its SMPL bone does from
rest: with ``S0``, ``S(t)`` the SMPL bone's world orientation at rest and at frame t,
the target bone's world orientation is ``D(t) W0`` with ``D(t) = S(t) S0^-1`` and ``W0``
its own rest orientation. Rest-pose differences (T pose against A pose) and bone rolls
therefore cancel: only the change from rest is carried over. Unmapped bones keep their
rest pose relative to whatever they inherit rotation from.

The target's evaluation is modelled on Blender's, in world deltas ``D_b = W_b W0_b^-1``:

* a bone that inherits rotation from its parent ``p``: ``D_b = D_p W0_b B_b W0_b^-1``,
  ``B_b`` its pose rotation (identity for unmapped bones); without a parent, or without
  rotation inheritance, ``D_p`` is the identity;
* then each Copy Rotation / Copy Transforms constraint (world to world space) blends the
  bone towards its subtarget's world rotation, ``D_s W0_s W0_b^-1``, by its influence
  (spherical interpolation, as Blender blends constraint results). Rigify's controls
  hang from such constraints. Other constraints are taken to keep their rest result.

A mapped bone's ``B_b`` then follows from its desired delta and its parent's actual one:
``B_b = W0_b^-1 D_p^-1 D(t) W0_b``.

Quaternions are w, x, y, z. Shapes: T frames, J source bones, B target bones, M pairs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..bone_space import continuous_hemisphere, matrix_to_quaternion, quaternion_to_matrix


@dataclass(frozen=True)
class RotationCopy:
    """A Copy Rotation or Copy Transforms constraint, both spaces World, mix Replace.

    Attributes:
        bone: index of the constrained bone.
        subtarget: index of the bone whose world rotation it copies.
        influence: 0..1.
    """

    bone: int
    subtarget: int
    influence: float


@dataclass(frozen=True)
class TargetRig:
    """What of a target armature the rotation transfer needs.

    Attributes:
        rest: (B, 4, 4) rest world matrices of its bones (object world @ ``Bone.matrix_local``).
        parents: (B,) index of the bone each one inherits rotation from, -1 for none
            (a root, or a bone with ``use_inherit_rotation`` off).
        copies: the rotation-copying constraints, in each bone's stack order.
    """

    rest: np.ndarray
    parents: np.ndarray
    copies: Sequence[RotationCopy] = field(default_factory=tuple)


def rotation_part(matrices: np.ndarray) -> np.ndarray:
    """(..., 3, 3) nearest rotations of the upper-left 3x3 blocks (scale removed)."""
    blocks = np.asarray(matrices, dtype=np.float64)[..., :3, :3]
    u, _, vt = np.linalg.svd(blocks)
    return u @ vt


def pose_orientations(rest: np.ndarray, parents: Sequence[int], quaternions: np.ndarray) -> np.ndarray:
    """Armature-space orientations of a posed armature without constraints.

    Blender's rule for orientations, ``R_j = R_parent L_parent^-1 L_j Q_j`` (every bone
    inheriting rotation; parents listed before children).

    Args:
        rest: (J, 3, 3) rest orientations, ``Bone.matrix_local``'s rotation.
        parents: (J,) parent indices, -1 for a root.
        quaternions: (T, J, 4) pose-bone ``rotation_quaternion``.
    Returns:
        (T, J, 3, 3) posed orientations.
    """
    rest = np.asarray(rest, dtype=np.float64)
    local = quaternion_to_matrix(quaternions)
    posed = np.empty_like(local)
    for joint, parent in enumerate(parents):
        if parent < 0:
            posed[:, joint] = _left(rest[joint], local[:, joint])
        else:
            posed[:, joint] = _right(posed[:, parent], rest[parent].T @ rest[joint]) @ local[:, joint]
    return posed


def world_deltas(rest: np.ndarray, posed: np.ndarray) -> np.ndarray:
    """(T, J, 3, 3) ``S(t) S0^-1`` from (J, 3, 3) rest and (T, J, 3, 3) posed world orientations."""
    return np.asarray(posed, dtype=np.float64) @ np.swapaxes(np.asarray(rest, dtype=np.float64), -1, -2)


def transfer_rotations(deltas: np.ndarray, target: TargetRig, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Pose rotations of the mapped target bones that repeat the source bones' deltas.

    Args:
        deltas: (T, J, 3, 3) world deltas of the source bones (:func:`world_deltas`).
        target: the target armature.
        pairs: (source bone, target bone) index pairs; each target bone at most once.
    Returns:
        (T, M, 4) ``rotation_quaternion`` of each pair's target bone, in ``pairs``' order,
        consecutive frames in one hemisphere.
    Raises:
        ValueError: a target bone is mapped twice, or a mapped bone's rotation is set by
            a constraint (its own channels could not reach the wanted rotation).
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    wanted = {bone: source for source, bone in pairs}
    if len(wanted) != len(pairs):
        raise ValueError("a target bone appears in two pairs")
    copies: dict[int, list[RotationCopy]] = {}
    for copy in target.copies:
        copies.setdefault(copy.bone, []).append(copy)
    for bone in wanted:
        if any(copy.influence > 0.0 for copy in copies.get(bone, ())):
            raise ValueError(f"target bone {bone} copies another bone's rotation; map a bone it does not override")
    rest = rotation_part(target.rest)
    frames = len(deltas)
    memo: dict[int, np.ndarray | None] = {}
    local: dict[int, np.ndarray] = {}

    def delta(bone: int) -> np.ndarray | None:
        """World delta of ``bone`` as the target evaluates it; None for the identity."""
        if bone < 0:
            return None
        if bone not in memo:
            parent = delta(int(target.parents[bone]))
            if bone in wanted:
                goal = deltas[:, wanted[bone]]
                relative = goal if parent is None else np.swapaxes(parent, -1, -2) @ goal
                local[bone] = _right(_left(rest[bone].T, relative), rest[bone])
                own = goal
            else:
                own = parent
            for copy in copies.get(bone, ()):
                if copy.influence <= 0.0:
                    continue
                source = delta(copy.subtarget)
                offset = rest[copy.subtarget] @ rest[bone].T
                copied = np.broadcast_to(offset, (frames, 3, 3)) if source is None else _right(source, offset)
                current = np.broadcast_to(np.eye(3), (frames, 3, 3)) if own is None else own
                own = _blend(current, copied, min(copy.influence, 1.0))
            memo[bone] = own
        return memo[bone]

    for bone in wanted:
        delta(bone)
    quaternions = np.stack([matrix_to_quaternion(local[bone]) for _, bone in pairs], axis=1)
    return continuous_hemisphere(quaternions)


def root_locations(source_heads: np.ndarray, root_deltas: np.ndarray, source_origin: np.ndarray,
                   target_origin: np.ndarray, target_root_rest: np.ndarray, scale: float, *,
                   source_hips: np.ndarray = np.zeros(3), target_hips: np.ndarray = np.zeros(3)) -> np.ndarray:
    """Pose-bone ``location`` of the target's root bone so its hips follow the source's, scaled.

    The point between the hip joints is what carries the legs: its path relative to the
    source armature object's origin, scaled by ``scale``, is walked from the target
    object's origin. With both objects standing on their floors (the importer's floor
    is z = 0, the SMPL rig's object at the origin), a target whose legs are ``scale``
    times the source's keeps its feet where the floor is. The root bone itself sits
    elsewhere on each rig (Rigify's torso pivot, Mixamo's Hips), so it is placed from
    that point through its rest offset turned by the root's delta.

    Args:
        source_heads: (T, 3) world position of the source root bone's head.
        root_deltas: (T, 3, 3) world delta of the source root bone (as the target root's).
        source_origin: (3,) world position of the source armature object.
        target_origin: (3,) world position of the target armature object.
        target_root_rest: (4, 4) rest world matrix of the target root bone, which must
            hang from unposed bones (its head moves only by its own location).
        scale: target leg length / source leg length (:func:`leg_length`).
        source_hips: (3,) rest world offset from the source root's head to its hips' midpoint.
        target_hips: (3,) the same on the target.
    Returns:
        (T, 3) the target root bone's ``location``.
    """
    offset = scale * np.asarray(source_hips, dtype=np.float64) - np.asarray(target_hips, dtype=np.float64)
    heads = (np.asarray(target_origin, dtype=np.float64)
             + scale * (np.asarray(source_heads, dtype=np.float64) - np.asarray(source_origin, dtype=np.float64))
             + np.asarray(root_deltas, dtype=np.float64) @ offset)
    inverse = np.linalg.inv(np.asarray(target_root_rest, dtype=np.float64))
    return heads @ inverse[:3, :3].T + inverse[:3, 3]


def leg_length(hips: np.ndarray, knees: np.ndarray, ankles: np.ndarray) -> float:
    """Mean rest length of a rig's legs, hip to knee to ankle.

    Args:
        hips, knees, ankles: (S, 3) rest world positions of each side's joints (S legs).
    """
    hips, knees, ankles = (np.asarray(a, dtype=np.float64) for a in (hips, knees, ankles))
    return float(np.mean(np.linalg.norm(knees - hips, axis=-1) + np.linalg.norm(ankles - knees, axis=-1)))


def _right(stack: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(T, 3, 3) ``stack @ matrix`` for one (3, 3) matrix, as a single BLAS product."""
    stack = np.ascontiguousarray(stack)
    return (stack.reshape(-1, 3) @ matrix).reshape(stack.shape)


def _left(matrix: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """(T, 3, 3) ``matrix @ stack`` for one (3, 3) matrix: ``(stack^T matrix^T)^T``."""
    return np.swapaxes(_right(np.swapaxes(stack, -1, -2), matrix.T), -1, -2)


def _blend(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """(T, 3, 3) spherical interpolation from rotations ``a`` to ``b`` by ``weight``, shortest path."""
    if weight >= 1.0:
        return np.array(b)
    qa, qb = matrix_to_quaternion(a), matrix_to_quaternion(b)
    cos = np.sum(qa * qb, axis=-1, keepdims=True)
    qb = np.where(cos < 0.0, -qb, qb)
    cos = np.abs(cos)
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    sin = np.sin(angle)
    near = sin < 1e-6
    safe = np.where(near, 1.0, sin)
    wa = np.where(near, 1.0 - weight, np.sin((1.0 - weight) * angle) / safe)
    wb = np.where(near, weight, np.sin(weight * angle) / safe)
    return quaternion_to_matrix(wa * qa + wb * qb)

"""SMPL data in Blender's armature and pose-bone space (numpy only, no bpy).

Axes. SMPL is y-up, its rest pose faces +z with the body's left at +x. Blender is z-up
and characters face -y. The change is a +90 degree turn about x,
``C: (x, y, z) -> (x, -z, y)``, which keeps the body's left at +x.

Bones. Bone ``j`` has its head at ``C @ rest_joints[j]``; its y axis (head to tail)
points at the child its chain continues through (see :func:`rest_bones`), and its roll
is fixed by one rule: the bone's z axis is the body's forward direction (Blender -y)
made perpendicular to the bone, or the body's up (Blender +z) for bones within 45
degrees of forward or backward (feet). So a vertical bone has x = the body's left and
z = forward, which is what Blender gives such a bone at roll 0. Finger bones (SMPL-H's,
hanging off the wrists; :func:`rest_bones_with_fingers`) follow the same rules and leave
the body's bones as they are without them.

Poses. With ``B_j`` a bone's rest orientation in armature space (columns: its x, y, z
axes) and ``R_j`` the SMPL local rotation of joint ``j`` (in SMPL's world axes), the
pose bone's ``rotation_quaternion`` is ``B_j^-1 (C R_j C^-1) B_j`` and the root bone's
``location`` is ``B_0^-1 C t``, for an armature object at the origin. Blender then
places every bone head where SMPL's forward kinematics puts the joint, and every bone's
armature-space rotation is ``C G_j C^-1 B_j`` (``G_j`` the SMPL global rotation), so
linear-blend skinning of ``C @ vertices`` equals SMPL's skinning turned by ``C``.
:func:`armature_fk` evaluates a pose the way Blender does, to check exactly this.

Quaternions are w, x, y, z throughout; computations run in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.link import quaternion_continuity

AXIS_CHANGE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""(3, 3) SMPL y-up axes to Blender z-up axes: a +90 degree rotation about x."""
_AXIS_CHANGE_QUATERNION = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0])

_FORWARD = np.array([0.0, -1.0, 0.0])  # Blender's character front
_UP = np.array([0.0, 0.0, 1.0])
# Bones closer than this (|cos|) to forward/backward take "up" as their roll reference.
_ROLL_SWITCH_COS = np.cos(np.radians(45.0))
# Shortest bone written: Blender deletes zero-length bones.
_MIN_LENGTH = 0.01


@dataclass(frozen=True)
class RestBones:
    """Rest frames of the bones in Blender's armature space (z-up), metres.

    Attributes:
        heads: (J, 3) bone heads (the rest joints).
        tails: (J, 3) bone tails.
        orientations: (J, 3, 3) rotation matrices; columns are the bone's x, y, z axes,
            y running from head to tail.
    """

    heads: np.ndarray
    tails: np.ndarray
    orientations: np.ndarray

    @property
    def matrices(self) -> np.ndarray:
        """(J, 4, 4) Blender's ``Bone.matrix_local``: orientation and head."""
        matrices = np.zeros((len(self.heads), 4, 4))
        matrices[:, :3, :3] = self.orientations
        matrices[:, :3, 3] = self.heads
        matrices[:, 3, 3] = 1.0
        return matrices


def to_blender_axes(points: np.ndarray) -> np.ndarray:
    """(..., 3) SMPL (y-up) points or directions to Blender's z-up axes, float64."""
    return np.asarray(points, dtype=np.float64) @ AXIS_CHANGE.T


def rest_bones(rest_joints: np.ndarray, parents: np.ndarray) -> RestBones:
    """Bone heads, tails and orientations from SMPL rest joints.

    A bone points at its only child; where a joint has several children (Pelvis, Spine3)
    at the one most in line with the chain arriving there (Spine1, Neck), the root
    taking "up" as its arriving direction. A leaf (Head, hands, feet) continues its
    parent bone's direction for the parent's length.

    Args:
        rest_joints: (J, 3) rest joint positions, SMPL axes, metres.
        parents: (J,) parent indices, -1 for the root; parents precede children.
    Returns:
        The rest frames in Blender's axes.
    """
    heads = to_blender_axes(rest_joints)
    parents = np.asarray(parents)
    offsets = np.zeros_like(heads)
    for joint, parent in enumerate(parents):
        arriving = _UP if parent < 0 else _unit(offsets[parent])
        children = np.flatnonzero(parents == joint)
        if len(children):
            to_children = heads[children] - heads[joint]
            alignment = to_children @ arriving / np.maximum(np.linalg.norm(to_children, axis=1), 1e-12)
            offsets[joint] = to_children[np.argmax(alignment)]
        else:
            offsets[joint] = arriving * np.linalg.norm(offsets[parent])
    lengths = np.linalg.norm(offsets, axis=1, keepdims=True)
    axes_y = np.where(lengths > 1e-9, offsets / np.maximum(lengths, 1e-12), _UP)
    orientations = np.stack([_frame(axis) for axis in axes_y])
    return RestBones(heads, heads + axes_y * np.maximum(lengths, _MIN_LENGTH), orientations)


def rest_bones_with_fingers(rest_joints: np.ndarray, parents: np.ndarray, finger_joints: np.ndarray,
                            finger_parents: np.ndarray) -> RestBones:
    """The body's bones of :func:`rest_bones`, then the finger bones.

    A finger bone points at the finger's next joint; a fingertip's (the last joint of a
    finger, a leaf) continues its finger for the length of the phalanx before it. The
    body's bones are those of the body alone: a wrist, which the fingers give five more
    children, still points at SMPL's hand joint, so a rig's body is the same with or
    without fingers.

    Args:
        rest_joints: (J, 3) the body's rest joint positions, SMPL axes, metres.
        parents: (J,) their parents, -1 for the root; parents precede children.
        finger_joints: (F, 3) the finger joints' rest positions, SMPL axes, metres.
        finger_parents: (F,) each finger joint's parent: an index into the body's joints
            then the finger joints, earlier than its own (``J + f``).
    Returns:
        The J + F rest frames in Blender's axes, the body's first.
    """
    body = rest_bones(rest_joints, parents)
    whole = rest_bones(np.concatenate([rest_joints, finger_joints]), np.concatenate([parents, finger_parents]))
    fingers = slice(len(body.heads), None)
    return RestBones(np.concatenate([body.heads, whole.heads[fingers]]),
                     np.concatenate([body.tails, whole.tails[fingers]]),
                     np.concatenate([body.orientations, whole.orientations[fingers]]))


def pose_from_smpl(rotations: np.ndarray, translation: np.ndarray,
                   orientations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL local rotations and root translation to pose-bone channels.

    Args:
        rotations: (T, J, 4) SMPL local rotations, unit wxyz, SMPL axes.
        translation: (T, 3) root translation (smplx's ``transl``), SMPL axes, metres.
        orientations: (J, 3, 3) the bones' rest orientations in armature space (e.g.
            :attr:`RestBones.orientations`, or ``Bone.matrix_local`` read back).
    Returns:
        quaternions: (T, J, 4) ``rotation_quaternion`` of every pose bone, wxyz, with
            consecutive frames in one hemisphere (see :func:`continuous_hemisphere`);
        location: (T, 3) the root bone's ``location``.
    """
    bone = matrix_to_quaternion(orientations)
    # q = B^-1 C R C^-1 B = p R p^-1 with p = B^-1 C: linear in R, so it keeps R's hemisphere.
    p = quaternion_multiply(quaternion_conjugate(bone), _AXIS_CHANGE_QUATERNION)
    rotations = np.asarray(rotations, dtype=np.float64)
    quaternions = quaternion_multiply(quaternion_multiply(p, rotations), quaternion_conjugate(p))
    location = to_blender_axes(translation) @ np.asarray(orientations[0], dtype=np.float64)
    return continuous_hemisphere(quaternions), location


def continuous_hemisphere(quaternions: np.ndarray) -> np.ndarray:
    """Flips signs so consecutive frames of each channel have a dot product >= 0.

    Blender interpolates each quaternion component separately; a sign change between
    two keys (q and -q are one rotation) would spin the bone through a full turn.
    The first frame is put in the w >= 0 hemisphere.

    Args:
        quaternions: (T, J, 4) wxyz.
    Returns:
        (T, J, 4) the same rotations.
    """
    quaternions = np.asarray(quaternions, dtype=np.float64)
    if len(quaternions) == 0:
        return quaternions.copy()
    first = np.where(quaternions[:1, :, 0] < 0.0, -1.0, 1.0)
    return quaternion_continuity(quaternions * first[..., None])


def smpl_fk(rest_joints: np.ndarray, parents: np.ndarray, rotations: np.ndarray,
            translation: np.ndarray) -> np.ndarray:
    """Joint positions of the SMPL tree (smplx's convention), SMPL axes.

    Args:
        rest_joints: (J, 3) rest joint positions.
        parents: (J,) parent indices, -1 for the root; parents precede children.
        rotations: (T, J, 4) local rotations, unit wxyz.
        translation: (T, 3) root translation.
    Returns:
        (T, J, 3) joint positions, metres.
    """
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    local = quaternion_to_matrix(rotations)
    globals_ = np.empty_like(local)
    positions = np.empty(local.shape[:2] + (3,))
    for joint, parent in enumerate(parents):
        if parent < 0:
            globals_[:, joint] = local[:, joint]
            positions[:, joint] = rest_joints[joint] + np.asarray(translation, dtype=np.float64)
        else:
            globals_[:, joint] = globals_[:, parent] @ local[:, joint]
            offset = rest_joints[joint] - rest_joints[parent]
            positions[:, joint] = positions[:, parent] + globals_[:, parent] @ offset
    return positions


def armature_fk(bones: RestBones, parents: np.ndarray, quaternions: np.ndarray,
                location: np.ndarray) -> np.ndarray:
    """Pose-bone heads as Blender evaluates them, for an armature object at the origin.

    Blender's rule for a pose bone with rest matrix ``L_j`` and channels ``basis_j``
    (location, then rotation) is ``M_j = M_parent L_parent^-1 L_j basis_j``, and
    ``M_root = L_root basis_root``; only the root has a location here.

    Args:
        bones: the rest frames.
        parents: (J,) parent indices.
        quaternions: (T, J, 4) ``rotation_quaternion`` per bone.
        location: (T, 3) the root bone's ``location``.
    Returns:
        (T, J, 3) bone heads in armature space.
    """
    rest = bones.matrices
    basis = np.zeros(quaternions.shape[:2] + (4, 4))
    basis[..., :3, :3] = quaternion_to_matrix(quaternions)
    basis[..., 3, 3] = 1.0
    basis[:, 0, :3, 3] = location
    posed = np.empty_like(basis)
    for joint, parent in enumerate(parents):
        relative = rest[joint] if parent < 0 else np.linalg.inv(rest[parent]) @ rest[joint]
        above = np.eye(4) if parent < 0 else posed[:, parent]
        posed[:, joint] = above @ relative @ basis[:, joint]
    return posed[..., :3, 3]


def quaternion_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) wxyz quaternions, broadcasting."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, dtype=np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, dtype=np.float64), -1, 0)
    return np.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], axis=-1)


def quaternion_conjugate(q: np.ndarray) -> np.ndarray:
    """(..., 4) wxyz conjugate: the inverse of a unit quaternion."""
    return np.asarray(q, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) wxyz quaternions (normalised first, as Blender does) to (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=-2)


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices to unit wxyz quaternions with w >= 0.

    Each matrix is read through whichever of w, x, y, z is largest, so the division
    is never by a small number.
    """
    m = np.asarray(m, dtype=np.float64)
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # 4 * square of each component, from the diagonal.
    squares = np.stack([1 + trace, 1 + 2 * m[..., 0, 0] - trace,
                        1 + 2 * m[..., 1, 1] - trace, 1 + 2 * m[..., 2, 2] - trace], axis=-1)
    # Off-diagonal sums and differences: 4 * products of pairs of components.
    wx, wy, wz = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    xy, xz, yz = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    candidates = np.stack([
        np.stack([squares[..., 0], wx, wy, wz], axis=-1),
        np.stack([wx, squares[..., 1], xy, xz], axis=-1),
        np.stack([wy, xy, squares[..., 2], yz], axis=-1),
        np.stack([wz, xz, yz, squares[..., 3]], axis=-1),
    ], axis=-2)
    best = np.argmax(squares, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0.0, -q, q)


def _unit(vector: np.ndarray) -> np.ndarray:
    length = np.linalg.norm(vector)
    return vector / length if length > 1e-12 else _UP


def _frame(axis_y: np.ndarray) -> np.ndarray:
    """(3, 3) orientation with the given y axis and this module's roll rule."""
    reference = _UP if abs(axis_y @ _FORWARD) > _ROLL_SWITCH_COS else _FORWARD
    axis_z = _unit(reference - (reference @ axis_y) * axis_y)
    return np.stack([np.cross(axis_y, axis_z), axis_y, axis_z], axis=1)

"""The SMPL rig: a 24-bone armature and its skinned body mesh, z-up, from a Motion.

Bones are named and parented as the motion file says (SMPL's names, those of the
SMPL/SMPL-X Blender add-on), use quaternion rotation, and have the rest frames of
:func:`bone_space.rest_bones`. A motion with fingers adds SMPL-H's 30 finger bones
(``left_index1`` .. ``right_thumb3``, hanging off the wrists; rest frames of
:func:`bone_space.rest_bones_with_fingers`): 54 bones. The mesh is the motion's rest
mesh, a child of the armature with an Armature modifier and one vertex group per bone,
weighted by ``skin_weights_with_fingers`` where there are fingers (SMPL's hand bones then
keep an empty group: the fingers move that skin).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.link import HAND_JOINT_NAMES, Motion
from . import bone_space


@dataclass(frozen=True)
class Rig:
    """The objects :func:`build_rig` made."""

    armature: bpy.types.Object
    mesh: bpy.types.Object


class Joints(NamedTuple):
    """The joints a rig's bones stand for, and their motion: the body's, then any fingers'.

    Attributes:
        names: (J,) bone names.
        parents: (J,) parent indices into ``names``, -1 for the root; parents come first.
        rest: (J, 3) rest positions, SMPL axes, metres.
        rotations: (T, J, 4) local rotations, unit wxyz, as the file holds them.
    """

    names: list[str]
    parents: np.ndarray
    rest: np.ndarray
    rotations: np.ndarray


def joints(motion: Motion, fingers: bool) -> Joints:
    """``motion``'s body joints, followed with ``fingers`` by its finger joints (which it must have)."""
    names = [str(name) for name in motion.joint_names]
    if not fingers:
        return Joints(names, np.asarray(motion.parents), np.asarray(motion.rest_joints), np.asarray(motion.rotations))
    return Joints(names + [str(name) for name in motion.hand_joint_names],
                  np.concatenate([motion.parents, motion.hand_parents]),
                  np.concatenate([motion.rest_joints, motion.hand_rest_joints]),
                  np.concatenate([motion.rotations, motion.hand_rotations], axis=1))


def finger_bones(armature: bpy.types.Object) -> list[str]:
    """The rig's finger bones, in SMPL-H's order; none where it was built from a motion without fingers."""
    return [name for name in HAND_JOINT_NAMES if name in armature.data.bones]


def build_rig(motion: Motion, name: str, collection: bpy.types.Collection, view_layer: bpy.types.ViewLayer,
              created: list[bpy.types.ID]) -> Rig:
    """Builds the armature and mesh objects and links them into ``collection``.

    Bones can only be added in Edit Mode, which Blender enters for the view layer's
    active object: the new armature becomes active and the only selected object while
    its bones are made; the other objects' selection is put back afterwards.

    Args:
        motion: the solved clip (its rest joints, parents, names, mesh and weights, and
            its fingers' where it has them).
        name: name of the armature object and data; the mesh gets ``name + "_body"``.
        collection: where the objects are linked; it must be in ``view_layer`` and visible.
        view_layer: the view layer whose Edit Mode is used.
        created: every ID made here is appended as soon as it exists, so a caller can
            remove them all if anything later fails.
    Returns:
        The armature and mesh objects.
    """
    skeleton = joints(motion, motion.has_fingers)
    bones = _rest_bones(motion)
    armature_data = bpy.data.armatures.new(name)
    created.append(armature_data)
    armature = bpy.data.objects.new(name, armature_data)
    created.append(armature)
    collection.objects.link(armature)
    _add_bones(armature, bones, skeleton.names, skeleton.parents, view_layer)
    for pose_bone in armature.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"

    mesh_data = _body_mesh(name + "_body", motion.mesh_vertices, motion.mesh_faces)
    created.append(mesh_data)
    mesh = bpy.data.objects.new(name + "_body", mesh_data)
    created.append(mesh)
    collection.objects.link(mesh)
    mesh.parent = armature
    weights = motion.skin_weights_with_fingers if motion.has_fingers else motion.skin_weights
    _add_vertex_groups(mesh, skeleton.names, weights)
    modifier = mesh.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature
    return Rig(armature, mesh)


def rest_orientations(armature: bpy.types.Object, names: list[str]) -> np.ndarray:
    """(J, 3, 3) rest orientations of the named bones as Blender stores them (float32 precision)."""
    return np.array([[list(row)[:3] for row in armature.data.bones[name].matrix_local[:3]] for name in names])


def _rest_bones(motion: Motion) -> bone_space.RestBones:
    if not motion.has_fingers:
        return bone_space.rest_bones(motion.rest_joints, motion.parents)
    return bone_space.rest_bones_with_fingers(motion.rest_joints, motion.parents, motion.hand_rest_joints,
                                              motion.hand_parents)


def _add_bones(armature: bpy.types.Object, bones: bone_space.RestBones, names: list[str], parents: np.ndarray,
               view_layer: bpy.types.ViewLayer) -> None:
    selected = [obj for obj in view_layer.objects if obj.select_get(view_layer=view_layer)]
    for obj in selected:
        # Edit Mode would otherwise take every selected armature along (multi-object editing).
        obj.select_set(False, view_layer=view_layer)
    view_layer.objects.active = armature
    armature.select_set(True, view_layer=view_layer)
    try:
        with bpy.context.temp_override(scene=view_layer.id_data, view_layer=view_layer, active_object=armature):
            bpy.ops.object.mode_set(mode="EDIT")
            try:
                edit_bones = armature.data.edit_bones
                for joint, bone_name in enumerate(names):
                    bone = edit_bones.new(bone_name)
                    bone.head = bones.heads[joint]
                    bone.tail = bones.tails[joint]
                    # Setting the matrix keeps head and length and derives the roll from our axes.
                    bone.matrix = Matrix(bones.matrices[joint].tolist())
                    if parents[joint] >= 0:
                        bone.parent = edit_bones[names[parents[joint]]]
            finally:
                bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        for obj in selected:
            obj.select_set(True, view_layer=view_layer)


def _body_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A triangle mesh from (V, 3) SMPL-axes vertices and (F, 3) vertex indices."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", bone_space.to_blender_axes(vertices).astype(np.float32).ravel())
    mesh.loops.add(faces.size)
    mesh.polygons.add(len(faces))
    # Every polygon is a triangle: it starts 3 loops after the previous one.
    mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
    mesh.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
    mesh.update()
    mesh.shade_smooth()
    return mesh


def _add_vertex_groups(mesh: bpy.types.Object, names: list[str], weights: np.ndarray) -> None:
    """One vertex group per bone from (V, J) skin weights, zero weights left out.

    Blender has no bulk setter for vertex weights; ``VertexGroup.add`` takes many
    vertices but one weight, so vertices are batched by equal weight (rigid regions
    share 1.0), which cuts the calls to the number of distinct weights per bone.
    """
    for joint, name in enumerate(names):
        group = mesh.vertex_groups.new(name=name)
        vertices = np.flatnonzero(weights[:, joint] > 0.0)
        distinct, which = np.unique(weights[vertices, joint], return_inverse=True)
        order = np.argsort(which, kind="stable")
        batches = np.split(vertices[order], np.cumsum(np.bincount(which, minlength=len(distinct)))[:-1])
        for weight, batch in zip(distinct.tolist(), batches):
            group.add(batch.tolist(), weight, "REPLACE")

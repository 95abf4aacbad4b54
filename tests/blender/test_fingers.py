"""Fingers in Blender: the 54-bone rig and its skin, finger keys and pose, refine, FBX export.

The truth is the motion file's own chain (:func:`finger_motion.global_pose`): each bone
turned, in Blender's axes, by its joint's global rotation, its head where the chain puts it.
"""
from __future__ import annotations

import dataclasses

import bpy
import numpy as np
import pytest

from blender_curves import fcurves, keys
from finger_motion import global_pose, with_fingers
from ikol_blender import batch
from ikol_blender.scene import bone_space, importer
from ikol_engine.motion import write_motion

MM = 1e-3
MAX_ANGLE_DEG = 0.5
SAMPLE_EVERY = 3


@pytest.fixture(scope="module")
def finger_motion(clip, body):
    return with_fingers(clip.motion, body)


@pytest.fixture
def finger_file(finger_motion, tmp_path):
    return write_motion(tmp_path / "jump_off_box_fingers.npz", finger_motion)


@pytest.fixture
def imported(blank, finger_file):
    return importer.import_motion(blank, finger_file)


def bone_names(motion) -> list[str]:
    return list(motion.joint_names) + list(motion.hand_joint_names)


def rotation(matrix) -> np.ndarray:
    return np.array(matrix)[:3, :3]


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0))))


def pose_errors(armature: bpy.types.Object, motion, rows) -> tuple[float, float]:
    """Worst finger bone orientation (degrees) and head (metres) error against the file's chain
    over the given motion frames, Blender evaluating the rig (an armature at the origin)."""
    rotations, positions = global_pose(motion)
    axes = bone_space.AXIS_CHANGE
    names = bone_names(motion)
    worst_angle = worst_head = 0.0
    for row in rows:
        bpy.context.scene.frame_set(int(motion.frame_indices[row]) + 1)
        for joint in range(24, len(names)):
            pose_bone = armature.pose.bones[names[joint]]
            wanted = axes @ rotations[row, joint] @ axes.T @ rotation(pose_bone.bone.matrix_local)
            worst_angle = max(worst_angle, angle_deg(rotation(pose_bone.matrix), wanted))
            head = axes @ positions[row, joint]
            worst_head = max(worst_head, float(np.linalg.norm(np.array(pose_bone.head) - head)))
    return worst_angle, worst_head


def rotation_curves(armature: bpy.types.Object) -> dict[str, list]:
    by_bone: dict[str, list] = {}
    for curve in fcurves(armature):
        if curve.data_path.endswith("rotation_quaternion"):
            by_bone.setdefault(curve.data_path.split('"')[1], []).append(curve)
    return by_bone


def vertex_weights(mesh: bpy.types.Object) -> np.ndarray:
    """(V, G) every vertex's weight in every vertex group."""
    weights = np.zeros((len(mesh.data.vertices), len(mesh.vertex_groups)))
    for vertex in mesh.data.vertices:
        for element in vertex.groups:
            weights[vertex.index, element.group] = element.weight
    return weights


def test_rig_has_54_bones_with_the_fingers_at_their_rest_joints(imported, finger_motion):
    motion = finger_motion
    names = bone_names(motion)
    assert len(imported.data.bones) == 54 and sorted(b.name for b in imported.data.bones) == sorted(names)
    parents = np.concatenate([motion.parents, motion.hand_parents])
    for joint, name in enumerate(names):
        bone = imported.data.bones[name]
        assert (bone.parent.name if bone.parent else None) == (names[parents[joint]] if parents[joint] >= 0 else None)
    assert imported.data.bones["left_index1"].parent.name == "L_Wrist"
    assert all(pose_bone.rotation_mode == "QUATERNION" for pose_bone in imported.pose.bones)
    heads = np.array([imported.data.bones[name].head_local for name in motion.hand_joint_names])
    error = np.abs(heads - bone_space.to_blender_axes(motion.hand_rest_joints)).max()
    # The body's bones are those of a rig without fingers.
    body = bone_space.rest_bones(motion.rest_joints, motion.parents).matrices
    stored = np.array([np.array(imported.data.bones[name].matrix_local) for name in motion.joint_names])
    print(f"\nfinger bone heads vs hand_rest_joints: max {error / MM:.5f} mm; body rest frames vs a rig without "
          f"fingers: max {np.abs(stored - body).max():.2e}")
    assert error < 0.1 * MM
    assert np.abs(stored - body).max() < 1e-4


def test_vertex_groups_hold_the_weights_with_fingers(imported, finger_motion):
    motion = finger_motion
    mesh = imported.children[0]
    assert [group.name for group in mesh.vertex_groups] == bone_names(motion)
    weights = vertex_weights(mesh)
    error = np.abs(weights - motion.skin_weights_with_fingers).max()
    hands = ["L_Hand", "R_Hand"]
    print(f"\nvertex groups vs skin_weights_with_fingers: max {error:.2e} over {weights.shape} weights; "
          f"{int((weights[:, 24:] > 0).any(1).sum())} vertices follow fingers")
    assert error < 1e-6
    assert (weights[:, 24:] > 0).any(0).all()  # every finger moves some skin
    assert not weights[:, [list(motion.joint_names).index(name) for name in hands]].any()


def test_finger_keys_pose_the_bones_as_the_file_chain(imported, finger_motion):
    motion = finger_motion
    by_bone = rotation_curves(imported)
    assert len(by_bone) == 54 and sum(map(len, by_bone.values())) == 54 * 4
    assert len(fcurves(imported)) == 54 * 4 + 3 + 1  # rotations, root location, residual
    valid_frames = motion.frame_indices[motion.valid] + 1
    for name in motion.hand_joint_names:
        curves = sorted(by_bone[name], key=lambda curve: curve.array_index)
        for curve in curves:
            np.testing.assert_array_equal(keys(curve)[:, 0], valid_frames)
            assert curve.group.name == name
        quaternions = np.stack([keys(curve)[:, 1] for curve in curves], axis=-1)
        assert ((quaternions[1:] * quaternions[:-1]).sum(-1) >= 0).all()  # the file's signs flip; the keys don't
    rows = np.flatnonzero(motion.valid)[::SAMPLE_EVERY]
    worst_angle, worst_head = pose_errors(imported, motion, rows)
    print(f"\nBlender {bpy.app.version_string}: finger bones vs the file's chain over {len(rows)} frames: "
          f"orientation max {worst_angle:.4f} deg, head max {worst_head / MM:.4f} mm")
    assert worst_angle < MAX_ANGLE_DEG
    assert worst_head < 1 * MM


def test_skinned_hands_follow_the_fingers(imported, finger_motion):
    """Blender's skinning of the rest mesh equals linear-blend skinning over the 54 joints."""
    motion = finger_motion
    rotations, positions = global_pose(motion)
    rest = np.concatenate([motion.rest_joints, motion.hand_rest_joints]).astype(np.float64)
    row = int(np.flatnonzero(motion.valid)[len(motion.valid) // 2])
    bpy.context.scene.frame_set(int(motion.frame_indices[row]) + 1)
    vertices = motion.mesh_vertices.astype(np.float64)
    # Each joint carries the vertices by its rotation about its rest position, then moves them to its posed one.
    per_joint = np.einsum("jab,vjb->vja", rotations[row], vertices[:, None] - rest[None]) + positions[row][None]
    smpl = np.einsum("vj,vja->va", motion.skin_weights_with_fingers.astype(np.float64), per_joint)
    evaluated = imported.children[0].evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(3 * len(evaluated.data.vertices), dtype=np.float32)
    evaluated.data.vertices.foreach_get("co", co)
    error = np.linalg.norm(co.reshape(-1, 3) - bone_space.to_blender_axes(smpl), axis=-1)
    in_hands = (motion.skin_weights_with_fingers[:, 24:] > 0).any(1)
    print(f"\nskinned mesh vs 54-joint LBS: max {error.max() / MM:.4f} mm, "
          f"hands max {error[in_hands].max() / MM:.4f} mm")
    assert error.max() < 0.1 * MM


def test_refine_rewrites_the_finger_curves_and_a_file_without_fingers_removes_them(imported, clip, body,
                                                                                    finger_motion, tmp_path):
    armature = imported
    action = armature.animation_data.action
    pelvis = next(c for c in fcurves(armature) if c.data_path == 'pose.bones["Pelvis"].location')
    pelvis.modifiers.new("NOISE")  # the animator's: refine keeps it
    other = with_fingers(clip.motion, body, seed=8)
    importer.rekey_motion(armature, write_motion(tmp_path / "other.npz", other))
    rows = np.flatnonzero(other.valid)[::SAMPLE_EVERY]
    assert pose_errors(armature, other, rows)[0] < MAX_ANGLE_DEG
    assert pose_errors(armature, finger_motion, rows)[0] > 5.0  # the old keys are gone

    importer.rekey_motion(armature, write_motion(tmp_path / "no_fingers.npz", clip.motion))
    by_bone = rotation_curves(armature)
    assert len(by_bone) == 24 and not set(by_bone) & set(other.hand_joint_names)
    assert armature.animation_data.action == action and len(pelvis.modifiers) == 1
    assert len(armature.data.bones) == 54 and len(armature.children[0].vertex_groups) == 54
    row = int(np.flatnonzero(clip.motion.valid)[5])
    bpy.context.scene.frame_set(int(clip.motion.frame_indices[row]) + 1)
    # Fingers at rest: each keeps its rest frame relative to the (moving) wrist.
    worst = 0.0
    for name in other.hand_joint_names:
        pose_bone = armature.pose.bones[name]
        assert tuple(pose_bone.rotation_quaternion) == (1.0, 0.0, 0.0, 0.0)
        relative = rotation(pose_bone.parent.matrix).T @ rotation(pose_bone.matrix)
        rest = rotation(pose_bone.parent.bone.matrix_local).T @ rotation(pose_bone.bone.matrix_local)
        worst = max(worst, angle_deg(relative, rest))
    assert worst < 0.1  # float32 matrices: arccos of a trace within 1e-7 of 3 reads ~0.05 degrees

    importer.rekey_motion(armature, write_motion(tmp_path / "again.npz", other))
    assert len(rotation_curves(armature)) == 54
    assert pose_errors(armature, other, rows[:3])[0] < MAX_ANGLE_DEG


def test_a_rig_without_finger_bones_keys_its_body_from_a_file_with_fingers(blank, motion_file, finger_file, clip):
    armature = importer.import_motion(blank, motion_file)
    importer.rekey_motion(armature, finger_file)
    assert len(armature.data.bones) == 24 and len(rotation_curves(armature)) == 24
    assert armature[importer.MOTION_PROPERTY] == str(finger_file.resolve())


def test_another_hand_is_another_skeleton(imported, finger_motion, tmp_path):
    wider = dataclasses.replace(finger_motion, hand_rest_joints=finger_motion.hand_rest_joints * 1.01)
    with pytest.raises(ValueError, match="another skeleton"):
        importer.rekey_motion(imported, write_motion(tmp_path / "wider.npz", wider))


def test_fbx_export_carries_the_finger_bones_and_their_motion(imported, finger_motion, tmp_path):
    motion = finger_motion
    (fbx,) = [export for export in batch.EXPORTS if export.flag == "fbx"]
    path = tmp_path / "fingers.fbx"
    scene = bpy.context.scene
    # A whole-number rate, so the file's key times come back on the same frames.
    scene.render.fps, scene.render.fps_base = 30, 1.0
    assert fbx.write(path, imported) == {"FINISHED"}
    frames = importer.blender_frames(motion)[motion.valid]
    frame = int(frames[len(frames) // 2])
    scene.frame_set(frame)
    names = list(motion.hand_joint_names)
    before = np.array([list(imported.matrix_world @ imported.pose.bones[name].head) for name in names])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    # The bake starts at the first key; the importer puts its first frame at anim_offset.
    bpy.ops.import_scene.fbx(filepath=str(path), anim_offset=float(frames[0]))
    (armature,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    assert sorted(bone.name for bone in armature.data.bones) == sorted(bone_names(motion))
    keyed = {curve.data_path.split('"')[1] for curve in fcurves(armature)
             if curve.data_path.startswith("pose.bones")}
    assert set(names) <= keyed
    scene.frame_set(frame)
    after = np.array([list(armature.matrix_world @ armature.pose.bones[name].head) for name in names])
    error = np.linalg.norm(after - before, axis=-1).max()
    print(f"\nFBX round trip: finger heads max {error / MM:.3f} mm off at frame {frame}")
    assert error < 1 * MM

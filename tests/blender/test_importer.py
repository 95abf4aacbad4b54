"""import_motion in Blender (bpy as a module): exact poses and skin, keys, isolation, clean failure."""
from __future__ import annotations

import dataclasses
import math

import bpy
import numpy as np
import pytest

from ikol_blender.scene import bone_space, importer, keyframes, rig
from blender_curves import fcurves, keys
from ikol_engine.motion import MotionFileError, write_motion

MM = 1e-3


def data_counts() -> dict[str, int]:
    return {kind: len(getattr(bpy.data, kind)) for kind in ("objects", "actions", "armatures", "meshes")}


def world_heads(armature: bpy.types.Object, names: list[str]) -> np.ndarray:
    """(J, 3) evaluated pose-bone heads in world space, in the order of ``names``."""
    world = armature.matrix_world
    return np.array([list(world @ armature.pose.bones[name].head) for name in names])


def evaluated_vertices(mesh: bpy.types.Object) -> np.ndarray:
    evaluated = mesh.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(3 * len(evaluated.data.vertices), dtype=np.float32)
    evaluated.data.vertices.foreach_get("co", co)
    world = np.array(evaluated.matrix_world)
    return co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]


@pytest.fixture
def imported(blank, motion_file):
    return importer.import_motion(blank, motion_file)


def test_rig_structure(imported, clip):
    motion = clip.motion
    names = list(motion.joint_names)
    assert sorted(bone.name for bone in imported.data.bones) == sorted(names)
    bones = [imported.data.bones[name] for name in names]  # Blender lists bones depth first
    for joint, bone in enumerate(bones):
        parent = motion.parents[joint]
        assert (bone.parent.name if bone.parent else None) == (names[parent] if parent >= 0 else None)
    assert all(pose_bone.rotation_mode == "QUATERNION" for pose_bone in imported.pose.bones)
    expected = bone_space.rest_bones(motion.rest_joints, motion.parents).matrices
    stored = np.array([np.array(bone.matrix_local) for bone in bones])
    # Blender keeps bones as float32 head, tail and roll and rebuilds the matrix from
    # them: 1.6e-5 off on one clip's rest body; a wrong roll or head is off by 1e-2 or more.
    assert np.abs(stored - expected).max() < 1e-4
    mesh = imported.children[0]
    assert mesh.type == "MESH" and mesh.modifiers[0].type == "ARMATURE" and mesh.modifiers[0].object == imported
    assert [group.name for group in mesh.vertex_groups] == names
    assert len(mesh.data.vertices) == len(motion.mesh_vertices) and len(mesh.data.polygons) == len(motion.mesh_faces)
    for vertex in np.random.default_rng(0).choice(len(motion.mesh_vertices), 50, replace=False):
        weights = np.zeros(24)
        for element in mesh.data.vertices[vertex].groups:
            weights[element.group] = element.weight
        assert np.abs(weights - motion.skin_weights[vertex]).max() < 1e-6


def test_pose_and_skin_match_engine(imported, clip, body):
    scene = bpy.context.scene
    motion = clip.motion
    valid_rows = np.flatnonzero(motion.valid)
    joint_errors, vertex_errors = [], []
    for row in valid_rows[::4]:
        scene.frame_set(int(motion.frame_indices[row]) + 1)
        truth = bone_space.to_blender_axes(clip.joints[row])
        joint_errors.append(np.linalg.norm(world_heads(imported, list(motion.joint_names)) - truth, axis=-1).max())
    row = valid_rows[len(valid_rows) // 2]
    scene.frame_set(int(motion.frame_indices[row]) + 1)
    smpl_vertices = body.vertices(clip.rotations[row:row + 1], clip.betas, clip.translation[row:row + 1])[0]
    skin = np.linalg.norm(evaluated_vertices(imported.children[0])
                          - bone_space.to_blender_axes(smpl_vertices.numpy()), axis=-1)
    print(f"\nBlender {bpy.app.version_string}: bone heads vs engine FK max {max(joint_errors) / MM:.4f} mm "
          f"over {len(joint_errors)} frames; skinned mesh vs smplx max {skin.max() / MM:.4f} mm, "
          f"mean {skin.mean() / MM:.4f} mm")
    assert max(joint_errors) < 1 * MM
    assert skin.max() < 2 * MM


def test_keys_land_on_valid_frames_only(imported, clip):
    motion = clip.motion
    valid_frames = motion.frame_indices[motion.valid] + 1
    curves = list(fcurves(imported))
    rotation_curves = [c for c in curves if c.data_path.endswith("rotation_quaternion")]
    location_curves = [c for c in curves if c.data_path.endswith("location")]
    assert len(rotation_curves) == 96 and len(location_curves) == 3
    assert {c.data_path for c in location_curves} == {'pose.bones["Pelvis"].location'}
    for curve in rotation_curves + location_curves:
        assert len(curve.keyframe_points) == motion.valid.sum()
        np.testing.assert_array_equal(keys(curve)[:, 0], valid_frames)
        assert curve.group.name == curve.data_path.split('"')[1]
        assert {k.interpolation for k in curve.keyframe_points} == {"LINEAR"}
    invalid_frames = set(motion.frame_indices[~motion.valid] + 1)
    assert invalid_frames and not invalid_frames & set(keys(rotation_curves[0])[:, 0].tolist())


def test_no_quaternion_sign_flips_between_keys(imported, clip):
    by_bone = {}
    for curve in fcurves(imported):
        if curve.data_path.endswith("rotation_quaternion"):
            by_bone.setdefault(curve.data_path, [None] * 4)[curve.array_index] = keys(curve)[:, 1]
    assert len(by_bone) == 24
    raw = clip.motion.rotations[clip.motion.valid]
    assert ((raw[1:] * raw[:-1]).sum(-1) < 0).sum() > 100  # the file itself flips a lot
    for components in by_bone.values():
        quaternions = np.stack(components, axis=-1)
        assert ((quaternions[1:] * quaternions[:-1]).sum(-1) >= 0).all()


def test_residual_curve_fps_range_and_names(imported, clip, motion_file):
    motion = clip.motion
    curve = fcurves(imported).find(f'["{importer.RESIDUAL_PROPERTY}"]')
    assert curve is not None
    expected = np.stack([motion.frame_indices[motion.valid] + 1, motion.residual_mm[motion.valid]], axis=1)
    np.testing.assert_allclose(keys(curve), expected, rtol=1e-6)
    scene = bpy.context.scene
    scene.frame_set(int(expected[3, 0]))
    assert imported[importer.RESIDUAL_PROPERTY] == pytest.approx(expected[3, 1], rel=1e-6)
    assert (scene.render.fps, scene.render.fps_base) == (30, pytest.approx(1.001))
    assert scene.render.fps / scene.render.fps_base == pytest.approx(29.97)
    assert (scene.frame_start, scene.frame_end) == (motion.frame_indices[0] + 1, motion.frame_indices[-1] + 1)
    assert imported.animation_data.action.name == "jump_off_box"
    assert imported.name == "jump_off_box"
    assert imported[importer.MOTION_PROPERTY] == str(motion_file.resolve())
    assert bpy.context.view_layer.objects.active == imported


def test_two_imports_are_independent_and_leave_other_data_alone(blank, motion_file, clip):
    scene = blank.scene
    cube = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    scene.collection.objects.link(cube)
    mine = keyframes.new_action(cube, "mine")
    keyframes.write_keys(cube, mine, [keyframes.Channel("location", 2, "Object", np.array([1.0, 9.0]),
                                                        np.array([0.0, 3.0]))])
    actions_before = set(bpy.data.actions)
    first = importer.import_motion(blank, motion_file)
    first_keys = [keys(c).copy() for c in fcurves(first)]
    second = importer.import_motion(scene, motion_file, name="take2")
    assert second.name == "take2" and first.name == "jump_off_box"
    assert first.animation_data.action != second.animation_data.action
    assert second.animation_data.action.name == "jump_off_box.001"
    assert set(bpy.data.actions) - actions_before == {first.animation_data.action, second.animation_data.action}
    assert len(bpy.data.armatures) == 2 and len(bpy.data.meshes) == 3
    assert all(np.array_equal(a, keys(c)) for a, c in zip(first_keys, fcurves(first)))
    assert cube.animation_data.action == mine and len(fcurves(cube)) == 1
    np.testing.assert_array_equal(keys(fcurves(cube)[0]), [[1.0, 0.0], [9.0, 3.0]])
    # Both rigs play: the second's root moves as the first's.
    scene.frame_set(int(clip.motion.frame_indices[np.flatnonzero(clip.motion.valid)[5]]) + 1)
    names = list(clip.motion.joint_names)
    assert np.abs(world_heads(first, names) - world_heads(second, names)).max() < 1e-6


def test_corrupt_file_changes_nothing(blank, motion_file):
    counts = data_counts()
    motion_file.write_bytes(motion_file.read_bytes()[:1000])
    with pytest.raises(MotionFileError):
        importer.import_motion(blank, motion_file)
    assert data_counts() == counts


def test_failure_mid_way_removes_everything_it_made(blank, motion_file, monkeypatch):
    scene = blank.scene
    cube = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    scene.collection.objects.link(cube)
    blank.view_layer.objects.active = cube
    cube.select_set(True)
    scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end = 24, 1.0, 1, 250
    counts = data_counts()
    real_write = keyframes.write_keys

    def fail_after_some_keys(obj, action, channels):
        real_write(obj, action, list(channels)[:10])
        raise RuntimeError("disk full")

    monkeypatch.setattr(keyframes, "write_keys", fail_after_some_keys)
    with pytest.raises(RuntimeError, match="disk full"):
        importer.import_motion(blank, motion_file)
    assert data_counts() == counts
    assert blank.view_layer.objects.active == cube and cube.select_get()
    assert (scene.render.fps, scene.render.fps_base, scene.frame_start, scene.frame_end) == (24, 1.0, 1, 250)
    assert cube.mode == "OBJECT"


def test_failure_while_building_bones_leaves_edit_mode_and_cleans_up(blank, motion_file, monkeypatch):
    counts = data_counts()
    monkeypatch.setattr(rig.bone_space, "rest_bones", lambda *args: None)  # bones.heads raises
    with pytest.raises(AttributeError):
        importer.import_motion(blank, motion_file)
    assert data_counts() == counts
    assert blank.mode == "OBJECT"


def test_writer_speed_and_values(blank):
    """The writer alone: 100,000 keys on one curve, every value where it was put."""
    obj = bpy.data.objects.new("Empty", None)
    blank.scene.collection.objects.link(obj)
    action = keyframes.new_action(obj, "speed")
    frames = np.arange(1, 100_001, dtype=np.float64)
    values = np.sin(frames / 100.0)
    (curve,) = keyframes.write_keys(obj, action, [keyframes.Channel("location", 0, "Object", frames, values)])
    np.testing.assert_allclose(keys(curve), np.stack([frames, values], axis=1), atol=1e-6)
    assert curve.evaluate(1.5) == pytest.approx((values[0] + values[1]) / 2, abs=1e-6)  # linear
    blank.scene.frame_set(77)
    assert obj.location.x == pytest.approx(math.sin(0.77), abs=1e-6)


def test_import_into_another_scene(blank, motion_file, clip):
    editing = bpy.data.objects.new("Editing", bpy.data.meshes.new("Editing"))
    blank.scene.collection.objects.link(editing)
    blank.view_layer.objects.active = editing
    bpy.ops.object.mode_set(mode="EDIT")
    other = bpy.data.scenes.new("Other")
    armature = importer.import_motion(other, motion_file)
    assert set(other.objects) == {armature, armature.children[0]} and list(blank.scene.objects) == [editing]
    assert other.render.fps == 30 and blank.scene.render.fps == 24  # the context's scene keeps its rate
    assert editing.mode == "EDIT" and blank.view_layer.objects.active == editing  # another scene: untouched
    row = int(np.flatnonzero(clip.motion.valid)[-1])
    other.frame_set(int(clip.motion.frame_indices[row]) + 1)
    truth = bone_space.to_blender_axes(clip.joints[row])
    assert np.linalg.norm(world_heads(armature, list(clip.motion.joint_names)) - truth, axis=-1).max() < 1 * MM


def test_import_from_edit_mode_returns_to_object_mode(blank, motion_file):
    editing = bpy.data.objects.new("Editing", bpy.data.meshes.new("Editing"))
    blank.scene.collection.objects.link(editing)
    blank.view_layer.objects.active = editing
    bpy.ops.object.mode_set(mode="EDIT")
    armature = importer.import_motion(blank, motion_file)
    assert editing.mode == "OBJECT" and blank.mode == "OBJECT" and len(armature.data.bones) == 24


def test_variable_rate_keys_sit_at_the_frames_times(blank, clip, tmp_path):
    motion = clip.motion
    # 1/30 s apart, then 1/15 s, then 1/60 s: the decoder's times of a variable-rate clip.
    steps = np.select([np.arange(len(motion.valid) - 1) < 12, np.arange(len(motion.valid) - 1) < 25],
                      [1 / 30, 1 / 15], 1 / 60)
    times = 0.4 + np.concatenate([[0.0], np.cumsum(steps)])
    path = write_motion(tmp_path / "variable.npz", dataclasses.replace(motion, frame_times=times))
    armature = importer.import_motion(blank, path)
    scene = blank.scene
    rate = scene.render.fps / scene.render.fps_base
    assert rate == pytest.approx(motion.fps)
    for curve in fcurves(armature):
        key_times = (keys(curve)[:, 0] - 1) / rate
        assert np.abs(key_times - times[motion.valid]).max() < 1e-3  # within a millisecond
    frames = times * rate + 1
    assert (scene.frame_start, scene.frame_end) == (math.floor(frames[0]), math.ceil(frames[-1]))


def test_a_cut_off_video_is_noted(clip):
    whole = {"video": {"frames_promised": 40, "frames_decoded": 40}}
    assert importer.video_note(dataclasses.replace(clip.motion, options=whole)) == ""
    cut = {"video": {"frames_promised": 230, "frames_decoded": 69}}
    note = importer.video_note(dataclasses.replace(clip.motion, options=cut))
    assert "69 of the 230 frames" in note
    assert importer.video_note(dataclasses.replace(clip.motion, options={})) == ""

"""The imported camera sees the rig where the engine's pinhole camera saw the person."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ikol_blender.scene.bone_space import AXIS_CHANGE
from ikol_blender.scene.camera import video_camera
from filmed_clip import HEIGHT, WIDTH, engine_pixels, filmed  # noqa: F401 (a fixture)
from ikol_engine import samples

def test_bone_heads_project_onto_the_engine_pixels(blank, filmed, clip):
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from ikol_blender.scene.importer import CAMERA_PROPERTY, import_motion

    path, motion = filmed
    armature = import_motion(blank, path)
    scene = blank.scene
    camera = bpy.data.objects[armature[CAMERA_PROPERTY]]
    assert scene.camera == camera
    assert (scene.render.resolution_x, scene.render.resolution_y) == (WIDTH, HEIGHT)
    names = [str(n) for n in motion.joint_names]
    worst = 0.0
    for index in np.flatnonzero(motion.valid)[::7]:
        scene.frame_set(int(motion.frame_indices[index]) + 1)
        expected = engine_pixels(clip.joints[index], motion.options["result"]["floor"])
        for joint, name in enumerate(names):
            head = armature.matrix_world @ armature.pose.bones[name].head
            view = world_to_camera_view(scene, camera, Vector(head))
            pixel = np.array([view.x * WIDTH, (1.0 - view.y) * HEIGHT])
            assert view.z > 0  # in front of the camera
            worst = max(worst, float(np.linalg.norm(pixel - expected[joint])))
    assert worst < 0.5, worst  # pixels


def test_camera_pose_without_floor_is_the_origin_looking_down_minus_y(clip):
    motion = dataclasses.replace(clip.motion, options={"image_size": [640, 480], "solve": {"fov_deg": 60.0},
                                                       "result": {"floor": None}})
    camera = video_camera(motion)
    assert np.allclose(camera.matrix_world[:3, 3], 0.0)
    # The engine's camera looks down its -z, which is Blender's +y after the axis change.
    assert np.allclose(camera.matrix_world[:3, :3] @ [0.0, 0.0, -1.0], AXIS_CHANGE @ [0.0, 0.0, -1.0])
    assert video_camera(dataclasses.replace(clip.motion, options={})) is None


def test_field_of_view_is_the_one_the_solve_used(clip):
    def fov(solve_fov, camera):
        result = {"floor": None} if camera is None else {"floor": None, "camera": camera}
        options = {"image_size": [640, 480], "solve": {"fov_deg": solve_fov}, "result": result}
        found = video_camera(dataclasses.replace(clip.motion, options=options))
        return None if found is None else found.fov_deg

    estimated = {"focal_px": 722.8, "fov_deg": 47.75, "source": "estimated"}
    assert fov(None, estimated) == 47.75  # the engine chose it: the request was null
    assert fov(60.0, dict(estimated, fov_deg=52.5, source="fov")) == 52.5  # the result wins over the request
    assert fov(60.0, None) == 60.0  # a file from before result.camera
    assert fov(None, None) is None
    assert fov(60.0, {"focal_px": 722.8, "fov_deg": None, "source": "estimated"}) is None


def test_imported_camera_has_the_estimated_field_of_view(blank, filmed, tmp_path):
    import bpy

    from ikol_blender.scene.importer import CAMERA_PROPERTY, import_motion
    from ikol_engine.motion import write_motion

    _, motion = filmed
    options = dict(motion.options, solve={"fov_deg": None},
                   result=dict(motion.options["result"], camera={"focal_px": 1820.0, "fov_deg": 51.8,
                                                                 "source": "estimated"}))
    path = write_motion(tmp_path / "estimated.npz", dataclasses.replace(motion, options=options))
    armature = import_motion(blank, path)
    data = bpy.data.objects[armature[CAMERA_PROPERTY]].data
    assert data.sensor_fit == "HORIZONTAL"
    assert np.degrees(data.angle) == pytest.approx(51.8, abs=1e-4)


def test_existing_camera_is_kept_and_video_plays_behind_the_new_one(blank, filmed):
    import bpy

    from ikol_blender.scene.importer import CAMERA_PROPERTY, import_motion

    mine = bpy.data.objects.new("Mine", bpy.data.cameras.new("Mine"))
    blank.scene.collection.objects.link(mine)
    blank.scene.camera = mine
    blank.scene.render.resolution_x = 640
    video = samples.demo_video()
    armature = import_motion(blank, filmed[0], video=video)
    assert blank.scene.camera == mine and blank.scene.render.resolution_x == 640
    new = bpy.data.objects[armature[CAMERA_PROPERTY]].data
    assert new.show_background_images and len(new.background_images) == 1
    clip = new.background_images[0].clip
    assert clip.frame_start == 1 and clip.frame_duration == 230  # the sample's frames
    assert tuple(clip.size) == (WIDTH, HEIGHT)


def test_people_of_one_video_share_its_camera_each_where_their_own_solve_saw_them(blank, filmed, body, tmp_path):
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    from conftest import make_clip
    from ikol_blender.scene.importer import CAMERA_PROPERTY, import_motions, rekey_motion
    from ikol_engine.motion import write_motion

    first_path, first = filmed
    other = make_clip(body, seed=5)
    # The second person's solve levelled its own floor fit: another camera pose.
    floor = {"normal_camera": (np.array([0.1, 0.97, 0.25]) / np.linalg.norm([0.1, 0.97, 0.25])).tolist(),
             "height_camera": -1.45, "contacts": 30}
    second = dataclasses.replace(other.motion, options=dict(first.options, result={"floor": floor}))
    second_path = write_motion(tmp_path / "second.npz", second)
    cameras_before = len(bpy.data.cameras)
    rigs = import_motions(blank, [first_path, second_path], names=["person1", "person2"])
    assert [rig.name for rig in rigs] == ["person1", "person2"]
    assert len(bpy.data.cameras) == cameras_before + 1
    camera = bpy.data.objects[rigs[0][CAMERA_PROPERTY]]
    assert rigs[1][CAMERA_PROPERTY] == camera.name and blank.scene.camera == camera

    def worst_pixel_error(armature, motion, joints, floor):
        scene, names, worst = blank.scene, [str(n) for n in motion.joint_names], 0.0
        for index in np.flatnonzero(motion.valid)[::9]:
            scene.frame_set(int(motion.frame_indices[index]) + 1)
            expected = engine_pixels(joints[index], floor)
            for joint, name in enumerate(names):
                view = world_to_camera_view(scene, camera, Vector(armature.matrix_world @ armature.pose.bones[name].head))
                worst = max(worst, float(np.linalg.norm([view.x * WIDTH - expected[joint, 0],
                                                         (1.0 - view.y) * HEIGHT - expected[joint, 1]])))
        return worst

    first_floor = first.options["result"]["floor"]
    assert worst_pixel_error(rigs[0], first, filmed_joints(first), first_floor) < 0.5
    assert worst_pixel_error(rigs[1], second, filmed_joints(second), floor) < 0.5
    # A refine of one person, with yet another floor, moves that rig, not the camera the other shares.
    camera_before = np.array(camera.matrix_world)
    refined_floor = dict(floor, height_camera=-1.6)
    refined = write_motion(tmp_path / "second_refined.npz",
                           dataclasses.replace(second, options=dict(first.options, result={"floor": refined_floor})))
    rekey_motion(rigs[1], refined)
    assert np.array_equal(np.array(camera.matrix_world), camera_before)
    assert worst_pixel_error(rigs[1], second, filmed_joints(second), refined_floor) < 0.5
    assert worst_pixel_error(rigs[0], first, filmed_joints(first), first_floor) < 0.5
    # With the first person deleted, the second rig is the camera's only user: a refine
    # moves the camera, relative to where that rig stands, and it still sees the rig right.
    bpy.data.objects.remove(rigs[0])
    again_floor = dict(floor, height_camera=-1.5)
    again = write_motion(tmp_path / "second_again.npz",
                         dataclasses.replace(second, options=dict(first.options, result={"floor": again_floor})))
    rig_before = np.array(rigs[1].matrix_world)
    rekey_motion(rigs[1], again)
    assert np.array_equal(np.array(rigs[1].matrix_world), rig_before)
    assert not np.allclose(np.array(camera.matrix_world), camera_before)
    assert worst_pixel_error(rigs[1], second, filmed_joints(second), again_floor) < 0.5


def test_a_file_without_a_camera_is_not_tied_to_the_shared_one(blank, filmed, body, tmp_path):
    import bpy

    from conftest import make_clip
    from ikol_blender.scene.importer import CAMERA_PROPERTY, import_motions, video_camera
    from ikol_engine.motion import write_motion

    first_path, first = filmed
    other = make_clip(body, seed=6).motion
    uncamera = dataclasses.replace(other, options={key: value for key, value in other.options.items()
                                                   if key != "image_size"})
    assert video_camera(uncamera) is None
    path = write_motion(tmp_path / "no_camera.npz", uncamera)
    rigs = import_motions(blank, [first_path, path], names=["seen", "unseen"])
    assert CAMERA_PROPERTY in rigs[0] and CAMERA_PROPERTY not in rigs[1]
    assert np.array_equal(np.array(rigs[1].matrix_world), np.eye(4))
    assert len([o for o in bpy.data.objects if o.type == "CAMERA"]) == 1


def filmed_joints(motion) -> np.ndarray:
    """(T, 24, 3) the motion's joints in its world frame: its targets are its exact FK keypoints."""
    return motion.targets[:, :24].astype(np.float64)

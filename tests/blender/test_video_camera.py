"""The imported camera sees the rig where the engine's pinhole camera saw the person."""
from __future__ import annotations

import dataclasses

import numpy as np

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

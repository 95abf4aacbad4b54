"""Motion file to a keyframed SMPL rig in a Blender scene.

Timing: a frame's key sits at Blender frame ``time * fps + 1``, its time in the video
(the decoder's timestamp, :attr:`Motion.times`) on the scene's rate, so the video's first
frame is Blender's frame 1 and the keys stay in step with the video used as a reference
(a clip that starts later in the video starts later on the timeline). For a constant
rate that is the source frame index + 1; a variable-rate video's keys land between
whole frames where its frames do. The scene's frame range covers the motion's first to
last key and its rate is the video's, as ``render.fps / render.fps_base``
(29.97 = 30 / 1.001).

Only valid frames are keyed; frames where no person was solved stay unkeyed, so the
rig interpolates across them. The per-frame IK residual (mm) is keyed on the same
frames as the custom property ``ikol_residual_mm`` of the armature object, where the
Graph Editor shows bad stretches at a glance. A file with foot contacts keys them on the
same frames too, as the on/off steps of the properties ``ikol_contact_L_Heel`` and the
like (:mod:`.contacts`), for the animator to edit and Refine to use. A file with fingers
keys the rig's finger bones on the same frames, by the same conversion as the body's
(:func:`.bone_space.pose_from_smpl`); a hand not seen in a frame has the rotations the
engine held for it there.

Camera: where the file records the camera it was solved with (image size, field of
view, floor), a camera object is made at that place (:mod:`.camera`), so looking
through it lines the rig up with the video; given the video, it becomes the camera's
background movie clip, in step with the keys. A scene without an active camera gets
this one, with the video's resolution.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from ..engine.link import Motion, read_motion
from . import bone_space, contacts, keyframes, rig
from .camera import VideoCamera, video_camera

RESIDUAL_PROPERTY = "ikol_residual_mm"
MOTION_PROPERTY = "ikol_motion"
CAMERA_PROPERTY = "ikol_camera"
MEAN_RESIDUAL_PROPERTY = "ikol_mean_residual_mm"
# Rest joints of a re-solved clip may differ by float rounding, never by a real change.
_SAME_SKELETON_M = 1e-4
_RESIDUAL_GROUP = "IKOL"


def import_motion(context_or_scene: bpy.types.Context | bpy.types.Scene, motion_path: str | Path, *,
                  name: str | None = None, video: str | Path | None = None) -> bpy.types.Object:
    """Builds a rig for a motion file, keys it, and returns the armature object.

    A new Action named after the video (``motion.source_video`` without extension) is
    created; existing objects and actions are left as they are. The new armature ends up
    active and selected. The scene's frame rate and range are set to the motion's.
    If anything fails, everything created is removed and the scene settings are left
    unchanged before the error propagates.

    Args:
        context_or_scene: the context (its scene and view layer) or a scene (its first
            view layer, or the context's if it is the context's scene).
        motion_path: an ``.npz`` motion file.
        name: name of the armature object; default the video's name.
        video: the analysed video, shown behind the camera's view; None for none.
    Returns:
        The armature object.
    Raises:
        MotionFileError: the file is missing or malformed.
        ValueError: the motion has no valid frame.
    """
    return import_motions(context_or_scene, [motion_path], names=None if name is None else [name], video=video)[0]


def import_motions(context_or_scene: bpy.types.Context | bpy.types.Scene, motion_paths: Sequence[str | Path], *,
                   names: Sequence[str] | None = None, video: str | Path | None = None) -> list[bpy.types.Object]:
    """Several people of one video (``analyze --person all``): a rig each, seen by one camera.

    As :func:`import_motion` for each file, all or nothing. The first file's camera is the
    only one made; each other rig is placed (its object transform) so that this camera
    sees it where its own solve's camera saw it, since every person was solved and
    levelled on their own floor fit.

    Args:
        names: the armature objects' names, one per file; default the video's name.
    Returns:
        The armatures, in the files' order; the first is active, all are selected.
    """
    scene, view_layer = _scene_and_view_layer(context_or_scene)
    paths = [Path(path).resolve() for path in motion_paths]
    motions = [read_motion(path) for path in paths]
    for path, motion in zip(paths, motions):
        if not motion.valid.any():
            raise ValueError(f"{path}: no frame has a solved pose; nothing to import")
    _leave_edit_modes(scene, view_layer)
    previous_active = view_layer.objects.active
    created: list[bpy.types.ID] = []
    armatures: list[bpy.types.Object] = []
    camera_object = shared = None
    try:
        for index, (path, motion) in enumerate(zip(paths, motions)):
            title = Path(motion.source_video).stem or path.stem
            name = names[index] if names is not None else title
            armature = rig.build_rig(motion, name, scene.collection, view_layer, created).armature
            armature[MOTION_PROPERTY] = str(path)
            action = keyframes.new_action(armature, title)
            created.append(action)
            keyframes.write_keys(armature, action, _channels(armature, motion, motion.has_fingers))
            camera = video_camera(motion)
            if camera is None:  # a file that records no camera: its rig is seen by none
                pass
            elif camera_object is None:
                camera_object, shared = _add_camera(camera, f"{name}_camera", scene.collection, video, created), camera
            else:
                armature.matrix_world = _seen_from(camera_object, camera)
            if camera is not None:
                armature[CAMERA_PROPERTY] = camera_object.name
            armatures.append(armature)
        _set_timing(scene, motions)
        if shared is not None and scene.camera is None:
            scene.camera = camera_object
            scene.render.resolution_x, scene.render.resolution_y = shared.width, shared.height
            scene.render.resolution_percentage = 100
            scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    except BaseException:
        _remove(created)
        view_layer.objects.active = previous_active
        raise
    view_layer.objects.active = armatures[0]
    for armature in armatures:
        armature.select_set(True, view_layer=view_layer)
    return armatures


def rekey_motion(armature: bpy.types.Object, motion_path: str | Path) -> None:
    """Rewrites the keys of an imported rig's Action from a re-solved motion file, in place.

    The rig, its Action and its F-Curves stay (so do the animator's curve settings);
    only the keys change, the rig then points at the new file, and the import's camera
    moves to where the new solve puts it. A file without foot contacts removes the rig's
    contact curves, which would no longer describe its motion; one without fingers removes
    the finger curves and puts the fingers at rest. A rig built without finger bones keys
    only its body from a file with fingers.

    Raises:
        MotionFileError: the file is missing or malformed.
        ValueError: ``armature`` is no IKOL import, or the file's skeleton is not the rig's.
    """
    motion_path = Path(motion_path).resolve()
    motion = read_motion(motion_path)
    animation = armature.animation_data
    if MOTION_PROPERTY not in armature or animation is None or animation.action is None:
        raise ValueError(f"{armature.name} is not a rig imported by IKOL (or has lost its Action)")
    fingers = motion.has_fingers and all(str(name) in armature.data.bones for name in motion.hand_joint_names)
    skeleton = rig.joints(motion, fingers)
    if any(name not in armature.data.bones for name in skeleton.names):
        raise ValueError(f"{armature.name} lacks some of the motion's bones; import it as a new rig")
    heads = np.array([armature.data.bones[name].head_local for name in skeleton.names])
    if np.abs(heads - bone_space.to_blender_axes(skeleton.rest)).max() > _SAME_SKELETON_M:
        raise ValueError(f"{motion_path.name} has another skeleton than {armature.name}; import it as a new rig")
    if not motion.valid.any():
        raise ValueError(f"{motion_path}: no frame has a solved pose; nothing to key")
    keyframes.rewrite_keys(armature, animation.action, _channels(armature, motion, fingers))
    if motion.contacts is None:
        contacts.remove_contacts(armature, animation.action)
    if not fingers:
        _rest_fingers(armature, animation.action)
    armature[MOTION_PROPERTY] = str(motion_path)
    # The re-solve fitted the floor again, and with it where the camera stands.
    camera, camera_object = video_camera(motion), bpy.data.objects.get(armature.get(CAMERA_PROPERTY, ""))
    if camera is None or camera_object is None or camera_object.type != "CAMERA":
        return
    if _camera_users(camera_object) == [armature]:
        # Wherever the rig stands (moved by the animator, or placed for an earlier shared camera).
        _place_camera(camera_object, camera, armature.matrix_world)
    else:  # the other people it sees stay where they are; this rig moves instead
        armature.matrix_world = _seen_from(camera_object, camera)


def blender_frames(motion: Motion) -> np.ndarray:
    """(T,) Blender frame of each motion frame: ``time * fps + 1``, float.

    Rounded to 1e-4 frame (far below a millisecond at any rate) so that a
    constant-rate clip's keys sit on whole frames, not a rounding error away.
    """
    return np.round(motion.times * motion.fps, 4) + 1.0


def video_note(motion: Motion) -> str:
    """"" for a video that decoded whole, else a sentence saying how far it got."""
    read = motion.options.get("video")
    if not isinstance(read, dict):
        return ""
    promised, decoded = read.get("frames_promised"), read.get("frames_decoded")
    if isinstance(promised, int) and isinstance(decoded, int) and decoded < promised:
        return (f"the video ended early: {decoded} of the {promised} frames its container promised decoded, "
                f"so only those were analysed")
    return ""


def _channels(armature: bpy.types.Object, motion: Motion, fingers: bool) -> list[keyframes.Channel]:
    """The F-Curves of a motion: 4 per bone rotation (the fingers' too, with ``fingers``), 3 for
    the root location, the residual, and the foot contacts where the file has them."""
    skeleton = rig.joints(motion, fingers)
    valid = motion.valid
    frames = blender_frames(motion)[valid]
    # The bones' stored rest frames (float32) rather than recomputed ones, so keys match
    # exactly the armature Blender evaluates.
    quaternions, location = bone_space.pose_from_smpl(skeleton.rotations[valid], motion.translation[valid],
                                                      rig.rest_orientations(armature, skeleton.names))
    armature[RESIDUAL_PROPERTY] = float(motion.residual_mm[valid][0])
    armature[MEAN_RESIDUAL_PROPERTY] = float(motion.residual_mm[valid].mean())
    armature.id_properties_ui(RESIDUAL_PROPERTY).update(
        description="IKOL: mean distance of the fitted keypoints from the IK targets, mm")
    channels = []
    for joint, bone in enumerate(skeleton.names):
        path = _bone_path(bone)
        channels += [keyframes.Channel(f"{path}.rotation_quaternion", axis, bone, frames, quaternions[:, joint, axis])
                     for axis in range(4)]
        if skeleton.parents[joint] < 0:
            channels += [keyframes.Channel(f"{path}.location", axis, bone, frames, location[:, axis])
                         for axis in range(3)]
    channels.append(keyframes.Channel(f'["{RESIDUAL_PROPERTY}"]', 0, _RESIDUAL_GROUP, frames,
                                      motion.residual_mm[valid]))
    return channels + contacts.contact_channels(armature, motion, frames)


def _bone_path(bone: str) -> str:
    return f'pose.bones["{bpy.utils.escape_identifier(bone)}"]'


def _rest_fingers(armature: bpy.types.Object, action: bpy.types.Action) -> None:
    """Removes the finger bones' curves and puts them at rest (a motion without fingers replaced the rig's).

    A pose bone keeps the value its removed curve last gave it, so it is reset as well.
    """
    bones = rig.finger_bones(armature)
    keyframes.remove_curves(armature, action, [f"{_bone_path(bone)}.rotation_quaternion" for bone in bones])
    for bone in bones:
        armature.pose.bones[bone].rotation_quaternion = (1.0, 0.0, 0.0, 0.0)


def _add_camera(camera: VideoCamera, name: str, collection: bpy.types.Collection, video: str | Path | None,
                created: list[bpy.types.ID]) -> bpy.types.Object:
    data = bpy.data.cameras.new(name)
    created.append(data)
    data.clip_end = 1000.0
    camera_object = bpy.data.objects.new(name, data)
    created.append(camera_object)
    _place_camera(camera_object, camera)
    collection.objects.link(camera_object)
    if video is not None:
        clip = bpy.data.movieclips.load(str(Path(video).resolve()))
        created.append(clip)
        clip.frame_start = 1  # the video's frame 0 on Blender frame 1, as the keys
        background = data.background_images.new()
        background.source = "MOVIE_CLIP"
        background.clip = clip
        data.show_background_images = True
    return camera_object


def _seen_from(camera_object: bpy.types.Object, camera: VideoCamera) -> Matrix:
    """The rig transform under which ``camera_object`` sees a rig as its own solve's
    ``camera`` saw it (same intrinsics: the same video)."""
    own = np.asarray(camera.matrix_world, dtype=np.float64)
    return Matrix((np.asarray(camera_object.matrix_world, dtype=np.float64) @ np.linalg.inv(own)).tolist())


def _camera_users(camera_object: bpy.types.Object) -> list[bpy.types.Object]:
    return [obj for obj in bpy.data.objects if obj.get(CAMERA_PROPERTY) == camera_object.name]


def _place_camera(camera_object: bpy.types.Object, camera: VideoCamera, rig_world: Matrix | None = None) -> None:
    """Puts a camera object where the engine's pinhole camera was, with its field of view:
    relative to a rig at ``rig_world`` (default: a rig at the origin)."""
    camera_object.data.sensor_fit = "HORIZONTAL"
    camera_object.data.angle = np.radians(camera.fov_deg)
    placement = Matrix(camera.matrix_world.tolist())
    camera_object.matrix_world = placement if rig_world is None else rig_world @ placement


def _set_timing(scene: bpy.types.Scene, motions: Sequence[Motion]) -> None:
    """The scene's rate (the first motion's: one video) and a range covering every motion."""
    frames = np.concatenate([blender_frames(motion) for motion in motions])
    rate = max(1, round(motions[0].fps))
    scene.render.fps = rate
    scene.render.fps_base = rate / motions[0].fps
    scene.frame_start = math.floor(frames.min())
    scene.frame_end = math.ceil(frames.max())


def _scene_and_view_layer(context_or_scene: bpy.types.Context | bpy.types.Scene,
                          ) -> tuple[bpy.types.Scene, bpy.types.ViewLayer]:
    if isinstance(context_or_scene, bpy.types.Scene):
        scene = context_or_scene
        if bpy.context.scene == scene and bpy.context.view_layer is not None:
            return scene, bpy.context.view_layer
        return scene, scene.view_layers[0]
    return context_or_scene.scene, context_or_scene.view_layer


def _leave_edit_modes(scene: bpy.types.Scene, view_layer: bpy.types.ViewLayer) -> None:
    """Back to Object Mode (as Blender's importers do) so the rig's bones can be made."""
    active = view_layer.objects.active
    if active is not None and active.mode != "OBJECT":
        with bpy.context.temp_override(scene=scene, view_layer=view_layer):
            bpy.ops.object.mode_set(mode="OBJECT")


def _remove(created: list[bpy.types.ID]) -> None:
    """Removes IDs newest first, so objects go before the data they use."""
    stores = {"OBJECT": bpy.data.objects, "ARMATURE": bpy.data.armatures, "MESH": bpy.data.meshes,
              "ACTION": bpy.data.actions, "CAMERA": bpy.data.cameras, "MOVIECLIP": bpy.data.movieclips}
    for data_block in reversed(created):
        stores[data_block.id_type].remove(data_block)

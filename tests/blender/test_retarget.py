"""Retargeting an IKOL rig keyed with real mocap onto Rigify, Mixamo and UE5 armatures.

The criterion is the one retargeting promises: every mapped target bone turns in the
world, from its rest pose, as its SMPL bone does, measured on Blender's own evaluation
(constraints, drivers and all) at sampled frames; feet follow the SMPL feet scaled by
the leg-length ratio; keys sit on the source's frames; failures change nothing.
"""
from __future__ import annotations

import json

import bpy
import mathutils
import numpy as np
import pytest

import ikol_blender
from blender_curves import fcurves, keys
from ikol_blender.scene import importer, keyframes
from ikol_blender.scene.retarget import apply, channels, mapping
from finger_motion import with_fingers
from ikol_engine.motion import write_motion
from retarget_rigs import humanoid, mocap_motion, rigify_rig

MAX_ANGLE_DEG = 0.5  # float32 storage of matrices and keys gives ~0.05 degrees
# Rest legs point a few degrees apart between rigs (SMPL's splay and shank lean against
# Rigify's straight legs), and deltas keep rest differences: 5 degrees on a 0.5 m bone is 4 cm.
FOOT_TOLERANCE_M = 0.05
HIP_TOLERANCE_M = 0.001
SAMPLE_EVERY = 4
UE5_EXTRA = {"spine_02": "Spine1", "spine_04": "Spine2", "neck_02": "Neck"}
# Rigify's first finger deform bones follow the controls through Stretch To from the palm,
# which aims a bone without the control's twist about it. A curl about SMPL's palm turns
# Rigify's fingers (resting a little off SMPL's palm plane) with a small twist, so these
# aim as the source's and keep within a few degrees of its rotation (6.6 measured).
FIRST_PHALANX_TWIST_DEG = 8.0


def make_target(kind: str, context, fingers: bool = False) -> bpy.types.Object:
    """Rigify's generated rig (which has fingers), or a Mixamo or UE5 humanoid, with ``fingers`` or none."""
    if kind == "rigify":
        return rigify_rig(context)
    if kind == "mixamo":
        # As an FBX import stores it: the object turned 90 degrees about x and scaled 0.01.
        placement = np.diag([0.01, 0.01, 0.01, 1.0])
        placement[:3, :3] = 0.01 * np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        return humanoid(context, mapping.with_prefix(mapping.MIXAMO, "mixamorig:"), "Mixamo", seed=1,
                        placement=placement, fingers=fingers)
    # A smaller character with its arms only 20 degrees below horizontal.
    return humanoid(context, mapping.UE5, "UE5_Mannequin", seed=2, extra=UE5_EXTRA, arm_drop_deg=20.0, size=0.85,
                    fingers=fingers)


@pytest.fixture(scope="module")
def mocap_file(body, tmp_path_factory):
    return write_motion(tmp_path_factory.mktemp("retarget") / "dance_a.npz", mocap_motion(body))


@pytest.fixture
def source(blank, mocap_file):
    return importer.import_motion(blank, mocap_file)


@pytest.fixture(scope="module")
def finger_mocap_file(body, tmp_path_factory):
    return write_motion(tmp_path_factory.mktemp("retarget_fingers") / "dance_a.npz",
                        with_fingers(mocap_motion(body), body, curl=True))


@pytest.fixture
def finger_source(blank, finger_mocap_file):
    return importer.import_motion(blank, finger_mocap_file)


def rotation(matrix) -> np.ndarray:
    u, _, vt = np.linalg.svd(np.array(matrix)[:3, :3])
    return u @ vt


def world_delta(obj: bpy.types.Object, bone: str) -> np.ndarray:
    """(3, 3) the evaluated bone's world orientation times its rest one's inverse."""
    rest = rotation(obj.matrix_world @ obj.data.bones[bone].matrix_local)
    return rotation(obj.matrix_world @ obj.pose.bones[bone].matrix) @ rest.T


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0))))


def head_z(obj: bpy.types.Object, bone: str) -> float:
    return float((obj.matrix_world @ obj.pose.bones[bone].head).z)


def hips_from_origin(obj: bpy.types.Object, left: str, right: str) -> np.ndarray:
    """(3,) the evaluated midpoint of the hip joints relative to the object's origin, world axes."""
    heads = [np.array(obj.matrix_world @ obj.pose.bones[name].head) for name in (left, right)]
    return (heads[0] + heads[1]) / 2 - np.array(obj.matrix_world.translation)


def rest_leg(obj: bpy.types.Object, hip: str, knee: str, ankle: str) -> float:
    heads = [np.array(obj.matrix_world @ obj.data.bones[name].head_local) for name in (hip, knee, ankle)]
    return float(np.linalg.norm(heads[1] - heads[0]) + np.linalg.norm(heads[2] - heads[1]))


def sampled_frames(scene: bpy.types.Scene) -> range:
    return range(scene.frame_start, scene.frame_end + 1, SAMPLE_EVERY)


@pytest.mark.parametrize("kind", ["rigify", "mixamo", "ue5"])
def test_mapped_bones_turn_as_the_smpl_bones_and_feet_follow(kind, source, blank):
    target = make_target(kind, blank)
    target.location = (1.5, 0.4, 0.0)  # beside the source, on the same floor
    assert kind != "mixamo" or abs(target.matrix_world.to_scale().x - 0.01) < 1e-9
    name, chosen = apply.resolve_mapping(target, "auto")
    keyed = apply.keyed_pairs(source, chosen)
    # Every body joint, Rigify's fingers too, though this source has none; Rigify leaves Spine1 out.
    assert name == kind and len(keyed) == (21 if kind == "rigify" else 22)
    assert len(chosen) == len(keyed) + (30 if kind == "rigify" else 0)
    apply.retarget(source, target, chosen)
    scale = rest_leg(target, *(chosen[j] for j in ("L_Hip", "L_Knee", "L_Ankle"))) / rest_leg(
        source, "L_Hip", "L_Knee", "L_Ankle")
    worst_angle, foot_errors, hip_errors = 0.0, [], []
    org = {"L_Shoulder": "ORG-upper_arm.L", "L_Elbow": "ORG-forearm.L", "R_Hip": "ORG-thigh.R", "R_Knee": "ORG-shin.R"}
    for frame in sampled_frames(blank.scene):
        blank.scene.frame_set(frame)
        for joint, bone in keyed.items():
            worst_angle = max(worst_angle, angle_deg(world_delta(source, joint), world_delta(target, bone)))
        if kind == "rigify":  # the deforming chain follows the FK controls (IK/FK switched to FK)
            for joint, bone in org.items():
                worst_angle = max(worst_angle, angle_deg(world_delta(source, joint), world_delta(target, bone)))
        hip_errors.append(hips_from_origin(target, chosen["L_Hip"], chosen["R_Hip"])
                          - scale * hips_from_origin(source, "L_Hip", "R_Hip"))
        for side in ("L_", "R_"):
            foot_errors.append(head_z(target, chosen[side + "Ankle"]) - scale * head_z(source, side + "Ankle"))
    print(f"{kind}: worst angle {worst_angle:.3f} deg, leg ratio {scale:.3f}, foot height error "
          f"{1000 * np.abs(np.array(foot_errors) - np.median(foot_errors)).max():.1f} mm around "
          f"{1000 * np.median(foot_errors):.1f} mm, hip path error {1000 * np.abs(hip_errors).max():.2f} mm")
    assert worst_angle <= MAX_ANGLE_DEG
    # The hips walk the source's path scaled, from the target's own place.
    assert np.abs(hip_errors).max() <= HIP_TOLERANCE_M
    # The ankle's height above the floor differs between rigs by a constant; the rest is the
    # legs' proportions (thigh to shin, SMPL's splay), bounded here.
    assert np.abs(np.array(foot_errors) - np.median(foot_errors)).max() <= FOOT_TOLERANCE_M
    assert abs(np.median(foot_errors)) <= FOOT_TOLERANCE_M


@pytest.mark.parametrize("kind", ["rigify", "mixamo", "ue5"])
def test_fingers_turn_as_the_smpl_fingers(kind, finger_source, blank):
    source = finger_source
    target = make_target(kind, blank, fingers=True)
    name, chosen = apply.resolve_mapping(target, "auto")
    fingers = {joint: bone for joint, bone in chosen.items() if joint in mapping.FINGER_JOINT_NAMES}
    assert name == kind and len(fingers) == 30 and apply.keyed_pairs(source, chosen) == chosen
    assert mapping.finger_note(chosen, chosen) == "30 of them fingers"
    apply.retarget(source, target, chosen)
    worst_angle = largest_bend = 0.0
    deform = {"aim": 0.0, "first": 0.0, "others": 0.0}
    for frame in sampled_frames(blank.scene):
        blank.scene.frame_set(frame)
        for joint, bone in fingers.items():
            wanted = world_delta(source, joint)
            bend = wanted @ world_delta(source, source.data.bones[joint].parent.name).T
            largest_bend = max(largest_bend, angle_deg(bend, np.eye(3)))
            worst_angle = max(worst_angle, angle_deg(wanted, world_delta(target, bone)))
            if kind == "rigify":  # the deforming bones follow the finger controls
                got = world_delta(target, "DEF-" + bone)
                axis = rotation(target.matrix_world @ target.data.bones["DEF-" + bone].matrix_local)[:, 1]
                aim = np.degrees(np.arccos(np.clip((wanted @ axis) @ (got @ axis), -1.0, 1.0)))
                part = "first" if joint.endswith("1") else "others"
                deform["aim"], deform[part] = max(deform["aim"], aim), max(deform[part], angle_deg(wanted, got))
    print(f"{kind} fingers: worst angle {worst_angle:.3f} deg, largest bend of a finger joint {largest_bend:.1f} deg"
          + ("; deforming bones: " + ", ".join(f"{part} {value:.3f} deg" for part, value in deform.items())
             if kind == "rigify" else ""))
    assert largest_bend > 50.0  # the source's fingers do bend
    assert worst_angle <= MAX_ANGLE_DEG
    assert deform["aim"] <= MAX_ANGLE_DEG and deform["others"] <= MAX_ANGLE_DEG
    assert deform["first"] <= FIRST_PHALANX_TWIST_DEG


def test_a_source_without_fingers_skips_them_and_says_so(source, blank):
    target = make_target("rigify", blank)
    _, chosen = apply.resolve_mapping(target, "auto")
    keyed = apply.keyed_pairs(source, chosen)
    assert set(chosen) - set(keyed) == set(mapping.FINGER_JOINT_NAMES)
    assert mapping.finger_note(chosen, keyed) == "fingers skipped: the IKOL rig has none"
    apply.retarget(source, target, chosen)
    keyed_bones = {curve.data_path.split('"')[1] for curve in fcurves(target)}
    assert keyed_bones >= set(keyed.values())
    assert not keyed_bones & {chosen[joint] for joint in mapping.FINGER_JOINT_NAMES}
    with pytest.raises(apply.RetargetError, match="names only fingers"):
        apply.retarget(source, target, {"left_index1": "f_index.01.L"})
    fingerless = make_target("mixamo", blank)
    _, chosen = apply.resolve_mapping(fingerless, "auto")
    assert mapping.finger_note(chosen, apply.keyed_pairs(source, chosen)) == (
        "fingers skipped: the target has no mapped finger bones")


def test_keys_sit_on_the_source_frames_and_only_mapped_bones_are_keyed(source, blank):
    target = make_target("ue5", blank)
    _, chosen = apply.resolve_mapping(target, "ue5")
    action = apply.retarget(source, target, chosen)
    assert target.animation_data.action == action
    source_frames = keys(fcurves(source)[0])[:, 0]
    motion = importer.read_motion(source[importer.MOTION_PROPERTY])
    valid = importer.blender_frames(motion)[motion.valid]
    assert np.array_equal(source_frames, valid.astype(np.float32))
    curves = list(fcurves(target))
    # 22 bones x 4 quaternion channels + the pelvis location.
    assert len(curves) == 22 * 4 + 3
    for curve in curves:
        assert np.array_equal(keys(curve)[:, 0], source_frames)
    keyed_bones = {curve.data_path.split('"')[1] for curve in curves}
    assert keyed_bones == set(chosen.values())
    blank.scene.frame_set(int(source_frames[len(source_frames) // 2]))
    # An unmapped bone keeps its rest pose relative to its (turned) parent.
    parent = target.pose.bones["spine_02"].parent
    relative = parent.matrix.inverted() @ target.pose.bones["spine_02"].matrix
    rest = parent.bone.matrix_local.inverted() @ target.data.bones["spine_02"].matrix_local
    assert np.abs(np.array(relative) - np.array(rest)).max() < 1e-4


def test_euler_and_axis_angle_bones_are_keyed_in_their_own_mode(source, blank):
    target = make_target("mixamo", blank)
    target.pose.bones["mixamorig:LeftArm"].rotation_mode = "ZXY"
    target.pose.bones["mixamorig:RightArm"].rotation_mode = "AXIS_ANGLE"
    target.pose.bones["mixamorig:Spine"].rotation_mode = "YZX"
    apply.retarget(source, target, apply.resolve_mapping(target, "auto")[1])
    paths = {curve.data_path for curve in fcurves(target)}
    assert 'pose.bones["mixamorig:LeftArm"].rotation_euler' in paths
    assert 'pose.bones["mixamorig:RightArm"].rotation_axis_angle' in paths
    worst = 0.0
    for frame in sampled_frames(blank.scene):
        blank.scene.frame_set(frame)
        for joint, bone in (("L_Shoulder", "mixamorig:LeftArm"), ("R_Shoulder", "mixamorig:RightArm"),
                            ("Spine1", "mixamorig:Spine")):
            worst = max(worst, angle_deg(world_delta(source, joint), world_delta(target, bone)))
    assert worst <= MAX_ANGLE_DEG


def test_source_curves_the_animator_changed_are_read_as_blender_evaluates_them(source, blank):
    """A noise modifier and a Bezier curve are sampled through FCurve.evaluate, not from the keys."""
    target = make_target("ue5", blank)
    curves = {(curve.data_path, curve.array_index): curve for curve in fcurves(source)}
    noisy = curves[('pose.bones["L_Elbow"].rotation_quaternion', 1)]
    noisy.modifiers.new("NOISE").strength = 0.6
    smooth = curves[('pose.bones["R_Knee"].rotation_quaternion', 1)]
    for point in list(smooth.keyframe_points)[::3]:
        point.co.y += 0.2  # moved keys, Bezier between them: off the linear interpolation
    for point in smooth.keyframe_points:
        point.interpolation = "BEZIER"
    smooth.update()
    apply.retarget(source, target, apply.resolve_mapping(target, "auto")[1])
    worst = 0.0
    # On the keyed frames: between them the target's keys interpolate linearly, the noise does not.
    for frame in keys(smooth)[::3, 0]:
        blank.scene.frame_set(int(frame))
        for joint, bone in (("L_Elbow", "lowerarm_l"), ("R_Knee", "calf_r")):
            worst = max(worst, angle_deg(world_delta(source, joint), world_delta(target, bone)))
    assert worst <= MAX_ANGLE_DEG


def test_euler_conversion_matches_mathutils():
    rng = np.random.default_rng(4)
    quaternions = rng.normal(size=(50, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    matrices = np.array([np.array(mathutils.Quaternion(q).to_matrix()) for q in quaternions])
    for order in channels.EULER_ORDERS:
        angles = channels.matrix_to_euler(matrices, order)
        rebuilt = np.array([np.array(mathutils.Euler(a, order).to_matrix()) for a in angles])
        assert np.abs(rebuilt - matrices).max() < 1e-5, order  # mathutils is float32


def test_mapping_file_with_an_unknown_bone_is_refused_by_name(source, blank, tmp_path):
    target = make_target("mixamo", blank)
    path = tmp_path / "map.json"
    chosen = apply.resolve_mapping(target, "mixamo")[1]
    mapping.save_mapping(path, {**chosen, "L_Hip": "mixamorig:LeftThigh"})
    with pytest.raises(mapping.MappingError, match="no bone 'mixamorig:LeftThigh' \\(mapped from L_Hip\\)"):
        mapping.load_mapping(path, [bone.name for bone in target.data.bones])
    document = json.loads(path.read_text())
    document["bones"]["L_Tail"] = "mixamorig:Hips"
    path.write_text(json.dumps(document))
    with pytest.raises(mapping.MappingError, match="unknown SMPL joint 'L_Tail'"):
        mapping.load_mapping(path)
    with pytest.raises(mapping.MappingError, match="no bone 'mixamorig:LeftThigh'"):
        apply.retarget(source, target, {**chosen, "L_Hip": "mixamorig:LeftThigh"})
    with pytest.raises(mapping.MappingError, match="Mixamo has 0% of the ue5 mapping's bones"):
        apply.resolve_mapping(target, "ue5")


def scene_state(target: bpy.types.Object) -> tuple:
    animation = target.animation_data
    return (len(bpy.data.actions), animation.action.name if animation and animation.action else None,
            [tuple(np.array(bone.matrix).ravel().round(6)) for bone in target.pose.bones],
            sorted(curve.data_path for curve in fcurves(target)) if animation and animation.action else [])


def test_a_failed_retarget_changes_nothing(source, blank, monkeypatch):
    target = make_target("rigify", blank)
    bone = target.pose.bones["upper_arm_fk.L"]
    bone.rotation_quaternion = (0.9, 0.3, 0.1, 0.0)
    action = keyframes.new_action(target, "animator_take")
    keyframes.write_keys(target, action, [keyframes.Channel('pose.bones["upper_arm_fk.L"].rotation_quaternion', i,
                                                            "upper_arm_fk.L", np.array([1.0, 9.0]),
                                                            np.array([0.9, 0.3, 0.1, 0.0])[[i, i]])
                                          for i in range(4)])
    blank.scene.frame_set(3)
    before = scene_state(target)
    real_write = keyframes.write_keys

    def write_half_then_fail(obj, action, keyed):
        keyed = list(keyed)
        real_write(obj, action, keyed[: len(keyed) // 2])
        raise RuntimeError("disk full")

    monkeypatch.setattr(keyframes, "write_keys", write_half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        apply.retarget(source, target, apply.resolve_mapping(target, "auto")[1])
    blank.scene.frame_set(3)
    assert scene_state(target) == before
    with pytest.raises(mapping.MappingError):
        apply.retarget(source, target, {"Pelvis": "torso", "Head": "no_head"})
    blank.scene.frame_set(3)
    assert scene_state(target) == before


def test_retarget_from_blend_appends_and_keys_the_rig(source, blank, tmp_path):
    target = make_target("ue5", blank)
    path = tmp_path / "mannequin.blend"
    bpy.data.libraries.write(str(path), {target}, fake_user=True)
    bpy.data.objects.remove(target)
    objects = len(bpy.data.objects)
    with pytest.raises(apply.RetargetError, match="no object 'Manny'"):
        apply.retarget_from_blend(path, "Manny", "auto", source, blank.scene)
    with pytest.raises(mapping.MappingError, match="unknown mapping 'unreal'"):
        apply.retarget_from_blend(path, "UE5_Mannequin", "unreal", source, blank.scene)
    assert len(bpy.data.objects) == objects
    appended = apply.retarget_from_blend(path, None, "auto", source, blank.scene)
    assert appended.name in blank.scene.objects and appended.animation_data.action is not None
    blank.scene.frame_set(blank.scene.frame_start + 20)
    assert angle_deg(world_delta(source, "L_Elbow"), world_delta(appended, "lowerarm_l")) <= MAX_ANGLE_DEG


def custom_pairs(settings) -> dict[str, str]:
    return {pair.joint: pair.bone for pair in settings.pairs if pair.bone}


def test_operator_retargets_with_a_custom_mapping_loaded_from_file(source, blank, tmp_path):
    target = make_target("mixamo", blank)
    path = tmp_path / "arms.json"
    mapping.save_mapping(path, {"L_Shoulder": "mixamorig:LeftArm", "L_Elbow": "mixamorig:LeftForeArm"})
    ikol_blender.register()
    try:
        blank.view_layer.objects.active = source
        settings = blank.scene.ikol_retarget
        settings.target = target
        assert bpy.ops.ikol.retarget_load(filepath=str(path)) == {"FINISHED"}
        assert settings.mapping == "custom" and len(settings.pairs) == 24 + 30  # the joints and the fingers
        assert bpy.ops.ikol.retarget() == {"FINISHED"}
        assert {curve.data_path.split('"')[1] for curve in fcurves(target)} == {"mixamorig:LeftArm",
                                                                               "mixamorig:LeftForeArm"}
        assert bpy.ops.ikol.retarget_fill() == {"FINISHED"}  # from the detected (Mixamo) map
        assert custom_pairs(settings)["L_Hip"] == "mixamorig:LeftUpLeg" and len(custom_pairs(settings)) == 22
        settings.pairs[0].bone = "mixamorig:Nope"
        with pytest.raises(RuntimeError, match="no bone 'mixamorig:Nope' \\(mapped from Pelvis\\)"):
            bpy.ops.ikol.retarget()  # an operator's error report is raised when called from Python
        settings.pairs[0].bone = ""
        saved = tmp_path / "saved.json"
        assert bpy.ops.ikol.retarget_save(filepath=str(saved)) == {"FINISHED"}
        assert mapping.load_mapping(saved) == custom_pairs(settings)
    finally:
        ikol_blender.unregister()

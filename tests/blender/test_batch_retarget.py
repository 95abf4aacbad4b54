"""Headless retargeting: the batch appends a Mixamo-named character from a .blend, keys it,
and the exports carry it; bad requests stop before any work."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from blender_curves import fcurves
from ikol_blender import batch
from ikol_blender.scene.retarget import mapping
from ikol_engine import samples
from ikol_engine.motion import read_motion
from retarget_rigs import humanoid

END_S = 0.5
MIXAMO = mapping.with_prefix(mapping.MIXAMO, "mixamorig:")


def skinned_character(context) -> bpy.types.Object:
    """An A-posed Mixamo-named armature with a box skinned to its hips, and a stray lamp."""
    armature = humanoid(context, MIXAMO, "Mixamo", seed=4)
    bpy.ops.mesh.primitive_cube_add(size=0.3, location=(0.0, 0.0, 1.0))
    body = context.object
    body.name = "MixamoBody"
    group = body.vertex_groups.new(name="mixamorig:Hips")
    group.add(list(range(len(body.data.vertices))), 1.0, "REPLACE")
    body.modifiers.new("Armature", "ARMATURE").object = armature
    bpy.ops.object.light_add(type="POINT")
    return armature


@pytest.fixture(scope="module")
def rig_blend(tmp_path_factory) -> Path:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    skinned_character(bpy.context)
    path = tmp_path_factory.mktemp("rig") / "character.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return path


@pytest.fixture(scope="module")
def run(rig_blend, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    output = tmp_path_factory.mktemp("out")
    result = subprocess.run([sys.executable, "-m", "ikol_blender.batch", str(samples.demo_video()), "-o", str(output),
                             "--end", str(END_S), "--retarget", f"{rig_blend}:Mixamo", "--mapping", "mixamo", "--bvh",
                             "--engine-python", sys.executable], capture_output=True, text=True, timeout=600)
    return result, output


def test_output_blend_holds_the_keyed_character_beside_the_smpl_rig(run, blank):
    result, output = run
    assert result.returncode == 0, result.stderr
    motion = read_motion(output / "demo.npz")
    bpy.ops.wm.open_mainfile(filepath=str(output / "demo.blend"))
    armatures = {obj.name: obj for obj in bpy.data.objects if obj.type == "ARMATURE"}
    assert "Mixamo" in armatures and len(armatures) == 2
    assert "MixamoBody" in bpy.data.objects and not [o for o in bpy.data.objects if o.type == "LIGHT"]
    smpl = next(obj for name, obj in armatures.items() if name != "Mixamo")
    source_frames = {tuple(np.round(curve.keyframe_points[i].co[0], 3) for i in range(len(curve.keyframe_points)))
                     for curve in fcurves(smpl)}
    target_frames = {tuple(np.round(curve.keyframe_points[i].co[0], 3) for i in range(len(curve.keyframe_points)))
                     for curve in fcurves(armatures["Mixamo"])}
    assert len(source_frames) == 1 and target_frames == source_frames
    assert len(next(iter(target_frames))) == int(motion.valid.sum())
    # The character moves with the SMPL rig: its forearm turns as the elbow does.
    scene = bpy.context.scene
    turns = []
    for frame in (scene.frame_start, scene.frame_end):
        scene.frame_set(frame)
        turns.append(armatures["Mixamo"].pose.bones["mixamorig:LeftForeArm"].matrix.to_quaternion())
    assert turns[0].rotation_difference(turns[1]).angle > np.radians(1.0)


def test_bvh_export_carries_the_retargeted_character(run):
    result, output = run
    hierarchy = (output / "demo.bvh").read_text().split("MOTION\n")[0]
    assert "mixamorig:Hips" in hierarchy and "Pelvis" not in hierarchy


@pytest.mark.parametrize("arguments, message", [
    (["--retarget", "missing.blend"], "no such .blend file"),
    (["--mapping", "mixamo"], "--mapping needs --retarget"),
    (["--retarget", "{rig}", "--mapping", "unreal"], "--mapping must be auto"),
])
def test_bad_retarget_requests_are_usage_errors(rig_blend, tmp_path, capsys, arguments, message):
    arguments = [argument.replace("{rig}", str(rig_blend)) for argument in arguments]
    code = batch.main([str(samples.demo_video()), "-o", str(tmp_path / "out"), *arguments])
    assert code == batch.EXIT_USAGE and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_mapping_file_with_an_unknown_bone_is_refused_before_any_video(rig_blend, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    mapping.save_mapping(bad, {**MIXAMO, "L_Elbow": "mixamorig:NoSuchBone"})
    output = tmp_path / "out"
    objects_before = len(bpy.data.objects)
    code = batch.main([str(samples.demo_video()), "-o", str(output), "--retarget", str(rig_blend),
                       "--mapping", str(bad), "--engine-python", sys.executable])
    assert code == batch.EXIT_USAGE and "mixamorig:NoSuchBone" in capsys.readouterr().err
    assert not output.exists() and len(bpy.data.objects) == objects_before


def test_a_rig_file_without_the_named_armature_is_refused_before_any_video(rig_blend, tmp_path, capsys):
    code = batch.main([str(samples.demo_video()), "-o", str(tmp_path / "out"),
                       "--retarget", f"{rig_blend}:NoSuchRig", "--engine-python", sys.executable])
    assert code == batch.EXIT_USAGE and "no object 'NoSuchRig'" in capsys.readouterr().err

"""The README's retargeting picture: the sample video beside a Rigify character keyed by IKOL.

Builds Rigify's generated rig with a rough body (one tube per deforming bone, skinned to
it), converts the sample's first seconds with ``python -m ikol_blender.batch --retarget``,
then renders the character alone through the video's camera beside the video frames.

    .venv/bin/python tools/retarget_picture.py [OUT.png]   (default docs/retarget_rigify.png)
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import bpy
import addon_utils  # Blender's module, importable once bpy is imported
from mathutils import Vector

from ikol_blender import batch
from ikol_blender.engine import process as engine_process
from ikol_engine import samples

ROOT = Path(__file__).resolve().parents[1]
END_S = 4.0


def rigify_character(path: Path) -> None:
    """Saves Rigify's generated human rig with a tube body skinned to its DEF bones."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    metarig = bpy.context.active_object
    bpy.ops.pose.rigify_generate()
    rig = bpy.context.active_object
    bpy.data.objects.remove(metarig)
    tubes = []
    for bone in rig.data.bones:
        if not (bone.use_deform and bone.name.startswith("DEF-")) or bone.length < 0.03:
            continue
        head, tail = rig.matrix_world @ bone.head_local, rig.matrix_world @ bone.tail_local
        axis = tail - head
        # Thick enough to read as a body in a small picture, thin at fingers and toes.
        radius = min(0.09, max(0.015, 0.3 * axis.length))
        bpy.ops.mesh.primitive_cylinder_add(vertices=12, radius=radius, depth=axis.length, location=(head + tail) / 2,
                                            rotation=Vector((0, 0, 1)).rotation_difference(axis).to_euler())
        tube = bpy.context.active_object
        tube.vertex_groups.new(name=bone.name).add(list(range(len(tube.data.vertices))), 1.0, "REPLACE")
        tubes.append(tube)
    bpy.ops.object.select_all(action="DESELECT")
    for tube in tubes:
        tube.select_set(True)
    bpy.context.view_layer.objects.active = tubes[0]
    bpy.ops.object.join()
    body = bpy.context.active_object
    body.name = "RigifyBody"
    body.modifiers.new("Armature", "ARMATURE").object = rig
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "retarget_rigify.png"
    video = samples.demo_video()
    with tempfile.TemporaryDirectory(prefix="ikol-retarget-picture-") as scratch:
        character = Path(scratch) / "rigify_character.blend"
        rigify_character(character)
        converted = Path(scratch) / "out"
        subprocess.run([sys.executable, "-m", "ikol_blender.batch", str(video), "-o", str(converted), "--end",
                        str(END_S), "--retarget", str(character), "--mapping", "rigify",
                        "--engine-python", sys.executable], check=True)
        bpy.ops.wm.open_mainfile(filepath=str(converted / f"{video.stem}.blend"))
        smpl = next(obj for obj in bpy.data.objects if obj.type == "ARMATURE" and "Pelvis" in obj.data.bones)
        for obj in bpy.data.objects:
            if obj.type == "MESH" and obj.parent == smpl:
                obj.hide_render = True  # the character alone beside the video
        engine = engine_process.resolve_engine(sys.executable)
        out.parent.mkdir(parents=True, exist_ok=True)
        batch.write_preview(engine, video, converted / f"{video.stem}.npz", smpl, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of retargeting: an IKOL rig's 10,000-frame Action onto Rigify's generated rig.

Runs in a Python that has ``bpy`` (Blender as a module) and the engine. The source is a
rig imported from a motion of DeepMimic mocap clips played one after another until the
length is reached; the target is Rigify's rig generated from its human metarig (706
bones, constraint-driven controls). Timed: ``resolve_mapping`` (auto) and ``retarget``,
that is reading the source's keys, the maths, and writing the new Action
(target < 2 s). Each repeat retargets in the same scene (the previous result Action is
removed first); the best time is kept with all of them. Results go to
benchmarks/results/retarget.json under the Blender version.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import bpy
import addon_utils  # noqa: I001 (Blender's module, importable once bpy is)
import numpy as np
import roma
import torch

from blender_benchmark import synthetic_motion
from ikol_blender.scene import importer, keyframes
from ikol_blender.engine.link import atomic_path
from ikol_blender.scene.retarget import apply
from ikol_engine.body import BodyModel
from ikol_engine.motion import write_motion
from ikol_engine.samples.deepmimic import load_deepmimic

RESULTS = Path(__file__).parent / "results" / "retarget.json"
CLIPS = ("walk", "run", "jump", "kick", "punch", "dance_a", "dance_b", "cartwheel", "backflip", "spinkick")
TARGET_S = 2.0


def mocap_rotations(frames: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(frames, 24, 4) wxyz rotations and (frames, 3) pelvis positions from the clips, repeated; and the rate."""
    clips = [load_deepmimic(name) for name in CLIPS]
    rotations = torch.cat([clip.rotations for clip in clips]).double()
    positions = torch.cat([clip.translation for clip in clips]).double().numpy()
    repeats = -(-frames // len(rotations))
    quaternions = roma.rotmat_to_unitquat(rotations)[..., [3, 0, 1, 2]].numpy()
    return np.tile(quaternions, (repeats, 1, 1))[:frames], np.tile(positions, (repeats, 1))[:frames], clips[0].fps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    body = BodyModel()
    base = synthetic_motion(body, args.frames)
    quaternions, positions, fps = mocap_rotations(args.frames)
    motion = dataclasses.replace(base, fps=fps, rotations=quaternions.astype(np.float32),
                                 translation=(positions - base.rest_joints[0]).astype(np.float32))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    with tempfile.TemporaryDirectory() as folder:
        source = importer.import_motion(bpy.context, write_motion(Path(folder) / "mocap.npz", motion))
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    bpy.ops.pose.rigify_generate()
    target = bpy.context.active_object

    times, result_action = [], None
    for _ in range(args.repeats):
        if result_action is not None:
            bpy.data.actions.remove(result_action)
        start = time.perf_counter()
        _, chosen = apply.resolve_mapping(target, "auto")
        result_action = apply.retarget(source, target, chosen)
        times.append(round(time.perf_counter() - start, 4))
    keys = sum(len(curve.keyframe_points) for curve in keyframes.curves(target, result_action))
    result = {"frames": args.frames, "target_bones": len(target.data.bones), "mapped_bones": len(chosen),
              "keys_written": keys, "retarget_s": min(times), "retarget_all_s": times, "target_s": TARGET_S,
              "machine": {"cpu": platform.machine(), "python": platform.python_version(),
                          # a shared machine: how busy it was says how far to trust the times
                          "load_average_1min": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}}
    everything = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    everything[f"bpy {bpy.app.version_string}"] = result
    with atomic_path(RESULTS) as temp:
        temp.write_text(json.dumps(everything, indent=2, sort_keys=True) + "\n")
    print(json.dumps({f"bpy {bpy.app.version_string}": result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of the Blender side: building the rig, converting and writing keys, a whole import.

Runs in a Python that has ``bpy`` (Blender as a module) and the engine. A synthetic clip
of random natural poses (10,000 frames by default) on the default body goes through:

* ``build_rig``: armature, 24 bones in Edit Mode, skinned mesh with vertex groups;
* ``pose_from_smpl``: SMPL rotations to pose-bone quaternions (numpy);
* ``write_keys``: 24 x 4 quaternion curves + 3 root-location curves (target <= 0.5 s for
  10,000 frames), reported, not asserted;
* ``import_motion``: the whole import from the motion file;
* the sample video end to end, as the Import operator runs it: the engine server analyses
  its first 5.3 s, then the rig is imported;
* the Refine round trip on that clip lengthened to 1,000 frames (played back and forth):
  request sent to the warm engine server -> re-solved -> keys rewritten (target <= 1 s).

Each is timed ``--repeats`` times in a fresh empty Blender session; the best time is
kept. Results go to benchmarks/results/blender.json under the Blender version, so runs
with bpy 4.2 and 5.x add up in one file.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy
import numpy as np
import roma
import torch

from ikol_blender.engine.client import EngineClient
from ikol_blender.engine.jobs import EngineSession
from ikol_blender.scene import bone_space, importer, keyframes, rig
from ikol_blender.ui.tasks import ImportVideoTask, RefineTask
from ikol_engine import samples, skeleton
from ikol_engine.body import BodyModel
from ikol_engine.motion import Motion, read_motion, write_motion
from ikol_engine.samples.synthetic import random_betas, random_pose
from pipeline_benchmark import lengthened

SAMPLE_END_S = 5.3
REFINE_FRAMES = 1000

RESULTS = Path(__file__).parent / "results" / "blender.json"


def synthetic_motion(body: BodyModel, frames: int, seed: int = 0) -> Motion:
    """A valid motion of random natural poses; the IK-input fields are zeros."""
    generator = torch.Generator().manual_seed(seed)
    betas = random_betas(1, body.num_betas, generator)
    quaternions = roma.rotmat_to_unitquat(random_pose(frames, generator))[..., [3, 0, 1, 2]].numpy()
    rest_mesh = body.vertices(torch.eye(3).expand(1, 24, 3, 3), betas, torch.zeros(1, 3))[0].numpy()
    zeros = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    k, r = skeleton.NUM_KEYPOINTS, skeleton.NUM_KEYPOINTS
    return Motion(
        fps=30.0, frame_indices=np.arange(frames), joint_names=np.array(skeleton.JOINT_NAMES),
        parents=np.array(skeleton.PARENTS), rest_joints=body.rest_joints(betas)[0].numpy(),
        betas=betas[0].numpy(), mesh_vertices=rest_mesh, mesh_faces=body.faces.astype(np.int64),
        skin_weights=body.skin_weights.astype(np.float32), rotations=quaternions,
        translation=np.cumsum(torch.randn(frames, 3, generator=generator).numpy() * 0.01, axis=0),
        valid=np.ones(frames, bool), residual_mm=np.full(frames, 10.0, np.float32),
        targets=zeros(frames, k, 3), target_confidence=zeros(frames, k), twist=zeros(frames, skeleton.NUM_TWISTS),
        twist_confidence=zeros(frames, skeleton.NUM_TWISTS), regressor_name="none",
        regressor_keypoint_names=np.array(skeleton.KEYPOINT_NAMES), regressor_keypoints=zeros(frames, r, 3),
        regressor_confidence=zeros(frames, r), image_keypoints=zeros(frames, r, 2), options={},
        source_video="benchmark.mp4", source_sha256="00" * 32,
    )


def best_time(run: Callable[[Any], object], repeats: int, setup: Callable[[], Any] = lambda: None) -> float:
    """Best wall time of ``run(setup())`` over ``repeats`` fresh empty Blender sessions,
    seconds; ``setup`` is not timed."""
    times = []
    for _ in range(repeats):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        prepared = setup()
        start = time.perf_counter()
        run(prepared)
        times.append(time.perf_counter() - start)
    return min(times)


def finish(task: ImportVideoTask | RefineTask) -> None:
    """Ticks a started task to its end, as the modal operator would; raises if it failed."""
    while (outcome := task.tick(bpy.context)) is None:
        task.session.pump_until(task.job, 0.01)
    if outcome.status != "FINISHED":
        raise RuntimeError(outcome.message)


def through_the_server(folder: Path, repeats: int) -> dict[str, Any]:
    """The sample imported end to end, then refine round trips of a 1,000-frame clip."""
    session = EngineSession(lambda: EngineClient([sys.executable, "-m", "ikol_engine.server"]))
    try:
        started = session.submit("info")  # the server's start-up is not the import's cost
        session.pump_until(started, 120)
        bpy.ops.wm.read_factory_settings(use_empty=True)
        task = ImportVideoTask(session, video=samples.demo_video(), output=folder / "sample.npz",
                               options={"end_s": SAMPLE_END_S})
        start = time.perf_counter()
        task.start()
        finish(task)
        end_to_end = time.perf_counter() - start
        sample = read_motion(task.output)

        long_path = write_motion(folder / "long.npz", lengthened(sample, REFINE_FRAMES))
        bpy.ops.wm.read_factory_settings(use_empty=True)
        armature = importer.import_motion(bpy.context, long_path)
        round_trips = []
        for attempt in range(repeats + 1):  # the first warms the server's solver for this size
            refine = RefineTask(session, armature_name=armature.name, output=folder / f"refined_{attempt}.npz",
                                solve={"smoothing": 0.5 + 0.25 * attempt})
            start = time.perf_counter()
            refine.start()
            finish(refine)
            round_trips.append(time.perf_counter() - start)
        return {"sample_frames": len(sample.valid), "sample_end_to_end_s": round(end_to_end, 3),
                "sample_engine_s": round(task.job.result["seconds"], 3),
                "refine_frames": REFINE_FRAMES, "refine_round_trip_s": [round(t, 3) for t in round_trips[1:]],
                "refine_round_trip_target_s": 1.0}
    finally:
        session.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    motion = synthetic_motion(BodyModel(), args.frames)
    names = [str(n) for n in motion.joint_names]
    frames = np.arange(1, args.frames + 1, dtype=np.float64)

    def build(_: None) -> rig.Rig:
        return rig.build_rig(motion, "bench", bpy.context.scene.collection, bpy.context.view_layer, [])

    def convert(_: None = None) -> tuple[np.ndarray, np.ndarray]:
        orientations = bone_space.rest_bones(motion.rest_joints, motion.parents).orientations
        return bone_space.pose_from_smpl(motion.rotations, motion.translation, orientations)

    quaternions, location = convert()
    channels = [keyframes.Channel(f'pose.bones["{name}"].rotation_quaternion', axis, name, frames,
                                  quaternions[:, joint, axis]) for joint, name in enumerate(names) for axis in range(4)]
    channels += [keyframes.Channel('pose.bones["Pelvis"].location', axis, "Pelvis", frames, location[:, axis])
                 for axis in range(3)]

    def new_armature() -> tuple[bpy.types.Object, bpy.types.Action]:
        obj = bpy.data.objects.new("bench", bpy.data.armatures.new("bench"))
        bpy.context.scene.collection.objects.link(obj)
        return obj, keyframes.new_action(obj, "bench")

    with tempfile.TemporaryDirectory() as folder:
        path = write_motion(Path(folder) / "benchmark.npz", motion)
        timings = {
            "build_rig_s": best_time(build, args.repeats),
            "convert_s": best_time(convert, args.repeats),
            "write_keys_s": best_time(lambda target: keyframes.write_keys(*target, channels), args.repeats,
                                      setup=new_armature),
            "import_motion_s": best_time(lambda _: importer.import_motion(bpy.context, path), args.repeats),
        }
        served = through_the_server(Path(folder), args.repeats)
    result = {
        "frames": args.frames, "curves": len(channels), "keys": len(channels) * args.frames,
        "vertices": len(motion.mesh_vertices), "write_keys_target_s": 0.5,
        **{key: round(value, 4) for key, value in timings.items()}, **served,
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }
    everything = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    everything[f"bpy {bpy.app.version_string}"] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(everything, indent=2, sort_keys=True) + "\n")
    print(json.dumps({f"bpy {bpy.app.version_string}": result}, indent=2))


if __name__ == "__main__":
    main()

"""Throughput of the headless batch: plain (one video after the other) vs ``--ray local``.

Clips are cut from the sample video (different slices, two lengths, re-encoded with
OpenCV) into a scratch folder. Each batch runs once, in its own process as users run it,
into a fresh output folder (so nothing is skipped); the wall time includes everything a
user waits for: for ``--ray local`` the start and stop of the Ray instance.

Also measured, for the scaling estimate: each clip's analysis time in its Ray task (the
batch's "analysed on ... in S s" lines) and the driver's share per clip (rig, keys,
.blend: :func:`ikol_blender.batch.build` timed in this process on the motion files).

Writes benchmarks/results/cluster.json and cluster.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bpy
import cv2
import numpy as np

from ikol_blender import batch
from ikol_blender.engine import process as engine_process
from ikol_engine import samples

RESULTS = Path(__file__).parent / "results"
#: (first frame, frames) of each clip: two short and two longer slices of the sample.
CLIPS = {"a_jump": (0, 20), "b_land": (60, 20), "c_walk": (100, 45), "d_leave": (150, 45)}
_ANALYSED = re.compile(r"^\[\d+/\d+\] (?P<name>\S+): analysed on \S+ in (?P<seconds>[\d.]+) s")


def cut_clips(folder: Path) -> dict[str, int]:
    """Writes the clips (full size, mp4v); returns frames per clip file name."""
    capture = cv2.VideoCapture(str(samples.demo_video()))
    frames = []
    while len(frames) < max(first + count for first, count in CLIPS.values()):
        ok, frame = capture.read()
        if not ok:
            raise RuntimeError("the sample video is shorter than the clips")
        frames.append(frame)
    capture.release()
    height, width = frames[0].shape[:2]
    for stem, (first, count) in CLIPS.items():
        writer = cv2.VideoWriter(str(folder / f"{stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
        for frame in frames[first:first + count]:
            writer.write(frame)
        writer.release()
    return {f"{stem}.mp4": count for stem, (_, count) in CLIPS.items()}


def timed_batch(clips: Path, output: Path, *extra: str) -> tuple[float, str]:
    """Wall seconds of one batch process, and its stdout."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "ikol_blender.batch", str(clips), "-o", str(output),
                             "--engine-python", sys.executable, *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"batch {' '.join(extra)} failed: {result.stderr[-2000:]}")
    return seconds, result.stdout


def driver_seconds(clips: Path, motions: Path, scratch: Path) -> list[float]:
    """The driver's work per clip after the analysis: rig, keys, .blend (no exports)."""
    engine = engine_process.Engine(Path(sys.executable), None)
    times = []
    for video in sorted(clips.iterdir()):
        (scratch / f"{video.stem}.npz").write_bytes((motions / f"{video.stem}.npz").read_bytes())
        start = time.perf_counter()
        batch.build(engine, video, scratch, [], say=lambda text: None)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="ikol-cluster-bench-") as scratch_name:
        scratch = Path(scratch_name)
        clips = scratch / "clips"
        clips.mkdir()
        frames = cut_clips(clips)
        total = sum(frames.values())
        load_before = os.getloadavg()[0]
        plain_s, _ = timed_batch(clips, scratch / "plain")
        ray_s, ray_stdout = timed_batch(clips, scratch / "ray", "--ray", "local")
        analysed = {match["name"]: float(match["seconds"])
                    for match in map(_ANALYSED.match, ray_stdout.splitlines()) if match}
        (scratch / "driver").mkdir()
        driver = driver_seconds(clips, scratch / "ray", scratch / "driver")
        load_after = os.getloadavg()[0]
    # Analysis time of one clip in a one-CPU task: a start-up cost plus a cost per frame.
    counts = np.array([frames[name] for name in sorted(analysed)], float)
    seconds = np.array([analysed[name] for name in sorted(analysed)])
    per_frame, start_up = np.polyfit(counts, seconds, 1)
    report: dict[str, Any] = {
        "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
                    "bpy": bpy.app.version_string, "ray": _ray_version(),
                    # The machine is shared: the 1-minute load average before and after the runs.
                    "load_average": [round(load_before, 2), round(load_after, 2)]},
        "clips": frames, "frames": total,
        "plain": {"wall_s": round(plain_s, 2), "frames_per_s": round(total / plain_s, 2)},
        "ray_local": {"wall_s": round(ray_s, 2), "frames_per_s": round(total / ray_s, 2),
                      "task_analysis_s": {name: round(value, 2) for name, value in sorted(analysed.items())}},
        "one_cpu_task": {"start_up_s": round(float(start_up), 2), "per_frame_s": round(float(per_frame), 4)},
        "driver_per_clip_s": round(float(np.mean(driver)), 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cluster.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    machine, plain, ray = report["machine"], report["plain"], report["ray_local"]
    task, clips = report["one_cpu_task"], report["clips"]
    rows = "\n".join(f"| {name} | {clips[name]} | {seconds} |" for name, seconds in ray["task_analysis_s"].items())
    return (f"Machine: {machine['cpus']} CPU threads (load average {machine['load_average'][0]} before, "
            f"{machine['load_average'][1]} after), Ray {machine['ray']}, bpy {machine['bpy']}; "
            f"{len(clips)} clips cut from the sample (1768x994), {report['frames']} frames in all, "
            f"outputs .npz + .blend.\n\n"
            "| batch | wall s | frames/s |\n|---|---:|---:|\n"
            f"| plain (one video after the other) | {plain['wall_s']} | {plain['frames_per_s']} |\n"
            f"| `--ray local` (Ray start and stop included) | {ray['wall_s']} | {ray['frames_per_s']} |\n\n"
            "Analysis in a one-CPU Ray task, per clip:\n\n| clip | frames | s |\n|---|---:|---:|\n"
            f"{rows}\n\nFitted: {task['start_up_s']} s start-up + {task['per_frame_s']} s a frame. "
            f"The driver's share (rig, keys, .blend): {report['driver_per_clip_s']} s a clip.\n")


def _ray_version() -> str:
    import ray

    return ray.__version__


if __name__ == "__main__":
    main()

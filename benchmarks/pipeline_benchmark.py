"""Video-to-motion speed and smoothness on the sample video (Sports2D's demo clip).

Times each stage alone (decode; finding and tracking everyone; BlazePose on the followed
person; everything after it), the whole ``analyze`` run (one person, the default, which
finds the people on the frames it decodes for BlazePose: median of ANALYZE_RUNS) and
``--person all`` (every person: its time per person against the one-person run), and
measures jitter (mean joint acceleration) of the raw keypoints against the final motion
(about the person's placement in the camera, and in the scene),
and ``refine`` of a 1,000-frame motion file (the sample's, played back and forth). The body
alone (``hands=False``): what the fingers add is benchmarks/hands_benchmark.py's.
Writes benchmarks/results/pipeline.json and pipeline.md.

Usage: python benchmarks/pipeline_benchmark.py [--model-complexity N] [--device auto|cpu|cuda]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ikol_engine import __version__, samples
from ikol_engine.motion import Motion, read_motion, write_motion
from ikol_engine.people.follow import FollowPlan
from ikol_engine.pipeline import AnalyzeOptions, analyze, analyze_people, find_people, refine, regress_video
from ikol_engine.track.filtering import jitter
from ikol_engine.regressors import layout_for
from ikol_engine.track.options import SolveOptions
from ikol_engine.track.solve import solve_observations
from ikol_engine.video.decode import iter_frames, probe

RESULTS = Path(__file__).resolve().parent / "results"
REFINE_FRAMES = 1000
REFINE_RUNS = 5
#: Whole analyze runs timed; the median is quoted (single runs on these machines vary by 10%).
ANALYZE_RUNS = 3
_PER_FRAME = ("frame_indices", "rotations", "translation", "valid", "residual_mm", "targets", "target_confidence",
              "twist", "twist_confidence", "regressor_keypoints", "regressor_confidence", "image_keypoints")


def timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    value = run()
    return time.perf_counter() - start, value


def lengthened(motion: Motion, frames: int) -> Motion:
    """The motion played forwards and backwards until it has ``frames`` frames (no jumps)."""
    count = len(motion.valid)
    cycle = np.concatenate([np.arange(count), np.arange(count - 2, 0, -1)])
    order = np.resize(cycle, frames)
    arrays = {name: getattr(motion, name)[order] for name in _PER_FRAME}
    arrays["frame_indices"] = np.arange(frames)
    arrays["frame_times"] = np.arange(frames) / motion.fps
    for name in ("person_boxes", "contacts", "hand_landmarks", "hand_landmark_pixels", "hand_landmark_confidence",
                 "hand_rotations", "hand_valid", "hand_residual_mm"):
        if getattr(motion, name) is not None:
            arrays[name] = getattr(motion, name)[order]
    return dataclasses.replace(motion, **arrays)


def time_refine(motion_path: Path, scratch: Path, solve_options: SolveOptions) -> list[float]:
    """Seconds per ``refine`` (read, solve, write) of a REFINE_FRAMES-frame file, after a warm-up."""
    long_path = write_motion(scratch / "long.npz", lengthened(read_motion(motion_path), REFINE_FRAMES))
    refine(long_path, scratch / "refined.npz", solve_options)
    return [timed(lambda: refine(long_path, scratch / "refined.npz", solve_options))[0] for _ in range(REFINE_RUNS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-complexity", type=int, default=1)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    video = samples.demo_video()
    info = probe(video)
    decode_s, frames = timed(lambda: sum(1 for _ in iter_frames(video)))
    # The body alone: the fingers' cost is hands_benchmark.py's.
    options = AnalyzeOptions(model_complexity=args.model_complexity, hands=False)
    solve_options = SolveOptions(device=args.device)
    people_s, (scan, [person]) = timed(lambda: find_people(video, options))  # decode + detector + tracker
    plan = FollowPlan.make(person, scan.tracks, scan.step, scan.start, scan.end)
    regress_s, (track, _) = timed(lambda: regress_video(video, options, follow=plan))  # decode + regressor
    solve_observations(track, layout_for(track.names), solve_options)  # warm-up: body model load, first-call costs
    solve_s, solution = timed(lambda: solve_observations(track, layout_for(track.names), solve_options))
    with tempfile.TemporaryDirectory() as scratch:
        analyze_s = [timed(lambda: analyze(video, Path(scratch) / "demo.npz", options, solve_options))[0]
                     for _ in range(ANALYZE_RUNS)]
        total_s = float(np.median(analyze_s))
        everyone = dataclasses.replace(options, person="all")
        all_s, written = timed(lambda: analyze_people(video, Path(scratch) / "all", everyone, solve_options))
        refine_s = time_refine(Path(scratch) / "demo.npz", Path(scratch), solve_options)
    # --person all: one scan, then one follow-and-solve per person.
    per_person_s = (all_s - people_s) / len(written)

    fps = track.fps
    raw = jitter(solution.raw_targets[:, :24], fps, solution.valid)
    final = jitter(solution.local_keypoints[:, :24], fps, solution.valid)
    # What an animator sees: the joints in the scene, root motion included.
    world = jitter(solution.keypoints[:, :24], fps, solution.valid)
    stages = {
        "decode": frames / decode_s,
        "people: detect and track (with decode)": frames / people_s,
        "regressor on the followed person (with decode)": frames / regress_s,
        "after the regressor (IK etc.)": frames / solve_s,
        "whole analyze (one person)": frames / total_s,
        f"--person all ({len(written)} people), per person": frames / per_person_s,
    }
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "engine": __version__,
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "video": {"name": video.name, "frames": frames, "fps": info.fps, "size": [info.width, info.height]},
        "model_complexity": args.model_complexity, "device": args.device,
        "frames_per_s": stages, "ik_share_of_total": solve_s / total_s, "analyze_s": analyze_s,
        "people": {"found": len(scan.tracks), "detection_step": scan.step, "ms_per_frame": 1000 * people_s / frames,
                   "all_s": all_s, "one_person_s": total_s, "all_over_one": all_s / total_s,
                   "people_solved": len(written)},
        "jitter_m_per_s2": {"raw_keypoints": raw, "final_motion": final, "final_motion_in_the_scene": world},
        "refine_s": {"frames": REFINE_FRAMES, "runs": refine_s, "median": float(np.median(refine_s)),
                     "max": max(refine_s)},
        "person_frames": int(track.detected.sum()), "mean_residual_mm": float(np.mean(
            solution.residual_mm[solution.valid])),
    }
    for name, value in stages.items():
        print(f"{name:>30}: {value:8.1f} frames/s")
    print(f"IK share of the whole run: {100 * solve_s / total_s:.1f}%; jitter raw {raw:.2f} -> final {final:.2f} m/s^2 "
          f"({world:.2f} in the scene)")
    print(f"people: {len(scan.tracks)} found, detector every {scan.step} frames, {1000 * people_s / frames:.1f} ms a "
          f"frame; --person all {all_s:.1f} s for {len(written)} vs {total_s:.1f} s for one")
    print(f"refine of {REFINE_FRAMES} frames: median {np.median(refine_s):.2f} s, slowest {max(refine_s):.2f} s "
          f"of {REFINE_RUNS}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(result, indent=2))
    lines = [f"Machine: {result['machine']['threads']} CPU threads, torch {torch.__version__}, "
             f"BlazePose complexity {args.model_complexity}; sample: {video.name}, {frames} frames "
             f"{info.width}x{info.height} at {info.fps:g} fps.", "",
             "| stage | frames/s |", "|---|---:|"]
    lines += [f"| {name} | {value:,.1f} |" for name, value in stages.items()]
    lines += ["", f"Whole analyze: median {total_s:.2f} s of {ANALYZE_RUNS} runs "
              f"({', '.join(f'{value:.2f}' for value in analyze_s)} s), the people found on the frames decoded "
              f"for BlazePose.", "",
              f"Finding and tracking the people alone ({len(scan.tracks)} found, detector every {scan.step} frames): "
              f"{1000 * people_s / frames:.1f} ms a frame, decode included. `--person all` ({len(written)} people "
              f"solved): {all_s:.1f} s against {total_s:.1f} s for one person ({all_s / total_s:.2f}x)."]
    lines += ["", f"IK and everything after the regressor: {100 * solve_s / total_s:.1f}% of the whole run. "
              f"Jitter (mean joint acceleration): raw keypoints {raw:.2f} m/s^2, final motion {final:.2f} m/s^2 "
              f"(about the person's placement; in the scene, root motion included, {world:.2f}). "
              f"Person in {result['person_frames']} of {frames} frames; mean IK residual "
              f"{result['mean_residual_mm']:.1f} mm.", "",
              f"`refine` of a {REFINE_FRAMES}-frame motion file (read, solve, write): median "
              f"{np.median(refine_s):.2f} s, slowest {max(refine_s):.2f} s of {REFINE_RUNS} runs."]
    (RESULTS / "pipeline.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'pipeline.json'} and {RESULTS / 'pipeline.md'}")


if __name__ == "__main__":
    main()

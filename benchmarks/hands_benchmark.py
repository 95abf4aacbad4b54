"""What the fingers cost and how well they follow, on the sample video and on synthetic hands.

* Cost: MediaPipe Hands on both hands' crops per frame (after BlazePose, whose landmarks
  place the crops), the finger IK per hand, and the whole one-person ``analyze`` with
  hands against ``--no-hands`` (runs interleaved, medians), and ``refine`` of a
  1,000-frame file with hands.
* On the sample's first 5.3 s (the jumper): frames each hand is seen, how far the
  solved hands reproject from MediaPipe's pixels (where the rig holds them, and about
  the wrist), how far the body's wrist was turned to the palm, the largest turn past a
  finger's range, the finger turns from frame to frame.
* Synthetic: random plausible hands (every finger joint within 80% of its range) with
  3 mm of noise per keypoint coordinate: the finger joints' rotation error.

Writes benchmarks/results/hands.json and hands.md.

Usage: python benchmarks/hands_benchmark.py
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import roma
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / "tests")]
from pipeline_benchmark import lengthened, timed  # noqa: E402
from test_hand_ik import random_hands  # noqa: E402

from ikol_engine import samples  # noqa: E402
from ikol_engine.body import BodyModel  # noqa: E402
from ikol_engine.ik.hand_solver import finger_limits, solve_hand  # noqa: E402
from ikol_engine.motion import read_motion, write_motion  # noqa: E402
from ikol_engine.pipeline import AnalyzeOptions, analyze, refine  # noqa: E402
from ikol_engine.regressors.blazepose.hands import HandLandmarker  # noqa: E402
from ikol_engine.regressors.blazepose.regressor import BlazePoseRegressor  # noqa: E402
from ikol_engine.skeleton import hands  # noqa: E402
from ikol_engine.track.camera import Camera  # noqa: E402
from ikol_engine.track.options import SolveOptions  # noqa: E402
from ikol_engine.video.decode import iter_frames, probe  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
END_S = 5.3
ANALYZE_RUNS = 3
REFINE_FRAMES = 1000
SYNTHETIC_HANDS = 2048


def hand_model_cost(video: Path) -> dict[str, float]:
    """ms per frame of MediaPipe Hands on both crops, BlazePose's landmarks given."""
    frames = [frame.image for frame in iter_frames(video, 0, int(END_S * probe(video).fps))]
    with BlazePoseRegressor() as pose:
        body = pose(frames)
    with HandLandmarker() as landmarker:
        landmarker(frames[:5], body.image_keypoints[:5], body.confidence[:5])  # warm-up
        seconds, _ = timed(lambda: landmarker(frames, body.image_keypoints, body.confidence))
    return {"frames": len(frames), "ms_per_frame": 1000 * seconds / len(frames)}


def finger_ik_cost(body: BodyModel) -> dict[str, float]:
    """ms per hand of the finger IK (20 steps) in one batch of SYNTHETIC_HANDS."""
    rest = body.rest_hand_keypoints(torch.zeros(1, body.num_betas, dtype=torch.float64))[0, 1]
    _, keypoints = random_hands(rest, 1, SYNTHETIC_HANDS, torch.Generator().manual_seed(0))
    seen = torch.ones(keypoints.shape[:2], dtype=torch.float64)
    solve_hand(keypoints[:8], seen[:8], rest, 1)
    seconds, _ = timed(lambda: solve_hand(keypoints, seen, rest, 1))
    return {"hands": SYNTHETIC_HANDS, "ms_per_hand": 1000 * seconds / SYNTHETIC_HANDS}


def synthetic_accuracy(body: BodyModel) -> dict[str, float]:
    """Finger joint rotation error (degrees) of noisy random hands, both sides."""
    errors = []
    rest = body.rest_hand_keypoints(torch.zeros(1, body.num_betas, dtype=torch.float64))[0]
    for side in (0, 1):
        generator = torch.Generator().manual_seed(20 + side)
        truth, keypoints = random_hands(rest[side], side, SYNTHETIC_HANDS, generator)
        noisy = keypoints + 0.003 * torch.randn(keypoints.shape, dtype=torch.float64, generator=generator)
        solved = solve_hand(noisy, torch.ones(noisy.shape[:2], dtype=torch.float64), rest[side], side)
        errors.append(np.degrees(roma.rotmat_geodesic_distance(solved.rotations[:, 1:], truth[:, 1:]).numpy()))
    error = np.concatenate(errors)
    return {"noise_mm": 3.0, "median_deg": float(np.median(error)), "p95_deg": float(np.percentile(error, 95))}


def sample_quality(motion, solution, body: BodyModel) -> dict[str, object]:
    """How the fingers follow the jumper's hands (see the module docstring)."""
    camera = Camera.from_focal(*motion.options["image_size"], motion.options["result"]["camera"]["focal_px"])
    rest = body.rest_hand_keypoints(torch.from_numpy(motion.betas)[None])[0].double()
    order = list(hands.MEDIAPIPE_TO_HAND)
    out: dict[str, object] = {}
    for side, name in enumerate(hands.SIDES):
        seen = motion.hand_valid[:, side]
        pixels = camera.project(solution.fingers.keypoints[seen, side].astype(np.float64))
        landmarks = motion.hand_landmark_pixels[seen, side][:, order]
        placed = np.linalg.norm(pixels - landmarks, axis=-1)
        about = np.linalg.norm((pixels - pixels[:, :1]) - (landmarks - landmarks[:, :1]), axis=-1)[:, 1:]
        size = np.linalg.norm(landmarks[:, hands.HAND_KEYPOINT_NAMES.index("middle_tip")] - landmarks[:, 0], axis=-1)
        quat = torch.from_numpy(motion.hand_rotations[:, 15 * side:15 * (side + 1)][..., [1, 2, 3, 0]]).double()
        excess, _ = finger_limits(rest[side], side, 1.0).excess(quat)
        info = solution.info["hands"][name]
        out[name] = {"frames_seen": int(seen.sum()), "hand_length_px_median": float(np.median(size)),
                     "pixel_error_median": float(np.median(placed)), "pixel_error_p95": float(np.percentile(placed, 95)),
                     "about_wrist_px_median": float(np.median(about)), "about_wrist_px_p95": float(np.percentile(about, 95)),
                     "wrist_turn_deg_before": info["wrist_turn_deg_median"],
                     "wrist_turn_deg_after": info["wrist_left_deg_median"],
                     "largest_excess_deg": float(np.degrees(excess.abs().max()))}
    dots = np.abs((motion.hand_rotations[1:] * motion.hand_rotations[:-1]).sum(-1))
    turn = np.degrees(2 * np.arccos(np.clip(dots, 0, 1)))
    out["finger_turn_deg"] = {"median": float(np.median(turn)), "p99": float(np.percentile(turn, 99)),
                              "max": float(turn.max())}
    return out


def main() -> None:
    video = samples.demo_video()
    body = BodyModel()
    models = hand_model_cost(video)
    ik = finger_ik_cost(body)
    accuracy = synthetic_accuracy(body)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        runs: dict[str, list[float]] = {"hands": [], "no hands": []}
        for _ in range(ANALYZE_RUNS):
            for label, flag in (("hands", True), ("no hands", False)):
                seconds, (motion, solution) = timed(lambda: analyze(
                    video, scratch / f"{label}.npz", AnalyzeOptions(hands=flag), SolveOptions()))
                runs[label].append(seconds)
        frames = len(motion.valid)
        short, short_solution = analyze(video, scratch / "short.npz", AnalyzeOptions(end_s=END_S), SolveOptions())
        quality = sample_quality(short, short_solution, body)
        long_path = write_motion(scratch / "long.npz", lengthened(read_motion(scratch / "hands.npz"), REFINE_FRAMES))
        refine(long_path, scratch / "refined.npz", {})
        refine_s = [timed(lambda: refine(long_path, scratch / "refined.npz", {}))[0] for _ in range(5)]
    fps = {label: frames / float(np.median(values)) for label, values in runs.items()}
    result = {"frames": frames, "hand_models": models, "finger_ik": ik, "synthetic": accuracy,
              "analyze_s": runs, "analyze_frames_per_s": fps, "refine_1000_frames_s": refine_s,
              "sample_first_5_3_s": quality, "threads": torch.get_num_threads()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hands.json").write_text(json.dumps(result, indent=2))
    lines = [f"Machine: {torch.get_num_threads()} CPU threads; sample: {video.name}, {frames} frames.", "",
             f"MediaPipe Hands on both hands' crops: {models['ms_per_frame']:.1f} ms a frame "
             f"({models['frames']} frames). Finger IK: {ik['ms_per_hand']:.3f} ms a hand in a batch of "
             f"{ik['hands']}.", "",
             "| whole one-person analyze | frames/s | runs (s) |", "|---|---:|---|"]
    lines += [f"| {label} | {fps[label]:.1f} | {', '.join(f'{v:.2f}' for v in values)} |"
              for label, values in runs.items()]
    lines += ["", f"`refine` of {REFINE_FRAMES} frames with hands: median {np.median(refine_s):.2f} s "
              f"(slowest {max(refine_s):.2f} s of {len(refine_s)}).", "",
              f"Synthetic hands with {accuracy['noise_mm']:g} mm of noise: finger joint error median "
              f"{accuracy['median_deg']:.1f} degrees, 95th percentile {accuracy['p95_deg']:.1f}.", "",
              f"Sample, first {END_S} s:", "",
              "| hand | frames seen | length px | px where keyed (median, p95) | px about the wrist (median, p95) "
              "| wrist turned to the palm, degrees before -> after | largest excess past a range, degrees |",
              "|---|---:|---:|---|---|---|---:|"]
    for name in hands.SIDES:
        q = quality[name]
        lines.append(f"| {name} | {q['frames_seen']} | {q['hand_length_px_median']:.0f} | "
                     f"{q['pixel_error_median']:.1f}, {q['pixel_error_p95']:.1f} | "
                     f"{q['about_wrist_px_median']:.1f}, {q['about_wrist_px_p95']:.1f} | "
                     f"{q['wrist_turn_deg_before']:.0f} -> {q['wrist_turn_deg_after']:.0f} | "
                     f"{q['largest_excess_deg']:.2f} |")
    turn = quality["finger_turn_deg"]
    lines += ["", f"Finger joints' turn from frame to frame: median {turn['median']:.1f} degrees, 99th percentile "
              f"{turn['p99']:.1f}, largest {turn['max']:.1f}."]
    (RESULTS / "hands.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

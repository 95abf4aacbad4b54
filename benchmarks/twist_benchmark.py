"""How well the arms' twist is found from BlazePose-like landmarks on real mocap.

DeepMimic clips (real mocap, ``ikol_engine.samples.deepmimic``) pose the bundled body; the
33 landmarks are placed on it as BlazePose's (``tests/synthetic_landmarks.py``), with
white noise of a few centimetres, and the clip goes through everything after the
regressor (``track.solve.solve_observations``). Measured against the mocap: the mean
angle between the solved and true frames of the upper arm (the shoulder joint's), the
forearm (elbow) and the hand (wrist), each relative to the pelvis, over both sides; and
the 99th percentile and largest frame-to-frame turn of any joint. Each clip is solved
with the straight-arm rule of ``ik.twist_estimate`` (the palm's turn passed to the upper
arm as the elbow straightens) and without it (``HINGES`` emptied).
Writes benchmarks/results/twist.json and twist.md.

Usage: python benchmarks/twist_benchmark.py [--noise 0.02 0.04] [--clips walk run ...]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import roma
import torch

from ikol_engine import __version__, skeleton
from ikol_engine.common.atomic_file import atomic_path
from ikol_engine.ik import twist_estimate
from ikol_engine.ik.solver import default_body
from ikol_engine.observations import Observations
from ikol_engine.regressors.blazepose import BLAZEPOSE_LAYOUT, LANDMARK_NAMES
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.skeleton.tree import SMPL_TREE
from ikol_engine.track.camera import Camera
from ikol_engine.track.options import SolveOptions
from ikol_engine.track.solve import solve_observations

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synthetic_landmarks import L, posed_landmarks  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CLIPS = ("walk", "run", "jump", "punch", "kick", "dance_a", "spin")
CAMERA = Camera(1280, 720, fov_deg=60.0)
# Thumbs and nose off: the landmarks tests/synthetic_landmarks.py does not place.
SEEN = [L[name] for name in LANDMARK_NAMES if name != "nose" and "thumb" not in name]
PARTS = {"upper arm": "Shoulder", "forearm": "Elbow", "hand": "Wrist"}


def observed(clip: str, noise_m: float, seed: int) -> tuple[Observations, torch.Tensor]:
    """The clip 4.5 m in front of a camera tilted 12 degrees down, as BlazePose would report
    it with ``noise_m`` of white noise per landmark axis; and the true (T, 24, 3, 3) pose."""
    body = default_body()
    motion = load_deepmimic(clip)
    rotations = motion.rotations.clone()
    tilt = roma.rotvec_to_rotmat(torch.tensor([0.21, 0.0, 0.0]))
    rotations[:, 0] = tilt @ rotations[:, 0]
    rest_pelvis = body.rest_joints(torch.zeros(1, body.num_betas))[0, 0]
    start = motion.translation[:1] * torch.tensor([1.0, 0.0, 1.0])
    translation = ((motion.translation - start) @ tilt.T + torch.tensor([0.0, -0.6, -4.5]) - rest_pelvis).float()
    landmarks, _, _ = posed_landmarks(body, rotations, translation)
    generator = torch.Generator().manual_seed(seed)
    landmarks = (landmarks + noise_m * torch.randn(landmarks.shape, generator=generator)).numpy().astype(np.float64)
    hips = (landmarks[:, L["left_hip"]] + landmarks[:, L["right_hip"]]) / 2
    frames = len(landmarks)
    confidence = np.zeros((frames, len(LANDMARK_NAMES)), np.float32)
    confidence[:, SEEN] = 0.95
    track = Observations(
        names=LANDMARK_NAMES, keypoints=((landmarks - hips[:, None]) * np.array([1.0, -1.0, -1.0])).astype(np.float32),
        confidence=confidence, image=CAMERA.project(landmarks).astype(np.float32), detected=np.ones(frames, bool),
        frame_indices=np.arange(frames), fps=motion.fps, image_size=(CAMERA.width, CAMERA.height))
    return track, rotations


def errors(track: Observations, truth: torch.Tensor) -> dict[str, float]:
    """Mean frame error (degrees) of each arm part against the truth, and the turns."""
    body = default_body()
    solution = solve_observations(track, BLAZEPOSE_LAYOUT, SolveOptions(level_floor=False, device="cpu"), body)
    wxyz = torch.from_numpy(solution.rotations).float()
    solved = roma.unitquat_to_rotmat(torch.cat([wxyz[..., 1:], wxyz[..., :1]], dim=-1))
    offsets = rest_offsets(body.rest_keypoints(torch.from_numpy(solution.betas).float()[None]), SMPL_TREE)
    offsets = offsets.expand(len(solved), -1, -1)
    zeros = torch.zeros(len(solved), 3)
    solved_globals, _ = forward_kinematics(solved, offsets, zeros, SMPL_TREE)
    true_globals, _ = forward_kinematics(truth, offsets, zeros, SMPL_TREE)
    out = {}
    for part, joint in PARTS.items():
        angles = []
        for side in "LR":
            j = skeleton.JOINT_NAMES.index(f"{side}_{joint}")
            a = solved_globals[:, 0].transpose(-1, -2) @ solved_globals[:, j]
            b = true_globals[:, 0].transpose(-1, -2) @ true_globals[:, j]
            angles.append(torch.rad2deg(roma.rotmat_geodesic_distance(a, b)))
        out[part] = float(torch.cat(angles).mean())
    q = solution.rotations
    turn = np.degrees(2 * np.arccos(np.clip(np.abs((q[1:] * q[:-1]).sum(-1)), 0.0, 1.0)))
    out["turn p99"], out["turn max"] = float(np.percentile(turn, 99)), float(turn.max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.02, 0.04], help="landmark noise, m")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    args = parser.parse_args()
    rule = twist_estimate.HINGES
    rows = []
    for noise in args.noise:
        for clip in args.clips:
            track, truth = observed(clip, noise, seed=1)
            row = {"clip": clip, "noise_m": noise}
            for label, hinges in (("with", rule), ("without", ())):
                twist_estimate.HINGES = hinges  # the module reads it at each estimate
                row[label] = errors(track, truth)
            twist_estimate.HINGES = rule
            rows.append(row)
            print(clip, noise, {k: {m: round(v, 1) for m, v in row[k].items()} for k in ("with", "without")})
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, engine {__version__}"
    with atomic_path(RESULTS / "twist.json") as path:
        path.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    metrics = [*PARTS, "turn p99", "turn max"]
    lines = [f"Machine: {machine}. DeepMimic clips on the bundled body, BlazePose-like landmarks with white noise;",
             "mean frame error of each arm part against the mocap (degrees, relative to the pelvis, both sides),",
             "and frame-to-frame joint turns (degrees); with / without the straight-arm twist rule.", "",
             "| clip | noise (cm) | " + " | ".join(metrics) + " |", "|---|---:|" + "---:|" * len(metrics)]
    for row in rows:
        cells = [f"{row['with'][m]:.1f} / {row['without'][m]:.1f}" for m in metrics]
        lines.append(f"| {row['clip']} | {100 * row['noise_m']:.0f} | " + " | ".join(cells) + " |")
    with atomic_path(RESULTS / "twist.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'twist.json'} and {RESULTS / 'twist.md'}")


if __name__ == "__main__":
    main()

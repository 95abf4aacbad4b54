"""How closely the bundled body's shape space reproduces real skeletons.

Real skeletons no one here made (``ikol_engine.samples.skeletons``: SMPL-X's mean and
sampled shapes, DeepMimic's humanoid) move as DeepMimic's mocap clips do; their joints
are the keypoints (only those the source defines, no noise). One shape is fitted per clip
(``ik.fit_shape``), then the IK solves every frame. Measured: the largest error of a
rigid distance the source defines (bone lengths, hip to hip, collar to collar) and the
mean joint error over the defined joints, each the worst over the clips; with the 10
phenotype directions alone (the body before its skeleton directions) and with all.
Writes benchmarks/results/shape.json and shape.md.

Usage: python benchmarks/shape_benchmark.py [--clips walk run ...] [--stride 2]
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from ikol_engine import __version__
from ikol_engine.body import BodyModel
from ikol_engine.common.atomic_file import atomic_path
from ikol_engine.ik import fit_shape, shape_fit_report, solve
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.samples.skeletons import Skeleton, deepmimic_skeleton, pose_skeleton, smplx_skeleton

RESULTS = Path(__file__).resolve().parent / "results"
CLIPS = ("walk", "run", "jump", "kick", "punch", "dance_a", "cartwheel", "backflip")


def skeletons() -> list[Skeleton]:
    sampled = np.random.default_rng(11).normal(size=(5, 10))
    extremes = [np.array([2.0] + [0.0] * 9), np.array([-2.0] + [0.0] * 9)]
    return [deepmimic_skeleton(), smplx_skeleton()] + [smplx_skeleton(s) for s in [*sampled, *extremes]]


def errors(body: BodyModel, bones: Skeleton, clips: list[str], stride: int) -> dict[str, float]:
    """Worst over clips of the largest distance error and the mean joint error, mm."""
    distance, joint = 0.0, 0.0
    for clip in clips:
        keypoints = pose_skeleton(bones, load_deepmimic(clip))[::stride]
        confidence = bones.defined.float().expand(len(keypoints), -1).clone()
        betas = fit_shape(keypoints, confidence, body, device="cpu")
        report = shape_fit_report(keypoints, confidence, betas, body)
        solved = solve(keypoints, confidence, betas, body=body, iterations=10, device="cpu").keypoints
        distance = max(distance, max(abs(fit.error_m) for fit in report))
        joint = max(joint, float((solved - keypoints)[:, bones.defined].norm(dim=-1).mean()))
    return {"distance_mm": 1000 * distance, "joint_mm": 1000 * joint}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--stride", type=int, default=2, help="use every n-th mocap frame")
    args = parser.parse_args()
    torch.set_num_threads(2)
    full, phenotypes = BodyModel(), BodyModel(num_betas=10)
    rows = []
    for bones in skeletons():
        row = {"skeleton": bones.name, "before": errors(phenotypes, bones, args.clips, args.stride),
               "after": errors(full, bones, args.clips, args.stride)}
        rows.append(row)
        print(row)
    RESULTS.mkdir(exist_ok=True)
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, engine {__version__}"
    with atomic_path(RESULTS / "shape.json") as path:
        path.write_text(json.dumps({"machine": machine, "clips": args.clips, "stride": args.stride,
                                    "betas": {"before": phenotypes.num_betas, "after": full.num_betas},
                                    "rows": rows}, indent=2))
    lines = [f"Machine: {machine}. Real skeletons moving as {len(args.clips)} DeepMimic clips (one frame in "
             f"{args.stride}), one shape fit per clip, then the IK;",
             "worst clip of each: largest rigid-distance error and mean joint error (mm), with the "
             f"{phenotypes.num_betas} phenotype directions alone / with all {full.num_betas} directions.", "",
             "| skeleton | largest distance error (mm) | mean joint error (mm) |", "|---|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['skeleton']} | {row['before']['distance_mm']:.1f} / {row['after']['distance_mm']:.1f} | "
                     f"{row['before']['joint_mm']:.1f} / {row['after']['joint_mm']:.1f} |")
    with atomic_path(RESULTS / "shape.md") as path:
        path.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'shape.json'} and {RESULTS / 'shape.md'}")


if __name__ == "__main__":
    main()

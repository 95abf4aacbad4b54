"""Speed and accuracy of the IK layer on real mocap (DeepMimic clips mapped onto SMPL).

Writes benchmarks/results/ik.json and ik.md (the table the README quotes):
frames/s and mean joint error for batch 1, 64, 1024, 8192 x iterations 0, 1, 3, 5, 10
on the CPU (and CUDA when present), plus the noise curve.

Observations imitate a regressor: keypoints with Gaussian noise (10 mm per axis by
default) and twist angles with 5 degrees of noise; errors are against the clean truth.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from ikol_engine import __version__, skeleton
from ikol_engine.ik import default_body, solve
from ikol_engine.ik.rotations import bone_twists
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.samples import DEEPMIMIC_CLIPS
from ikol_engine.skeleton.tree import SMPL_TREE

RESULTS = Path(__file__).parent / "results"
MM = 1e-3


def ground_truth(frames: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``frames`` mocap poses (all clips, tiled) with random shapes, pushed through FK."""
    body = default_body()
    rotations = torch.cat([load_deepmimic(name).rotations for name in DEEPMIMIC_CLIPS])
    rotations = rotations[torch.arange(frames) % len(rotations)]
    generator = torch.Generator().manual_seed(seed)
    betas = torch.randn(frames, body.num_betas, generator=generator).clamp(-2.5, 2.5)
    offsets = rest_offsets(body.rest_keypoints(betas), SMPL_TREE)
    _, keypoints = forward_kinematics(rotations, offsets, torch.zeros(frames, 3), SMPL_TREE)
    twist = bone_twists(rotations, offsets)
    return {"rotations": rotations, "betas": betas, "keypoints": keypoints, "twist": twist}


def observe(truth: dict[str, torch.Tensor], sigma: float, twist_sigma: float, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(truth["keypoints"].shape, generator=generator)
    twist_noise = torch.randn(truth["twist"].shape, generator=generator)
    return {"targets": truth["keypoints"] + sigma * noise, "twist": truth["twist"] + twist_sigma * twist_noise,
            "confidence": torch.ones(truth["keypoints"].shape[:2]), "betas": truth["betas"]}


def errors(result, truth) -> tuple[float, float]:
    """Mean joint position error (mm) and mean joint rotation error (degrees)."""
    import roma

    joints = (result.keypoints[:, :24] - truth["keypoints"][:, :24]).norm(dim=-1).mean()
    angle = torch.rad2deg(roma.rotmat_geodesic_distance(result.rotations, truth["rotations"])).mean()
    return float(joints) / MM, float(angle)


def timed(obs: dict[str, torch.Tensor], iterations: int, device: torch.device, repeats: int) -> float:
    """Median seconds of one solve, inputs already on ``device``."""
    moved = {k: v.to(device) for k, v in obs.items()}

    def run() -> None:
        solve(moved["targets"], moved["confidence"], moved["betas"], moved["twist"], iterations=iterations,
              device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes (for `make demo`); writes no results")
    parser.add_argument("--sigma-mm", type=float, default=10.0, help="keypoint noise per axis")
    args = parser.parse_args()

    batches = [1, 64, 1024] if args.quick else [1, 64, 1024, 8192]
    iteration_counts = [0, 1, 5] if args.quick else [0, 1, 3, 5, 10]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    truth = ground_truth(max(batches))
    observed = observe(truth, args.sigma_mm * MM, torch.deg2rad(torch.tensor(5.0)).item())
    rows = []
    for device in devices:
        for batch in batches:
            part = {k: v[:batch] for k, v in observed.items()}
            part_truth = {k: v[:batch] for k, v in truth.items()}
            for iterations in iteration_counts:
                seconds = timed(part, iterations, device, repeats=max(5, min(50, 4096 // batch)))
                result = solve(part["targets"], part["confidence"], part["betas"], part["twist"],
                               iterations=iterations, device="cpu")
                joint_mm, rotation_deg = errors(result, part_truth)
                rows.append({"device": str(device), "batch": batch, "iterations": iterations,
                             "frames_per_s": batch / seconds, "joint_error_mm": joint_mm,
                             "rotation_error_deg": rotation_deg})
                print(f"{device.type:4} batch {batch:5} it {iterations:2}: {batch / seconds:10.0f} frames/s  "
                      f"joints {joint_mm:6.2f} mm  rotations {rotation_deg:5.2f} deg", flush=True)

    curve_truth = {k: v[:1024] for k, v in truth.items()}
    curve = []
    for sigma in (0.0, 5.0, 10.0, 20.0, 40.0):
        obs = observe(curve_truth, sigma * MM, torch.deg2rad(torch.tensor(sigma / 2)).item())
        raw = float((obs["targets"][:, :24] - curve_truth["keypoints"][:, :24]).norm(dim=-1).mean()) / MM
        for iterations in (0, 5):
            result = solve(obs["targets"], obs["confidence"], obs["betas"], obs["twist"], iterations=iterations,
                           device="cpu")
            joint_mm, rotation_deg = errors(result, curve_truth)
            curve.append({"sigma_mm": sigma, "twist_sigma_deg": sigma / 2, "iterations": iterations,
                          "input_error_mm": raw, "joint_error_mm": joint_mm, "rotation_error_deg": rotation_deg})
            print(f"noise {sigma:4.0f} mm, it {iterations}: input {raw:6.2f} mm -> joints {joint_mm:6.2f} mm, "
                  f"rotations {rotation_deg:5.2f} deg", flush=True)
    if args.quick:
        return

    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "engine": __version__,
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ik.json").write_text(json.dumps({"machine": machine, "sigma_mm": args.sigma_mm, "grid": rows,
                                                 "noise_curve": curve}, indent=2))
    (RESULTS / "ik.md").write_text(markdown(rows, curve, machine, args.sigma_mm))
    print(f"wrote {RESULTS / 'ik.json'} and {RESULTS / 'ik.md'}")


def markdown(rows: list[dict], curve: list[dict], machine: dict, sigma: float) -> str:
    lines = [f"Machine: {machine['threads']} CPU threads, torch {machine['torch']}"
             + (f", GPU {machine['gpu']}" if machine["gpu"] else "") + f". Keypoint noise {sigma:g} mm per axis, "
             "twist noise 5 deg; errors against the clean mocap truth.", "",
             "| device | batch | iterations | frames/s | joint error (mm) | rotation error (deg) |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['device']} | {r['batch']} | {r['iterations']} | {r['frames_per_s']:,.0f} | "
              f"{r['joint_error_mm']:.2f} | {r['rotation_error_deg']:.2f} |" for r in rows]
    lines += ["", "Noise curve (batch 1024, CPU):", "",
              "| keypoint noise (mm/axis) | twist noise (deg) | iterations | input error (mm) | joint error (mm) "
              "| rotation error (deg) |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {c['sigma_mm']:g} | {c['twist_sigma_deg']:g} | {c['iterations']} | {c['input_error_mm']:.2f} | "
              f"{c['joint_error_mm']:.2f} | {c['rotation_error_deg']:.2f} |" for c in curve]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

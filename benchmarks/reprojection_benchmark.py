"""Accuracy, foot slide and cost of the IK's camera-aware terms on filmed mocap.

Writes benchmarks/results/reprojection.json and reprojection.md. Data: DeepMimic clips
filmed by a known camera with BlazePose-like errors (:mod:`ikol_engine.samples.filmed_mocap`,
default Filming: 4.5 m away, f = 1400 px on 1920x1080, 2.5 px pixel noise, 7.5 cm along
the rays and 2.5 cm per axis in the metric keypoints; two more scenes change the heading,
distance and focal length). Variants, each from the same
observations: keypoints alone (placed by today's pinhole fit, camera.fit_translation);
with the reprojection term; with the floor; with foot contacts (detected on the
reprojection solve, then locked); both. Without pixels, the contacts and the floor act
on the keypoints placed by the pinhole fit. Errors are against the clean truth.
Cost: one solve of 1,000 frames (5 iterations), with and without the terms.

Then the whole track stage (``solve_observations``, what analyze and refine run) on the
same filmed scenes and on the Sports2D sample's stored BlazePose keypoints, with each
term switched off through its setting (``reprojection``, ``foot_lock``; the floor is
always on where one is found): joint error against the truth and slide on the filmed
scenes; on Sports2D, where there is no truth, the solved joints' distance from
BlazePose's 2D landmarks and the feet's movement along the floor while a contact holds.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from ikol_engine import __version__
from ikol_engine.common.atomic_file import atomic_path
from ikol_engine.track.camera import Camera, fit_translation
from ikol_engine import samples
from ikol_engine.pipeline import AnalyzeOptions, regress_video
from ikol_engine.regressors import layout_for
from ikol_engine.regressors.hybrik.layout import HYBRIK_LAYOUT
from ikol_engine.samples.filmed_mocap import FilmedClip, Filming, film, filmed_observations, foot_slide, true_contacts
from ikol_engine.track.ground import Ground
from ikol_engine.track.options import SolveOptions
from ikol_engine.track.solve import Solution, solve_observations
from ikol_engine.ik import default_body, solve
from ikol_engine.ik.contacts import contact_targets, detect_contacts
from ikol_engine.ik.focal import estimate_focal
from ikol_engine.ik.world_terms import FOOT_KEYPOINTS

RESULTS = Path(__file__).parent / "results"
FEET = list(FOOT_KEYPOINTS)
# (clip, cycles, filming): DeepMimic's walk (its one clip with long planted feet at
# 30 fps) seen diagonally, walking at the camera and crossing the view.
SCENES = {"walk, 60 deg to the camera": ("walk", 4, Filming()),
          "walk towards the camera": ("walk", 4, Filming(heading_deg=0.0, distance=5.5)),
          "walk across the view": ("walk", 4, Filming(heading_deg=90.0, focal_px=1000.0))}


def errors(keypoints: np.ndarray, clip: FilmedClip, truth_contacts: np.ndarray) -> dict[str, float]:
    truth = clip.keypoints
    relative = (keypoints - keypoints[:, :1]) - (truth - truth[:, :1])
    normal, height = clip.floor
    return {"joint_mm": float(np.linalg.norm(keypoints - truth, axis=-1).mean() * 1000),
            "pelvis_relative_mm": float(np.linalg.norm(relative, axis=-1).mean() * 1000),
            "slide_mm_per_frame": foot_slide(keypoints[:, FEET], truth_contacts, normal) * 1000,
            "lowest_foot_mm": float((keypoints[:, FEET] @ normal - height - clip.clearance).min() * 1000)}


def variants(clip: FilmedClip) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    frames = len(clip.targets)
    targets, confidence = torch.from_numpy(clip.targets).float(), torch.ones(frames, 29)
    betas = torch.from_numpy(clip.betas)
    pixels = torch.from_numpy(clip.pixels).float()
    truth_contacts = true_contacts(clip)
    width, height = int(2 * clip.camera.cx), int(2 * clip.camera.cy)
    camera = Camera(width, height, fov_deg=float(np.degrees(2 * np.arctan(clip.camera.cx / clip.camera.focal_px))))
    out = {}

    alone = solve(targets, confidence, betas, device="cpu")
    placement = fit_translation(clip.targets, clip.pixels, np.ones((frames, 29)), camera)
    placed = alone.keypoints.numpy() + placement[:, None]
    out["keypoints alone"] = errors(placed, clip, truth_contacts)
    placed_targets = torch.from_numpy(clip.targets + placement[:, None]).float()

    with_pixels = solve(targets, confidence, betas, pixels=pixels, camera=clip.camera, device="cpu")
    out["+ pixels"] = errors(with_pixels.keypoints.numpy(), clip, truth_contacts)
    out["+ pixels, free offset (metric_depth=False)"] = errors(solve(
        targets, confidence, betas, pixels=pixels, camera=clip.camera, metric_depth=False,
        device="cpu").keypoints.numpy(), clip, truth_contacts)
    span = clip.pixels[..., 1].max(1) - clip.pixels[..., 1].min(1)

    def contacts_of(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = detect_contacts(keypoints[:, FEET], clip.fps, pixels=clip.pixels[:, FEET], body_height_px=span,
                                floor=clip.floor, clearance=clip.clearance)
        return (found, *contact_targets(keypoints[:, FEET], found, floor=clip.floor, clearance=clip.clearance))

    found, lock, weight = contacts_of(placed)
    out["+ contacts + floor, no pixels"] = errors(solve(
        placed_targets, confidence, betas, init=alone.rotations, foot_lock=lock, foot_lock_confidence=weight,
        floor=clip.floor, device="cpu").keypoints.numpy(), clip, truth_contacts)
    found, lock, weight = contacts_of(with_pixels.keypoints.numpy())
    shared = dict(pixels=pixels, camera=clip.camera, init=with_pixels.rotations, device="cpu")
    out["+ pixels + floor"] = errors(solve(targets, confidence, betas, floor=clip.floor, **shared).keypoints.numpy(),
                                     clip, truth_contacts)
    out["+ pixels + contacts"] = errors(solve(targets, confidence, betas, foot_lock=lock, foot_lock_confidence=weight,
                                              **shared).keypoints.numpy(), clip, truth_contacts)
    out["+ pixels + contacts + floor"] = errors(solve(
        targets, confidence, betas, foot_lock=lock, foot_lock_confidence=weight, floor=clip.floor,
        **shared).keypoints.numpy(), clip, truth_contacts)
    out["truth"] = errors(clip.keypoints, clip, truth_contacts)

    focal = estimate_focal(clip.targets, clip.pixels, np.ones((frames, 29)), (width, height))
    found_rate = {"contact_agreement": float((found == truth_contacts).mean()),
                  "focal_px": focal, "true_focal_px": clip.camera.focal_px,
                  "focal_error_percent": 100 * (focal / clip.camera.focal_px - 1), "frames": frames}
    return out, found_rate


def cost(clip: FilmedClip, device: str, repeats: int) -> dict[str, float]:
    """Seconds per solve of 1,000 frames (the clip tiled), median of ``repeats``."""
    index = np.arange(1000) % len(clip.targets)
    targets, confidence = torch.from_numpy(clip.targets[index]).float(), torch.ones(1000, 29)
    pixels = torch.from_numpy(clip.pixels[index]).float()
    feet = clip.keypoints[index][:, FEET]
    lock = torch.from_numpy(feet).float()
    settings = {"keypoints alone": {},
                "+ pixels": dict(pixels=pixels, camera=clip.camera),
                "+ pixels + contacts + floor": dict(pixels=pixels, camera=clip.camera, foot_lock=lock,
                                                    floor=clip.floor)}
    out = {}
    for name, kwargs in settings.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            solve(targets, confidence, iterations=5, device=device, **kwargs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


# The track stage's variants: SolveOptions changes.
TRACK_VARIANTS = {"3D keypoints only (pinhole placement)": dict(reprojection=0.0, foot_lock=0.0),
                  "+ image keypoints": dict(foot_lock=0.0),
                  "+ foot lock": dict(reprojection=0.0),
                  "+ image keypoints + foot lock (default)": {}}
SPORTS2D_END_S = 5.3  # before the passer-by crosses the jumper


def pa_mpjpe(solved: np.ndarray, truth: np.ndarray) -> float:
    """Mean joint error after each frame's best similarity transform onto the truth (metres).

    Args:
        solved, truth: (T, J, 3).
    """
    a = solved - solved.mean(1, keepdims=True)
    b = truth - truth.mean(1, keepdims=True)
    u, sigma, vt = np.linalg.svd(a.transpose(0, 2, 1) @ b)
    flip = np.sign(np.linalg.det(u @ vt))
    sigma[:, -1] *= flip
    u[:, :, -1] *= flip[:, None]
    rotation = u @ vt
    scale = sigma.sum(1) / (a ** 2).sum((1, 2))
    aligned = scale[:, None, None] * a @ rotation
    return float(np.linalg.norm(aligned - b, axis=-1).mean())


def track_on_filmed(clip: FilmedClip) -> dict[str, dict[str, float]]:
    truth_contacts = true_contacts(clip)
    fov = float(np.degrees(2 * np.arctan(clip.camera.cx / clip.camera.focal_px)))
    out = {}
    for name, changes in TRACK_VARIANTS.items():
        options = SolveOptions(fov_deg=fov, level_floor=False, device="cpu", **changes)
        solution = solve_observations(filmed_observations(clip), HYBRIK_LAYOUT, options, shape=clip.betas)
        row = errors(solution.keypoints, clip, truth_contacts)
        row["pa_mpjpe_mm"] = pa_mpjpe(solution.keypoints[:, :24], clip.keypoints[:, :24]) * 1000
        row["held_slide_mm_per_frame"] = foot_slide(solution.keypoints[:, FEET], truth_contacts & solution.contacts,
                                                    clip.floor[0]) * 1000
        out[name] = row
    return out


def track_on_sports2d() -> dict[str, dict[str, float]]:
    observed, _ = regress_video(samples.demo_video(), AnalyzeOptions(end_s=SPORTS2D_END_S))
    layout = layout_for(observed.names)
    out = {}
    for name, changes in TRACK_VARIANTS.items():
        solution = solve_observations(observed, layout, SolveOptions(device="cpu", **changes))
        out[name] = image_and_slide(solution, observed, layout)
    return out


def image_and_slide(solution: Solution, observed, layout) -> dict[str, float]:
    """Pixels from the solved joints to the regressor's 2D, and slide while contacts hold."""
    valid = solution.valid
    floor, camera = solution.info["floor"], solution.info["camera"]
    keypoints = solution.keypoints[valid].astype(np.float64)
    if floor is not None:
        turn, shift = Ground(np.asarray(floor["normal_camera"]), floor["height_camera"], 0).leveling()
        keypoints = (keypoints - shift) @ turn
    projected = Camera.from_focal(*observed.image_size, camera["focal_px"]).project(keypoints)
    shown, confidence = layout.image_targets(observed.image[valid], observed.confidence[valid])
    # Not where BlazePose swapped the sides: its raw 2D has them exchanged there.
    kept = (confidence > 0.5) & ~solution.swapped[valid][:, None]
    error = np.linalg.norm(projected - shown, axis=-1)[kept]
    feet = solution.keypoints[valid][:, FEET]
    held = solution.contacts[valid][1:] & solution.contacts[valid][:-1]
    step = np.linalg.norm((feet[1:] - feet[:-1])[..., [0, 2]], axis=-1)
    return {"image_px_median": float(np.median(error)), "image_px_p95": float(np.percentile(error, 95)),
            "held_slide_mm_per_frame": float(step[held].mean() * 1000) if held.any() else float("nan"),
            "contact_frames": int(solution.contacts.sum()), "residual_mm": float(solution.residual_mm[valid].mean())}


def markdown(accuracy: dict, found: dict, costs: dict, machine: dict, track: dict, sports2d: dict) -> str:
    lines = [f"Machine: {machine['threads']} CPU threads, torch {machine['torch']}. Filmed DeepMimic clips "
             "(4.5 m, f = 1400 px unless stated, 2.5 px pixel noise, 7.5 cm along the rays + 2.5 cm per axis "
             "in 3D); "
             "errors against the truth. Slide: mean movement along the floor per frame while the true "
             "foot rests. Lowest foot: the lowest foot point's height above the floor (negative: below).", ""]
    for clip, rows in accuracy.items():
        info = found[clip]
        lines += [f"## {clip} ({info['frames']} frames at 30 fps, f = {info['true_focal_px']:.0f} px)", "",
                  "| variant | joint error (mm) | about the pelvis (mm) | slide (mm/frame) | lowest foot (mm) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['joint_mm']:.1f} | {r['pelvis_relative_mm']:.1f} | {r['slide_mm_per_frame']:.1f} "
                  f"| {r['lowest_foot_mm']:.1f} |" for name, r in rows.items()]
        lines += ["", f"Contacts detected on the pixel solve agree with the truth on "
                      f"{100 * info['contact_agreement']:.0f} % of (frame, foot point) pairs. Focal length "
                      f"estimated {info['focal_px']:.0f} px (true {info['true_focal_px']:.0f}, "
                      f"{info['focal_error_percent']:+.1f} %).", ""]
    lines += ["## Cost per 1,000 frames (5 iterations)", "", "| device | variant | seconds |", "|---|---|---:|"]
    for device, rows in costs.items():
        lines += [f"| {device} | {name} | {seconds:.2f} |" for name, seconds in rows.items()]
    lines += ["", "## The whole track stage (solve_observations), filmed scenes", "",
              "Each term off through its setting; the floor is on wherever one is found. PA-MPJPE: the 24 joints' "
              "mean error after each frame's best similarity transform onto the truth. Held slide: slide on the "
              "frames where the truth rests and a contact was found.", ""]
    for clip, rows in track.items():
        lines += [f"### {clip}", "", "| variant | joint error (mm) | PA-MPJPE (mm) | slide (mm/frame) "
                  "| held slide (mm/frame) | lowest foot (mm) |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {name} | {r['joint_mm']:.1f} | {r['pa_mpjpe_mm']:.1f} | {r['slide_mm_per_frame']:.1f} "
                  f"| {r['held_slide_mm_per_frame']:.1f} | {r['lowest_foot_mm']:.1f} |" for name, r in rows.items()]
        lines.append("")
    lines += [f"## The whole track stage on the Sports2D sample (first {SPORTS2D_END_S} s, BlazePose full, "
              "60 degree field of view)", "",
              "No truth: the solved joints' distance from BlazePose's own 2D landmarks (confidence > 0.5, frames "
              "whose sides BlazePose did not swap) and the feet's movement along the levelled floor between frames "
              "of a contact, at 30 fps.", "",
              "| variant | image median (px) | image p95 (px) | held slide (mm/frame) | contact frames "
              "| residual to 3D (mm) |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['image_px_median']:.1f} | {r['image_px_p95']:.1f} | {r['held_slide_mm_per_frame']:.1f} "
              f"| {r['contact_frames']} | {r['residual_mm']:.1f} |" for name, r in sports2d.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    body = default_body()
    accuracy, found = {}, {}
    clips = {label: film(name, cycles, body, filming, seed=1) for label, (name, cycles, filming) in SCENES.items()}
    for name, clip in clips.items():
        accuracy[name], found[name] = variants(clip)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    costs = {device: cost(next(iter(clips.values())), device, args.repeats) for device in devices}
    track = {name: track_on_filmed(clip) for name, clip in clips.items()}
    sports2d = track_on_sports2d()
    machine = {"threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
               "engine": __version__}
    result = {"machine": machine, "accuracy": accuracy, "contacts_and_focal": found, "seconds_per_1000_frames": costs,
              "track_stage": track, "track_stage_sports2d": sports2d}
    with atomic_path(RESULTS / "reprojection.json") as path:
        path.write_text(json.dumps(result, indent=2))
    with atomic_path(RESULTS / "reprojection.md") as path:
        path.write_text(markdown(accuracy, found, costs, machine, track, sports2d))
    print(markdown(accuracy, found, costs, machine, track, sports2d))


if __name__ == "__main__":
    main()

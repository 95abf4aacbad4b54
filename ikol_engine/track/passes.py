"""The IK passes over a clip: batched solves in chunks, warm starts, and the temporal term.

Two kinds of clip: one whose regressor gives twist angles (HybrIK's network), solved with
them and then again pulled towards the smoothed first pass; and one whose regressor shows
twist only through points off the bones (BlazePose's palms, feet and ears), where a
keypoint-only pass seeds the twist estimate, then two passes with the estimated twists
(the second round settles the wrists), the last also pulled towards the temporally
smoothed previous solution. The last pass (:func:`last_pass`) solves in the camera's
world: with the image keypoints, the foot contacts and the floor (:mod:`.grounding`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import roma
import torch

from ..body import BodyModel
from ..ik import solve
from ..ik.solver import IKResult
from ..ik.twist_estimate import estimate_twist
from ..observations import TwistSides
from .filtering import DESPIKE_FRAMES, running_median, smoothed_quaternions
from .options import Progress, SolveOptions

# Frames solved in one batch: large enough to amortise Python overhead, small enough
# that a ten-minute clip never holds all its normal equations at once.
_CHUNK = 4096
_SEED_ITERATIONS = 2
#: A pass stops early once a step lowers the summed objective of its batch (up to _CHUNK
#: frames) by less than this fraction: warm-started passes settle in two or three steps
#: (the sample's mean residual and largest frame-to-frame turn came out the same as with
#: every step taken).
PASS_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Solved:
    """The last pass over a clip's V frames, as numpy.

    Attributes:
        rotations: (V, 24, 3, 3); translation: (V, 3) of the root from the IK (camera
        frame); residual: (V,) metres; keypoints: (V, 29, 3) solved, camera frame; twist
        and twist_confidence: (V, 23), the twists the last pass was given.
    """

    rotations: np.ndarray
    translation: np.ndarray
    residual: np.ndarray
    keypoints: np.ndarray
    twist: np.ndarray
    twist_confidence: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """The passes before the last one: where the last pass starts and what it is given.

    Attributes:
        targets: (V, 29, 3); confidence: (V, 29) weighted; twist, twist_confidence:
            (V, 23) for the last pass; init: (V, 24, 3, 3) the previous pass's rotations;
        reference: (V, 24, 3, 3) the temporal term's pull, or None (no smoothing);
        keypoints: (V, 29, 3) the previous pass's keypoints, about the hips (numpy),
            where the last pass's foot contacts are found;
        shared: solve's settings for every pass (betas, body, device); stages: the
            passes in all, for progress.
    """

    targets: torch.Tensor
    confidence: torch.Tensor
    twist: torch.Tensor
    twist_confidence: torch.Tensor
    init: torch.Tensor
    reference: torch.Tensor | None
    keypoints: np.ndarray
    shared: dict[str, Any]
    stages: int


def passes_with_twist_angles(targets: np.ndarray, confidence: np.ndarray, twist: np.ndarray,
                             twist_confidence: np.ndarray, betas: torch.Tensor, options: SolveOptions,
                             body: BodyModel, fps: float, report: Progress) -> Prepared:
    """IK with the regressor's twists; the last pass starts there, pulled towards its smoothed poses.

    Args:
        targets: (V, 29, 3) y-up metres; confidence: (V, 29) weighted; twist and
            twist_confidence: (V, 23) as observed (``twist_weight`` applied here); betas: (N,).
    """
    report("solve", 0, 2)
    t, c = torch.from_numpy(targets).float(), torch.from_numpy(confidence).float()
    phi = torch.from_numpy(twist).float()
    phi_c = torch.from_numpy(twist_confidence * options.twist_weight).float()
    shared = dict(betas=betas, body=body, device=options.device)
    result = solve_in_chunks(t, c, {"twist": phi, "twist_confidence": phi_c}, iterations=options.iterations, **shared)
    report("solve", 1, 2)
    reference = smoothed_rotations(result.rotations, fps, options) if options.smoothing > 0 else None
    return Prepared(t, c, phi, phi_c, result.rotations, reference, result.keypoints.numpy(), shared, 2)


def passes_with_twist_sides(targets: np.ndarray, confidence: np.ndarray, observed: TwistSides,
                            betas: torch.Tensor, offsets: torch.Tensor, options: SolveOptions, body: BodyModel,
                            fps: float, report: Progress) -> Prepared:
    """A keypoint-only seed and a pass with twists estimated from the seen sides; the last
    pass re-estimates them (which settles the wrists), pulled towards the smoothed poses.

    Args:
        targets: (V, 29, 3) y-up metres; confidence: (V, 29) weighted; observed: the
            sides for V frames; betas: (N,); offsets: (24, 3) the body's rest bone offsets.
    """
    report("solve", 0, 3)
    t, c = torch.from_numpy(targets).float(), torch.from_numpy(confidence).float()
    sides = torch.from_numpy(observed.sides).float()
    side_confidence = torch.from_numpy(observed.confidence).float() * options.twist_weight
    rest_sides = torch.from_numpy(observed.rest_sides).float()
    carriers = torch.from_numpy(observed.carriers)
    shared = dict(betas=betas, body=body, device=options.device)
    offsets_b = offsets.expand(len(t), -1, -1)

    def twists(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        twist, twist_confidence = estimate_twist(pose, offsets_b, sides, rest_sides, carriers, side_confidence)
        return torch.from_numpy(_despike(twist.numpy(), DESPIKE_FRAMES)), twist_confidence

    # The first two passes only seed the twist estimate: a couple of steps get them
    # close enough, and the last pass, warm-started, spends the full count.
    seeding = min(options.iterations, _SEED_ITERATIONS)
    pose = solve_in_chunks(t, c, {}, iterations=seeding, **shared).rotations
    report("solve", 1, 3)
    twist, twist_confidence = twists(pose)
    result = solve_in_chunks(t, c, {"twist": twist, "twist_confidence": twist_confidence, "init": pose},
                             iterations=seeding, **shared)
    report("solve", 2, 3)
    twist, twist_confidence = twists(result.rotations)
    reference = smoothed_rotations(result.rotations, fps, options) if options.smoothing > 0 else None
    return Prepared(t, c, twist, twist_confidence, result.rotations, reference, result.keypoints.numpy(), shared, 3)


def last_pass(prepared: Prepared, world: dict[str, torch.Tensor | None], world_settings: dict[str, Any],
              options: SolveOptions, report: Progress) -> Solved:
    """The last IK pass, in the camera's world (:mod:`.grounding`).

    Args:
        world: solve's frame-wise world arguments (placement, pixels, foot locks), (V, ...);
        world_settings: its other world arguments (camera, weights, floor).
    """
    p = prepared
    result = solve_in_chunks(p.targets, p.confidence,
                             {"twist": p.twist, "twist_confidence": p.twist_confidence, "init": p.init,
                              "reference": p.reference, **world},
                             reference_weight=options.reference_weight, iterations=options.iterations,
                             **p.shared, **world_settings)
    report("solve", p.stages, p.stages)
    return Solved(result.rotations.numpy(), result.translation.numpy(), result.residual.numpy(),
                  result.keypoints.numpy(), p.twist.numpy(), p.twist_confidence.numpy())


def solve_in_chunks(targets: torch.Tensor, confidence: torch.Tensor,
                    per_frame: dict[str, torch.Tensor | None], **shared: Any) -> IKResult:
    """One IK pass over a clip, :func:`~.ik.solve` on _CHUNK frames at a time with the
    pass tolerance, as one result for all frames.

    Args:
        targets: (T, 29, 3); confidence: (T, 29); per_frame: solve's other frame-wise
            arguments, (T, ...) tensors (or None); shared: solve's arguments for every chunk.
    """
    results = []
    for start in range(0, len(targets), _CHUNK):
        frames = slice(start, start + _CHUNK)
        chunk = {name: None if value is None else value[frames] for name, value in per_frame.items()}
        results.append(solve(targets[frames], confidence[frames], **chunk, tolerance=PASS_TOLERANCE, **shared))
    return IKResult(*(torch.cat([getattr(result, field.name) for result in results])
                      for field in dataclasses.fields(IKResult)))


def _despike(angles: np.ndarray, window: int) -> np.ndarray:
    """Running median over time of (T, 23) angles, unwrapped first; -> (T, 23) wrapped.

    A twist seen from a hand or face that flips for a frame or two (an edge-on palm, an
    occluded ear) would drag the bone round with it; a median drops such spikes and
    keeps real turns, which last longer than half the window.
    """
    median = running_median(np.unwrap(angles.astype(np.float64), axis=0), window)
    return np.arctan2(np.sin(median), np.cos(median)).astype(np.float32)


def smoothed_rotations(rotations: torch.Tensor, fps: float, options: SolveOptions) -> torch.Tensor:
    """(T, 24, 3, 3) rotations filtered through continuous quaternions -> (T, 24, 3, 3).

    Spikes go first (:func:`.filtering.smoothed_quaternions`): a joint that flips for a
    frame or two (a nearly straight arm whose bend, and so whose twist, the keypoints
    barely show) would otherwise pull the frames around it towards the flip through the
    temporal term. On the Sports2D sample this lowered the 99th percentile of the
    frame-to-frame joint turns from 53 to 42 degrees, with the mean residual 0.15 mm higher.
    """
    quat = roma.rotmat_to_unitquat(rotations).numpy().astype(np.float64)
    smooth = smoothed_quaternions(quat, fps, options.filter_params(), DESPIKE_FRAMES)
    return roma.unitquat_to_rotmat(torch.from_numpy(smooth).float())

"""A clip's regressor keypoints to SMPL motion: clean-up, shape, IK, twist, root motion, floor.

This is everything after the network, so that ``refine`` can redo it from a motion
file's stored keypoints without the video or the regressor. Steps, in order:

1. left/right swaps undone, body part by body part (BlazePose swaps sides in back
   views, and often the legs alone for a few frames), then legs and face checked
   against the shoulders frame by frame; short dropouts
   interpolated, long ones held and reported;
2. one-euro filtering (forward and backward: no lag) of the metric keypoints;
3. IK targets and twist observations from the landmarks (:mod:`.blazepose_targets`);
   one body shape for the clip from its median bone lengths;
4. IK, batched over frames: keypoints alone, then with the twists estimated from that
   pose, twice (the second round settles the wrists), the last time also pulled
   towards the temporally smoothed previous solution (warm start and temporal term);
5. root translation in the camera frame by fitting the metric keypoints to their
   pixels, smoothed; the floor from the resting feet, and the scene turned so that
   the floor is y = 0 (the motion file's world frame).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import roma
import torch

from . import skeleton
from .blazepose_targets import (
    LANDMARK_NAMES, LEFT_RIGHT_GROUPS, blazepose_to_targets, blazepose_twist_observations, group_weights,
    swapped_against_torso, to_world_axes,
)
from .body import BodyModel
from .camera import Camera, fit_translation
from .ground import fit_ground
from .ik import fit_shape, solve
from .ik.solver import IKResult, default_body
from .ik.twist_estimate import estimate_twist
from .kinematics import rest_offsets
from .temporal import (
    OneEuroParams, fill_gaps, fix_left_right_swaps, gap_runs, one_euro_forward_backward, quaternion_continuity,
    swap_pairs,
)
from .tree import SMPL_TREE

Progress = Callable[[str, int, int], None]

# Frames solved in one batch: large enough to amortise Python overhead, small enough
# that a ten-minute clip never holds all its normal equations at once.
_CHUNK = 4096
_SEED_ITERATIONS = 2
#: A pass stops early once a step lowers the summed objective of its batch (up to _CHUNK
#: frames) by less than this fraction: warm-started passes settle in two or three steps
#: (the sample's mean residual and largest frame-to-frame turn came out the same as with
#: every step taken).
PASS_TOLERANCE = 1e-2
# Frames in the running median that removes spikes from observed twist (about 0.23 s at 30 fps).
_DESPIKE_FRAMES = 7
# Landmarks that touch the floor when a foot rests.
_FOOT_LANDMARKS = [LANDMARK_NAMES.index(name) for name in (
    "left_heel", "right_heel", "left_foot_index", "right_foot_index")]


class TrackError(ValueError):
    """The keypoints cannot give a motion (no person anywhere, bad settings)."""


@dataclass(frozen=True)
class SolveOptions:
    """Everything after the regressor that the user can tune (the Refine panel's settings).

    Attributes:
        iterations: Gauss-Newton steps per IK pass.
        smoothing: temporal smoothing strength, 0 (off) to about 3; scales both the
            keypoint filter's cutoff and the IK's temporal term.
        beta: the one-euro filter's speed coefficient (higher: less lag in fast moves).
        torso, arms, legs, head: keypoint group weights.
        twist_weight: multiplies the confidence of the twists seen in hands, feet, head.
        max_gap_s: dropouts up to this long are interpolated; longer ones are held.
        fov_deg: the camera's horizontal field of view.
        level_floor: turn the scene so that the floor found under the feet is y = 0.
        device: "auto", "cpu", "cuda" or "cuda:N".
    """

    iterations: int = 5
    smoothing: float = 1.0
    beta: float = 0.5
    torso: float = 1.0
    arms: float = 1.0
    legs: float = 1.0
    head: float = 1.0
    twist_weight: float = 1.0
    max_gap_s: float = 0.5
    fov_deg: float = 60.0
    level_floor: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.iterations, int) or isinstance(self.iterations, bool) or not 0 <= self.iterations <= 100:
            raise TrackError(f"iterations must be an integer from 0 to 100, got {self.iterations!r}")
        for name in ("smoothing", "beta", "twist_weight", "max_gap_s"):
            if not getattr(self, name) >= 0:
                raise TrackError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        try:
            group_weights(self.torso, self.arms, self.legs, self.head)
        except ValueError as error:
            raise TrackError(str(error)) from None

    def filter_params(self) -> OneEuroParams | None:
        """Keypoint filter: smoothing 1 cuts still poses at 1.5 Hz; stronger is lower."""
        return None if self.smoothing == 0 else OneEuroParams(min_cutoff=1.5 / self.smoothing, beta=self.beta)

    @property
    def reference_weight(self) -> float:
        """m^2 of keypoint error worth a rad^2 of rotation away from the smoothed pose."""
        return 2e-3 * self.smoothing


@dataclass(frozen=True)
class Keypoints:
    """A clip's regressor output, as stored in a motion file.

    Attributes:
        names: (R,) keypoint names; keypoints: (T, R, 3) metric, the regressor's axes;
        confidence: (T, R); image: (T, R, 2) pixels; detected: (T,) a person was found.
        frame_indices: (T,) source frame numbers; fps: of these frames.
        image_size: (width, height) of the video in pixels.
        twist, twist_confidence: (T, 23) and betas: (10,), where the regressor gives
            them (HybrIK's network), else None.
    """

    names: tuple[str, ...]
    keypoints: np.ndarray
    confidence: np.ndarray
    image: np.ndarray
    detected: np.ndarray
    frame_indices: np.ndarray
    fps: float
    image_size: tuple[int, int]
    twist: np.ndarray | None = None
    twist_confidence: np.ndarray | None = None
    betas: np.ndarray | None = None


@dataclass(frozen=True)
class Solution:
    """The solved clip, in the motion file's world frame (y up, floor at y = 0 if found).

    Attributes:
        rotations: (T, 24, 4) local rotations, unit quaternions wxyz, continuous in time;
        translation: (T, 3); valid: (T,); residual_mm: (T,); betas: (N,);
        targets: (T, 29, 3) and target_confidence: (T, 29), the IK's inputs (world frame);
        twist, twist_confidence: (T, 23); keypoints: (T, 29, 3) solved, world frame;
        local_keypoints: (T, 29, 3) solved, about the hips in camera axes (before root
        motion and floor), and raw_targets: (T, 29, 3) the unfiltered targets in the same
        frame: the pair the benchmark's jitter compares;
        swapped: (T,) frames where some body part's sides were swapped back; held: (T,) frames in a
        dropout too long to interpolate; info: what the run found (JSON-able).
    """

    rotations: np.ndarray
    translation: np.ndarray
    valid: np.ndarray
    residual_mm: np.ndarray
    betas: np.ndarray
    targets: np.ndarray
    target_confidence: np.ndarray
    twist: np.ndarray
    twist_confidence: np.ndarray
    keypoints: np.ndarray
    local_keypoints: np.ndarray
    raw_targets: np.ndarray
    swapped: np.ndarray
    held: np.ndarray
    info: dict[str, Any]


def solve_keypoints(track: Keypoints, options: SolveOptions = SolveOptions(), body: BodyModel | None = None,
                    progress: Progress | None = None, shape: np.ndarray | None = None) -> Solution:
    """Solves a clip's SMPL motion from its BlazePose keypoints (see the module docstring).

    HybrIK's 29 keypoints (the paper's regressor, with twist and shape) take their own
    path, :func:`.hybrik_targets.solve_hybrik_keypoints`.

    Args:
        shape: (N,) betas to keep (refine keeps the clip's body: other IK settings must
            not change the rig's skeleton); None fits them to the keypoints.
    Raises:
        TrackError: no frame with a person, keypoints neither BlazePose's nor HybrIK's, bad options.
    """
    body = body if body is not None else default_body()
    if tuple(track.names) == skeleton.KEYPOINT_NAMES:
        from .hybrik_targets import solve_hybrik_keypoints  # here: it imports this module

        return solve_hybrik_keypoints(track, options, body, progress, shape=shape)
    if tuple(track.names) != LANDMARK_NAMES:
        raise TrackError(f"expected BlazePose's {len(LANDMARK_NAMES)} landmarks, got {len(track.names)} "
                         f"keypoints ({', '.join(track.names[:3])}, ...)")
    if not track.detected.any():
        raise TrackError("no person was found in any frame")
    report = progress or (lambda stage, done, total: None)
    frames = len(track.detected)

    # 1. Swaps, then dropouts.
    world = to_world_axes(track.keypoints.astype(np.float64))
    confidence, image = track.confidence.astype(np.float64), track.image.astype(np.float64)
    net = {}  # per body part: frames whose labels end up exchanged
    for part, pairs in LEFT_RIGHT_GROUPS.items():
        world, confidence, net[part] = fix_left_right_swaps(world, confidence, pairs, valid=track.detected)
        image = swap_pairs(image, pairs, net[part])
    for part in ("legs", "face"):
        against = swapped_against_torso(world, part) & track.detected
        world, confidence, image = (swap_pairs(a, LEFT_RIGHT_GROUPS[part], against) for a in (world, confidence, image))
        net[part] ^= against
    swapped = np.logical_or.reduce(list(net.values()))
    max_gap = int(round(options.max_gap_s * track.fps))
    world, filled, held = fill_gaps(world, track.detected, max_gap)
    confidence, _, _ = fill_gaps(confidence, track.detected, max_gap)
    image, _, _ = fill_gaps(image, track.detected, max_gap)
    valid = track.detected | filled
    raw_world = world

    # 2. Filtering.
    params = options.filter_params()
    if params is not None:
        world = one_euro_forward_backward(world, track.fps, params, valid)

    # 3. Targets, shape, twist observations.
    mean_rest = body.rest_keypoints(torch.zeros(1, body.num_betas))[0].numpy()
    targets, target_confidence = blazepose_to_targets(world[valid], confidence[valid], mean_rest)
    betas = (fit_shape(targets, target_confidence, body, device="cpu") if shape is None
             else torch.as_tensor(shape, dtype=torch.float32))
    rest = body.rest_keypoints(betas[None])[0].numpy()
    targets, target_confidence = blazepose_to_targets(world[valid], confidence[valid], rest)
    raw_targets, _ = blazepose_to_targets(raw_world[valid], confidence[valid], rest)
    weighted = target_confidence * group_weights(options.torso, options.arms, options.legs, options.head)
    if not (weighted > 0).any(axis=1).all():
        raise TrackError("the keypoint group weights leave frames with nothing to fit; raise a weight above 0")
    observations = blazepose_twist_observations(world[valid], confidence[valid])

    # 4. IK.
    report("solve", 0, 3)
    offsets = rest_offsets(body.rest_keypoints(betas[None]), SMPL_TREE)[0]
    solved = _solve_passes(targets, weighted, observations, betas, offsets, options, body, track.fps, report)
    rotations, ik_translation, residual, local_keypoints, twist, twist_confidence = solved

    # 5. Root motion and floor (from the filtered landmarks and their pixels).
    placed = place_in_scene(world[valid], image[valid], confidence[valid], world[valid][:, _FOOT_LANDMARKS],
                            rotations, ik_translation, local_keypoints, targets, rest[0], track.image_size,
                            track.fps, options)
    rotations, translation, keypoints, targets = placed.rotations, placed.translation, placed.keypoints, placed.targets
    info: dict[str, Any] = {"frames": frames, "detected": int(track.detected.sum()), "valid": int(valid.sum()),
                            "interpolated": int(filled.sum()), "held": int(held.sum()),
                            "swapped": int(swapped.sum()), "dropouts": [list(run) for run in gap_runs(valid)],
                            "floor": placed.floor}

    return Solution(
        rotations=valid_quaternions(rotations, valid), translation=spread_valid(translation, valid),
        valid=valid, residual_mm=spread_valid(residual * 1000.0, valid), betas=betas.numpy(),
        targets=spread_valid(targets, valid), target_confidence=spread_valid(target_confidence, valid),
        twist=spread_valid(twist, valid), twist_confidence=spread_valid(twist_confidence, valid),
        keypoints=spread_valid(keypoints, valid), local_keypoints=spread_valid(local_keypoints, valid),
        raw_targets=spread_valid(raw_targets, valid),
        swapped=swapped, held=held, info=info)


@dataclass(frozen=True)
class Placed:
    """A solved clip's valid frames in the motion file's world frame.

    Attributes:
        rotations: (V, 24, 3, 3), the root turned with the floor; translation: (V, 3);
        keypoints, targets: (V, 29, 3); floor: the floor found and levelled (JSON-able:
        its normal and height in the camera frame, contacts), or None.
    """

    rotations: np.ndarray
    translation: np.ndarray
    keypoints: np.ndarray
    targets: np.ndarray
    floor: dict[str, Any] | None


def place_in_scene(points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray, feet: np.ndarray,
                   rotations: np.ndarray, ik_translation: np.ndarray, local_keypoints: np.ndarray,
                   targets: np.ndarray, pelvis_rest: np.ndarray, image_size: tuple[int, int], fps: float,
                   options: SolveOptions) -> Placed:
    """Root motion from the pinhole fit of metric keypoints to their pixels, then the floor.

    Args:
        points: (V, R, 3) the regressor's metric keypoints (filtered, y-up, about the
            hips); pixels: (V, R, 2); confidence: (V, R); feet: (V, F, 3) foot points in
            the frame of ``points``.
        rotations: (V, 24, 3, 3), ik_translation: (V, 3), local_keypoints and targets:
            (V, 29, 3): the IK's solution and inputs about the hips; pelvis_rest: (3,).
    """
    camera = Camera(*image_size, fov_deg=options.fov_deg)
    offset = fit_translation(points, pixels, confidence, camera)
    lost = ~np.isfinite(offset).all(-1)
    if lost.any():  # too few confident pixels: carry the neighbours' placement
        offset = fill_gaps(offset, ~lost, max_gap=len(offset))[0]
    params = options.filter_params()
    if params is not None:
        # Depth from apparent size is the noisiest axis; smooth the placement like the pose.
        offset = one_euro_forward_backward(offset, fps, params)
    translation = ik_translation + offset
    keypoints = local_keypoints + offset[:, None]
    targets = targets + offset[:, None]
    ground = fit_ground(feet + offset[:, None], np.ones(len(feet), dtype=bool), fps)
    if ground is None or not options.level_floor:
        return Placed(rotations, translation, keypoints, targets, None)
    turn, shift = ground.leveling()
    rotations = rotations.copy()
    rotations[:, 0] = turn @ rotations[:, 0]
    translation = (translation + pelvis_rest) @ turn.T + shift - pelvis_rest
    return Placed(rotations, translation, keypoints @ turn.T + shift, targets @ turn.T + shift,
                  {"normal_camera": ground.normal.tolist(), "height_camera": ground.height, "contacts": ground.contacts})


def _solve_passes(targets: np.ndarray, confidence: np.ndarray, observations, betas: torch.Tensor,
                  offsets: torch.Tensor, options: SolveOptions, body: BodyModel, fps: float,
                  report: Progress) -> tuple[np.ndarray, ...]:
    """Three IK passes over all frames (see the module docstring, step 4).

    Returns rotations (T, 24, 3, 3), translation (T, 3), residual (T,) m, the solved
    keypoints (T, 29, 3), twist and its confidence (T, 23), as numpy.
    """
    t, c = torch.from_numpy(targets).float(), torch.from_numpy(confidence).float()
    sides = torch.from_numpy(observations.sides).float()
    side_confidence = torch.from_numpy(observations.confidence).float() * options.twist_weight
    rest_sides = torch.from_numpy(observations.rest_sides).float()
    carriers = torch.from_numpy(observations.carriers)
    shared = dict(betas=betas, body=body, device=options.device)
    # The first two passes only seed the twist estimate: a couple of steps get them
    # close enough, and the last pass, warm-started, spends the full count.
    seeding = min(options.iterations, _SEED_ITERATIONS)
    pose = solve_in_chunks(t, c, {}, iterations=seeding, **shared).rotations
    report("solve", 1, 3)
    offsets_b = offsets.expand(len(t), -1, -1)
    reference = None
    for round_ in range(2):
        twist, twist_confidence = estimate_twist(pose, offsets_b, sides, rest_sides, carriers, side_confidence)
        twist = torch.from_numpy(_despike(twist.numpy(), _DESPIKE_FRAMES))
        if round_ == 1 and options.smoothing > 0:
            reference = smoothed_rotations(pose, fps, options)
        result = solve_in_chunks(
            t, c, {"twist": twist, "twist_confidence": twist_confidence, "init": pose, "reference": reference},
            reference_weight=options.reference_weight, iterations=seeding if round_ == 0 else options.iterations,
            **shared)
        pose = result.rotations
        report("solve", 2 + round_, 3)
    return (pose.numpy(), result.translation.numpy(), result.residual.numpy(), result.keypoints.numpy(),
            twist.numpy(), twist_confidence.numpy())


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
    if len(angles) < window:
        return angles
    unwrapped = np.unwrap(angles.astype(np.float64), axis=0)
    half = window // 2
    padded = np.concatenate([unwrapped[:1].repeat(half, 0), unwrapped, unwrapped[-1:].repeat(half, 0)])
    median = np.median(np.lib.stride_tricks.sliding_window_view(padded, window, axis=0), axis=-1)
    return np.arctan2(np.sin(median), np.cos(median)).astype(np.float32)


def smoothed_rotations(rotations: torch.Tensor, fps: float, options: SolveOptions) -> torch.Tensor:
    """(T, 24, 3, 3) rotations filtered through continuous quaternions -> (T, 24, 3, 3)."""
    quat = quaternion_continuity(roma.rotmat_to_unitquat(rotations).numpy().astype(np.float64))
    smooth = one_euro_forward_backward(quat, fps, options.filter_params())
    return roma.unitquat_to_rotmat(torch.nn.functional.normalize(torch.from_numpy(smooth).float(), dim=-1))


def valid_quaternions(rotations: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid frames' rotations as continuous wxyz quaternions; identity elsewhere -> (T, 24, 4)."""
    xyzw = roma.rotmat_to_unitquat(torch.from_numpy(rotations).double()).numpy()
    wxyz = quaternion_continuity(np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1))
    out = np.zeros((len(valid), skeleton.NUM_JOINTS, 4))
    out[..., 0] = 1.0
    out[valid] = wxyz
    return out.astype(np.float32)


def spread_valid(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Rows for the valid frames -> all frames, zeros where invalid."""
    out = np.zeros((len(valid), *values.shape[1:]), dtype=np.float32)
    out[valid] = values
    return out

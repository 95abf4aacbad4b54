"""HybrIK's 29 keypoints, twist and shape to SMPL motion (the track solver's path for the paper's regressor).

The network already gives what the IK takes: SMPL's 24 joints and five leaf points, a
twist angle for each of joints 1..23, and SMPL shape. So, unlike BlazePose's landmarks,
nothing is mapped or estimated; the steps are:

1. axes: HybrIK's camera axes (x right, y down, z away, metres about the pelvis) turned
   into the motion file's y-up frame by :func:`~.blazepose_targets.to_world_axes` (the
   same axes as BlazePose's, so the same 180 degree turn about x; a rotation, so the
   local rotations and twists are unchanged by it);
2. short dropouts interpolated, long ones held and reported (keypoints, pixels,
   confidence, and twist through its cosine and sine so that it never interpolates the
   long way round); no left/right repair: that answers BlazePose's back-view swaps;
3. one-euro filtering, forward and backward, of the keypoints and of the unwrapped twist;
4. shape: the network's betas for the clip (the backend's median over each batch of
   frames, averaged over batches) where the body model has
   SMPL's topology and so SMPL's shape space; on any other body (the bundled default
   has its own shape space) SMPL coefficients mean nothing, and the shape is fitted to
   the keypoints' bone lengths as for BlazePose;
5. IK with the network's twists (confidence times ``twist_weight``), then again
   warm-started and pulled towards the temporally smoothed first solution;
6. root translation from the metric keypoints and their pixels, the floor from the
   resting feet, as for BlazePose.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import skeleton
from .blazepose_targets import group_weights, to_world_axes
from .body import BodyModel
from .body.model_file import SMPL_NUM_VERTICES
from .ik import fit_shape
from .temporal import fill_gaps, gap_runs, one_euro_forward_backward
from .track_solver import (
    Keypoints, Progress, Solution, SolveOptions, TrackError, valid_quaternions, smoothed_rotations, spread_valid,
    place_in_scene, solve_in_chunks,
)

# Keypoints that touch the floor when a foot rests.
_FEET = [skeleton.KEYPOINT_NAMES.index(name) for name in (
    "L_Ankle", "R_Ankle", "L_Foot", "R_Foot", "L_BigToe", "R_BigToe")]


def has_smpl_shape_space(body: BodyModel) -> bool:
    """Whether SMPL's betas describe this body: it has SMPL's mesh (6890 vertices)."""
    return len(body.template_vertices) == SMPL_NUM_VERTICES


def solve_hybrik_keypoints(track: Keypoints, options: SolveOptions, body: BodyModel,
                           progress: Progress | None = None, shape: np.ndarray | None = None) -> Solution:
    """Solves a clip's SMPL motion from HybrIK's keypoints, twist and shape (module docstring).

    Args:
        track: keypoints named :data:`~.skeleton.KEYPOINT_NAMES`, in HybrIK's axes, with
            ``twist`` and ``twist_confidence`` (T, 23) and ``betas`` (10,) where the
            regressor gave them (without twist the IK runs on keypoints alone).
        shape: (N,) betas to keep (``refine`` keeps the clip's body), else chosen as in step 4.
    Raises:
        TrackError: no frame with a person, or weights that leave a frame with nothing to fit.
    """
    if tuple(track.names) != skeleton.KEYPOINT_NAMES:
        raise TrackError(f"expected HybrIK's {skeleton.NUM_KEYPOINTS} keypoints, got {len(track.names)}")
    if not track.detected.any():
        raise TrackError("no person was found in any frame")
    report = progress or (lambda stage, done, total: None)
    frames, detected = len(track.detected), track.detected

    # 1-2. Axes, dropouts.
    twist, twist_confidence = _twist_of(track)
    max_gap = int(round(options.max_gap_s * track.fps))
    world, filled, held = fill_gaps(to_world_axes(track.keypoints.astype(np.float64)), detected, max_gap)
    confidence, image, twist_confidence = (fill_gaps(a, detected, max_gap)[0] for a in (
        track.confidence, track.image, twist_confidence))
    turn = fill_gaps(np.stack([np.cos(twist), np.sin(twist)], axis=-1), detected, max_gap)[0]
    twist = np.arctan2(turn[..., 1], turn[..., 0])
    valid = detected | filled
    raw_world = world

    # 3. Filtering.
    params = options.filter_params()
    if params is not None:
        world = one_euro_forward_backward(world, track.fps, params, valid)
        unwrapped = np.unwrap(twist, axis=0)
        twist = np.angle(np.exp(1j * one_euro_forward_backward(unwrapped, track.fps, params, valid)))

    # 4. Targets and shape.
    targets, target_confidence = world[valid].astype(np.float32), confidence[valid].astype(np.float32)
    weighted = target_confidence * group_weights(options.torso, options.arms, options.legs, options.head)
    if not (weighted > 0).any(axis=1).all():
        raise TrackError("the keypoint group weights and confidences leave frames with nothing to fit; "
                         "raise a weight above 0")
    if shape is not None:
        betas, shape_source = torch.as_tensor(shape, dtype=torch.float32), "kept"
    elif track.betas is not None and has_smpl_shape_space(body):
        betas, shape_source = torch.as_tensor(track.betas[: body.num_betas], dtype=torch.float32), "regressor"
    else:
        betas, shape_source = fit_shape(targets, target_confidence, body, device="cpu"), "bone lengths"

    # 5. IK.
    report("solve", 0, 2)
    rotations, ik_translation, residual, local_keypoints = _solve_passes(
        targets, weighted, twist[valid], twist_confidence[valid] * options.twist_weight, betas, options, body,
        track.fps, report)

    # 6. Root motion and floor.
    pelvis_rest = body.rest_keypoints(betas[None])[0, 0].numpy()
    placed = place_in_scene(world[valid], image[valid], confidence[valid], world[valid][:, _FEET], rotations,
                            ik_translation, local_keypoints, targets, pelvis_rest, track.image_size, track.fps,
                            options)
    info: dict[str, Any] = {"frames": frames, "detected": int(detected.sum()), "valid": int(valid.sum()),
                            "interpolated": int(filled.sum()), "held": int(held.sum()), "swapped": 0,
                            "dropouts": [list(run) for run in gap_runs(valid)], "floor": placed.floor,
                            "keypoints": "hybrik", "shape": shape_source}

    full_twist = np.zeros((frames, skeleton.NUM_TWISTS), dtype=np.float32)
    full_twist[valid] = twist[valid]
    return Solution(
        rotations=valid_quaternions(placed.rotations, valid), translation=spread_valid(placed.translation, valid), valid=valid,
        residual_mm=spread_valid(residual * 1000.0, valid), betas=betas.numpy(),
        targets=spread_valid(placed.targets, valid), target_confidence=spread_valid(target_confidence, valid),
        twist=full_twist, twist_confidence=spread_valid(twist_confidence[valid], valid),
        keypoints=spread_valid(placed.keypoints, valid), local_keypoints=spread_valid(local_keypoints, valid),
        raw_targets=spread_valid(raw_world[valid], valid), swapped=np.zeros(frames, dtype=bool), held=held, info=info)


def _twist_of(track: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """(T, 23) twist and confidence from the track; zeros (unobserved) where it has none."""
    shape = (len(track.detected), skeleton.NUM_TWISTS)
    if track.twist is None:
        return np.zeros(shape), np.zeros(shape)
    confidence = np.ones(shape) if track.twist_confidence is None else track.twist_confidence
    return track.twist.astype(np.float64), np.clip(confidence.astype(np.float64), 0.0, None)


def _solve_passes(targets: np.ndarray, confidence: np.ndarray, twist: np.ndarray, twist_confidence: np.ndarray,
                  betas: torch.Tensor, options: SolveOptions, body: BodyModel, fps: float,
                  report: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """IK with the network's twists, then again towards the smoothed first pass (if smoothing).

    Args:
        targets: (T, 29, 3) y-up metres; confidence: (T, 29); twist, twist_confidence: (T, 23).
    Returns:
        rotations (T, 24, 3, 3), translation (T, 3), residual (T,) metres, keypoints (T, 29, 3).
    """
    t, c = torch.from_numpy(targets).float(), torch.from_numpy(confidence).float()
    phi, phi_c = torch.from_numpy(twist).float(), torch.from_numpy(twist_confidence).float()
    shared = dict(betas=betas, body=body, device=options.device, iterations=options.iterations)
    result = solve_in_chunks(t, c, {"twist": phi, "twist_confidence": phi_c}, **shared)
    report("solve", 1, 2)
    if options.smoothing > 0:
        reference = smoothed_rotations(result.rotations, fps, options)
        result = solve_in_chunks(t, c, {"twist": phi, "twist_confidence": phi_c, "init": result.rotations,
                                        "reference": reference}, reference_weight=options.reference_weight, **shared)
    report("solve", 2, 2)
    return result.rotations.numpy(), result.translation.numpy(), result.residual.numpy(), result.keypoints.numpy()

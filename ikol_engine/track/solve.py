"""A clip's observations to SMPL motion: everything after the network, the same for every regressor.

``refine`` redoes this from a motion file's stored observations without the video or the
regressor. Steps, in order:

0. detections that are no person (too small, unsure or brief: :mod:`.presence`) dropped;
1. clean-up (:mod:`.clip`): sides repaired, dropouts bridged, keypoints filtered;
2. the IK's targets from the keypoints (the regressor's
   :class:`~ikol_engine.observations.KeypointLayout`); one body shape for the clip:
   kept (refine), the regressor's where they are SMPL betas and the body is SMPL's,
   else fitted to the clip's median bone lengths;
3. IK, batched over frames (:mod:`.passes`): with the regressor's twist angles, or with
   twists estimated from the directions its keypoints show off the bones;
4. the camera, the person's place in it, the floor and the foot contacts
   (:mod:`.grounding`), and the last IK pass in the camera's frame with the keypoints'
   pixels, the resting feet held and the floor;
5. the scene turned so that the floor is y = 0 (:mod:`.placement`; the motion file's
   world frame).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import roma
import torch

from .. import skeleton
from ..body import BodyModel
from ..body.model_file import SMPL_NUM_VERTICES
from ..ik import fit_shape, shape_fit_report
from ..ik.solver import default_body
from ..observations import KeypointLayout, Observations
from ..skeleton import hands
from ..skeleton.groups import group_weights
from ..skeleton.kinematics import forward_kinematics, rest_offsets
from ..skeleton.tree import SMPL_TREE
from .cleanup import gap_runs
from .camera import Camera
from .clip import CleanClip, clean_clip
from .fingers import Fingers, solve_fingers
from .filtering import quaternion_continuity
from .options import Progress, SolveOptions, TrackError
from .grounding import ground_clip, grounding_terms
from .passes import Prepared, last_pass, passes_with_twist_angles, passes_with_twist_sides
from .placement import place_in_scene
from .presence import person_frames


#: m^2: how far a regressor's median distance between two joints may be from the
#: person's, (1 cm)^2, the prior weight of the clip's shape fit. ``fit_shape``'s own
#: default (1 mm)^2 is for exact keypoints such as mocap.
REGRESSOR_DISTANCE_VARIANCE = 1e-4


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
        dropout too long to interpolate; contacts: (T, 4) bool, the foot points at rest
        (:data:`~ikol_engine.ik.world_terms.FOOT_KEYPOINTS`); info: what the run found (JSON-able).
        fingers: both hands' finger joints (:mod:`.fingers`), or None where not solved.
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
    contacts: np.ndarray
    info: dict[str, Any]
    fingers: Fingers | None = None


def solve_observations(observed: Observations, layout: KeypointLayout, options: SolveOptions = SolveOptions(),
                       body: BodyModel | None = None, progress: Progress | None = None,
                       shape: np.ndarray | None = None, focal_px: float | None = None,
                       contacts: np.ndarray | None = None) -> Solution:
    """Solves a clip's SMPL motion from its regressor's observations (see the module docstring).

    Args:
        layout: how to read the observations' keypoints (the regressor's).
        shape: (N,) betas to keep (refine keeps the clip's body: other IK settings must
            not change the rig's skeleton); None chooses them as in step 2.
        focal_px: the clip's focal length estimated before, for options that give no
            camera (a refine keeps it); contacts: (T, 4) bool foot contacts to keep
            instead of detecting them.
    Raises:
        TrackError: keypoints that are not the layout's, no frame with a person, or
            weights that leave a frame with nothing to fit.
    """
    body = body if body is not None else default_body()
    if tuple(observed.names) != tuple(layout.names):
        raise TrackError(f"expected {layout.name}'s {len(layout.names)} keypoints, got {len(observed.names)} "
                         f"({', '.join(observed.names[:3])}, ...)")
    if not observed.detected.any():
        raise TrackError("no person was found in any frame")
    person = person_frames(observed)
    rejected = int(observed.detected.sum() - person.sum())
    if not person.any():
        raise TrackError(f"no person was found in any frame (the {rejected} detection(s) were too small, "
                         "too unsure or too brief to be one)")
    observed = dataclasses.replace(observed, detected=person)
    report = progress or (lambda stage, done, total: None)

    clip = clean_clip(observed, layout, options)
    valid = clip.valid
    points, confidence = clip.points[valid], clip.confidence[valid]
    betas, shape_source = _clip_shape(clip, observed, layout, body, shape)
    rest = body.rest_keypoints(betas[None])[0].numpy()
    targets, target_confidence = layout.targets(points, confidence, rest)
    # mm the body's rigid distances are longer than the clip's medians.
    shape_fit = {fit.name: round(fit.error_m * 1000.0, 1)
                 for fit in shape_fit_report(targets, target_confidence, betas, body)}
    raw_targets, _ = layout.targets(clip.raw_points[valid], confidence, rest)
    weighted = target_confidence * group_weights(options.torso, options.arms, options.legs, options.head)
    if not (weighted > 0).any(axis=1).all():
        raise TrackError("the keypoint group weights and confidences leave frames with nothing to fit; "
                         "raise a weight above 0")

    prepared = _solve(clip, layout, targets, weighted, betas, options, body, observed.fps, report)
    grounding = ground_clip(prepared.keypoints, points, clip.image[valid], confidence, layout, rest,
                            observed.image_size, observed.fps, options, focal_px,
                            None if contacts is None else np.asarray(contacts, dtype=bool)[valid])
    solved = last_pass(prepared, *grounding_terms(grounding, options), options, report)
    fingers = _fingers(observed, valid, solved.rotations, solved.keypoints, betas, body, grounding.camera, options)
    if fingers is not None:
        solved = dataclasses.replace(solved, rotations=fingers.body_rotations, keypoints=_keypoints(
            fingers.body_rotations, solved.translation, rest))
    placed = place_in_scene(solved.rotations, solved.translation, solved.keypoints,
                            targets + grounding.placement[:, None], grounding.ground, rest[0], options.level_floor)
    info: dict[str, Any] = {"frames": len(valid), "detected": int(person.sum()), "rejected": rejected,
                            "valid": int(valid.sum()),
                            "interpolated": int(clip.filled.sum()), "held": int(clip.held.sum()),
                            "swapped": int(clip.swapped.sum()), "dropouts": [list(run) for run in gap_runs(valid)],
                            "floor": placed.floor, "keypoints": layout.name, "shape": shape_source,
                            "shape_fit_mm": shape_fit, **grounding.info()}
    if fingers is not None:
        info["hands"] = fingers.info
    return Solution(
        rotations=valid_quaternions(placed.rotations, valid), translation=spread_valid(placed.translation, valid),
        valid=valid, residual_mm=spread_valid(solved.residual * 1000.0, valid), betas=betas.numpy(),
        targets=spread_valid(placed.targets, valid), target_confidence=spread_valid(target_confidence, valid),
        twist=spread_valid(solved.twist, valid), twist_confidence=spread_valid(solved.twist_confidence, valid),
        keypoints=spread_valid(placed.keypoints, valid),
        local_keypoints=spread_valid(solved.keypoints - grounding.placement[:, None], valid),
        raw_targets=spread_valid(raw_targets, valid), swapped=clip.swapped, held=clip.held,
        contacts=spread_valid(grounding.contacts, valid, bool), info=info, fingers=fingers)


def _keypoints(rotations: np.ndarray, translation: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(V, 29, 3) the keypoints of (V, 24, 3, 3) rotations at (V, 3) translations for (29, 3) rest keypoints."""
    rotations_t = torch.from_numpy(rotations).float()
    offsets = rest_offsets(torch.from_numpy(rest)[None], SMPL_TREE).expand(len(rotations), -1, -1)
    _, keypoints = forward_kinematics(rotations_t, offsets, torch.from_numpy(translation).float(), SMPL_TREE)
    return keypoints.numpy()


def _fingers(observed: Observations, valid: np.ndarray, rotations: np.ndarray, keypoints: np.ndarray,
             betas: torch.Tensor, body: BodyModel, camera: Camera, options: SolveOptions) -> Fingers | None:
    """Both hands' fingers on the body solved in the camera's frame ((V, 24, 3, 3) rotations,
    (V, 29, 3) keypoints), or None where not asked for or nothing to solve them from; the
    info says how far the solved hands reproject from their landmarks' pixels."""
    if not options.hands or observed.hand_landmarks is None or not body.has_hands:
        return None
    rest_hands = body.rest_hand_keypoints(betas[None])[0].numpy()
    fingers = solve_fingers(observed.hand_landmarks, observed.hand_confidence, rotations, keypoints, valid,
                            rest_hands, observed.fps, options)
    order = list(hands.MEDIAPIPE_TO_HAND)
    for side, name in enumerate(hands.SIDES):
        seen = fingers.seen[:, side]
        if seen.any():
            error = np.linalg.norm(camera.project(fingers.keypoints[seen, side])
                                   - observed.hand_pixels[seen, side][:, order], axis=-1)
            fingers.info[name]["pixel_error_median"] = round(float(np.median(error)), 2)
            fingers.info[name]["pixel_error_p95"] = round(float(np.percentile(error, 95)), 2)
    return fingers


def _clip_shape(clip: CleanClip, observed: Observations, layout: KeypointLayout, body: BodyModel,
                shape: np.ndarray | None) -> tuple[torch.Tensor, str]:
    """The clip's betas (N,) and where they came from: "kept", "regressor" or "bone lengths"."""
    if shape is not None:
        return torch.as_tensor(shape, dtype=torch.float32), "kept"
    # SMPL coefficients describe only SMPL's own mesh; the bundled body has its own shape space.
    if layout.smpl_betas and observed.betas is not None and len(body.template_vertices) == SMPL_NUM_VERTICES:
        return torch.as_tensor(observed.betas[: body.num_betas], dtype=torch.float32), "regressor"
    mean_rest = body.rest_keypoints(torch.zeros(1, body.num_betas))[0].numpy()
    targets, confidence = layout.targets(clip.points[clip.valid], clip.confidence[clip.valid], mean_rest)
    betas = fit_shape(targets, confidence, body, regularization=REGRESSOR_DISTANCE_VARIANCE, device="cpu")
    return betas, "bone lengths"


def _solve(clip: CleanClip, layout: KeypointLayout, targets: np.ndarray, weighted: np.ndarray, betas: torch.Tensor,
           options: SolveOptions, body: BodyModel, fps: float, report: Progress) -> Prepared:
    """The IK passes before the last over the valid frames: with twist angles, or with the
    twists the layout's sides show."""
    valid = clip.valid
    sides = layout.twist_sides(clip.points[valid], clip.confidence[valid])
    if sides is None:
        return passes_with_twist_angles(targets, weighted, clip.twist[valid], clip.twist_confidence[valid], betas,
                                        options, body, fps, report)
    offsets = rest_offsets(body.rest_keypoints(betas[None]), SMPL_TREE)[0]
    return passes_with_twist_sides(targets, weighted, sides, betas, offsets, options, body, fps, report)


def valid_quaternions(rotations: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid frames' rotations as continuous wxyz quaternions; identity elsewhere -> (T, 24, 4)."""
    xyzw = roma.rotmat_to_unitquat(torch.from_numpy(rotations).double()).numpy()
    wxyz = quaternion_continuity(np.concatenate([xyzw[..., 3:], xyzw[..., :3]], axis=-1))
    out = np.zeros((len(valid), skeleton.NUM_JOINTS, 4))
    out[..., 0] = 1.0
    out[valid] = wxyz
    return out.astype(np.float32)


def spread_valid(values: np.ndarray, valid: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Rows for the valid frames -> all frames, zeros (False) where invalid."""
    out = np.zeros((len(valid), *values.shape[1:]), dtype=dtype)
    out[valid] = values
    return out

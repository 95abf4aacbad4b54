"""The fingers: each hand's landmarks solved onto SMPL-H's finger joints, and the wrists turned to the hands.

A hand's landmarks (metric, about the hand's centre, camera axes) are turned into the
solve's frame, given the chirality of the body's hand on that side (one image fits a
hand and its mirror image; MediaPipe's depth takes either), scaled to the body's hand
and hung on the body's solved wrist; short gaps are bridged and the landmarks filtered
as the body's keypoints are. Where a hand is seen, its palm says how the wrist is
turned far better than the body's few hand points do: the body's wrist is turned to it,
the part about the forearm given to the elbow (the forearm's twist, which the body
alone guesses), smoothly, easing back to the body's own over :data:`EASE_S` where the
hand is lost. The finger IK (:func:`~ikol_engine.ik.hand_solver.solve_hand`) then fits
the 15 finger joints with the wrist held there, so a finger's rotation is relative to
the wrist the rig has. Where a hand is not seen for longer than a gap the body bridges,
its fingers ease back to rest over the same time instead of keeping a guess.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import roma
import torch

from .. import skeleton
from ..ik.hand_solver import palm_fit, solve_hand
from ..ik.rotations import twist_angle
from ..observations import to_world_axes
from ..skeleton import hands
from ..skeleton.kinematics import forward_kinematics
from ..skeleton.tree import SMPL_TREE
from .cleanup import fill_gaps, gap_runs
from .filtering import DESPIKE_FRAMES, one_euro_forward_backward, quaternion_continuity, smoothed_quaternions
from .options import SolveOptions

#: The finger IK stops once a step gains less than this share of its objective.
FINGER_TOLERANCE = 1e-3
#: Steps of each finger pass (both from the closed form).
FINGER_ITERATIONS = 10
#: m^2 per rad^2 a finger joint is pulled towards its smoothed rotation, per unit of smoothing,
#: in a second pass from the closed form again: started from the first pass's result it
#: stays in that pass's jerkier minimum (on the sample, 99% of frame-to-frame finger
#: turns under 21 degrees against 10).
FINGER_REFERENCE_WEIGHT = 3e-3
#: Seconds over which unseen fingers return to rest, and a wrist to the body's own turn, at a long gap's ends.
EASE_S = 0.25
_PALM = (0, hands.HAND_KEYPOINT_NAMES.index("middle1"))


@dataclass(frozen=True)
class Fingers:
    """Both hands' finger joints over a clip.

    Attributes:
        rotations: (T, 30, 4) local rotations of SMPL-H's finger joints, unit wxyz, left
            hand then right (identity where a hand is at rest).
        seen: (T, 2) each hand's landmarks were found and solved in the frame.
        residual_mm: (T, 2) mean distance from the solved hand to its landmarks (0 unseen).
        keypoints: (T, 2, 21, 3) the solved hands' keypoints in the solve's camera frame
            (zeros where not solved), for reprojection.
        info: per hand, frames seen, bridged and eased, and how far (median, degrees)
            the palm its landmarks show was turned from the body's wrist before and after
            the wrist was turned to it (JSON-able).
        body_rotations: (V, 24, 3, 3) the body's local rotations in its valid frames with
            each elbow's twist and wrist turned to the hand where it is seen.
    """

    rotations: np.ndarray
    seen: np.ndarray
    residual_mm: np.ndarray
    keypoints: np.ndarray
    info: dict[str, Any]
    body_rotations: np.ndarray


def solve_fingers(landmarks: np.ndarray, confidence: np.ndarray, body_rotations: np.ndarray,
                  body_keypoints: np.ndarray, valid: np.ndarray, rest_hands: np.ndarray, fps: float,
                  options: SolveOptions) -> Fingers:
    """Solves both hands' fingers, and turns the body's wrists to the hands.

    Args:
        landmarks: (T, 2, 21, 3) each hand's MediaPipe world landmarks (MediaPipe's order),
            metres about the hand's centre, camera axes (y down); confidence: (T, 2, 21).
        body_rotations: (V, 24, 3, 3) the body's local rotations in the valid frames, the
            solve's camera frame; body_keypoints: (V, 29, 3) its keypoints there.
        valid: (T,) the body's valid frames.
        rest_hands: (2, 21, 3) the body's rest hands (BodyModel.rest_hand_keypoints).
    """
    count = len(valid)
    rotations = np.zeros((count, 2 * hands.NUM_FINGER_JOINTS, 4))
    rotations[..., 0] = 1.0
    seen = np.zeros((count, 2), bool)
    residual = np.zeros((count, 2), np.float32)
    keypoints = np.zeros((count, 2, hands.NUM_HAND_KEYPOINTS, 3), np.float32)
    body_rotations = body_rotations.astype(np.float64)
    ease = int(round(EASE_S * fps))
    on_body = np.cumsum(valid) - 1  # row of each valid frame among the body's
    info: dict[str, Any] = {}
    for side, name in enumerate(hands.SIDES):
        found = (confidence[:, side].max(axis=-1) > 0) & valid
        info[name] = {"seen": int(found.sum()), "bridged": 0, "eased": 0}
        if not found.any():
            continue
        points, weights, solved = _hand_targets(landmarks[:, side], confidence[:, side], found, rest_hands[side],
                                                fps, options)
        rows = on_body[solved]
        targets = points[solved] + body_keypoints[rows, hands.WRISTS[side]][:, None]
        globals_ = _globals(body_rotations)
        body_wrists = globals_[:, hands.WRISTS[side]]
        # The palm's orientation, where the hand is seen: the body's wrist turned to it,
        # smoothly, and eased back to the body's own beyond.
        shown, _ = palm_fit(torch.from_numpy(targets), torch.from_numpy(rest_hands[side]).double())
        shown = shown.numpy()
        turn = _smooth_turns(shown @ body_wrists[rows].transpose(0, 2, 1), solved, fps, options, ease)[valid]
        body_rotations = _turn_wrist(body_rotations, globals_, body_keypoints, side, turn)
        wrists = turn @ body_wrists
        # float32, as the body's IK: millimetres need no more, and it is twice as fast.
        solve = {"targets": torch.from_numpy(targets).float(), "confidence": torch.from_numpy(weights[solved]).float(),
                 "rest": torch.from_numpy(rest_hands[side]).float(), "side": side,
                 "wrist_rotation": torch.from_numpy(wrists[rows]).float(), "tolerance": FINGER_TOLERANCE,
                 "iterations": FINGER_ITERATIONS}
        hand = solve_hand(**solve)
        if options.smoothing > 0:
            # Fingers a few dozen pixels long jitter from frame to frame: a second pass is
            # pulled towards the first's, smoothed (as the body's temporal term does).
            smooth = _smoothed_runs(hand.rotations[:, 1:].double().numpy(), solved, fps, options)
            hand = solve_hand(**solve, reference=torch.from_numpy(smooth).float(),
                              reference_weight=FINGER_REFERENCE_WEIGHT * options.smoothing)
        quat = roma.rotmat_to_unitquat(hand.rotations[:, 1:]).numpy()
        columns = slice(side * hands.NUM_FINGER_JOINTS, (side + 1) * hands.NUM_FINGER_JOINTS)
        rotations[solved, columns] = np.concatenate([quat[..., 3:], quat[..., :3]], axis=-1)
        rotations[:, columns], eased = _ease_to_rest(rotations[:, columns], solved, ease)
        seen[:, side] = found
        residual[found, side] = hand.residual.numpy()[found[solved]] * 1000.0
        keypoints[solved, side] = hand.keypoints.numpy()
        seen_rows = found[solved]
        info[name].update(bridged=int((solved & ~found).sum()), eased=int(eased.sum()),
                          wrist_turn_deg_median=_median_turn(shown, body_wrists[rows], seen_rows),
                          wrist_left_deg_median=_median_turn(shown, wrists[rows], seen_rows))
    return Fingers(quaternion_continuity(rotations).astype(np.float32), seen, residual, keypoints, info,
                   body_rotations)


def _smoothed_runs(rotations: np.ndarray, solved: np.ndarray, fps: float, options: SolveOptions) -> np.ndarray:
    """(F, J, 3, 3) rotations at the F ``solved`` (T,) frames smoothed in time, each run of
    consecutive frames on its own (a long gap separates unrelated poses)."""
    xyzw = roma.rotmat_to_unitquat(torch.from_numpy(rotations)).numpy()
    row = np.cumsum(solved) - 1  # each frame's row among the solved ones
    for start, end in gap_runs(~solved):  # the runs of solved frames
        run = slice(row[start], row[end - 1] + 1)
        xyzw[run] = smoothed_quaternions(xyzw[run], fps, options.filter_params(), DESPIKE_FRAMES)
    return roma.unitquat_to_rotmat(torch.from_numpy(xyzw)).numpy()


def _smooth_turns(turns: np.ndarray, solved: np.ndarray, fps: float, options: SolveOptions,
                  ease: int) -> np.ndarray:
    """(T, 3, 3) world-frame turns: ``turns`` (F, 3, 3) at the F ``solved`` (T,) frames,
    filtered as keypoints are, eased to none over ``ease`` frames beyond them."""
    quat = np.zeros((len(solved), 1, 4))
    quat[..., 0] = 1.0
    xyzw = roma.rotmat_to_unitquat(torch.from_numpy(turns)).numpy()
    quat[solved, 0] = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=-1)
    quat[solved] = quaternion_continuity(quat[solved])
    params = options.filter_params()
    if params is not None:
        quat = one_euro_forward_backward(quat, fps, params, solved)
        quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    quat, _ = _ease_to_rest(quat, solved, ease)
    return roma.unitquat_to_rotmat(torch.from_numpy(quat[:, 0][:, [1, 2, 3, 0]])).numpy()


def _turn_wrist(rotations: np.ndarray, globals_: np.ndarray, keypoints: np.ndarray, side: int,
                turn: np.ndarray) -> np.ndarray:
    """The body with one wrist's global rotation turned by ``turn``: the part about the
    forearm (its twist) given to the elbow, where a forearm turns, the rest to the wrist.

    Args:
        rotations: (V, 24, 3, 3) local and globals_: (V, 24, 3, 3) global rotations;
        keypoints: (V, 29, 3); turn: (V, 3, 3) world frame.
    Returns:
        (V, 24, 3, 3) local rotations, a new array; the wrist's global one is ``turn``
        times what it was.
    """
    elbow, wrist = skeleton.PARENTS[hands.WRISTS[side]], hands.WRISTS[side]
    axis = (keypoints[:, wrist] - keypoints[:, elbow]).astype(np.float64)
    axis = torch.from_numpy(axis / np.linalg.norm(axis, axis=-1, keepdims=True))
    turn_t = torch.from_numpy(turn)
    angle, _ = twist_angle(roma.rotmat_to_unitquat(turn_t), axis)
    twist = roma.rotvec_to_rotmat(axis * angle[:, None]).numpy()
    out = rotations.copy()
    elbow_global = twist @ globals_[:, elbow]
    out[:, elbow] = globals_[:, skeleton.PARENTS[elbow]].transpose(0, 2, 1) @ elbow_global
    out[:, wrist] = elbow_global.transpose(0, 2, 1) @ turn @ globals_[:, wrist]
    return out


def _globals(rotations: np.ndarray) -> np.ndarray:
    """(V, 24, 3, 3) global rotations of (V, 24, 3, 3) local ones."""
    local = torch.from_numpy(rotations).double()
    zeros = local.new_zeros(len(local), skeleton.NUM_KEYPOINTS, 3)
    globals_, _ = forward_kinematics(local, zeros, local.new_zeros(len(local), 3), SMPL_TREE)
    return globals_.numpy()


def _hand_targets(landmarks: np.ndarray, confidence: np.ndarray, found: np.ndarray, rest: np.ndarray,
                  fps: float, options: SolveOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One hand's targets about its wrist, in the hand tree's order.

    Args:
        landmarks: (T, 21, 3) MediaPipe world landmarks; confidence: (T, 21); found: (T,);
        rest: (21, 3) the body's rest hand.
    Returns:
        points: (T, 21, 3) float64 about the wrist, y up, scaled to the body's hand;
        weights: (T, 21); solved: (T,) frames to solve (found, or in a bridged gap).
    """
    order = list(hands.MEDIAPIPE_TO_HAND)
    points = to_world_axes(landmarks[:, order].astype(np.float64))
    points = points - points[:, :1]
    # One image shows a hand and its mirror image turned round (a left palm seen from the
    # front, a right hand's back): MediaPipe's depth takes either. The crop says whose hand
    # it is, so a hand of the other chirality has its depth turned back; its pixels stay.
    mirrored = found & (chirality(points) != chirality(rest))
    points[mirrored, :, 2] *= -1.0
    # MediaPipe sizes every hand alike; the body's has its own length (one scale per clip).
    palm = np.linalg.norm(points[found, _PALM[1]], axis=-1)
    points *= np.linalg.norm(rest[_PALM[1]] - rest[_PALM[0]]) / np.median(palm)
    max_gap = int(round(options.max_gap_s * fps))
    points, bridged, _ = fill_gaps(points, found, max_gap)
    weights, _, _ = fill_gaps(confidence[:, order], found, max_gap)
    solved = found | bridged
    params = options.filter_params()
    if params is not None:
        points = one_euro_forward_backward(points, fps, params, solved)
    return points, weights, solved


def _median_turn(shown: np.ndarray, wrists: np.ndarray, rows: np.ndarray) -> float:
    """Median degrees, over ``rows`` (F,) of (F, 3, 3) palms and wrists, between the two."""
    turn = roma.rotmat_geodesic_distance(torch.from_numpy(shown[rows]), torch.from_numpy(wrists[rows]))
    return round(float(np.degrees(turn.median().item())), 1)


def chirality(points: np.ndarray) -> np.ndarray:
    """+1 or -1 for hands (..., 21, 3) in the hand tree's order: a left hand and a right
    one differ (mirror images), whatever their pose. The thumb's base lies on the palm's
    side of the plane of the wrist and the knuckles, which side the index-to-pinky order
    turns the other way round on the other hand."""
    wrist, middle, index, pinky, thumb = (points[..., hands.HAND_KEYPOINT_NAMES.index(name), :] for name in
                                          ("wrist", "middle1", "index1", "pinky1", "thumb2"))
    normal = np.cross(middle - wrist, index - pinky)
    return np.sign(np.einsum("...i,...i->...", thumb - wrist, normal))


def _ease_to_rest(quaternions: np.ndarray, solved: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Unsolved frames at rest, eased there over ``frames`` from the nearest solved frame.

    Args:
        quaternions: (T, J, 4) wxyz, meaningful where ``solved`` (T,).
    Returns:
        (T, J, 4) and (T,) the frames eased (neither solved nor at rest).
    """
    out = quaternions.copy()
    out[~solved] = (1.0, 0.0, 0.0, 0.0)
    index = np.arange(len(solved))
    solved_at = index[solved]
    nearest = solved_at[np.clip(np.searchsorted(solved_at, index), 0, len(solved_at) - 1)]
    before = solved_at[np.clip(np.searchsorted(solved_at, index) - 1, 0, len(solved_at) - 1)]
    nearest = np.where(np.abs(before - index) <= np.abs(nearest - index), before, nearest)
    distance = np.abs(nearest - index)
    eased = ~solved & (distance <= frames)
    if eased.any():
        # Part way along the shortest turn to rest: the rotation vector shortened.
        kept = torch.from_numpy(1.0 - distance[eased] / (frames + 1.0))
        start = roma.unitquat_to_rotvec(torch.from_numpy(quaternions[nearest[eased]][..., [1, 2, 3, 0]]))
        out[eased] = roma.rotvec_to_unitquat(start * kept[:, None, None]).numpy()[..., [3, 0, 1, 2]]
    return out, eased

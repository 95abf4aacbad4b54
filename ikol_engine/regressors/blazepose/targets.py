"""BlazePose's 33 landmarks to the IK's 29 targets and the twists the landmarks show.

BlazePose sees the limbs' joints directly, but not SMPL's spine, neck and collars, and
its hips and shoulders are surface-ish points near SMPL's joints. The map:

==============================  ==========================================  =======
SMPL target                     from                                        weight
==============================  ==========================================  =======
L/R_Hip, Knee, Ankle            the same landmarks                          1.0
L/R_Shoulder, Elbow, Wrist      the same landmarks                          1.0
L/R_Hand                        mean of index and pinky knuckles            0.5
L/R_BigToe                      foot index (tip of the foot)                0.7
Pelvis, Spine1-3, Neck,         the body's own rest positions of these      0.3
L/R_Collar                      joints, carried by the torso frame that
                                hips and shoulders span (scaled to the
                                clip's torso), so they hold the spine
                                straight-ish and leave bending to the IK
Head                            mid-point of the ears                       0.3
Head_Top                        ears' mid-point + head height along the     0.5
                                face's up (eyes above mouth)
L/R_Foot, L/R_Fingertip         not observed (the IK aims past them)        0
==============================  ==========================================  =======

Each weight is multiplied by the landmarks' visibility (the least visible of those
used). Twist, the rotation about a bone that its end points cannot show, comes from
landmarks off the bone (see :mod:`ikol_engine.ik.twist_estimate`):

* forearms (elbow twist): the normal of the hand's plane (wrist, index, pinky);
* feet (ankle twist): the normal of the foot's plane (heel, ankle, foot index);
* head (head twist, i.e. turning): the line through the ears.

Axes: BlazePose's world landmarks are metres about the hips' mid-point with x to the
image's right, y down and z away from the camera; IK targets use the motion file's
camera-aligned y-up frame, so y and z flip.
"""
from __future__ import annotations

import numpy as np

from ... import skeleton
from ...observations import TwistSides
from .landmarks import LANDMARK_INDEX as _L

_K = {name: i for i, name in enumerate(skeleton.KEYPOINT_NAMES)}
_DIRECT: dict[str, tuple[str, float]] = {
    f"{side}_{joint}": (f"{word}_{landmark}", 1.0)
    for side, word in (("L", "left"), ("R", "right"))
    for joint, landmark in (("Hip", "hip"), ("Knee", "knee"), ("Ankle", "ankle"), ("Shoulder", "shoulder"),
                            ("Elbow", "elbow"), ("Wrist", "wrist"))
} | {"L_BigToe": ("left_foot_index", 0.7), "R_BigToe": ("right_foot_index", 0.7)}
_TORSO_JOINTS = ("Pelvis", "Spine1", "Spine2", "Spine3", "Neck", "L_Collar", "R_Collar")
_TORSO_WEIGHT, _HAND_WEIGHT, _HEAD_WEIGHT, _HEAD_TOP_WEIGHT = 0.3, 0.5, 0.3, 0.5
_TWIST_WEIGHT = 0.5
# Hand and foot planes whose two spanning directions are closer than this (sine of
# their angle, ~15 degrees) give their twist less weight, down to none when collinear.
_MIN_PLANE_SINE = 0.25


def blazepose_to_targets(landmarks: np.ndarray, visibility: np.ndarray,
                         rest_keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IK targets from BlazePose landmarks.

    Args:
        landmarks: (T, 33, 3) world landmarks in the y-up frame (see :func:`to_world_axes`).
        visibility: (T, 33) BlazePose's visibility, 0..1.
        rest_keypoints: (29, 3) the body's rest keypoints (for the derived torso joints
            and the head's height).
    Returns:
        targets: (T, 29, 3) metres, y-up; confidence: (T, 29), 0 for unobserved targets.
    """
    out = _seen_points(landmarks, visibility)
    at = out.at
    torso_landmarks = ["left_hip", "right_hip", "left_shoulder", "right_shoulder"]
    origin, frame, scale = _torso_frame(at("left_hip"), at("right_hip"), at("left_shoulder"), at("right_shoulder"))
    rest_origin, rest_frame, rest_scale = _torso_frame(*(rest_keypoints[None, _K[n]] for n in
                                                         ("L_Hip", "R_Hip", "L_Shoulder", "R_Shoulder")))
    for name in _TORSO_JOINTS:
        local = rest_frame[0].T @ (rest_keypoints[_K[name]] - rest_origin[0]) / rest_scale[0]
        out.put(name, origin + scale[:, None] * (frame @ local), _TORSO_WEIGHT, torso_landmarks)

    ear_mid = (at("left_ear") + at("right_ear")) / 2
    face_up = (at("left_eye") + at("right_eye") - at("mouth_left") - at("mouth_right")) / 2
    ears = _unit(at("left_ear") - at("right_ear"))
    up = _unit(face_up - (face_up * ears).sum(-1, keepdims=True) * ears)
    head_height = np.linalg.norm(rest_keypoints[_K["Head_Top"]] - rest_keypoints[_K["Head"]])
    face = ["left_ear", "right_ear", "left_eye", "right_eye", "mouth_left", "mouth_right"]
    out.put("Head_Top", ear_mid + head_height * up, _HEAD_TOP_WEIGHT, face)
    return _drop_bad(out.targets, out.confidence)


def blazepose_image_targets(image: np.ndarray, visibility: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The IK targets BlazePose shows in the image: the limbs' joints, hands, toes and head.

    The torso joints and the head's top are placed from 3D (the torso's frame, the
    face's up), so they have no pixels of their own.

    Args:
        image: (T, 33, 2) landmark pixels; visibility: (T, 33).
    Returns:
        pixels: (T, 29, 2); confidence: (T, 29), 0 where no landmark shows the target.
    """
    out = _seen_points(image, visibility)
    return _drop_bad(out.targets, out.confidence)


class _Targets:
    """Targets (T, 29, D) and their confidence (T, 29) filled from landmarks (T, 33, D)."""

    def __init__(self, points: np.ndarray, visibility: np.ndarray) -> None:
        frames, dim = points.shape[0], points.shape[-1]
        self.points, self.visibility = points, np.clip(visibility, 0.0, 1.0)
        self.targets = np.zeros((frames, skeleton.NUM_KEYPOINTS, dim), dtype=np.float32)
        self.confidence = np.zeros((frames, skeleton.NUM_KEYPOINTS), dtype=np.float32)

    def at(self, name: str) -> np.ndarray:
        return self.points[:, _L[name]]

    def put(self, name: str, point: np.ndarray, weight: float, used: list[str]) -> None:
        """Target ``name`` at ``point``, weighted by the least visible landmark ``used``."""
        self.targets[:, _K[name]] = point
        self.confidence[:, _K[name]] = weight * self.visibility[:, [_L[u] for u in used]].min(axis=1)


def _seen_points(points: np.ndarray, visibility: np.ndarray) -> _Targets:
    """The targets that are landmarks or means of landmarks, in 3D or in the image.

    Args:
        points: (T, 33, D) landmarks; visibility: (T, 33).
    """
    out = _Targets(points, visibility)
    for target, (landmark, weight) in _DIRECT.items():
        out.put(target, out.at(landmark), weight, [landmark])
    for side in ("left", "right"):
        out.put(f"{side[0].upper()}_Hand", (out.at(f"{side}_index") + out.at(f"{side}_pinky")) / 2, _HAND_WEIGHT,
                [f"{side}_index", f"{side}_pinky", f"{side}_wrist"])
    out.put("Head", (out.at("left_ear") + out.at("right_ear")) / 2, _HEAD_WEIGHT, ["left_ear", "right_ear"])
    return out


def _drop_bad(targets: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-finite targets -> zero, with zero confidence."""
    bad = ~np.isfinite(targets).all(-1)
    targets[bad] = 0.0
    confidence[bad] = 0.0
    return targets, confidence


def blazepose_twist_observations(landmarks: np.ndarray, visibility: np.ndarray) -> TwistSides:
    """The directions that fix forearm, foot and head twist (see the module docstring).

    Args:
        landmarks: (T, 33, 3) world landmarks in the y-up frame; visibility: (T, 33).
    """
    frames = landmarks.shape[0]
    sides = np.zeros((frames, skeleton.NUM_TWISTS, 3), dtype=np.float32)
    rest_sides = np.zeros((skeleton.NUM_TWISTS, 3), dtype=np.float32)
    carriers = np.arange(1, skeleton.NUM_JOINTS)
    confidence = np.zeros((frames, skeleton.NUM_TWISTS), dtype=np.float32)
    vis = np.clip(visibility, 0.0, 1.0)

    def at(name: str) -> np.ndarray:
        return landmarks[:, _L[name]]

    def observe(joint: str, carrier: str, side: np.ndarray, rest: tuple[float, float, float],
                used: list[str], spread: np.ndarray | None = None) -> None:
        row = skeleton.JOINT_NAMES.index(joint) - 1
        sides[:, row] = side
        rest_sides[row] = rest
        carriers[row] = skeleton.JOINT_NAMES.index(carrier)
        confidence[:, row] = _TWIST_WEIGHT * vis[:, [_L[u] for u in used]].min(axis=1)
        if spread is not None:  # a plane from nearly collinear points has no trustworthy normal
            confidence[:, row] *= np.clip(spread / _MIN_PLANE_SINE, 0.0, 1.0)

    for side, letter, palm_up in (("left", "L", 1.0), ("right", "R", -1.0)):
        wrist = at(f"{side}_wrist")
        # In SMPL's rest pose the palms face down: this normal, the back of the hand,
        # points up for the left hand and (the cross product mirrored) down for the right.
        normal = np.cross(at(f"{side}_index") - wrist, at(f"{side}_pinky") - wrist)
        observe(f"{letter}_Elbow", f"{letter}_Wrist", normal, (0.0, palm_up, 0.0),
                [f"{side}_wrist", f"{side}_index", f"{side}_pinky"],
                _sine(at(f"{side}_index") - wrist, at(f"{side}_pinky") - wrist))
        heel = at(f"{side}_heel")
        # The foot's sagittal plane; its normal points to the body's right in the rest pose.
        normal = np.cross(at(f"{side}_foot_index") - heel, at(f"{side}_ankle") - heel)
        observe(f"{letter}_Ankle", f"{letter}_Ankle", normal, (-1.0, 0.0, 0.0),
                [f"{side}_heel", f"{side}_ankle", f"{side}_foot_index"],
                _sine(at(f"{side}_foot_index") - heel, at(f"{side}_ankle") - heel))
    observe("Head", "Head", at("left_ear") - at("right_ear"), (1.0, 0.0, 0.0), ["left_ear", "right_ear"])

    bad = ~np.isfinite(sides).all(-1)
    sides[bad] = 0.0
    confidence[bad] = 0.0
    return TwistSides(sides, rest_sides, carriers, confidence)


def _torso_frame(left_hip: np.ndarray, right_hip: np.ndarray, left_shoulder: np.ndarray,
                 right_shoulder: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Origin (T, 3), axes (T, 3, 3) as columns (left, up, forward) and size (T,) of a torso."""
    hips = (left_hip + right_hip) / 2
    shoulders = (left_shoulder + right_shoulder) / 2
    up = _unit(shoulders - hips)
    across = (left_hip - right_hip) + (left_shoulder - right_shoulder)
    left = _unit(across - (across * up).sum(-1, keepdims=True) * up)
    forward = np.cross(left, up)
    return hips, np.stack([left, up, forward], axis=-1), np.linalg.norm(shoulders - hips, axis=-1)


def _sine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T,) sine of the angle between (T, 3) vectors; 0 where either is zero."""
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.linalg.norm(np.cross(a, b), axis=-1) / np.where(norms > 0, norms, np.inf)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norm > 0, norm, 1.0)

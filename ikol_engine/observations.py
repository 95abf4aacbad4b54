"""What a regressor saw in a clip, and how the track stage is to read it.

This is the seam between the regressors (above) and the track stage (below): a
regressor's frames become one :class:`Observations` (stored whole in the motion file,
so ``refine`` can start again from it), and each regressor describes its keypoints
once, in a :class:`KeypointLayout`: which points are left/right pairs it may swap,
which touch the floor, how they become the IK's 29 targets, and how they show twist.
The track stage runs the same steps for every regressor through that description.
"""
from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np


@dataclass(frozen=True)
class Observations:
    """A clip's regressor output, as stored in a motion file.

    Attributes:
        names: (R,) keypoint names; keypoints: (T, R, 3) metric, camera axes (x right,
            y down, z away from the camera, about the hips); confidence: (T, R);
            image: (T, R, 2) pixels; detected: (T,) a person was found.
        frame_indices: (T,) source frame numbers; fps: of these frames.
        image_size: (width, height) of the video in pixels.
        twist, twist_confidence: (T, 23) and betas: (10,), where the regressor gives
            them (HybrIK's network), else None.
        frame_times: (T,) each frame's time in the video, seconds (the decoder's
            timestamps, so variable-rate clips keep their timing); None: ``times``
            falls back to ``frame_indices / fps``.
        hand_landmarks: (T, 2, 21, 3) each hand's landmarks (left, right; MediaPipe's
            order), metres about the hand's centre, camera axes; hand_pixels:
            (T, 2, 21, 2); hand_confidence: (T, 2, 21), 0 where a hand was not found;
            None where the hands were not looked for.
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
    frame_times: np.ndarray | None = None
    hand_landmarks: np.ndarray | None = None
    hand_pixels: np.ndarray | None = None
    hand_confidence: np.ndarray | None = None

    @property
    def times(self) -> np.ndarray:
        """(T,) seconds of each frame in the video."""
        if self.frame_times is not None:
            return np.asarray(self.frame_times, dtype=np.float64)
        return np.asarray(self.frame_indices, dtype=np.float64) / self.fps


@dataclass(frozen=True)
class TwistSides:
    """Directions off the bone that fix a joint's twist (for regressors that give no angles).

    Attributes:
        sides: (T, 23, 3) observed direction per twist joint (zero where unobserved).
        rest_sides: (23, 3) the same direction in the rest pose (SMPL's axes).
        carriers: (23,) the joint whose frame carries each direction (a palm is
            carried by the wrist although it fixes the elbow's twist).
        confidence: (T, 23) weight of each observation, 0 where none.
    """

    sides: np.ndarray
    rest_sides: np.ndarray
    carriers: np.ndarray
    confidence: np.ndarray


def to_world_axes(points: np.ndarray) -> np.ndarray:
    """(..., 3) points in camera axes (y down, z away) -> the motion file's y-up camera-aligned axes.

    A half turn about x: a rotation, so local rotations and twists are unchanged by it.
    """
    return points * np.array([1.0, -1.0, -1.0], dtype=points.dtype)


class KeypointLayout(abc.ABC):
    """One regressor's keypoints, described for the track stage.

    Attributes:
        name: short name recorded in the run's results ("blazepose", "hybrik").
        names: (R,) the keypoint names this layout reads.
        swap_groups: per body part, the (left, right) keypoint index pairs the regressor
            may exchange for some frames; each part is repaired on its own. Empty for a
            regressor that never swaps sides.
        torso_checked: parts whose sides are also checked frame by frame against the
            shoulders (:meth:`swapped_against_torso`).
        foot_points: indices of the keypoints that touch the floor when a foot rests.
        smpl_betas: the regressor's ``betas`` are SMPL shape coefficients.
    """

    name: str
    names: tuple[str, ...]
    swap_groups: Mapping[str, tuple[tuple[int, int], ...]] = MappingProxyType({})
    torso_checked: tuple[str, ...] = ()
    foot_points: tuple[int, ...]
    smpl_betas: bool = False

    def swapped_against_torso(self, points: np.ndarray, part: str) -> np.ndarray:
        """Frames (T,) where ``part`` points against the shoulders.

        Args:
            points: (T, R, 3) keypoints in the y-up axes.
        """
        raise NotImplementedError(f"{self.name} checks no part against the torso")

    @abc.abstractmethod
    def targets(self, points: np.ndarray, confidence: np.ndarray,
                rest_keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The IK's targets from the keypoints.

        Args:
            points: (V, R, 3) keypoints in the y-up axes; confidence: (V, R).
            rest_keypoints: (29, 3) the body's rest keypoints, for points the regressor
                does not see (carried by the ones it does).
        Returns:
            targets (V, 29, 3) float32 and their confidence (V, 29) float32.
        """

    @abc.abstractmethod
    def image_targets(self, pixels: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where the IK's targets are in the image, for the ones the regressor's pixels show.

        Args:
            pixels: (V, R, 2) keypoints in the image; confidence: (V, R).
        Returns:
            pixels (V, 29, 2) float32 and their confidence (V, 29) float32 (0: not shown).
        """

    def twist_sides(self, points: np.ndarray, confidence: np.ndarray) -> TwistSides | None:
        """Directions that show twist, for layouts whose observations give no twist angles.

        Args:
            points: (V, R, 3) keypoints in the y-up axes; confidence: (V, R).
        """
        return None

"""The default backend: MediaPipe's BlazePose, 33 landmarks, CPU only, no licence strings.

Keypoints are BlazePose's ``pose_world_landmarks``: metres, origin midway between the
hips, axes aligned with the camera's: x towards the image's right, y down, z away from
the camera (checked on the Sports2D demo video by ``tests/test_blazepose.py``). Confidence
is the landmark's visibility; image keypoints are ``pose_landmarks`` scaled to pixels.

Only the 'full' landmark model (complexity 1) ships in the mediapipe wheel. For 'lite'
(0) and 'heavy' (2) mediapipe would download the model at construction, which hangs on
a machine without network access, so the files are checked first and a missing one is
reported with where to put it. MediaPipe writes its log lines to stderr, never stdout.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mediapipe as mp
import numpy as np

from ..base import KeypointFrames, Regressor, RegressorError
from .landmarks import LANDMARK_NAMES

__all__ = ["COMPLEXITY_NAMES", "BlazePoseRegressor", "required_model_files"]

#: Model complexity -> the name of its landmark model.
COMPLEXITY_NAMES: dict[int, str] = {0: "lite", 1: "full", 2: "heavy"}



def _mediapipe_root() -> Path:
    """The installed mediapipe package folder, which holds the model files."""
    return Path(mp.__file__).resolve().parent


def required_model_files(model_complexity: int) -> tuple[Path, Path]:
    """Paths of the person-detection and landmark models a complexity needs.

    Raises:
        ValueError: the complexity is not 0, 1 or 2.
    """
    if model_complexity not in COMPLEXITY_NAMES:
        raise ValueError(
            f"model_complexity must be one of {sorted(COMPLEXITY_NAMES)}, got {model_complexity!r}"
        )
    modules = _mediapipe_root() / "modules"
    return (
        modules / "pose_detection" / "pose_detection.tflite",
        modules / "pose_landmark" / f"pose_landmark_{COMPLEXITY_NAMES[model_complexity]}.tflite",
    )


def _check_model_files(model_complexity: int) -> None:
    """Raise RegressorError naming each missing model file and how to supply it."""
    missing = [path for path in required_model_files(model_complexity) if not path.is_file()]
    if missing:
        lines = "\n".join(f"  {path}  (copy {path.name} into {path.parent})" for path in missing)
        raise RegressorError(
            f"BlazePose {COMPLEXITY_NAMES[model_complexity]} (model_complexity={model_complexity}) "
            f"needs model files that the installed mediapipe lacks:\n{lines}\n"
            "The npm package @mediapipe/pose carries pose_landmark_lite/full/heavy.tflite: "
            "`npm pack @mediapipe/pose` fetches its tarball, take the file from it. "
            "MediaPipe's own download is not attempted, since it hangs without network access."
        )


class BlazePoseRegressor(Regressor):
    """MediaPipe Pose in video mode: tracks the most prominent person from frame to frame.

    Args:
        model_complexity: 0 (lite), 1 (full, ships with mediapipe) or 2 (heavy).
        min_detection_confidence: person-detector score needed to start tracking (0..1).
        min_tracking_confidence: landmark score needed to keep tracking rather than
            detecting again (0..1).

    Raises:
        ValueError: complexity not 0, 1 or 2, or a confidence outside 0..1.
        RegressorError: a model file is missing (the message says where it goes).
    """

    keypoint_names = LANDMARK_NAMES

    def __init__(
        self,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        for label, value in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_tracking_confidence", min_tracking_confidence),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must lie in 0..1, got {value}")
        _check_model_files(model_complexity)
        self.name = f"blazepose-{COMPLEXITY_NAMES[model_complexity]}"
        self.model_complexity = model_complexity
        self._pose: mp.solutions.pose.Pose | None = mp.solutions.pose.Pose(
            static_image_mode=False,
            model_complexity=model_complexity,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def __call__(self, images: Sequence[np.ndarray]) -> KeypointFrames:
        """Regress the 33 landmarks for each (H, W, 3) uint8 RGB image, in video order.

        Returns:
            :class:`KeypointFrames` with R = 33 and no twist or betas.
        """
        if self._pose is None:
            raise RegressorError(f"{self.name} regressor is closed")
        self.check_images(images)
        n, r = len(images), len(LANDMARK_NAMES)
        keypoints = np.zeros((n, r, 3), np.float32)
        confidence = np.zeros((n, r), np.float32)
        image_keypoints = np.zeros((n, r, 2), np.float32)
        detected = np.zeros(n, bool)
        for i, image in enumerate(images):
            try:
                # MediaPipe wraps the buffer as it is, so it must be contiguous.
                result = self._pose.process(np.ascontiguousarray(image))
            except RuntimeError as exc:
                raise RegressorError(f"{self.name} failed on image {i}: {exc}") from exc
            if result.pose_world_landmarks is None or result.pose_landmarks is None:
                continue
            world = result.pose_world_landmarks.landmark
            normalised = result.pose_landmarks.landmark
            keypoints[i] = [(p.x, p.y, p.z) for p in world]
            confidence[i] = [p.visibility for p in world]
            height, width = image.shape[:2]
            image_keypoints[i] = [(p.x * width, p.y * height) for p in normalised]
            detected[i] = True
        np.clip(confidence, 0.0, 1.0, out=confidence)
        return KeypointFrames(LANDMARK_NAMES, keypoints, confidence, image_keypoints, detected)

    def reset(self) -> None:
        """Drop the tracked person and the landmark smoothing, before a new clip."""
        if self._pose is not None:
            self._pose.reset()

    def close(self) -> None:
        """Shut down MediaPipe's graph; calling it again does nothing."""
        if self._pose is not None:
            self._pose.close()
            self._pose = None

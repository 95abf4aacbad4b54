"""The interface every keypoint regressor backend implements, and the results it returns."""
from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

__all__ = ["NUM_BETAS", "NUM_TWISTS", "KeypointFrames", "Regressor", "RegressorError"]

#: Twist angles come one per SMPL joint below the root, as the IK layer takes them.
NUM_TWISTS = 23
#: SMPL shape coefficients, as the body model takes them.
NUM_BETAS = 10


class RegressorError(RuntimeError):
    """A regressor backend cannot be set up or run (missing model file, runtime failure)."""


@dataclass
class KeypointFrames:
    """A regressor's results for N frames, in video order.

    Attributes:
        keypoint_names: (R,) names of the keypoints, in array order.
        keypoints: (N, R, 3) float32, metric 3D keypoints (metres) in the backend's own
            frame; each backend documents its axes and origin.
        confidence: (N, R) float32 in 0..1.
        image_keypoints: (N, R, 2) float32 pixels, x right, y down, origin at the image's
            top-left corner. They may lie outside the image where a body part is cut off.
        detected: (N,) bool, a person was found. Where False, that frame's rows of every
            other per-frame array are zeros.
        twist: (N, 23) float32 radians about each SMPL bone, or None if not estimated.
        twist_confidence: (N, 23) float32 in 0..1, or None; only given together with twist.
        betas: (10,) float32 SMPL shape for the frames, or None if not estimated.

    Arrays are converted to the dtypes above; shapes that disagree raise ValueError.
    """

    keypoint_names: tuple[str, ...]
    keypoints: np.ndarray
    confidence: np.ndarray
    image_keypoints: np.ndarray
    detected: np.ndarray
    twist: np.ndarray | None = None
    twist_confidence: np.ndarray | None = None
    betas: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.keypoint_names = tuple(self.keypoint_names)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        self.confidence = np.asarray(self.confidence, dtype=np.float32)
        self.image_keypoints = np.asarray(self.image_keypoints, dtype=np.float32)
        self.detected = np.asarray(self.detected, dtype=bool)
        n, r = len(self.detected), len(self.keypoint_names)
        expected = {
            "keypoints": (self.keypoints, (n, r, 3)),
            "confidence": (self.confidence, (n, r)),
            "image_keypoints": (self.image_keypoints, (n, r, 2)),
            "detected": (self.detected, (n,)),
        }
        if self.twist_confidence is not None and self.twist is None:
            raise ValueError("twist_confidence given without twist")
        if self.twist is not None:
            self.twist = np.asarray(self.twist, dtype=np.float32)
            expected["twist"] = (self.twist, (n, NUM_TWISTS))
        if self.twist_confidence is not None:
            self.twist_confidence = np.asarray(self.twist_confidence, dtype=np.float32)
            expected["twist_confidence"] = (self.twist_confidence, (n, NUM_TWISTS))
        if self.betas is not None:
            self.betas = np.asarray(self.betas, dtype=np.float32)
            expected["betas"] = (self.betas, (NUM_BETAS,))
        for label, (array, shape) in expected.items():
            if array.shape != shape:
                raise ValueError(
                    f"{label} has shape {array.shape}, expected {shape} (N={n}, R={r})"
                )

    def __len__(self) -> int:
        return len(self.detected)

    @classmethod
    def concatenate(cls, parts: Sequence[KeypointFrames]) -> KeypointFrames:
        """Join results of consecutive chunks of one clip into one, in the given order.

        All parts must share keypoint names and agree on whether twist and betas are
        present. Betas, one per part, become their mean weighted by each part's number of
        detected frames (a plain mean if none detected anything), since the clip has one
        body.

        Raises:
            ValueError: no parts, or parts that disagree as above.
        """
        if not parts:
            raise ValueError("nothing to concatenate: no KeypointFrames given")
        first = parts[0]
        for i, part in enumerate(parts[1:], start=1):
            if part.keypoint_names != first.keypoint_names:
                raise ValueError(f"part {i} has other keypoint names than part 0")
            for label in ("twist", "twist_confidence", "betas"):
                if (getattr(part, label) is None) != (getattr(first, label) is None):
                    raise ValueError(f"part {i} and part 0 disagree on whether {label} is given")

        def joined(label: str) -> np.ndarray | None:
            if getattr(first, label) is None:
                return None
            return np.concatenate([getattr(part, label) for part in parts])

        betas = None
        if first.betas is not None:
            weights = np.array([part.detected.sum() for part in parts], dtype=np.float64)
            if weights.sum() == 0:
                weights[:] = 1.0
            betas = np.average(np.stack([part.betas for part in parts]), axis=0, weights=weights)
        return cls(
            keypoint_names=first.keypoint_names,
            keypoints=joined("keypoints"),
            confidence=joined("confidence"),
            image_keypoints=joined("image_keypoints"),
            detected=joined("detected"),
            twist=joined("twist"),
            twist_confidence=joined("twist_confidence"),
            betas=betas,
        )


class Regressor(abc.ABC):
    """A backend that turns RGB video frames into keypoints.

    Attributes (set by each backend):
        name: short identifier of the backend and model, e.g. ``"blazepose-full"``.
        keypoint_names: (R,) names of the keypoints it returns, in order.

    Frames go in video order; a backend may track the person from one call to the next,
    so call :meth:`reset` before a new clip. Use it as a context manager, or call
    :meth:`close`, to free the model.
    """

    name: str
    keypoint_names: tuple[str, ...]

    @abc.abstractmethod
    def __call__(self, images: Sequence[np.ndarray]) -> KeypointFrames:
        """Regress keypoints for ``images``, each (H, W, 3) uint8 RGB, in video order.

        Returns:
            :class:`KeypointFrames` with N = ``len(images)``.

        Raises:
            ValueError: an image is not (H, W, 3) uint8.
            RegressorError: the backend failed.
        """

    def reset(self) -> None:
        """Forget what was tracked, before frames of a new clip. Stateless backends keep nothing."""

    def close(self) -> None:
        """Free the model. Backends holding nothing beyond Python objects need not override."""

    def __enter__(self) -> Regressor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def check_images(images: Sequence[np.ndarray]) -> None:
        """Raise ValueError unless every image is a (H, W, 3) uint8 array."""
        for i, image in enumerate(images):
            if not (
                isinstance(image, np.ndarray)
                and image.dtype == np.uint8
                and image.ndim == 3
                and image.shape[2] == 3
            ):
                described = (
                    f"{image.dtype} array of shape {image.shape}"
                    if isinstance(image, np.ndarray)
                    else type(image).__name__
                )
                raise ValueError(
                    f"image {i} must be a (H, W, 3) uint8 RGB array, got a {described}"
                )
